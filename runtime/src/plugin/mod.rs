//! Engines as plugins: shared libraries behind the C ABI of [`embedrt_plugin_abi`].
//!
//! [`host`] opens plugins and wraps each loaded model in a [`Backend`](crate::Backend);
//! [`guest`] is the other side, used by plugin crates to export a `Backend` through the ABI.

pub mod guest;
pub mod host;

pub use embedrt_plugin_abi as abi;
use serde::{Deserialize, Serialize};

use crate::model::ModelCard;

/// What a plugin is told when it loads a model; crosses the ABI as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EngineConfig {
    /// The model as the runtime read it.
    pub card: ModelCard,
    /// The engine's own options from the config file (`options = { ... }`).
    #[serde(default)]
    pub options: serde_json::Value,
}

impl EngineConfig {
    /// Decodes the engine's `options` into `T`, rejecting unknown keys when `T` does.
    pub fn options<T: serde::de::DeserializeOwned + Default>(
        &self,
    ) -> Result<T, crate::BackendError> {
        if self.options.is_null() {
            return Ok(T::default());
        }
        serde_json::from_value(self.options.clone())
            .map_err(|e| crate::BackendError::Load(format!("bad engine options: {e}")))
    }
}
