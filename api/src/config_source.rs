//! Where the configuration comes from: the file and the command line's overrides, so that a reload
//! reads it again the same way.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use embedrt_runtime::Config;

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
    /// Reads and checks the file, with the command line's overrides and the default plugin folder
    /// (the one the `embedrt` executable is in).
    ///
    /// # Errors
    ///
    /// When the file cannot be read or is invalid; the message names the key at fault.
    pub fn read(&self) -> Result<Config> {
        let mut config = Config::from_file(&self.path)?;
        if let Some(http) = self.http {
            config.server.http = http;
        }
        if let Some(grpc) = self.grpc {
            config.server.grpc = Some(grpc);
        }
        if config.server.plugin_dirs.is_empty() {
            let exe = std::env::current_exe().context("cannot locate the embedrt executable")?;
            config
                .server
                .plugin_dirs
                .extend(exe.parent().map(PathBuf::from));
        }
        Ok(config)
    }
}
