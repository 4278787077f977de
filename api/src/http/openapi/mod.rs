//! The API as a contract: the OpenAPI 3.1 document at `GET /openapi.json`, generated from the
//! handlers' annotations and the response types (utoipa), and the Swagger UI page at `/docs`
//! that renders it (vendored into the binary, so it needs no internet).
//!
//! The document is written per request from the models serving then (see [`served`]): the
//! `model` fields list their names, and the limits are the widest of theirs.

pub mod requests;
mod served;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::Value;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{IntoResponses, Modify, OpenApi, PartialSchema};
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::embeddings::{BACKEND_HEADER, DEVICE_HEADER, VARIANT_HEADER};
use crate::state::AppState;

/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/openapi.json";
/// Where the page that renders it is served.
pub const PAGE_PATH: &str = "/docs";

/// The routes that run an embedding model. Their answers, and the rerank routes', say which
/// variant served them; a route no served model of its kind answers is left out of the document.
const EMBEDDING_ROUTES: [&str; 1] = ["/v1/embeddings"];
/// The routes that run a reranker.
const RERANK_ROUTES: [&str; 3] = ["/v1/rerank", "/v2/rerank", "/rerank"];

/// The document's fixed part: every route, request and response.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "embedrt",
        description = "Text embeddings and reranking over OpenAI's embeddings API (with Jina's \
                       fields), Cohere's and TEI's rerank APIs. Errors take OpenAI's shape. The \
                       `model` fields list the models this server serves now; each model's own \
                       limits are at `GET /v1/models`."
    ),
    paths(
        super::embeddings::handle,
        super::tokenize::handle,
        super::models::handle,
        super::rerank::v1,
        super::rerank::v2,
        super::rerank::any_shape,
        super::ops::health,
        super::ops::ready,
        super::ops::metrics,
        super::ops::admin_reload,
    ),
    components(schemas(super::error::ErrorBody)),
    modifiers(&KeySchemes, &ServedByHeaders),
    tags(
        (name = "embeddings", description = "Vectors for texts or token ids"),
        (name = "rerank", description = "Scores of (query, document) pairs"),
        (name = "models", description = "What is served"),
        (name = "operations", description = "Health, readiness, metrics and reload"),
    )
)]
struct ApiDoc;

/// The two bearer keys: the embedding API's (`[server] api_keys`) and the admin endpoint's.
struct KeySchemes;

impl Modify for KeySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, what) in [
            (served::API_KEY, "one of `[server] api_keys`"),
            (served::ADMIN_KEY, "`[server] admin_key`"),
        ] {
            let mut scheme = Http::new(HttpAuthScheme::Bearer);
            scheme.description = Some(format!("`Authorization: Bearer <key>` with {what}"));
            components.add_security_scheme(name, SecurityScheme::Http(scheme));
        }
    }
}

/// The headers of the answers that ran a model: which variant, backend and device served them.
struct ServedByHeaders;

impl Modify for ServedByHeaders {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let header = |description: &str| {
            HeaderBuilder::new()
                .schema(Some(String::schema()))
                .description(Some(description))
                .build()
        };
        for path in EMBEDDING_ROUTES.iter().chain(&RERANK_ROUTES) {
            let answer = openapi
                .paths
                .paths
                .get_mut(*path)
                .and_then(|item| item.post.as_mut())
                .and_then(|operation| operation.responses.responses.get_mut("200"));
            if let Some(RefOr::T(answer)) = answer {
                for (name, description) in [
                    (VARIANT_HEADER, "The variant that answered"),
                    (BACKEND_HEADER, "Its backend"),
                    (DEVICE_HEADER, "Where it runs"),
                ] {
                    answer
                        .headers
                        .insert(name.as_str().into(), RefOr::T(header(description)));
                }
            }
        }
    }
}

/// The errors every `/v1` route may answer, each in OpenAI's shape.
pub(super) struct ApiErrors;

impl IntoResponses for ApiErrors {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        let error = |description: &str| {
            ResponseBuilder::new().description(description).content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
        };
        let retry_after = HeaderBuilder::new()
            .schema(Some(i32::schema()))
            .description(Some("Seconds to wait before trying again"))
            .build();
        [
            (
                "400",
                error("A field has a bad value, or the body is not JSON"),
            ),
            ("401", error("The API key is missing or wrong")),
            ("404", error("No such model")),
            (
                "413",
                error("Too many inputs, or a body over `max_body_bytes`"),
            ),
            ("422", error("A field has the wrong type")),
            (
                "429",
                error("No room for the request now").header("Retry-After", retry_after),
            ),
            ("500", error("The server failed")),
            ("503", error("The models are loading, or a backend failed")),
            ("504", error("The request ran past its deadline")),
        ]
        .into_iter()
        .map(|(status, response)| (status.to_string(), response.build().into()))
        .collect()
    }
}

/// The document as `state` serves now: its models and the keys it asks for.
pub fn document(state: &AppState) -> Value {
    // Writing it cannot fail: every part of it is JSON already.
    let mut document = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    requests::add_rules(&mut document);
    served::describe(&mut document, state);
    document
}

/// `GET /openapi.json`.
async fn serve_document(State(state): State<Arc<AppState>>) -> Response {
    Json(document(&state)).into_response()
}

/// The routes of the document and of the page that renders it.
pub(super) fn routes() -> Router<Arc<AppState>> {
    let page = SwaggerUi::new(PAGE_PATH).config(
        Config::new([DOCUMENT_PATH])
            // Swagger UI would ask swagger.io to validate the document, from the reader's browser.
            .validator_url("none")
            .try_it_out_enabled(true),
    );
    Router::new()
        .route(DOCUMENT_PATH, axum::routing::get(serve_document))
        .merge(page)
}
