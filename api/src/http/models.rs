//! `GET /v1/models`: OpenAI's model list, with each model's kind (`embedding` or `rerank`),
//! backends, tasks and limits.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use embedrt_runtime::ModelInfo;
use serde_json::{json, Value};

use super::error::ApiError;
use crate::state::AppState;

/// `GET /v1/models`.
pub(super) async fn handle(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let data: Vec<Value> = state
        .registry()?
        .models()
        .map(|model| describe(model.info()))
        .collect();
    Ok(Json(json!({ "object": "list", "data": data })).into_response())
}

/// One entry of the list.
fn describe(info: ModelInfo) -> Value {
    let variants: Vec<Value> = info
        .variants
        .into_iter()
        .map(|v| {
            json!({
                "name": v.name,
                "backend": v.backend,
                "device": v.device,
                "dtype": v.dtype,
                "weight": v.weight,
                "shadow": v.shadow,
                "replicas": v.replicas,
            })
        })
        .collect();
    json!({
        "id": info.name,
        "object": "model",
        "kind": info.kind.name(),
        "created": 0,
        "owned_by": "embedrt",
        "aliases": info.aliases,
        "alias_tasks": info.alias_tasks,
        "backend": info.backend,
        "variants": variants,
        "tasks": info.tasks,
        "dimensions": info.dimensions,
        "matryoshka_dimensions": info.matryoshka_dimensions,
        "max_tokens": info.max_input_tokens,
        "max_inputs": info.max_inputs,
    })
}
