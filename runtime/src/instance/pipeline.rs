//! The request path of one model: validate against the deployment, resolve the task, tokenize on
//! the worker pool, route to a variant, batch and run, post-process.
//!
//! A request is checked against what *every* serving variant can do before the router's pick
//! matters, so the same request gets the same answer (or the same error) whichever variant
//! serves it.

use std::sync::Arc;

use embedrt_backend_core::Pooling;

use super::ModelInstance;
use crate::cache::{CacheKey, Vector};
use crate::model::BASE_TASK;
use crate::postprocess::finish;
use crate::request::{
    EmbedError, EmbedRequest, EmbedResponse, Input, TokenizeRequest, TokenizeResponse,
};
use crate::scheduler::{Output, Sequence};
use crate::telemetry;
use crate::tokenize::{TextTokenizer, TokenizeError, WorkerPool};
use crate::variant::Variant;

/// A request's task: its id among the model's tasks (for its instruction) and the task id the
/// backend runs it with (its adapter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TaskChoice {
    id: u32,
    backend: u32,
}

impl ModelInstance {
    /// Validates, tokenizes (on `pool`), batches, runs and post-processes `request`.
    /// The serving variant is picked by the router (sticky per `user`); its metrics record the
    /// outcome and duration.
    ///
    /// # Errors
    ///
    /// [`EmbedError::InvalidRequest`] or [`EmbedError::TooManyInputs`] for requests the model
    /// cannot serve, [`EmbedError::Overloaded`] when the queue is full,
    /// [`EmbedError::Unavailable`] when the backend failed, [`EmbedError::Internal`] otherwise.
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
        self.validate(&request)?;
        let task = self.task(request.task.as_deref())?;
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
                    task: task.backend,
                    output: Output::TokenStates,
                }])
                .await?;
            let hidden = self.card.hidden_size;
            if states[0].len() != prompt_tokens * hidden {
                return Err(EmbedError::Internal(format!(
                    "the backend returned {} token-state values for {prompt_tokens} tokens",
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
        let pooled = self.run_cached(variant, sequences).await?;
        Ok(self.response(variant, finish_all(pooled), prompt_tokens))
    }

    /// The pooled vectors of `sequences`, in order: from the cache where it has them, the rest
    /// from `variant` (then stored in the cache).
    async fn run_cached(
        self: &Arc<Self>,
        variant: &Variant,
        sequences: Vec<Sequence>,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let Some((cache, identity)) = &self.cache else {
            return self.run_with_shadows(variant, sequences).await;
        };
        let engine = variant.engine_tag();
        let keys: Vec<CacheKey> = sequences
            .iter()
            .map(|s| CacheKey::new(identity, &engine, s.task, &s.ids))
            .collect();
        let hidden = self.card.hidden_size;
        let found: Vec<Option<Vector>> = cache
            .lookup(&self.name, &keys)
            .await
            .into_iter()
            // A stored value of the wrong width (another writer's mistake) is a miss.
            .map(|vector| vector.filter(|v| v.len() == hidden))
            .collect();
        let missing: Vec<Sequence> = sequences
            .into_iter()
            .zip(&found)
            .filter(|(_, hit)| hit.is_none())
            .map(|(sequence, _)| sequence)
            .collect();
        let mut computed = if missing.is_empty() {
            Vec::new()
        } else {
            self.run_with_shadows(variant, missing).await?
        }
        .into_iter();
        let mut entries = Vec::new();
        let mut vectors = Vec::with_capacity(keys.len());
        for (key, hit) in keys.into_iter().zip(found) {
            let vector = match hit {
                Some(vector) => vector.to_vec(),
                None => {
                    let vector = computed.next().ok_or_else(|| {
                        EmbedError::Internal("the backend answered fewer inputs".into())
                    })?;
                    entries.push((key, Vector::from(vector.as_slice())));
                    vector
                }
            };
            vectors.push(vector);
        }
        cache.store(&self.name, entries);
        Ok(vectors)
    }

    /// Runs `sequences` on `variant`, copying them to the sampled shadows.
    async fn run_with_shadows(
        self: &Arc<Self>,
        variant: &Variant,
        sequences: Vec<Sequence>,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let shadows = self.sampled_shadows();
        let copy = (!shadows.is_empty()).then(|| sequences.clone());
        let pooled = variant.run(sequences).await?;
        if let Some(copy) = copy {
            self.spawn_shadows(shadows, copy, pooled.clone());
        }
        Ok(pooled)
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
            backend: variant.backend().to_string(),
            device: variant.device().to_string(),
        }
    }

    /// Token ids of `request`'s texts, exactly as [`ModelInstance::embed`] would run them
    /// (special tokens and the task's instruction included), tokenized on `pool`.
    ///
    /// # Errors
    ///
    /// As [`ModelInstance::embed`] for the request's inputs and task.
    pub async fn tokenize(
        &self,
        request: TokenizeRequest,
        pool: &WorkerPool,
    ) -> Result<TokenizeResponse, EmbedError> {
        self.check_input_count(request.texts.len())?;
        let task = self.task(request.task.as_deref())?;
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
        task: TaskChoice,
        truncate: bool,
    ) -> Result<Vec<Sequence>, EmbedError> {
        self.tokenize_on(pool, task, move |tokenizer, instruction| {
            tokenize_all(tokenizer, instruction, inputs, truncate, task.backend)
        })
        .await
    }

    /// Runs `job` on `pool` with this model's tokenizer and the instruction of `task`.
    async fn tokenize_on<T: Send + 'static>(
        &self,
        pool: &WorkerPool,
        task: TaskChoice,
        job: impl FnOnce(&TextTokenizer, &str) -> Result<T, EmbedError> + Send + 'static,
    ) -> Result<T, EmbedError> {
        let tokenizer = Arc::clone(&self.tokenizer);
        let instruction = self.card.instruction(task.id).to_string();
        pool.run(move || job(&tokenizer, &instruction))
            .await
            .map_err(|e| EmbedError::Internal(e.to_string()))?
    }

    /// The task a request runs with: the one it names, else the model's default.
    fn task(&self, name: Option<&str>) -> Result<TaskChoice, EmbedError> {
        let id = match name {
            None => self.default_task,
            Some(name) => self.task_id(name)?,
        };
        if id == 0 && !self.deployment.without_base_task.is_empty() {
            return Err(EmbedError::invalid(
                "task",
                format!(
                    "the {} backend of this model cannot run task `{BASE_TASK}` (the base \
                     weights); name one of its tasks: {}",
                    self.deployment.without_base_task.join(" and "),
                    self.card.task_names().join(", ")
                ),
            ));
        }
        Ok(TaskChoice {
            id,
            backend: self.card.backend_task(id),
        })
    }

    /// The id of task `name` among the model's tasks.
    fn task_id(&self, name: &str) -> Result<u32, EmbedError> {
        if self.card.tasks.is_empty() {
            return Err(EmbedError::invalid(
                "task",
                format!(
                    "the model `{}` has no tasks (no task adapters or prompts); leave out `task`",
                    self.name
                ),
            ));
        }
        self.card.task_id(name).ok_or_else(|| {
            EmbedError::invalid(
                "task",
                format!(
                    "unknown task {name:?}; this model's tasks are {}, and {BASE_TASK}",
                    self.card.task_names().join(", ")
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

    /// Checks what does not depend on the variant: input count, late chunking, dimensions.
    fn validate(&self, request: &EmbedRequest) -> Result<(), EmbedError> {
        self.check_input_count(request.inputs.len())?;
        if request.late_chunking && !self.deployment.without_token_states.is_empty() {
            return Err(EmbedError::invalid(
                "late_chunking",
                format!(
                    "the {} backend of this model cannot return token states, which late \
                     chunking needs",
                    self.deployment.without_token_states.join(" and ")
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

/// The `status` label of a request's outcome.
pub(super) fn status_label<T>(result: &Result<T, EmbedError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(
            EmbedError::InvalidRequest { .. }
            | EmbedError::TooManyInputs { .. }
            | EmbedError::MissingModel,
        ) => "invalid",
        Err(EmbedError::Overloaded(_)) => "overloaded",
        Err(EmbedError::Unavailable(_) | EmbedError::ModelNotFound(_)) => "unavailable",
        Err(EmbedError::Internal(_)) => "internal",
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::Path;
    use std::time::Duration;

    use embedrt_backend_core::{Backend, BackendError, Batch, Capabilities, Embeddings};

    use super::*;
    use crate::config::Config;
    use crate::instance::{default_task, Deployment};
    use crate::model::ModelCard;
    use crate::scheduler::BatchingConfig;

    /// An in-memory backend that embeds every sequence as a row of ones.
    struct Ones(Capabilities);

    impl Backend for Ones {
        fn capabilities(&self) -> &Capabilities {
            &self.0
        }

        fn embed(&mut self, batch: &Batch) -> Result<Embeddings, BackendError> {
            let hidden = self.0.hidden_size;
            Ok(Embeddings::new(vec![1.0; batch.len() * hidden], hidden))
        }
    }

    /// The tiny jina-embeddings-v3 served 50/50 by a backend that can run the base weights and
    /// one that cannot (as candle and the official ONNX graph are).
    fn jina_ab() -> Arc<ModelInstance> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/jina-v3-tiny");
        let config = Config::parse(&format!(
            "[[models]]\nname = \"jina\"\npath = {:?}\n\
             [[models.variants]]\nname = \"a\"\nbackend = \"candle\"\nweight = 50\n\
             [[models.variants]]\nname = \"b\"\nbackend = \"onnx\"\nweight = 50\n",
            dir.display().to_string()
        ))
        .unwrap();
        let model = &config.models[0];
        let card = ModelCard::load(&dir).unwrap();
        let tokenizer = TextTokenizer::load(&card.path, card.max_tokens, card.vocab_size).unwrap();
        let batching = BatchingConfig {
            max_batch_tokens: 4096,
            max_batch_requests: 8,
            max_wait: Duration::ZERO,
            max_queued: 64,
        };
        let variants = model
            .variants()
            .iter()
            .zip([true, false])
            .map(|(variant, base_task)| {
                let backend = Ones(Capabilities {
                    hidden_size: card.hidden_size,
                    max_tokens: card.max_tokens,
                    mixed_tasks: base_task,
                    pads_batches: true,
                    token_states: false,
                    base_task,
                    dtype: None,
                });
                Variant::start("jina", variant, vec![Box::new(backend)], batching.clone()).unwrap()
            })
            .collect();
        Arc::new(ModelInstance::new(model, card, tokenizer, variants).unwrap())
    }

    fn request(task: &str, user: usize) -> EmbedRequest {
        EmbedRequest {
            task: Some(task.to_string()),
            user: Some(format!("user-{user}")),
            ..EmbedRequest::new(None, vec![Input::Text("hello".into())])
        }
    }

    #[tokio::test]
    async fn a_request_is_judged_by_the_deployment_whichever_variant_is_drawn() {
        let instance = jina_ab();
        let pool = WorkerPool::new("test", 1).unwrap();
        let mut served_by = HashSet::new();
        for user in 0..40 {
            let err = instance
                .embed(request("none", user), &pool)
                .await
                .unwrap_err();
            assert!(
                matches!(&err, EmbedError::InvalidRequest { param: Some("task"), message } if message.contains("onnx backend")),
                "{err}"
            );
            let chunked = EmbedRequest {
                late_chunking: true,
                ..request("retrieval.query", user)
            };
            let err = instance.embed(chunked, &pool).await.unwrap_err();
            assert!(
                matches!(
                    &err,
                    EmbedError::InvalidRequest {
                        param: Some("late_chunking"),
                        ..
                    }
                ),
                "{err}"
            );
            let answer = instance
                .embed(request("retrieval.query", user), &pool)
                .await
                .unwrap();
            assert_eq!(answer.embeddings[0].len(), instance.card().hidden_size);
            served_by.insert(answer.variant);
        }
        assert_eq!(served_by.len(), 2, "both variants served: {served_by:?}");
    }

    #[test]
    fn the_default_task_must_run_on_every_serving_variant() {
        let instance = jina_ab();
        assert_eq!(instance.default_task, 5, "text-matching");
        let deployment = Deployment::of(instance.variants());
        let err = default_task(instance.card(), &deployment, Some("none")).unwrap_err();
        assert!(
            err.to_string()
                .contains("onnx backend cannot run task `none`"),
            "{err}"
        );
    }
}
