//! A loaded model: its card, tokenizer, engine and scheduler, and the request path through them.

use std::sync::Arc;

use anyhow::{Context, Result};

use crate::backend::{Backend, BackendError, Capabilities};
use crate::config::ModelConfig;
use crate::model::ModelCard;
use crate::plugin::host::PluginHost;
use crate::plugin::EngineConfig;
use crate::postprocess::finish;
use crate::request::{EmbedError, EmbedRequest, EmbedResponse, Input};
use crate::scheduler::{Scheduler, Sequence, SubmitError};
use crate::tokenize::{TextTokenizer, TokenizeError, WorkerPool};

/// One served model on one engine.
pub struct ModelInstance {
    name: String,
    engine: String,
    card: ModelCard,
    tokenizer: Arc<TextTokenizer>,
    scheduler: Scheduler,
    max_inputs: usize,
    truncate: bool,
}

impl ModelInstance {
    /// Loads the model of `config` with its engine plugin and warms it up.
    pub fn load(config: &ModelConfig, plugins: &PluginHost) -> Result<Self> {
        let card =
            ModelCard::load(&config.path).with_context(|| format!("model {:?}", config.name))?;
        let options = serde_json::to_value(&config.options)?;
        let engine_config = EngineConfig {
            card: card.clone(),
            options,
        };
        let backend = plugins
            .load_model(&config.backend, &engine_config)
            .with_context(|| format!("model {:?}: engine {:?}", config.name, config.backend))?;
        Self::with_backend(config, card, Box::new(backend))
    }

    /// Builds an instance around an engine that is already loaded (linked in, or from a plugin).
    pub fn with_backend(
        config: &ModelConfig,
        card: ModelCard,
        backend: Box<dyn Backend>,
    ) -> Result<Self> {
        let capabilities = backend.capabilities().clone();
        check_capabilities(&card, &capabilities)
            .with_context(|| format!("model {:?}", config.name))?;
        let max_tokens = card.max_tokens.min(capabilities.max_tokens);
        let tokenizer = TextTokenizer::load(&card.path, max_tokens, card.vocab_size)?;
        let mut batching = config.batching.to_scheduler();
        // A single longest input must always fit a batch.
        batching.max_batch_tokens = batching.max_batch_tokens.max(max_tokens);
        let scheduler = Scheduler::start(&config.name, backend, batching)?;
        let instance = Self {
            name: config.name.clone(),
            engine: config.backend.clone(),
            card,
            tokenizer: Arc::new(tokenizer),
            scheduler,
            max_inputs: config.max_inputs_per_request,
            truncate: config.truncate,
        };
        instance
            .warm_up()
            .with_context(|| format!("model {:?}: warm-up failed", config.name))?;
        Ok(instance)
    }

    /// Runs one input through the whole engine path, so the first client pays no start-up cost.
    fn warm_up(&self) -> Result<()> {
        let ids = self.tokenizer.encode("warm up", true)?;
        let receivers = self.scheduler.submit(vec![Sequence { ids, task: 0 }])?;
        for receiver in receivers {
            receiver
                .blocking_recv()
                .context("the engine thread stopped")??;
        }
        Ok(())
    }

    /// The name clients use.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The engine's name (`onnx`, `candle`, ...).
    pub fn engine(&self) -> &str {
        &self.engine
    }

    /// The model card.
    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// What the engine can do.
    pub fn capabilities(&self) -> &Capabilities {
        self.scheduler.capabilities()
    }

    /// Whether the engine still serves.
    pub fn is_healthy(&self) -> bool {
        self.scheduler.is_healthy()
    }

    /// Validates, tokenizes (on `pool`), batches, runs and post-processes `request`.
    pub async fn embed(
        &self,
        request: EmbedRequest,
        pool: &WorkerPool,
    ) -> Result<EmbedResponse, EmbedError> {
        self.validate(&request)?;
        let truncate = request.truncate.unwrap_or(self.truncate);
        let tokenizer = Arc::clone(&self.tokenizer);
        let inputs = request.inputs;
        let sequences = pool
            .run(move || tokenize_all(&tokenizer, inputs, truncate))
            .await
            .map_err(|e| EmbedError::Internal(e.to_string()))??;
        let prompt_tokens = sequences.iter().map(|s| s.ids.len()).sum();

        let receivers = self.scheduler.submit(sequences).map_err(|e| match e {
            SubmitError::QueueFull { .. } => EmbedError::Overloaded(e.to_string()),
            SubmitError::Unhealthy | SubmitError::Closed => EmbedError::Unavailable(e.to_string()),
        })?;
        let mut embeddings = Vec::with_capacity(receivers.len());
        for receiver in receivers {
            let pooled = receiver
                .await
                .map_err(|_| EmbedError::Unavailable("the engine thread stopped".into()))?
                .map_err(engine_error)?;
            embeddings.push(finish(pooled, request.dimensions, self.card.normalize));
        }
        Ok(EmbedResponse {
            model: self.name.clone(),
            embeddings,
            prompt_tokens,
        })
    }

    fn validate(&self, request: &EmbedRequest) -> Result<(), EmbedError> {
        if request.inputs.is_empty() {
            return Err(EmbedError::invalid("input", "`input` must not be empty"));
        }
        if request.inputs.len() > self.max_inputs {
            return Err(EmbedError::TooManyInputs {
                count: request.inputs.len(),
                limit: self.max_inputs,
            });
        }
        if let Some(dimensions) = request.dimensions {
            let hidden = self.card.hidden_size;
            if dimensions == 0 || dimensions > hidden {
                return Err(EmbedError::invalid(
                    "dimensions",
                    format!("`dimensions` must be between 1 and {hidden} for this model, got {dimensions}"),
                ));
            }
        }
        Ok(())
    }
}

fn tokenize_all(
    tokenizer: &TextTokenizer,
    inputs: Vec<Input>,
    truncate: bool,
) -> Result<Vec<Sequence>, EmbedError> {
    inputs
        .into_iter()
        .enumerate()
        .map(|(i, input)| {
            let ids = match input {
                Input::Text(text) => tokenizer.encode(&text, truncate),
                Input::Tokens(ids) => tokenizer.check_ids(ids, truncate),
            };
            let ids = ids.map_err(|e| match e {
                TokenizeError::Failed(why) => EmbedError::Internal(why),
                other => EmbedError::invalid("input", format!("input[{i}]: {other}")),
            })?;
            Ok(Sequence { ids, task: 0 })
        })
        .collect()
}

fn engine_error(error: BackendError) -> EmbedError {
    match error {
        BackendError::InvalidInput(why) => EmbedError::invalid("input", why),
        BackendError::Unhealthy(why) => EmbedError::Unavailable(why),
        other => EmbedError::Internal(other.to_string()),
    }
}

fn check_capabilities(card: &ModelCard, capabilities: &Capabilities) -> Result<()> {
    anyhow::ensure!(
        capabilities.hidden_size == card.hidden_size,
        "the engine reports hidden size {} but config.json says {}",
        capabilities.hidden_size,
        card.hidden_size
    );
    anyhow::ensure!(
        capabilities.max_tokens > 0,
        "the engine reports a max length of 0"
    );
    Ok(())
}
