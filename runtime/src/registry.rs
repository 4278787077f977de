//! The set of served models, by name and alias, and the shared tokenization pool. A registry is
//! immutable: a reload builds a new one (keeping the instances whose configuration did not change)
//! and the server swaps it in, while requests already running finish on the old one.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;

use crate::cache::EmbeddingCache;
use crate::config::{ModelPlan, Plan};
use crate::instance::ModelInstance;
use crate::plugin::PluginHost;
use crate::request::{
    EmbedError, EmbedRequest, EmbedResponse, RerankRequest, RerankResponse, TokenizeRequest,
    TokenizeResponse,
};
use crate::tokenize::WorkerPool;

/// Every served model, ready to answer requests.
pub struct Registry {
    /// Each model with the plan it was loaded from, in configuration order.
    models: Vec<(ModelPlan, Arc<ModelInstance>)>,
    by_name: HashMap<String, Arc<ModelInstance>>,
    tokenizers: Arc<WorkerPool>,
    /// The embedding cache the models share (kept across reloads), if configured.
    cache: Option<Arc<EmbeddingCache>>,
}

/// What a reload did, by model name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Models loaded anew (new, or changed in the file).
    pub loaded: Vec<String>,
    /// Models whose configuration did not change, still serving from the same instance.
    pub kept: Vec<String>,
    /// Models no longer in the file; they finish their queued work and are dropped.
    pub removed: Vec<String>,
}

impl Registry {
    /// Loads and warms up every model of `plan`, with plugins from its `plugin_dirs`.
    ///
    /// # Errors
    ///
    /// When a model fails to load (the message names it), the tokenizer pool cannot start, or
    /// the cache cannot be set up.
    pub fn load(plan: &Plan) -> Result<Self> {
        let pool = Arc::new(WorkerPool::new("tokenize", plan.server.tokenizer_threads)?);
        let cache = EmbeddingCache::new(&plan.cache)?.map(Arc::new);
        Ok(Self::build(plan, None, pool, cache)?.0)
    }

    /// A registry for `plan` that reuses this one's instances wherever a model's plan is
    /// unchanged, and loads (and warms up) the rest. On error nothing changes. The tokenizer
    /// pool and the cache stay as they are (their settings take effect on a restart).
    ///
    /// # Errors
    ///
    /// When a new or changed model fails to load.
    pub fn reload(&self, plan: &Plan) -> Result<(Self, ReloadReport)> {
        let (registry, mut report) = Self::build(
            plan,
            Some(self),
            Arc::clone(&self.tokenizers),
            self.cache.clone(),
        )?;
        report.removed = self
            .models
            .iter()
            .map(|(model, _)| model.name.clone())
            .filter(|name| !plan.models.iter().any(|m| &m.name == name))
            .collect();
        Ok((registry, report))
    }

    fn build(
        plan: &Plan,
        previous: Option<&Registry>,
        tokenizers: Arc<WorkerPool>,
        cache: Option<Arc<EmbeddingCache>>,
    ) -> Result<(Self, ReloadReport)> {
        let plugins = PluginHost::new(plan.server.plugin_dirs.clone());
        let mut report = ReloadReport::default();
        let mut models = Vec::with_capacity(plan.models.len());
        for model in &plan.models {
            let same = previous.and_then(|p| p.models.iter().find(|(old, _)| old == model));
            let instance = match same {
                Some((_, instance)) => {
                    report.kept.push(model.name.clone());
                    Arc::clone(instance)
                }
                None => {
                    tracing::info!(model = %model.name, source = ?model.source, "loading");
                    report.loaded.push(model.name.clone());
                    let instance = ModelInstance::load(model, &plugins)?;
                    Arc::new(match &cache {
                        Some(cache) if model.cache => instance.with_cache(Arc::clone(cache))?,
                        _ => instance,
                    })
                }
            };
            models.push((model.clone(), instance));
        }
        let mut by_name = HashMap::new();
        for (model, instance) in &models {
            for name in model.names() {
                by_name.insert(name.to_string(), Arc::clone(instance));
            }
        }
        Ok((
            Self {
                models,
                by_name,
                tokenizers,
                cache,
            },
            report,
        ))
    }

    /// The model called `name` (or aliased so).
    pub fn get(&self, name: &str) -> Option<&Arc<ModelInstance>> {
        self.by_name.get(name)
    }

    /// Every model, in configuration order.
    pub fn models(&self) -> impl Iterator<Item = &Arc<ModelInstance>> {
        self.models.iter().map(|(_, instance)| instance)
    }

    /// Brings the gauges that are read rather than counted (the cache's bytes) up to date;
    /// called before the metrics are rendered.
    pub fn record_gauges(&self) {
        if let Some(cache) = &self.cache {
            cache.record_bytes();
        }
    }

    /// Answers `request` with the model it names.
    ///
    /// # Errors
    ///
    /// See [`Registry::model`] and [`ModelInstance::embed`].
    pub async fn embed(&self, request: EmbedRequest) -> Result<EmbedResponse, EmbedError> {
        self.model(request.model.as_deref())?
            .embed(request, &self.tokenizers)
            .await
    }

    /// Ranks `request`'s documents with the model it names.
    ///
    /// # Errors
    ///
    /// See [`Registry::model`] and [`ModelInstance::rerank`].
    pub async fn rerank(&self, request: RerankRequest) -> Result<RerankResponse, EmbedError> {
        self.model(request.model.as_deref())?
            .rerank(request, &self.tokenizers)
            .await
    }

    /// Tokenizes `request`'s texts with the model it names.
    ///
    /// # Errors
    ///
    /// See [`Registry::model`] and [`ModelInstance::tokenize`].
    pub async fn tokenize(&self, request: TokenizeRequest) -> Result<TokenizeResponse, EmbedError> {
        self.model(request.model.as_deref())?
            .tokenize(request, &self.tokenizers)
            .await
    }

    /// The model a request names (by name or alias), or the only one when it names none.
    ///
    /// # Errors
    ///
    /// [`EmbedError::ModelNotFound`] for an unknown name, [`EmbedError::MissingModel`] when no
    /// name is given and several models are served.
    pub fn model(&self, name: Option<&str>) -> Result<&Arc<ModelInstance>, EmbedError> {
        match (name, self.models.as_slice()) {
            (Some(name), _) => self
                .get(name)
                .ok_or_else(|| EmbedError::ModelNotFound(name.to_string())),
            (None, [(_, only)]) => Ok(only),
            (None, _) => Err(EmbedError::MissingModel),
        }
    }
}
