//! Reading a JSON request body with bounded work and memory: `input` is read straight into the
//! runtime's inputs, stopping at one more input (or token id) than any model takes, and the
//! other fields into a JSON tree of a bounded number of values. A body of a million tiny inputs
//! thus costs a scan of its bytes, not a million allocations.

use std::cell::Cell;
use std::fmt;

use embedrt_runtime::{EmbedError, Input, Registry};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::error::ApiError;
use super::fields::{whole, whole_number};

/// What `input` may hold.
const INPUT_SHAPES: &str =
    "`input` must be a string, an array of strings, an array of token ids, or an array of token-id arrays";

/// JSON values the fields other than `input` may hold, per input a request may carry (a
/// reranker's documents are one or two values each), on top of [`BASE_VALUES`].
const VALUES_PER_INPUT: usize = 4;
/// JSON values the fields other than `input` may hold, whatever the input limit.
const BASE_VALUES: usize = 1024;

/// How much one body may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyLimits {
    /// Most inputs (or documents) of one request.
    pub max_inputs: usize,
    /// Most token ids of one request, summed over its inputs.
    pub max_tokens: usize,
}

impl BodyLimits {
    /// The largest limits of the models `registry` serves: a body is read before its model is
    /// known, and each model checks its own limits afterwards.
    pub fn of(registry: &Registry) -> Self {
        registry.models().fold(
            Self {
                max_inputs: 1,
                max_tokens: 1,
            },
            |limits, model| Self {
                max_inputs: limits.max_inputs.max(model.max_inputs()),
                max_tokens: limits.max_tokens.max(model.max_tokens()),
            },
        )
    }

    /// The JSON values the fields other than `input` may hold.
    fn values(&self) -> usize {
        self.max_inputs
            .saturating_mul(VALUES_PER_INPUT)
            .saturating_add(BASE_VALUES)
    }
}

impl Default for BodyLimits {
    /// The limits of a model configured with the defaults.
    fn default() -> Self {
        Self {
            max_inputs: 2048,
            max_tokens: 300_000,
        }
    }
}

/// A body read within its [`BodyLimits`].
#[derive(Debug)]
pub struct Body {
    /// Every field but `input`.
    pub fields: Map<String, Value>,
    /// The `input` field, if there is one: its inputs, or why they cannot be taken.
    input: Option<Result<Vec<Input>, ApiError>>,
}

impl Body {
    /// The `input` field: a string, strings, token ids, or arrays of token ids.
    ///
    /// # Errors
    ///
    /// 400 when it is missing or holds more token ids than any model takes, 413 for more inputs
    /// than any model takes, 422 for any other shape (mixed arrays, ids outside `u32`).
    pub fn take_input(&mut self) -> Result<Vec<Input>, ApiError> {
        self.input.take().unwrap_or_else(|| {
            Err(ApiError::bad_request(
                Some("input"),
                "missing_input",
                "`input` is required",
            ))
        })
    }
}

/// Reads `body`, a JSON object, within `limits`.
///
/// # Errors
///
/// 400 for invalid JSON, 413 for other fields holding more JSON values than the limits allow,
/// 422 for JSON that is no object.
pub fn read(body: &[u8], limits: BodyLimits) -> Result<Body, ApiError> {
    let reader = ObjectReader {
        limits,
        values_left: Cell::new(limits.values()),
        not_an_object: Cell::new(false),
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let read = de::Deserializer::deserialize_any(&mut deserializer, &reader)
        .and_then(|body| deserializer.end().map(|()| body));
    read.map_err(|error| {
        if reader.not_an_object.get() {
            ApiError::wrong_type(None, "the body must be a JSON object")
        } else if reader.values_left.get() == 0 {
            too_large(format!(
                "the body's fields other than `input` hold more than {} JSON values",
                limits.values()
            ))
        } else {
            ApiError::bad_request(
                None,
                "invalid_json",
                format!("the body is not valid JSON: {error}"),
            )
        }
    })
}

/// A 413 for a body that holds too much.
fn too_large(message: String) -> ApiError {
    ApiError {
        message,
        ..ApiError::from(EmbedError::TooManyInputs { count: 0, limit: 0 })
    }
}

/// Reads the top-level object.
struct ObjectReader {
    limits: BodyLimits,
    values_left: Cell<usize>,
    not_an_object: Cell<bool>,
}

impl ObjectReader {
    /// Spends one of the values the fields may hold.
    fn spend<E: de::Error>(&self) -> Result<(), E> {
        match self.values_left.get().checked_sub(1) {
            Some(left) => {
                self.values_left.set(left);
                Ok(())
            }
            None => Err(E::custom("the body holds too many JSON values")),
        }
    }
}

impl<'de> Visitor<'de> for &ObjectReader {
    type Value = Body;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Body, A::Error> {
        let mut fields = Map::new();
        let mut input = None;
        while let Some(key) = map.next_key::<String>()? {
            self.spend()?;
            if key == "input" {
                input = Some(map.next_value_seed(InputReader {
                    limits: self.limits,
                })?);
            } else {
                let value = map.next_value_seed(ValueReader(self))?;
                fields.insert(key, value);
            }
        }
        Ok(Body { fields, input })
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Body, E> {
        self.refuse()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Body, E> {
        self.refuse()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Body, E> {
        self.refuse()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Body, E> {
        self.refuse()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Body, E> {
        self.refuse()
    }
    fn visit_unit<E: de::Error>(self) -> Result<Body, E> {
        self.refuse()
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Body, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.refuse()
    }
}

impl ObjectReader {
    fn refuse<E: de::Error>(&self) -> Result<Body, E> {
        self.not_an_object.set(true);
        Err(E::custom("the body must be a JSON object"))
    }
}

/// Reads one field's value into a JSON tree, spending one of the body's values per node.
struct ValueReader<'a>(&'a ObjectReader);

impl<'de> DeserializeSeed<'de> for ValueReader<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueReader<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            self.0.spend()?;
            match seq.next_element_seed(ValueReader(self.0))? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = Map::new();
        loop {
            self.0.spend()?;
            match map.next_key::<String>()? {
                Some(key) => {
                    let value = map.next_value_seed(ValueReader(self.0))?;
                    fields.insert(key, value);
                }
                None => return Ok(Value::Object(fields)),
            }
        }
    }
}

/// Reads `input` into the runtime's inputs, refusing (without reading the rest) at one input or
/// token id more than the limits take. Its value is the inputs or the refusal; only invalid
/// JSON fails the body.
struct InputReader {
    limits: BodyLimits,
}

impl<'de> DeserializeSeed<'de> for InputReader {
    type Value = Result<Vec<Input>, ApiError>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// The 422 for an `input` of the wrong shape.
fn wrong_shape() -> ApiError {
    ApiError::wrong_type(Some("input"), INPUT_SHAPES)
}

/// One item of an `input` array.
enum Item {
    Text(String),
    Id(u32),
    Ids(Vec<u32>),
    /// Anything else, or an array that is not of token ids.
    Wrong,
    /// An array of token ids that took the request past its token limit.
    TooManyTokens,
}

impl InputReader {
    fn too_many_inputs(&self) -> ApiError {
        too_large(format!(
            "too many inputs: more than {}, the most any served model takes in one request \
             (`max_inputs_per_request`)",
            self.limits.max_inputs
        ))
    }

    fn too_many_tokens(&self) -> ApiError {
        ApiError::bad_request(
            Some("input"),
            "too_many_tokens",
            format!(
                "too many token ids: more than {}, the most any served model takes in one \
                 request (`max_tokens_per_request`)",
                self.limits.max_tokens
            ),
        )
    }
}

impl<'de> Visitor<'de> for InputReader {
    type Value = Result<Vec<Input>, ApiError>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(INPUT_SHAPES)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Ok(vec![Input::Text(v.to_string())]))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Ok(vec![Input::Text(v)]))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err(wrong_shape()))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err(wrong_shape()))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err(wrong_shape()))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err(wrong_shape()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Err(wrong_shape()))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Err(wrong_shape()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let tokens_left = Cell::new(self.limits.max_tokens);
        let (mut texts, mut ids, mut arrays) = (Vec::new(), Vec::new(), Vec::new());
        let refusal = loop {
            let Some(item) = seq.next_element_seed(ItemReader(&tokens_left))? else {
                break None;
            };
            match item {
                Item::Text(text) => texts.push(Input::Text(text)),
                Item::Id(id) if tokens_left.get() > 0 => {
                    tokens_left.set(tokens_left.get() - 1);
                    ids.push(id);
                }
                Item::Id(_) | Item::TooManyTokens => break Some(self.too_many_tokens()),
                Item::Ids(array) => arrays.push(Input::Tokens(array)),
                Item::Wrong => break Some(wrong_shape()),
            }
            let shapes = [!texts.is_empty(), !ids.is_empty(), !arrays.is_empty()];
            if shapes.iter().filter(|&&shape| shape).count() > 1 {
                break Some(wrong_shape());
            }
            if texts.len().max(arrays.len()) > self.limits.max_inputs {
                break Some(self.too_many_inputs());
            }
        };
        if let Some(refusal) = refusal {
            // The rest is scanned, not kept.
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(Err(refusal));
        }
        Ok(Ok(if !ids.is_empty() {
            vec![Input::Tokens(ids)]
        } else if !arrays.is_empty() {
            arrays
        } else {
            texts
        }))
    }
}

/// Reads one item of an `input` array; an array of token ids spends the request's tokens.
struct ItemReader<'a>(&'a Cell<usize>);

impl<'de> DeserializeSeed<'de> for ItemReader<'_> {
    type Value = Item;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Item, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemReader<'_> {
    type Value = Item;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, a token id or an array of token ids")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Item, E> {
        Ok(Item::Text(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Item, E> {
        Ok(Item::Text(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Item, E> {
        Ok(u32::try_from(v).map_or(Item::Wrong, Item::Id))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Item, E> {
        Ok(Item::Wrong)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Item, E> {
        self.visit_u64(whole(v).unwrap_or(u64::MAX))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Item, E> {
        Ok(Item::Wrong)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Item, E> {
        Ok(Item::Wrong)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Item::Wrong)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Item, A::Error> {
        let mut ids = Vec::new();
        let outcome = loop {
            let Some(id) = seq.next_element::<Value>()? else {
                break None;
            };
            let Some(id) = whole_number(&id).and_then(|id| u32::try_from(id).ok()) else {
                break Some(Item::Wrong);
            };
            let Some(left) = self.0.get().checked_sub(1) else {
                break Some(Item::TooManyTokens);
            };
            self.0.set(left);
            ids.push(id);
        };
        match outcome {
            Some(refusal) => {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(refusal)
            }
            None => Ok(Item::Ids(ids)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_inputs: usize, max_tokens: usize) -> BodyLimits {
        BodyLimits {
            max_inputs,
            max_tokens,
        }
    }

    fn input(json: &str, limits: BodyLimits) -> Result<Vec<Input>, ApiError> {
        read(json.as_bytes(), limits)?.take_input()
    }

    #[test]
    fn refuses_wrong_shapes_and_what_is_over_the_limits() {
        let status =
            |json: &str, limits: BodyLimits| input(json, limits).unwrap_err().status.as_u16();
        let all = BodyLimits::default();
        for json in [
            r#"{"input": ["a", 1]}"#,
            r#"{"input": [[1], "a"]}"#,
            r#"{"input": [1, [2]]}"#,
            r#"{"input": [-1]}"#,
            r#"{"input": [[4294967296]]}"#,
            r#"{"input": [1.5]}"#,
            r#"{"input": {"a": 1}}"#,
            r#"{"input": null}"#,
            r#"{"input": [{"text": "a"}]}"#,
        ] {
            assert_eq!(status(json, all), 422, "{json}");
        }
        assert_eq!(status(r#"{"model": "m"}"#, all), 400, "missing");
        assert_eq!(status(r#"{"input": ["a", "b", "c"]}"#, limits(2, 10)), 413);
        assert_eq!(status(r#"{"input": [[1], [1], [1]]}"#, limits(2, 10)), 413);
        assert_eq!(status(r#"{"input": [1, 2, 3]}"#, limits(2, 2)), 400);
        assert_eq!(status(r#"{"input": [[1, 2], [3]]}"#, limits(2, 2)), 400);
        assert_eq!(
            input(r#"{"input": [[1], [2]]}"#, limits(2, 2))
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn token_ids_written_as_whole_numbers_are_ids() {
        // JSON Schema counts 2.0 as an integer, so a client generated from the document may
        // send it.
        let all = BodyLimits::default();
        assert_eq!(
            input(r#"{"input": [2.0, 3]}"#, all).unwrap(),
            vec![Input::Tokens(vec![2, 3])]
        );
        assert_eq!(
            input(r#"{"input": [[1e2], [4]]}"#, all).unwrap(),
            vec![Input::Tokens(vec![100]), Input::Tokens(vec![4])]
        );
        for json in [
            r#"{"input": [2.5]}"#,
            r#"{"input": [[1e300]]}"#,
            r#"{"input": [-0.5]}"#,
        ] {
            assert_eq!(input(json, all).unwrap_err().status.as_u16(), 422, "{json}");
        }
    }

    #[test]
    fn a_huge_input_is_scanned_not_kept() {
        let many = format!(
            r#"{{"input": [{}[1]], "model": "m"}}"#,
            "[1],".repeat(1 << 20)
        );
        let mut body = read(many.as_bytes(), limits(2048, 300_000)).unwrap();
        assert_eq!(
            body.fields["model"], "m",
            "fields after the input are still read"
        );
        let err = body.take_input().unwrap_err();
        assert_eq!(err.status.as_u16(), 413, "{}", err.message);
        assert!(err.message.contains("more than 2048"), "{}", err.message);
    }

    #[test]
    fn other_fields_hold_a_bounded_number_of_values() {
        let nested = format!(r#"{{"input": "a", "junk": [{}0]}}"#, "0,".repeat(20_000));
        let err = read(nested.as_bytes(), limits(16, 10)).unwrap_err();
        assert_eq!(err.status.as_u16(), 413, "{}", err.message);
        let fine = r#"{"input": "a", "documents": ["x", {"text": "y"}]}"#;
        assert_eq!(
            read(fine.as_bytes(), limits(16, 10)).unwrap().fields.len(),
            1
        );
    }

    #[test]
    fn refuses_what_is_not_a_json_object() {
        let status = |json: &str| {
            read(json.as_bytes(), BodyLimits::default())
                .unwrap_err()
                .status
                .as_u16()
        };
        assert_eq!(status("[1, 2]"), 422);
        assert_eq!(status("\"a\""), 422);
        assert_eq!(status("{\"input\": "), 400);
        assert_eq!(status("{} x"), 400);
        assert_eq!(status("not json"), 400);
    }
}
