//! Reading a JSON request body field by field, so that every error names its field: 400 for
//! invalid JSON and missing fields, 422 (OpenAI's `invalid_type`) for a field of the wrong type.

use embedrt_runtime::Input;
use serde_json::{Map, Value};

use super::error::ApiError;

/// What `input` may hold.
const INPUT_SHAPES: &str =
    "`input` must be a string, an array of strings, an array of token ids, or an array of token-id arrays";

/// The body's fields; the body must be a JSON object.
///
/// # Errors
///
/// 400 for invalid JSON, 422 for JSON that is no object.
pub(super) fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            None,
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    match value {
        Value::Object(fields) => Ok(fields),
        _ => Err(ApiError::wrong_type(None, "the body must be a JSON object")),
    }
}

/// The `model` field, if the body has one.
///
/// # Errors
///
/// 422 when it is no string.
pub(super) fn model_field(fields: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    optional(fields, "model", Value::as_str, "a string").map(|model| model.map(str::to_string))
}

/// Reads an optional field with `get`; `null` is absent.
///
/// # Errors
///
/// 422 naming the field (`key` must be `expected`) when it is present but `get` refuses it.
pub(super) fn optional<'a, T>(
    fields: &'a Map<String, Value>,
    key: &'static str,
    get: impl Fn(&'a Value) -> Option<T>,
    expected: &str,
) -> Result<Option<T>, ApiError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => get(value)
            .map(Some)
            .ok_or_else(|| ApiError::wrong_type(Some(key), format!("`{key}` must be {expected}"))),
    }
}

/// The `input` field: a string, strings, token ids, or arrays of token ids.
///
/// # Errors
///
/// 400 when it is missing, 422 for any other shape (mixed arrays, ids outside `u32`).
pub(super) fn parse_input(input: Option<&Value>) -> Result<Vec<Input>, ApiError> {
    let wrong = || ApiError::wrong_type(Some("input"), INPUT_SHAPES);
    match input {
        None => Err(ApiError::bad_request(
            Some("input"),
            "missing_input",
            "`input` is required",
        )),
        Some(Value::String(text)) => Ok(vec![Input::Text(text.clone())]),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => Ok(items
            .iter()
            .filter_map(|item| item.as_str().map(|s| Input::Text(s.to_string())))
            .collect()),
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => {
            Ok(vec![Input::Tokens(token_ids(items).ok_or_else(wrong)?)])
        }
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_array()
                    .and_then(|ids| token_ids(ids))
                    .map(Input::Tokens)
                    .ok_or_else(wrong)
            })
            .collect(),
        Some(_) => Err(wrong()),
    }
}

/// `items` as token ids, when every one is an integer that fits `u32`.
fn token_ids(items: &[Value]) -> Option<Vec<u32>> {
    items
        .iter()
        .map(|item| item.as_u64().and_then(|id| u32::try_from(id).ok()))
        .collect()
}
