//! One step turns a request into what the request path runs: a [`RequestPlan`], with every
//! option checked against the deployment and every default filled in, for `/v1/embeddings`,
//! `/v1/tokenize` and gRPC alike.
//!
//! A request is checked against what *every* serving variant can do before the router's pick
//! matters, so the same request gets the same answer (or the same error) whichever variant
//! serves it.

use std::num::NonZeroUsize;

use super::ModelInstance;
use crate::model::ResolvedTask;
use crate::request::{EmbedError, EmbedRequest, Input};

/// What the request path runs for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct RequestPlan {
    /// The inputs, answered in this order (at least one, at most the model's limit).
    pub inputs: Vec<Input>,
    /// The task: the weights and the instruction before each input.
    pub task: ResolvedTask,
    /// Whether over-long inputs are cut (else refused).
    pub truncate: bool,
    /// Whether vectors are L2-normalized.
    pub normalize: bool,
    /// The Matryoshka size to cut vectors to, when asked for (a size the model allows).
    pub dimensions: Option<NonZeroUsize>,
    /// One vector per input, or per chunk of one document.
    pub mode: Mode,
}

/// How a request's inputs become vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// Each input is embedded and pooled on its own.
    Pooled,
    /// The inputs are consecutive chunks of one document, encoded in one pass and pooled per
    /// chunk.
    LateChunked,
}

impl ModelInstance {
    /// Checks `request` against this model's deployment and resolves its defaults.
    ///
    /// # Errors
    ///
    /// [`EmbedError::InvalidRequest`] for no inputs, an unknown task or one a serving backend
    /// cannot run, a size the model does not allow, or late chunking a serving backend cannot
    /// do; [`EmbedError::TooManyInputs`] beyond the model's limit.
    pub(super) fn plan(&self, request: EmbedRequest) -> Result<RequestPlan, EmbedError> {
        self.check_input_count(request.inputs.len())?;
        let mode = if request.late_chunking {
            self.deployment.check_late_chunking()?;
            Mode::LateChunked
        } else {
            Mode::Pooled
        };
        let dimensions = request
            .dimensions
            .map(|d| self.check_dimensions(d))
            .transpose()?;
        let task = match request.task.as_deref() {
            None => self.default_task_for(request.model.as_deref()).clone(),
            Some(name) => self.named_task(name)?,
        };
        self.deployment.check_task(&task, &self.card)?;
        Ok(RequestPlan {
            inputs: request.inputs,
            task,
            truncate: request.truncate.unwrap_or(self.truncate),
            normalize: request.normalize.unwrap_or(self.card.normalize),
            dimensions,
            mode,
        })
    }

    /// The task `name` among the model's tasks.
    fn named_task(&self, name: &str) -> Result<ResolvedTask, EmbedError> {
        if self.card.tasks.is_empty() {
            return Err(EmbedError::invalid(
                "task",
                format!(
                    "the model `{}` has no tasks (no task adapters or prompts); leave out `task`",
                    self.name
                ),
            ));
        }
        let id = self.card.task_id(name).ok_or_else(|| {
            EmbedError::invalid(
                "task",
                format!(
                    "unknown task {name:?}; this model's tasks are {}, and {}",
                    self.card.task_names().join(", "),
                    crate::model::BASE_TASK
                ),
            )
        })?;
        Ok(self.card.task(id))
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

    /// `dimensions`, when the model allows that size: between 1 and its width, and one of its
    /// Matryoshka sizes when it lists any.
    fn check_dimensions(&self, dimensions: usize) -> Result<NonZeroUsize, EmbedError> {
        let allowed = &self.card.matryoshka_dimensions;
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
        let hidden = self.card.hidden_size;
        NonZeroUsize::new(dimensions)
            .filter(|d| d.get() <= hidden)
            .ok_or_else(|| {
                EmbedError::invalid(
                    "dimensions",
                    format!(
                        "`dimensions` must be between 1 and {hidden} for this model, got \
                         {dimensions}"
                    ),
                )
            })
    }
}
