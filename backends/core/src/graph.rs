//! Exported graphs whose tensors are bound by name (an ONNX file in ONNX Runtime, an ONNX file or
//! an OpenVINO IR in OpenVINO): which of the inputs a padded encoder feeds a graph asks for, and
//! which output holds the answer. Engines that run such graphs check them the same way at load.

use std::path::{Path, PathBuf};

use crate::document::{Head, ModelSpec};
use crate::padded::Positions;
use crate::BackendError;

/// The graph file to open in the model folder `dir`: `file` (a backend's `file` option) when
/// given, else the first of `defaults` there is.
///
/// # Errors
///
/// `looked for [...]`, the paths tried, when none is a file (the backend says what and why).
pub fn find_file(dir: &Path, file: Option<&Path>, defaults: &[&str]) -> Result<PathBuf, String> {
    let candidates: Vec<PathBuf> = match file {
        Some(file) => vec![dir.join(file)],
        None => defaults.iter().map(|f| dir.join(f)).collect(),
    };
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .ok_or_else(|| format!("looked for {candidates:?}"))
}

/// The inputs a padded encoder knows how to feed.
pub const KNOWN_INPUTS: [&str; 5] = [
    "input_ids",
    "attention_mask",
    "token_type_ids",
    "position_ids",
    "task_id",
];

/// The optional inputs a graph asks for, besides `input_ids` and `attention_mask`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GraphInputs {
    /// Whether it takes `token_type_ids`.
    pub token_types: bool,
    /// Whether it takes a scalar `task_id` (jina-embeddings-v3's official export: one task
    /// adapter per run, no base weights).
    pub task_id: bool,
    /// How to number `position_ids`, when it takes them.
    pub positions: Option<Positions>,
}

impl GraphInputs {
    /// Reads the `inputs` of the graph in `file`, a model of `card`.
    ///
    /// # Errors
    ///
    /// [`BackendError::Load`] when it lacks `input_ids` or `attention_mask`, asks for a KV cache
    /// (a decoder exported for generation), or asks for an input a padded encoder does not feed.
    pub fn of(file: &Path, inputs: &[&str], card: &ModelSpec) -> Result<Self, BackendError> {
        for required in ["input_ids", "attention_mask"] {
            if !inputs.contains(&required) {
                return Err(BackendError::Load(format!(
                    "{} has no `{required}` input (inputs: {inputs:?})",
                    file.display()
                )));
            }
        }
        if let Some(cache) = inputs.iter().find(|n| n.starts_with("past_key_values")) {
            // A decoder exported with its KV cache (optimum's `*-with-past` tasks): an embedding
            // is one pass over the whole input, which needs no cache.
            return Err(BackendError::Load(format!(
                "{} asks for the KV-cache input `{cache}`: it is a decoder exported with its \
                 cache (for text generation), and an embedder runs each input in one pass with \
                 no cache. Export it without one (`optimum-cli export onnx --task \
                 feature-extraction`, or `use_cache=False`): inputs input_ids, attention_mask \
                 and position_ids, output last_hidden_state",
                file.display()
            )));
        }
        if let Some(unknown) = inputs.iter().find(|n| !KNOWN_INPUTS.contains(n)) {
            return Err(BackendError::Load(format!(
                "{} asks for the input `{unknown}`, which this backend does not feed (it feeds \
                 {KNOWN_INPUTS:?})",
                file.display()
            )));
        }
        Ok(Self {
            token_types: inputs.contains(&"token_type_ids"),
            task_id: inputs.contains(&"task_id"),
            positions: inputs
                .contains(&"position_ids")
                .then(|| Positions::of(&card.architecture, card.pad_token_id)),
        })
    }
}

/// The output of the graph in `file` to read, among its `outputs`: a cross-encoder's `logits`
/// (`[batch, labels]`), an embedder's `last_hidden_state` (else `text_embeds`); else the first.
///
/// # Errors
///
/// [`BackendError::Load`] when the graph has no output.
pub fn output_of(file: &Path, outputs: &[&str], head: &Head) -> Result<String, BackendError> {
    let wanted: &[&str] = match head {
        Head::Pooled => &["last_hidden_state", "text_embeds"],
        Head::Classifier { .. } => &["logits"],
    };
    wanted
        .iter()
        .copied()
        .find(|name| outputs.contains(name))
        .or(outputs.first().copied())
        .map(str::to_string)
        .ok_or_else(|| BackendError::Load(format!("{} has no output", file.display())))
}

/// The one adapter every row of a batch runs, as a graph's scalar `task_id` input takes it.
///
/// # Errors
///
/// [`BackendError::InvalidInput`] when rows ask for different adapters, or for the base weights
/// (such graphs have none).
pub fn single_adapter(adapters: &[crate::AdapterId]) -> Result<i64, BackendError> {
    let first = adapters.first().copied().unwrap_or(crate::AdapterId::BASE);
    if adapters.iter().any(|&a| a != first) {
        return Err(BackendError::InvalidInput(
            "this graph runs one task per batch".into(),
        ));
    }
    let index = first.index().ok_or_else(|| {
        BackendError::InvalidInput(
            "this graph has no base-weights mode: task `none` is not available".into(),
        )
    })?;
    Ok(index as i64)
}
