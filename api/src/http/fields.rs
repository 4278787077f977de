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

/// A count or an id: a non-negative integer, written as one or as a number without a fraction
/// (`2.0`, which JSON Schema counts as an integer too); past `u64::MAX` it saturates.
pub(super) fn whole_number(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| value.as_f64().and_then(whole))
}

/// `number` as a non-negative integer, when it has no fraction (saturating past `u64::MAX`).
pub(super) fn whole(number: f64) -> Option<u64> {
    // `as` saturates: 1e300 counts as u64::MAX, more than any limit.
    (number >= 0.0 && number.fract() == 0.0).then_some(number as u64)
}
