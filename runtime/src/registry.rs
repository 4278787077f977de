//! The set of served models, by name, and the shared tokenization pool.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;

use crate::config::Config;
use crate::instance::ModelInstance;
use crate::plugin::host::PluginHost;
use crate::request::{EmbedError, EmbedRequest, EmbedResponse};
use crate::tokenize::WorkerPool;

/// Every served model, ready to answer requests.
pub struct Registry {
    models: HashMap<String, Arc<ModelInstance>>,
    order: Vec<String>,
    tokenizers: WorkerPool,
}

impl Registry {
    /// Loads and warms up every model of `config`, with plugins from its `plugin_dirs`.
    pub fn load(config: &Config) -> Result<Self> {
        let plugins = PluginHost::new(config.server.plugin_dirs.clone());
        let instances = config
            .models
            .iter()
            .map(|model| {
                tracing::info!(model = %model.name, path = %model.path.display(), "loading");
                ModelInstance::load(model, &plugins)
            })
            .collect::<Result<Vec<_>>>()?;
        Self::new(instances, config.server.tokenizer_threads)
    }

    /// A registry of already loaded instances, tokenizing on `tokenizer_threads` threads.
    pub fn new(instances: Vec<ModelInstance>, tokenizer_threads: usize) -> Result<Self> {
        let order = instances.iter().map(|m| m.name().to_string()).collect();
        let mut models = HashMap::new();
        for instance in instances {
            let instance = Arc::new(instance);
            for name in std::iter::once(instance.name())
                .chain(instance.aliases().iter().map(String::as_str))
            {
                models.insert(name.to_string(), Arc::clone(&instance));
            }
        }
        Ok(Self {
            models,
            order,
            tokenizers: WorkerPool::new("tokenize", tokenizer_threads)?,
        })
    }

    /// The model called `name` (or aliased so).
    pub fn get(&self, name: &str) -> Option<&Arc<ModelInstance>> {
        self.models.get(name)
    }

    /// Every model, in configuration order.
    pub fn models(&self) -> impl Iterator<Item = &Arc<ModelInstance>> {
        self.order.iter().filter_map(|name| self.models.get(name))
    }

    /// Answers `request` with the model it names.
    pub async fn embed(&self, request: EmbedRequest) -> Result<EmbedResponse, EmbedError> {
        let model = self
            .get(&request.model)
            .ok_or_else(|| EmbedError::ModelNotFound(request.model.clone()))?;
        model.embed(request, &self.tokenizers).await
    }
}
