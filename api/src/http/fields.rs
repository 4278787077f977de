//! Reading the fields of a JSON request body (see `body`) one by one, so that every error names
//! its field: 422 (OpenAI's `invalid_type`) for a field of the wrong type.

use serde_json::{Map, Value};

use super::error::ApiError;

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
