//! The rerank path of a cross-encoder: each (query, document) pair tokenized on the worker pool,
//! scored through the same routing, batching, cache and shadows as embeddings, and the documents
//! sorted by score.

use std::sync::Arc;

use super::pipeline::input_error;
use super::ModelInstance;
use crate::kind::{Activation, ModelKind};
use crate::request::{EmbedError, RerankRequest, RerankResponse, RerankResult};
use crate::scheduler::Sequence;
use crate::tokenize::{TextTokenizer, WorkerPool};
use crate::variant::Variant;

/// A rerank request checked against the model, with its defaults filled in.
struct RerankPlan {
    query: String,
    documents: Vec<String>,
    truncate: bool,
    max_tokens_per_doc: Option<usize>,
    /// The model's number of token types (see [`crate::tokenize::EncodedPair::for_token_types`]).
    token_types: usize,
}

impl ModelInstance {
    /// Scores every document of `request` against its query and answers them best first. The
    /// serving variant is picked by the router (sticky per `user`); its metrics record the
    /// outcome and duration.
    ///
    /// # Errors
    ///
    /// [`EmbedError::InvalidRequest`] for a model that is no reranker, an empty query, no or too
    /// many documents, a `top_n` or `max_tokens_per_doc` of 0, or a pair over the limit without
    /// truncation; [`EmbedError::Overloaded`], [`EmbedError::Unavailable`] and
    /// [`EmbedError::Internal`] as for [`ModelInstance::embed`].
    pub async fn rerank(
        self: &Arc<Self>,
        request: RerankRequest,
        pool: &WorkerPool,
    ) -> Result<RerankResponse, EmbedError> {
        let user = request.user.clone();
        self.routed(user.as_deref(), |variant| {
            self.run_rerank(variant, request, pool)
        })
        .await
    }

    async fn run_rerank(
        self: &Arc<Self>,
        variant: &Variant,
        request: RerankRequest,
        pool: &WorkerPool,
    ) -> Result<RerankResponse, EmbedError> {
        let activation = self.activation()?;
        let (top_n, raw_scores, return_documents) =
            (request.top_n, request.raw_scores, request.return_documents);
        let plan = self.plan_rerank(request)?;
        let (sequences, mut documents) = self.tokenize_on(pool, plan, tokenize_pairs).await?;
        let prompt_tokens = sequences.iter().map(|s| s.ids.len()).sum();
        let logits = self.run_cached(variant, sequences).await?;
        let mut results = logits
            .iter()
            .enumerate()
            .map(|(index, logit)| {
                let logit = logit.first().copied().ok_or_else(|| {
                    EmbedError::Internal("the backend returned no logit for a pair".into())
                })?;
                let score = if raw_scores {
                    logit
                } else {
                    activation.apply(logit)
                };
                Ok(RerankResult {
                    index,
                    score,
                    document: None,
                })
            })
            .collect::<Result<Vec<_>, EmbedError>>()?;
        // Best first; a stable sort keeps equal scores in request order.
        results.sort_by(|a, b| b.score.total_cmp(&a.score));
        results.truncate(top_n.unwrap_or(usize::MAX));
        if return_documents {
            for result in &mut results {
                result.document = Some(std::mem::take(&mut documents[result.index]));
            }
        }
        Ok(RerankResponse {
            model: self.name.clone(),
            results,
            prompt_tokens,
            served_by: variant.served_by(),
        })
    }

    /// The activation of this model's scores.
    ///
    /// # Errors
    ///
    /// [`EmbedError::InvalidRequest`] when the model is no reranker, saying what it is for.
    fn activation(&self) -> Result<Activation, EmbedError> {
        match self.card.kind {
            ModelKind::Reranker { activation } => Ok(activation),
            ModelKind::Embedding => Err(EmbedError::invalid(
                "model",
                format!(
                    "the model `{}` is an embedding model: it answers /v1/embeddings, not rerank \
                     requests (reranking needs a cross-encoder)",
                    self.name
                ),
            )),
        }
    }

    /// Checks `request` against this model and resolves its defaults.
    fn plan_rerank(&self, request: RerankRequest) -> Result<RerankPlan, EmbedError> {
        if request.query.is_empty() {
            return Err(EmbedError::invalid("query", "`query` must not be empty"));
        }
        if request.documents.is_empty() {
            return Err(EmbedError::invalid(
                "documents",
                "`documents` must not be empty",
            ));
        }
        if request.documents.len() > self.max_inputs {
            return Err(EmbedError::invalid(
                "documents",
                format!(
                    "too many documents: {}, the limit is {} (the model's `max_inputs_per_request`)",
                    request.documents.len(),
                    self.max_inputs
                ),
            ));
        }
        for (key, value) in [
            ("top_n", request.top_n),
            ("max_tokens_per_doc", request.max_tokens_per_doc),
        ] {
            if value == Some(0) {
                return Err(EmbedError::invalid(
                    key,
                    format!("`{key}` must be at least 1"),
                ));
            }
        }
        Ok(RerankPlan {
            query: request.query,
            documents: request.documents,
            truncate: request.truncate.unwrap_or(self.truncate),
            max_tokens_per_doc: request.max_tokens_per_doc,
            token_types: self.card.token_types,
        })
    }
}

/// One pair sequence per document of `plan`, and the documents back (for the answer).
fn tokenize_pairs(
    tokenizer: &TextTokenizer,
    plan: RerankPlan,
) -> Result<(Vec<Sequence>, Vec<String>), EmbedError> {
    let sequences = plan
        .documents
        .iter()
        .enumerate()
        .map(|(i, document)| {
            let pair = tokenizer
                .encode_pair(
                    &plan.query,
                    document,
                    plan.truncate,
                    plan.max_tokens_per_doc,
                )
                .map_err(|error| {
                    input_error("documents", format!("documents[{i}] with the query"), error)
                })?
                .for_token_types(plan.token_types);
            Ok(Sequence::pair(pair.ids, pair.type_ids))
        })
        .collect::<Result<_, EmbedError>>()?;
    Ok((sequences, plan.documents))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use embedrt_backend_core::{Backend, BackendError, Batch, Capabilities, Embeddings};

    use super::*;
    use crate::instance::assembled;

    /// A cross-encoder that scores a pair by its length, and checks the token types it gets.
    struct ByLength(Capabilities);

    impl Backend for ByLength {
        fn capabilities(&self) -> &Capabilities {
            &self.0
        }

        fn embed(&mut self, batch: &Batch) -> Result<Embeddings, BackendError> {
            let scores = (0..batch.len())
                .map(|i| {
                    let types = &batch.token_type_ids[batch.span(i)];
                    assert!(types.contains(&1), "BERT pairs have a second segment");
                    batch.ids(i).len() as f32
                })
                .collect();
            Ok(Embeddings::new(scores, 1))
        }
    }

    fn ms_marco(max_inputs: usize) -> Arc<ModelInstance> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures/ms-marco-reranker-tiny");
        let toml = format!(
            "[[models]]\nname = \"ce\"\npath = {:?}\nbackend = \"candle\"\nmax_inputs_per_request = {max_inputs}\n",
            dir.display().to_string()
        );
        assembled(&dir, &toml, |card, _| {
            Box::new(ByLength(Capabilities {
                hidden_size: 1,
                max_input_tokens: card.max_input_tokens,
                mixed_tasks: false,
                pads_batches: true,
                token_states: false,
                base_task: true,
                dtype: None,
            }))
        })
    }

    fn request(documents: &[&str]) -> RerankRequest {
        RerankRequest::new(
            None,
            "capital of france".into(),
            documents.iter().map(|d| d.to_string()).collect(),
        )
    }

    #[tokio::test]
    async fn documents_come_back_best_first_cut_to_top_n() {
        let instance = ms_marco(8);
        let pool = WorkerPool::new("test", 1).unwrap();
        let documents = ["a", "a b c d e", "a b c", "a b c"];
        let all = instance.rerank(request(&documents), &pool).await.unwrap();
        let order: Vec<usize> = all.results.iter().map(|r| r.index).collect();
        assert_eq!(order, [1, 2, 3, 0], "ties keep request order");
        let logits: Vec<f32> = all.results.iter().map(|r| r.score).collect();
        assert!(logits.windows(2).all(|w| w[0] >= w[1]), "{logits:?}");
        assert_eq!(all.prompt_tokens, logits.iter().sum::<f32>() as usize);
        let top = RerankRequest {
            top_n: Some(2),
            ..request(&documents)
        };
        let top = instance.rerank(top, &pool).await.unwrap();
        assert_eq!(top.results, all.results[..2]);
        assert!(all.results.iter().all(|r| r.document.is_none()));
        let texts = RerankRequest {
            return_documents: true,
            ..request(&documents)
        };
        let texts = instance.rerank(texts, &pool).await.unwrap();
        for result in &texts.results {
            assert_eq!(result.document.as_deref(), Some(documents[result.index]));
        }
        let cut = RerankRequest {
            max_tokens_per_doc: Some(1),
            ..request(&documents)
        };
        let cut = instance.rerank(cut, &pool).await.unwrap();
        assert!(cut.results.iter().all(|r| r.score == cut.results[0].score));
    }

    #[tokio::test]
    async fn bad_rerank_requests_are_refused_by_field() {
        let instance = ms_marco(2);
        let pool = WorkerPool::new("test", 1).unwrap();
        let empty_query = RerankRequest {
            query: String::new(),
            ..request(&["a"])
        };
        let zero_top = RerankRequest {
            top_n: Some(0),
            ..request(&["a"])
        };
        for (bad, field, says) in [
            (empty_query, "query", "must not be empty"),
            (request(&[]), "documents", "must not be empty"),
            (
                request(&["a", "b", "c"]),
                "documents",
                "too many documents: 3",
            ),
            (zero_top, "top_n", "at least 1"),
        ] {
            let err = instance.rerank(bad, &pool).await.unwrap_err();
            assert!(
                matches!(&err, EmbedError::InvalidRequest { param: Some(p), message } if *p == field && message.contains(says)),
                "{err:?}"
            );
        }
        let embed =
            crate::request::EmbedRequest::new(None, vec![crate::request::Input::Text("a".into())]);
        let err = instance.embed(embed, &pool).await.unwrap_err();
        assert!(
            matches!(&err, EmbedError::InvalidRequest { param: Some("model"), message } if message.contains("reranker")),
            "{err:?}"
        );
    }
}
