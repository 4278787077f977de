//! The parts of the document that depend on what is served: the routes (by the kinds of models
//! served), the names a request's `model` may take (per route, by the model's kind), the widest
//! limits of those models, their tasks, and whether keys are asked for. While the models load,
//! every route is there and `model` is any string.

use embedrt_runtime::{ModelInfo, ModelKind};
use serde_json::{json, Value};

use crate::state::AppState;

/// The security scheme of the embedding API's keys.
pub(super) const API_KEY: &str = "api_key";
/// The security scheme of the admin key.
pub(super) const ADMIN_KEY: &str = "admin_key";

/// Fills in `document` for `state`: its models, and the keys it asks for.
pub(super) fn describe(document: &mut Value, state: &AppState) {
    if !state.needs_api_key() {
        drop_security(document, API_KEY);
    }
    if !state.needs_admin_key() {
        drop_security(document, ADMIN_KEY);
    }
    let Some(registry) = state.current_registry() else {
        return;
    };
    let models: Vec<ModelInfo> = registry.models().map(|model| model.info()).collect();
    let embedders: Vec<&ModelInfo> = models
        .iter()
        .filter(|m| m.kind == ModelKind::Embedding)
        .collect();
    let rerankers: Vec<&ModelInfo> = models
        .iter()
        .filter(|m| m.kind != ModelKind::Embedding)
        .collect();
    let all: Vec<&ModelInfo> = models.iter().collect();
    // A route no served model answers (rerank without a reranker) is left out: every request
    // to it would be refused.
    if let Some(paths) = document["paths"].as_object_mut() {
        for (kind, routes) in [
            (&embedders, &super::EMBEDDING_ROUTES[..]),
            (&rerankers, &super::RERANK_ROUTES[..]),
        ] {
            if kind.is_empty() {
                for route in routes {
                    paths.remove(*route);
                }
            }
        }
    }
    // A request may leave `model` out only when one model is served.
    let model_required = models.len() > 1;
    let schemas = &mut document["components"]["schemas"];

    let embeddings = &mut schemas["EmbeddingsBody"];
    name_models(embeddings, &embedders, model_required);
    name_tasks(embeddings, &embedders);
    let dimensions = &mut embeddings["properties"]["dimensions"];
    *dimensions = sizes(&embedders, dimensions["description"].take());
    let (inputs, vocabulary) = (
        widest(&embedders, |m| m.max_inputs),
        widest(&embedders, |m| m.token_vocabulary),
    );
    for (i, limits) in [
        json!({}),
        json!({"minItems": 1, "maxItems": inputs}),
        json!({"minItems": 1, "items": {"maximum": vocabulary.saturating_sub(1)}}),
        json!({"minItems": 1, "maxItems": inputs, "items": {
            "minItems": 1,
            "items": {"maximum": vocabulary.saturating_sub(1)}
        }}),
    ]
    .into_iter()
    .enumerate()
    {
        merge(&mut schemas["EmbeddingInput"]["oneOf"][i], limits);
    }

    let tokenize = &mut schemas["TokenizeBody"];
    name_models(tokenize, &all, model_required);
    name_tasks(tokenize, &all);
    let texts = json!({"minItems": 1, "maxItems": widest(&all, |m| m.max_inputs)});
    merge(&mut schemas["TokenizeInput"]["oneOf"][1], texts);

    let documents = json!({"minItems": 1, "maxItems": widest(&rerankers, |m| m.max_inputs)});
    for (body, list) in [
        ("CohereRerankBody", "documents"),
        ("TeiRerankBody", "texts"),
    ] {
        let body = &mut schemas[body];
        name_models(body, &rerankers, model_required);
        merge(&mut body["properties"]["query"], json!({"minLength": 1}));
        merge(&mut body["properties"][list], documents.clone());
    }
}

/// Removes the security requirement `scheme` from every operation (its key is not asked for).
fn drop_security(document: &mut Value, scheme: &str) {
    let Some(paths) = document["paths"].as_object_mut() else {
        return;
    };
    for operation in paths.values_mut().filter_map(Value::as_object_mut) {
        for operation in operation.values_mut() {
            let asks = operation["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get(scheme).is_some()));
            if asks {
                if let Some(operation) = operation.as_object_mut() {
                    operation.remove("security");
                }
            }
        }
    }
}

/// The widest of `models`' `limit`s (1 for no models).
fn widest(models: &[&ModelInfo], limit: impl Fn(&ModelInfo) -> usize) -> usize {
    models.iter().map(|m| limit(m)).max().unwrap_or(1)
}

/// Lets `body`'s `model` take the names and aliases of `models` only; null and absent too when
/// it is not `required`. The body's example names the first of them, so that it runs as it is.
fn name_models(body: &mut Value, models: &[&ModelInfo], required: bool) {
    if let (Some(example), Some(first)) = (body["example"].as_object_mut(), models.first()) {
        example.insert("model".into(), json!(first.name));
    }
    if required {
        if let Some(fields) = body["required"].as_array_mut() {
            fields.push(json!("model"));
        }
    }
    let mut names: Vec<Value> = models
        .iter()
        .flat_map(|m| std::iter::once(&m.name).chain(&m.aliases))
        .map(|name| json!(name))
        .collect();
    if !required {
        names.push(Value::Null);
    }
    only(&mut body["properties"]["model"], names);
}

/// Lets `schema` take `values` only (an enum, which its `type` would only repeat).
fn only(schema: &mut Value, values: Vec<Value>) {
    schema["enum"] = Value::Array(values);
    if let Some(schema) = schema.as_object_mut() {
        schema.remove("type");
    }
}

/// Lets `body`'s `task` take the tasks of `models` (and `none`, the base model); only null when
/// none of them has tasks.
fn name_tasks(body: &mut Value, models: &[&ModelInfo]) {
    let mut tasks: Vec<&str> = models
        .iter()
        .flat_map(|m| &m.tasks)
        .map(String::as_str)
        .collect();
    tasks.sort_unstable();
    tasks.dedup();
    let task = &mut body["properties"]["task"];
    if tasks.is_empty() {
        task["type"] = json!("null");
        return;
    }
    let mut names: Vec<Value> = tasks.into_iter().map(|t| json!(t)).collect();
    names.extend([json!(embedrt_runtime::model::BASE_TASK), Value::Null]);
    only(task, names);
}

/// The sizes `dimensions` may take (said by `description`): 1 up to the widest model's width,
/// or the Matryoshka sizes when every model lists them.
fn sizes(models: &[&ModelInfo], description: Value) -> Value {
    if !models.is_empty() && models.iter().all(|m| !m.matryoshka_dimensions.is_empty()) {
        let mut sizes: Vec<usize> = models
            .iter()
            .flat_map(|m| m.matryoshka_dimensions.iter().copied())
            .collect();
        sizes.sort_unstable();
        sizes.dedup();
        let mut sizes: Vec<Value> = sizes.into_iter().map(|s| json!(s)).collect();
        sizes.push(Value::Null);
        return json!({"description": description, "enum": sizes});
    }
    json!({
        "description": description,
        "type": ["integer", "null"],
        "minimum": 1,
        "maximum": widest(models, |m| m.dimensions),
    })
}

/// Adds `limits`' keywords to `schema`, into its subschemas (`items`) too.
fn merge(schema: &mut Value, limits: Value) {
    match (schema, limits) {
        (Value::Object(schema), Value::Object(limits)) => {
            for (key, value) in limits {
                merge(schema.entry(key).or_insert(Value::Null), value);
            }
        }
        (slot, value) => *slot = value,
    }
}
