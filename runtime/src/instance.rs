//! A served model: its card, tokenizer and variants, and the request path through them.

use std::sync::Arc;

use anyhow::{Context, Result};

use crate::backend::Capabilities;
use crate::config::ModelConfig;
use crate::model::{ModelCard, BASE_TASK};
use crate::plugin::host::PluginHost;
use crate::pooling::Pooling;
use crate::postprocess::finish;
use crate::request::{
    EmbedError, EmbedRequest, EmbedResponse, Input, TokenizeRequest, TokenizeResponse,
};
use crate::scheduler::{Output, Sequence};
use crate::telemetry;
use crate::tokenize::{TextTokenizer, TokenizeError, WorkerPool};
use crate::variant::{Router, Variant};

/// One served model, on one or more engine variants that share its tokenizer.
pub struct ModelInstance {
    name: String,
    aliases: Vec<String>,
    card: ModelCard,
    tokenizer: Arc<TextTokenizer>,
    variants: Vec<Variant>,
    router: Router,
    max_inputs: usize,
    truncate: bool,
    default_task: u32,
}

/// The task models with adapters use when neither the request nor the config names one.
const DEFAULT_TASK: &str = "text-matching";

impl ModelInstance {
    /// Loads the model of `config` with every variant's engine plugin and warms each up.
    pub fn load(config: &ModelConfig, plugins: &PluginHost) -> Result<Self> {
        let context = || format!("model {:?}", config.name);
        let variant_configs = config.variants();
        let path =
            crate::hub::resolve(&config.path, &variant_configs[0].backend).with_context(context)?;
        let card = ModelCard::load(&path).with_context(context)?;
        let variants = variant_configs
            .iter()
            .map(|variant| Variant::load(config, variant, &card, plugins))
            .collect::<Result<Vec<_>>>()?;
        let max_tokens = variants
            .iter()
            .map(|v| v.capabilities().max_tokens)
            .fold(card.max_tokens, usize::min);
        let tokenizer = TextTokenizer::load(&card.path, max_tokens, card.vocab_size)?;
        let mut default_task = 0;
        for variant in &variants {
            default_task = resolve_default_task(
                &card,
                variant.capabilities(),
                config.default_task.as_deref(),
            )
            .with_context(|| {
                format!(
                    "model {:?}, variant {:?}: `default_task`",
                    config.name,
                    variant.name()
                )
            })?;
        }
        let instance = Self {
            name: config.name.clone(),
            aliases: config.aliases.clone(),
            card,
            tokenizer: Arc::new(tokenizer),
            router: Router::new(&variants),
            variants,
            max_inputs: config.max_inputs_per_request,
            truncate: config.truncate,
            default_task,
        };
        instance
            .warm_up()
            .with_context(|| format!("model {:?}: warm-up failed", config.name))?;
        Ok(instance)
    }

    /// Runs one input through every variant, so the first client pays no start-up cost.
    fn warm_up(&self) -> Result<()> {
        let ids = self.tokenizer.encode("warm up", true)?;
        for variant in &self.variants {
            variant.run_blocking(vec![Sequence::pooled(ids.clone(), self.default_task)])?;
        }
        Ok(())
    }

    /// The name clients use.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Other names of this model.
    pub fn aliases(&self) -> &[String] {
        &self.aliases
    }

    /// The model card.
    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// The variants, serving ones and shadows, in configuration order.
    pub fn variants(&self) -> &[Variant] {
        &self.variants
    }

    /// The longest input in tokens, special tokens included.
    pub fn max_tokens(&self) -> usize {
        self.tokenizer.max_tokens()
    }

    /// The most inputs one request may carry.
    pub fn max_inputs(&self) -> usize {
        self.max_inputs
    }

    /// Whether every variant's engine still serves.
    pub fn is_healthy(&self) -> bool {
        self.variants.iter().all(Variant::is_healthy)
    }

    /// Validates, tokenizes (on `pool`), batches, runs and post-processes `request`.
    /// The serving variant is picked by the router (sticky per `user`); its metrics record the
    /// outcome and duration.
    pub async fn embed(
        self: &Arc<Self>,
        request: EmbedRequest,
        pool: &WorkerPool,
    ) -> Result<EmbedResponse, EmbedError> {
        let variant = &self.variants[self.router.pick(request.user.as_deref())];
        let started = std::time::Instant::now();
        let result = self.embed_on(variant, request, pool).await;
        let labels = variant.labels();
        metrics::counter!(
            telemetry::REQUESTS,
            labels.with("status", status_label(&result))
        )
        .increment(1);
        metrics::histogram!(telemetry::REQUEST_SECONDS, labels.labels()).record(started.elapsed());
        result
    }

    async fn embed_on(
        self: &Arc<Self>,
        variant: &Variant,
        request: EmbedRequest,
        pool: &WorkerPool,
    ) -> Result<EmbedResponse, EmbedError> {
        self.validate(&request, variant.capabilities(), variant.engine())?;
        let task = self.resolve_task(request.task.as_deref(), variant)?;
        let truncate = request.truncate.unwrap_or(self.truncate);
        let normalize = request.normalized.unwrap_or(self.card.normalize);
        let finish_all = |vectors: Vec<Vec<f32>>| -> Vec<Vec<f32>> {
            vectors
                .into_iter()
                .map(|v| finish(v, request.dimensions, normalize))
                .collect()
        };
        let inputs = request.inputs;
        if request.late_chunking {
            let (document, spans) = self
                .tokenize_on(pool, task, move |tokenizer, instruction| {
                    tokenize_document(tokenizer, instruction, &inputs)
                })
                .await?;
            let prompt_tokens = document.len();
            let states = variant
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
            return Ok(self.response(variant, finish_all(pooled), prompt_tokens));
        }
        let sequences = self.tokenize_inputs(pool, inputs, task, truncate).await?;
        let prompt_tokens = sequences.iter().map(|s| s.ids.len()).sum();
        let shadows = self.sampled_shadows();
        let copy = (!shadows.is_empty()).then(|| sequences.clone());
        let pooled = variant.run(sequences).await?;
        if let Some(copy) = copy {
            self.spawn_shadows(shadows, copy, pooled.clone());
        }
        Ok(self.response(variant, finish_all(pooled), prompt_tokens))
    }

    /// The shadows that get a copy of this request (each by its own sample rate).
    fn sampled_shadows(&self) -> Vec<usize> {
        (0..self.variants.len())
            .filter(|&i| {
                self.variants[i]
                    .shadow_rate()
                    .is_some_and(|rate| self.router.sample(rate))
            })
            .collect()
    }

    /// Runs `sequences` on each of `shadows` in the background and records how closely their
    /// vectors agree with `answer` (cosine per input: the minimum and the mean per request).
    fn spawn_shadows(
        self: &Arc<Self>,
        shadows: Vec<usize>,
        sequences: Vec<Sequence>,
        answer: Vec<Vec<f32>>,
    ) {
        let instance = Arc::clone(self);
        tokio::spawn(async move {
            for index in shadows {
                let shadow = &instance.variants[index];
                let labels = shadow.labels();
                let status = match shadow.run(sequences.clone()).await {
                    Ok(vectors) => {
                        let cosines: Vec<f32> = vectors
                            .iter()
                            .zip(&answer)
                            .map(|(a, b)| cosine(a, b))
                            .collect();
                        let min = cosines.iter().copied().fold(f32::INFINITY, f32::min);
                        let mean = cosines.iter().sum::<f32>() / cosines.len().max(1) as f32;
                        metrics::histogram!(telemetry::SHADOW_COSINE_MIN, labels.labels())
                            .record(min as f64);
                        metrics::histogram!(telemetry::SHADOW_COSINE_MEAN, labels.labels())
                            .record(mean as f64);
                        "ok"
                    }
                    Err(error) => {
                        tracing::debug!(variant = shadow.name(), %error, "shadow copy failed");
                        status_label::<()>(&Err(error))
                    }
                };
                metrics::counter!(telemetry::REQUESTS, labels.with("status", status)).increment(1);
            }
        });
    }

    fn response(
        &self,
        variant: &Variant,
        embeddings: Vec<Vec<f32>>,
        prompt_tokens: usize,
    ) -> EmbedResponse {
        EmbedResponse {
            model: self.name.clone(),
            embeddings,
            prompt_tokens,
            variant: variant.name().to_string(),
            engine: variant.engine().to_string(),
        }
    }

    /// Token ids of `request`'s texts, exactly as [`ModelInstance::embed`] would run them
    /// (special tokens and the task's instruction included), tokenized on `pool`.
    pub async fn tokenize(
        &self,
        request: TokenizeRequest,
        pool: &WorkerPool,
    ) -> Result<TokenizeResponse, EmbedError> {
        self.check_input_count(request.texts.len())?;
        let task = self.task_id(request.task.as_deref())?;
        let truncate = request.truncate.unwrap_or(self.truncate);
        let inputs = request.texts.into_iter().map(Input::Text).collect();
        let sequences = self.tokenize_inputs(pool, inputs, task, truncate).await?;
        Ok(TokenizeResponse {
            model: self.name.clone(),
            tokens: sequences.into_iter().map(|s| s.ids).collect(),
        })
    }

    /// One sequence per input for `task`: the task's instruction before each text, special tokens
    /// added, cut or refused at the limit (`truncate`). Runs on `pool`.
    async fn tokenize_inputs(
        &self,
        pool: &WorkerPool,
        inputs: Vec<Input>,
        task: u32,
        truncate: bool,
    ) -> Result<Vec<Sequence>, EmbedError> {
        self.tokenize_on(pool, task, move |tokenizer, instruction| {
            tokenize_all(tokenizer, instruction, inputs, truncate, task)
        })
        .await
    }

    /// Runs `job` on `pool` with this model's tokenizer and the instruction of `task`.
    async fn tokenize_on<T: Send + 'static>(
        &self,
        pool: &WorkerPool,
        task: u32,
        job: impl FnOnce(&TextTokenizer, &str) -> Result<T, EmbedError> + Send + 'static,
    ) -> Result<T, EmbedError> {
        let tokenizer = Arc::clone(&self.tokenizer);
        let instruction = self.card.instruction(task).to_string();
        pool.run(move || job(&tokenizer, &instruction))
            .await
            .map_err(|e| EmbedError::Internal(e.to_string()))?
    }

    /// The task id a request runs with on `variant`.
    fn resolve_task(&self, task: Option<&str>, variant: &Variant) -> Result<u32, EmbedError> {
        let id = self.task_id(task)?;
        if task.is_some() && id == 0 && !variant.capabilities().base_task {
            return Err(EmbedError::invalid(
                "task",
                format!(
                    "the {} engine cannot run task `{BASE_TASK}` (the base weights); name an adapter",
                    variant.engine()
                ),
            ));
        }
        Ok(id)
    }

    /// The id of `task` among the model's adapters; the default task's when `None`.
    fn task_id(&self, task: Option<&str>) -> Result<u32, EmbedError> {
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
        self.card.task_id(name).ok_or_else(|| {
            EmbedError::invalid(
                "task",
                format!(
                    "unknown task {name:?}; this model's tasks are {}, and {BASE_TASK}",
                    self.card.tasks.join(", ")
                ),
            )
        })
    }

    /// Refuses requests with no inputs or more than the model allows.
    fn check_input_count(&self, count: usize) -> Result<(), EmbedError> {
        if count == 0 {
            return Err(EmbedError::invalid("input", "`input` must not be empty"));
        }
        if count > self.max_inputs {
            return Err(EmbedError::TooManyInputs {
                count,
                limit: self.max_inputs,
            });
        }
        Ok(())
    }

    fn validate(
        &self,
        request: &EmbedRequest,
        capabilities: &Capabilities,
        engine: &str,
    ) -> Result<(), EmbedError> {
        self.check_input_count(request.inputs.len())?;
        if request.late_chunking && !capabilities.token_states {
            return Err(EmbedError::invalid(
                "late_chunking",
                format!(
                    "the {engine} engine cannot return token states, which late chunking needs"
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
fn resolve_default_task(
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

/// The `status` label of a request's outcome.
fn status_label<T>(result: &Result<T, EmbedError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(EmbedError::InvalidRequest { .. } | EmbedError::TooManyInputs { .. }) => "invalid",
        Err(EmbedError::Overloaded(_)) => "overloaded",
        Err(EmbedError::Unavailable(_) | EmbedError::ModelNotFound(_)) => "unavailable",
        Err(EmbedError::Internal(_)) => "internal",
    }
}

/// Cosine similarity of two vectors of the same length (0 when either is zero).
fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norms =
        a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norms > 0.0 {
        dot / norms
    } else {
        0.0
    }
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
