//! Why a configuration cannot be served: a typed error naming the key at fault.

use std::path::PathBuf;

/// Why a configuration file cannot be read, parsed or resolved into a [`Plan`](super::Plan).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The text is not TOML of the schema: a syntax error, an unknown key or a value of the wrong
    /// type. The parser's message names the key and the line.
    #[error("{0}")]
    Syntax(#[from] toml::de::Error),
    /// A value is out of range, or contradicts another.
    #[error("`{key}` {problem}")]
    Invalid {
        /// The key at fault, as the file writes it (`models[0].batching.max_batch_tokens`).
        key: String,
        /// What is wrong with it, as a phrase that follows the key ("must be at least 1").
        problem: String,
    },
}

impl ConfigError {
    /// An [`ConfigError::Invalid`] about `key`.
    pub fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            problem: problem.into(),
        }
    }

    /// The key at fault, when the error is about one value.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}
