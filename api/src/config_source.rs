//! Where the configuration comes from: the file and the command line's overrides, so that a reload
//! reads and resolves it again the same way.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use embedrt_runtime::config::{ConfigError, Overrides, Plan};

/// The config file and the command line's overrides.
#[derive(Clone, Debug)]
pub struct ConfigSource {
    /// The TOML file.
    pub path: PathBuf,
    /// `--http`: overrides the file's `[server] http`.
    pub http: Option<SocketAddr>,
    /// `--grpc`: overrides (or sets) the file's `[server] grpc`.
    pub grpc: Option<SocketAddr>,
}

impl ConfigSource {
    /// Reads the file and resolves it into the plan to serve, with the command line's overrides
    /// and the default plugin folder (the one the `embedrt` executable is in).
    ///
    /// # Errors
    ///
    /// When the file cannot be read, is invalid or cannot be served; the message names the key
    /// at fault.
    pub fn read(&self) -> Result<Plan> {
        let exe = std::env::current_exe().context("cannot locate the embedrt executable")?;
        let overrides = Overrides {
            http: self.http,
            grpc: self.grpc,
            default_plugin_dir: exe.parent().map(PathBuf::from),
        };
        Plan::from_file(&self.path, &overrides).map_err(|error| match error {
            read @ ConfigError::Read { .. } => anyhow::Error::new(read),
            other => {
                anyhow::Error::new(other).context(format!("invalid config {}", self.path.display()))
            }
        })
    }
}
