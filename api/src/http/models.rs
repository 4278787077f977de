//! `GET /v1/models`: OpenAI's model list, with each model's kind (`embedding` or `rerank`),
//! backends, tasks and limits.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use embedrt_runtime::{ModelInfo, VariantInfo};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::openapi::ApiErrors;
use crate::state::AppState;

/// `GET /v1/models`.
#[utoipa::path(
    get,
    path = "/v1/models",
    operation_id = "listModels",
    tag = "models",
    summary = "Lists the models served, with their limits",
    responses((status = 200, description = "The models", body = ModelList), ApiErrors),
    security(("api_key" = [])),
)]
pub(super) async fn handle(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let data = state
        .registry()?
        .models()
        .map(|model| ModelEntry::of(model.info()))
        .collect();
    Ok(Json(ModelList {
        object: "list",
        data,
    })
    .into_response())
}

/// The response body of `GET /v1/models`.
#[derive(Serialize, ToSchema)]
pub(super) struct ModelList {
    /// Always `list`.
    object: &'static str,
    /// The models served, in configuration order.
    data: Vec<ModelEntry>,
}

/// One model of the list.
#[derive(Serialize, ToSchema)]
struct ModelEntry {
    /// The name requests use.
    id: String,
    /// Always `model`.
    object: &'static str,
    /// `embedding` or `rerank`.
    kind: &'static str,
    /// Always 0 (OpenAI's creation time).
    created: u64,
    /// Always `embedrt`.
    owned_by: &'static str,
    /// Other names requests may use.
    aliases: Vec<String>,
    /// The aliases that carry a task, with their task.
    alias_tasks: BTreeMap<String, String>,
    /// The backend of the first variant.
    backend: String,
    /// Every variant: serving ones and shadows.
    variants: Vec<VariantEntry>,
    /// The tasks requests may name (besides `none`).
    tasks: Vec<String>,
    /// The width of the full vector.
    dimensions: usize,
    /// The Matryoshka sizes `dimensions` may take; empty: any size up to the width.
    matryoshka_dimensions: Vec<usize>,
    /// The longest input in tokens, special tokens included.
    max_tokens: usize,
    /// The most inputs (a reranker: documents) one request may carry.
    max_inputs: usize,
}

impl ModelEntry {
    fn of(info: ModelInfo) -> Self {
        Self {
            id: info.name,
            object: "model",
            kind: info.kind.name(),
            created: 0,
            owned_by: "embedrt",
            aliases: info.aliases,
            alias_tasks: info.alias_tasks,
            backend: info.backend,
            variants: info.variants.into_iter().map(VariantEntry::of).collect(),
            tasks: info.tasks,
            dimensions: info.dimensions,
            matryoshka_dimensions: info.matryoshka_dimensions,
            max_tokens: info.max_input_tokens,
            max_inputs: info.max_inputs,
        }
    }
}

/// One variant of a model.
#[derive(Serialize, ToSchema)]
struct VariantEntry {
    /// The variant's name.
    name: String,
    /// Its engine (`onnx`, `candle`, ...).
    backend: String,
    /// Where it runs (`cpu`, `cuda:0`).
    device: String,
    /// The number format it computes in, when its backend reports one.
    #[schema(required = true)]
    dtype: Option<String>,
    /// Its share of the traffic.
    weight: u32,
    /// Whether it only shadows the serving variants.
    shadow: bool,
    /// Copies of the model serving it.
    replicas: usize,
}

impl VariantEntry {
    fn of(info: VariantInfo) -> Self {
        Self {
            name: info.name,
            backend: info.backend,
            device: info.device,
            dtype: info.dtype,
            weight: info.weight,
            shadow: info.shadow,
            replicas: info.replicas,
        }
    }
}
