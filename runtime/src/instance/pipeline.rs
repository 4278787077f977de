//! The request path of one model: plan the request (see `plan`), tokenize on the worker pool,
//! route to a variant, batch and run (through the cache when there is one), post-process.

use std::num::NonZeroUsize;
use std::sync::Arc;

use embedrt_backend_core::Pooling;

use super::plan::{Mode, RequestPlan};
use super::ModelInstance;
use crate::kind::ModelKind;
use crate::model::ResolvedTask;
use crate::postprocess::finish;
use crate::request::{
    EmbedError, EmbedRequest, EmbedResponse, Input, TokenizeRequest, TokenizeResponse,
};
use crate::scheduler::{Output, Sequence};
use crate::telemetry;
use crate::tokenize::{TextTokenizer, TokenizeError, WorkerPool};
use crate::variant::Variant;

impl ModelInstance {
    /// Plans, tokenizes (on `pool`), batches, runs and post-processes `request`.
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
        let user = request.user.clone();
        self.routed(user.as_deref(), |variant| async move {
            let plan = self.check_embeds().and_then(|()| self.plan(request))?;
            self.run_plan(variant, plan, pool).await
        })
        .await
    }

    /// Refuses embedding requests to a reranker, saying what it is for.
    fn check_embeds(&self) -> Result<(), EmbedError> {
        match self.card.kind {
            ModelKind::Embedding => Ok(()),
            ModelKind::Reranker { .. } => Err(EmbedError::invalid(
                "model",
                format!(
                    "the model `{}` is a reranker (a cross-encoder): it scores (query, document) \
                     pairs at /v1/rerank and answers no embedding requests",
                    self.name
                ),
            )),
        }
    }

    /// Runs `serve` on the serving variant the router picks for `user` (sticky per user), and
    /// counts its outcome and records its duration in that variant's metrics: every request
    /// path goes through here.
    pub(super) async fn routed<'a, T, F>(
        &'a self,
        user: Option<&str>,
        serve: impl FnOnce(&'a Variant) -> F,
    ) -> Result<T, EmbedError>
    where
        F: std::future::Future<Output = Result<T, EmbedError>> + 'a,
    {
        let variant = &self.variants[self.router.pick(user)];
        let started = std::time::Instant::now();
        let result = serve(variant).await;
        let labels = variant.labels();
        metrics::counter!(
            telemetry::REQUESTS,
            labels.with("status", telemetry::status_label(&result))
        )
        .increment(1);
        metrics::histogram!(telemetry::REQUEST_SECONDS, labels.labels()).record(started.elapsed());
        result
    }

    async fn run_plan(
        self: &Arc<Self>,
        variant: &Variant,
        plan: RequestPlan,
        pool: &WorkerPool,
    ) -> Result<EmbedResponse, EmbedError> {
        let (dimensions, normalize) = (plan.dimensions.map(NonZeroUsize::get), plan.normalize);
        let finish_all = |vectors: Vec<Vec<f32>>| -> Vec<Vec<f32>> {
            vectors
                .into_iter()
                .map(|v| finish(v, dimensions, normalize))
                .collect()
        };
        let adapter = plan.task.adapter;
        if plan.mode == Mode::LateChunked {
            let (document, spans) = self
                .tokenize_on(pool, plan, |tokenizer, plan| {
                    tokenize_document(tokenizer, &plan.task.instruction, &plan.inputs)
                })
                .await?;
            let prompt_tokens = document.len();
            let states = variant
                .run(vec![Sequence {
                    output: Output::TokenStates,
                    ..Sequence::pooled(document, adapter)
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
        let sequences = self
            .tokenize_inputs(pool, plan.inputs, &plan.task, plan.truncate)
            .await?;
        let prompt_tokens = sequences.iter().map(|s| s.ids.len()).sum();
        self.check_token_total(prompt_tokens)?;
        let pooled = self.run_cached(variant, sequences).await?;
        Ok(self.response(variant, finish_all(pooled), prompt_tokens))
    }

    /// Refuses a request of more than `max_tokens_per_request` tokens in all.
    fn check_token_total(&self, tokens: usize) -> Result<(), EmbedError> {
        if tokens <= self.max_tokens {
            return Ok(());
        }
        Err(EmbedError::invalid(
            "input",
            format!(
                "the request has {tokens} tokens in all, more than the model's limit of {} per \
                 request (`max_tokens_per_request`); send its inputs in several requests",
                self.max_tokens
            ),
        ))
    }

    /// Runs `sequences` on `variant`, copying them to the sampled shadows.
    pub(super) async fn run_with_shadows(
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
            served_by: variant.served_by(),
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
        let plan = self.plan(request.into())?;
        let sequences = self
            .tokenize_inputs(pool, plan.inputs, &plan.task, plan.truncate)
            .await?;
        Ok(TokenizeResponse {
            model: self.name.clone(),
            tokens: sequences.into_iter().map(|s| s.ids).collect(),
        })
    }

    /// One sequence per input (see [`tokenize_slice`]), tokenized on `pool`
    /// [`INPUTS_PER_JOB`] inputs per job, one job after the other: the jobs of requests that
    /// arrive meanwhile run between them, so a small request does not wait for the tokenization
    /// of all of a large one.
    async fn tokenize_inputs(
        &self,
        pool: &WorkerPool,
        inputs: Vec<Input>,
        task: &ResolvedTask,
        truncate: bool,
    ) -> Result<Vec<Sequence>, EmbedError> {
        let mut sequences = Vec::with_capacity(inputs.len());
        let mut inputs = inputs.into_iter();
        loop {
            let slice: Vec<Input> = inputs.by_ref().take(INPUTS_PER_JOB).collect();
            if slice.is_empty() {
                return Ok(sequences);
            }
            let (first, task) = (sequences.len(), task.clone());
            let tokenized = self
                .tokenize_on(pool, slice, move |tokenizer, slice| {
                    tokenize_slice(tokenizer, &task, truncate, first, slice)
                })
                .await?;
            sequences.extend(tokenized);
        }
    }

    /// Runs `job` on `pool` with this model's tokenizer and `plan`.
    pub(super) async fn tokenize_on<P: Send + 'static, T: Send + 'static>(
        &self,
        pool: &WorkerPool,
        plan: P,
        job: impl FnOnce(&TextTokenizer, P) -> Result<T, EmbedError> + Send + 'static,
    ) -> Result<T, EmbedError> {
        let tokenizer = Arc::clone(&self.tokenizer);
        pool.run(move || job(&tokenizer, plan))
            .await
            .map_err(|e| EmbedError::Internal(e.to_string()))?
    }
}

/// The error of a request whose input `at` (e.g. `input[2]`), read from the field `param`,
/// could not be tokenized: the client's fault, unless the tokenizer itself failed.
pub(super) fn input_error(param: &'static str, at: String, error: TokenizeError) -> EmbedError {
    match error {
        TokenizeError::Failed(why) => EmbedError::Internal(why),
        other => EmbedError::invalid(param, format!("{at}: {other}")),
    }
}

/// Inputs tokenized per worker-pool job (see [`ModelInstance::tokenize_inputs`]).
const INPUTS_PER_JOB: usize = 16;

/// One sequence per input of `inputs` (input `first` of the request onwards): the task's
/// instruction before each text, special tokens added, cut or refused at the limit; token ids
/// checked against the vocabulary.
fn tokenize_slice(
    tokenizer: &TextTokenizer,
    task: &ResolvedTask,
    truncate: bool,
    first: usize,
    inputs: Vec<Input>,
) -> Result<Vec<Sequence>, EmbedError> {
    let (instruction, adapter) = (&*task.instruction, task.adapter);
    inputs
        .into_iter()
        .enumerate()
        .map(|(i, input)| {
            let ids = match input {
                Input::Text(text) if instruction.is_empty() => tokenizer.encode(&text, truncate),
                Input::Text(text) => tokenizer.encode(&format!("{instruction}{text}"), truncate),
                Input::Tokens(ids) => tokenizer.encode_ids(ids, instruction, truncate),
            };
            Ok(Sequence::pooled(
                ids.map_err(|e| input_error("input", format!("input[{}]", first + i), e))?,
                adapter,
            ))
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

    use embedrt_backend_core::{AdapterId, Backend, BackendError, Batch, Capabilities, Embeddings};

    use super::*;
    use crate::instance::{assembled, default_task, Deployment};

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
        let toml = format!(
            "[[models]]\nname = \"jina\"\npath = {:?}\n\
             batching = {{ max_batch_tokens = 4096, max_batch_requests = 8, max_queued_inputs = 64 }}\n\
             [[models.variants]]\nname = \"a\"\nbackend = \"candle\"\nweight = 50\n\
             [[models.variants]]\nname = \"b\"\nbackend = \"onnx\"\nweight = 50\n",
            dir.display().to_string()
        );
        assembled(&dir, &toml, |card, index| {
            // The first variant can run the base weights, the second cannot.
            let base_task = index == 0;
            Box::new(Ones(Capabilities {
                hidden_size: card.hidden_size,
                max_input_tokens: card.max_input_tokens,
                mixed_tasks: base_task,
                pads_batches: true,
                token_states: false,
                base_task,
                dtype: None,
            }))
        })
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
            served_by.insert(answer.served_by.variant);
        }
        assert_eq!(served_by.len(), 2, "both variants served: {served_by:?}");
    }

    #[test]
    fn the_default_task_must_run_on_every_serving_variant() {
        let instance = jina_ab();
        let card = instance.card();
        let text_matching = card.task(card.task_id("text-matching").unwrap());
        assert_eq!(instance.default_task, text_matching);
        let deployment = Deployment::of(instance.variants());
        let err = default_task(card, &deployment, Some("none")).unwrap_err();
        assert!(
            err.to_string()
                .contains("onnx backend cannot run task `none`"),
            "{err}"
        );
    }

    #[test]
    fn a_tokenize_request_is_planned_as_the_embedding_request_it_counts_for() {
        let instance = jina_ab();
        let tokenize = TokenizeRequest {
            model: None,
            texts: vec!["a".into(), "b".into()],
            task: Some("retrieval.query".into()),
            truncate: Some(false),
        };
        let plan = instance.plan(tokenize.into()).unwrap();
        let card = instance.card();
        assert_eq!(
            plan.task,
            card.task(card.task_id("retrieval.query").unwrap())
        );
        assert_eq!((plan.truncate, plan.mode), (false, Mode::Pooled));
        assert_eq!(
            plan.inputs,
            [Input::Text("a".into()), Input::Text("b".into())]
        );
        assert_ne!(plan.task.adapter, AdapterId::BASE);
    }
}
