//! A loaded model: its card, tokenizer, engine and scheduler, and the request path through them.

use std::sync::Arc;

use anyhow::{Context, Result};

use crate::backend::{Backend, BackendError, Capabilities};
use crate::config::ModelConfig;
use crate::model::{ModelCard, BASE_TASK};
use crate::plugin::host::PluginHost;
use crate::plugin::EngineConfig;
use crate::pooling::Pooling;
use crate::postprocess::finish;
use crate::request::{EmbedError, EmbedRequest, EmbedResponse, Input};
use crate::scheduler::{Output, Scheduler, Sequence, SequenceResult, SubmitError};
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
    default_task: u32,
}

/// The task models with adapters use when neither the request nor the config names one.
const DEFAULT_TASK: &str = "text-matching";

impl ModelInstance {
    /// Loads the model of `config` with its engine plugin and warms it up.
    pub fn load(config: &ModelConfig, plugins: &PluginHost) -> Result<Self> {
        let path = crate::hub::resolve(&config.path, &config.backend)
            .with_context(|| format!("model {:?}", config.name))?;
        let card = ModelCard::load(&path).with_context(|| format!("model {:?}", config.name))?;
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
        let default_task = default_task(&card, &capabilities, config.default_task.as_deref())
            .with_context(|| format!("model {:?}: `default_task`", config.name))?;
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
            default_task,
        };
        instance
            .warm_up()
            .with_context(|| format!("model {:?}: warm-up failed", config.name))?;
        Ok(instance)
    }

    /// Runs one input through the whole engine path, so the first client pays no start-up cost.
    fn warm_up(&self) -> Result<()> {
        let ids = self.tokenizer.encode("warm up", true)?;
        let receivers = self
            .scheduler
            .submit(vec![Sequence::pooled(ids, self.default_task)])?;
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
        let task = self.resolve_task(request.task.as_deref())?;
        let truncate = request.truncate.unwrap_or(self.truncate);
        let normalize = request.normalized.unwrap_or(self.card.normalize);
        let finish_all = |vectors: Vec<Vec<f32>>| -> Vec<Vec<f32>> {
            vectors
                .into_iter()
                .map(|v| finish(v, request.dimensions, normalize))
                .collect()
        };
        let tokenizer = Arc::clone(&self.tokenizer);
        let instruction = self.card.instruction(task).to_string();
        let inputs = request.inputs;
        if request.late_chunking {
            let (document, spans) = pool
                .run(move || tokenize_document(&tokenizer, &instruction, &inputs))
                .await
                .map_err(|e| EmbedError::Internal(e.to_string()))??;
            let prompt_tokens = document.len();
            let states = self
                .run(vec![Sequence {
                    ids: document,
                    task,
                    output: Output::TokenStates,
                }])
                .await?;
            let hidden = self.card.hidden_size;
            if states[0].len() != prompt_tokens * hidden {
                return Err(EmbedError::Internal(format!(
                    "the engine returned {} token-state values for {prompt_tokens} tokens",
                    states[0].len()
                )));
            }
            let pooled = spans
                .iter()
                .map(|span| Pooling::Mean.pool(&states[0], hidden, [(span.start, span.len())]))
                .collect();
            return Ok(EmbedResponse {
                model: self.name.clone(),
                embeddings: finish_all(pooled),
                prompt_tokens,
            });
        }
        let sequences = pool
            .run(move || tokenize_all(&tokenizer, &instruction, inputs, truncate, task))
            .await
            .map_err(|e| EmbedError::Internal(e.to_string()))??;
        let prompt_tokens = sequences.iter().map(|s| s.ids.len()).sum();
        let pooled = self.run(sequences).await?;
        Ok(EmbedResponse {
            model: self.name.clone(),
            embeddings: finish_all(pooled),
            prompt_tokens,
        })
    }

    /// Queues `sequences` and waits for every answer, in order.
    async fn run(&self, sequences: Vec<Sequence>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let receivers = self.scheduler.submit(sequences).map_err(|e| match e {
            SubmitError::QueueFull { .. } => EmbedError::Overloaded(e.to_string()),
            SubmitError::Unhealthy | SubmitError::Closed => EmbedError::Unavailable(e.to_string()),
        })?;
        let mut outputs = Vec::with_capacity(receivers.len());
        for receiver in receivers {
            let result: SequenceResult = receiver
                .await
                .map_err(|_| EmbedError::Unavailable("the engine thread stopped".into()))?;
            outputs.push(result.map_err(engine_error)?);
        }
        Ok(outputs)
    }

    /// The task id a request runs with.
    fn resolve_task(&self, task: Option<&str>) -> Result<u32, EmbedError> {
        let Some(name) = task else {
            return Ok(self.default_task);
        };
        if self.card.tasks.is_empty() {
            return Err(EmbedError::invalid(
                "task",
                format!(
                    "the model `{}` has no task adapters; leave out `task`",
                    self.name
                ),
            ));
        }
        let id = self.card.task_id(name).ok_or_else(|| {
            EmbedError::invalid(
                "task",
                format!(
                    "unknown task {name:?}; this model's tasks are {}, and {BASE_TASK}",
                    self.card.tasks.join(", ")
                ),
            )
        })?;
        if id == 0 && !self.capabilities().base_task {
            return Err(EmbedError::invalid(
                "task",
                format!("the {} engine cannot run task `{BASE_TASK}` (the base weights); name an adapter", self.engine),
            ));
        }
        Ok(id)
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
        if request.late_chunking && !self.capabilities().token_states {
            return Err(EmbedError::invalid(
                "late_chunking",
                format!(
                    "the {} engine cannot return token states, which late chunking needs",
                    self.engine
                ),
            ));
        }
        if let Some(dimensions) = request.dimensions {
            let allowed = &self.card.matryoshka_dimensions;
            let hidden = self.card.hidden_size;
            if !allowed.is_empty() && !allowed.contains(&dimensions) {
                let allowed: Vec<String> = allowed.iter().map(usize::to_string).collect();
                return Err(EmbedError::invalid(
                    "dimensions",
                    format!(
                        "`dimensions` must be one of {} for this model, got {dimensions}",
                        allowed.join(", ")
                    ),
                ));
            }
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

/// The task id of `configured` (or of the default task) for a model with `card`'s adapters.
fn default_task(
    card: &ModelCard,
    capabilities: &Capabilities,
    configured: Option<&str>,
) -> Result<u32> {
    if card.tasks.is_empty() {
        anyhow::ensure!(configured.is_none(), "the model has no task adapters");
        return Ok(0);
    }
    let name = configured.unwrap_or(DEFAULT_TASK);
    let id = card
        .task_id(name)
        .with_context(|| format!("unknown task {name:?}"))?;
    anyhow::ensure!(
        id != 0 || capabilities.base_task,
        "this engine cannot run task `{BASE_TASK}`"
    );
    Ok(id)
}

fn input_error(i: usize, error: TokenizeError) -> EmbedError {
    match error {
        TokenizeError::Failed(why) => EmbedError::Internal(why),
        other => EmbedError::invalid("input", format!("input[{i}]: {other}")),
    }
}

fn tokenize_all(
    tokenizer: &TextTokenizer,
    instruction: &str,
    inputs: Vec<Input>,
    truncate: bool,
    task: u32,
) -> Result<Vec<Sequence>, EmbedError> {
    inputs
        .into_iter()
        .enumerate()
        .map(|(i, input)| {
            let ids = match input {
                Input::Text(text) if instruction.is_empty() => tokenizer.encode(&text, truncate),
                Input::Text(text) => tokenizer.encode(&format!("{instruction}{text}"), truncate),
                Input::Tokens(ids) => tokenizer.check_ids(ids, truncate),
            };
            Ok(Sequence::pooled(ids.map_err(|e| input_error(i, e))?, task))
        })
        .collect()
}

/// The late-chunking document of `inputs` (all text) and each chunk's token range.
fn tokenize_document(
    tokenizer: &TextTokenizer,
    instruction: &str,
    inputs: &[Input],
) -> Result<(Vec<u32>, Vec<std::ops::Range<usize>>), EmbedError> {
    let chunks = inputs
        .iter()
        .map(|input| match input {
            Input::Text(text) => Ok(text.as_str()),
            Input::Tokens(_) => Err(EmbedError::invalid(
                "input",
                "late chunking takes text chunks, not token ids",
            )),
        })
        .collect::<Result<Vec<&str>, _>>()?;
    let document = tokenizer
        .encode_document(instruction, &chunks)
        .map_err(|e| match e {
            TokenizeError::Empty => {
                EmbedError::invalid("input", "a late-chunking chunk has no tokens")
            }
            TokenizeError::Failed(why) => EmbedError::Internal(why),
            other => EmbedError::invalid("input", other.to_string()),
        })?;
    Ok((document.ids, document.spans))
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
