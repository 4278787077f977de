//! The parsers of untrusted input under proptest, with the invariants the fuzz targets check
//! (`embedrt_testkit::untrusted`): HTTP bodies, gRPC messages, config files and the tokenizer's
//! truncation, fed both structured inputs (JSON bodies, encoded messages, TOML tables) and raw
//! bytes. Every file of the fuzz seed corpus and of its regressions (`fuzz/corpus/<target>`,
//! `fuzz/regressions/<target>`: each input a fuzzer crashed on) runs through its check too.

use embedrt_proto::v1 as pb;
use embedrt_testkit::paths::repo_root;
use embedrt_testkit::untrusted;
use proptest::prelude::*;
use prost::Message;
use serde_json::{json, Value};

/// The fields the parsers read, and a few they do not.
const FIELDS: [&str; 20] = [
    "input",
    "model",
    "dimensions",
    "encoding_format",
    "embedding_type",
    "task",
    "normalized",
    "truncate",
    "late_chunking",
    "user",
    "query",
    "documents",
    "texts",
    "top_n",
    "return_documents",
    "return_text",
    "max_tokens_per_doc",
    "raw_scores",
    "truncation_direction",
    "other",
];

/// Any JSON value, nested a few levels, with the numbers and strings that matter to the parsers.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (0u64..40_000).prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just("float"),
            Just("base64"),
            Just("binary"),
            Just("Right"),
            Just("retrieval.query"),
            Just(""),
        ]
        .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 10, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..12).prop_map(Value::from),
            prop::collection::vec((prop::sample::select(&FIELDS[..]), inner), 0..4).prop_map(
                |pairs| Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            ),
        ]
    })
}

/// A request body: an object of the parsers' fields with any values.
fn json_body() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((prop::sample::select(&FIELDS[..]), json_value()), 0..8).prop_map(
        |pairs| {
            let body: serde_json::Map<String, Value> =
                pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            serde_json::to_vec(&body).unwrap()
        },
    )
}

/// An encoded `embedrt.v1` request of any field values.
fn grpc_message() -> impl Strategy<Value = Vec<u8>> {
    let texts = prop::collection::vec("\\PC{0,8}", 0..6);
    let tokens = prop::collection::vec(prop::collection::vec(any::<u32>(), 0..6), 0..4);
    (
        texts,
        tokens,
        any::<i32>(),
        any::<Option<u32>>(),
        any::<bool>(),
        0..3u8,
    )
        .prop_map(
            |(texts, tokens, embedding_type, dimensions, late_chunking, kind)| match kind {
                0 => pb::EmbedRequest {
                    texts,
                    tokens: tokens.into_iter().map(|ids| pb::TokenIds { ids }).collect(),
                    embedding_type,
                    dimensions,
                    late_chunking,
                    ..Default::default()
                }
                .encode_to_vec(),
                1 => pb::RerankRequest {
                    query: texts.first().cloned().unwrap_or_default(),
                    documents: texts,
                    top_n: dimensions,
                    ..Default::default()
                }
                .encode_to_vec(),
                _ => pb::TokenizeRequest {
                    texts,
                    ..Default::default()
                }
                .encode_to_vec(),
            },
        )
}

/// A config file: a server table and a model table with keys of the file and values of any
/// TOML type.
fn config_file() -> impl Strategy<Value = Vec<u8>> {
    let key = prop::sample::select(vec![
        "http",
        "grpc",
        "admin",
        "admin_key",
        "api_keys",
        "request_timeout_ms",
        "max_body_bytes",
        "async_threads",
        "backend",
        "device",
        "dtype",
        "replicas",
        "max_inputs_per_request",
        "truncate",
        "token_ids",
        "default_task",
        "aliases",
        "batching",
        "options",
        "cache",
    ]);
    let value = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        "\\PC{0,10}".prop_map(|s| format!("{s:?}")),
        Just("\"127.0.0.1:0\"".to_string()),
        Just("\"cl100k_base\"".to_string()),
        Just("[\"a\", \"b\"]".to_string()),
        Just("{ max_batch_requests = 0 }".to_string()),
        Just("\"onnx\"".to_string()),
    ];
    let pair = (key, value).prop_map(|(k, v)| format!("{k} = {v}\n"));
    (
        prop::collection::vec(pair.clone(), 0..4),
        prop::collection::vec(pair, 0..6),
    )
        .prop_map(|(server, model)| {
            format!(
                "[server]\n{}[[models]]\nname = \"m\"\npath = \"p\"\n{}",
                server.concat(),
                model.concat()
            )
            .into_bytes()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn http_bodies_are_answered_within_their_limits(body in json_body()) {
        untrusted::http_body(&body);
    }

    #[test]
    fn any_bytes_as_an_http_body(body in prop::collection::vec(any::<u8>(), 0..256)) {
        untrusted::http_body(&body);
    }

    #[test]
    fn grpc_messages_convert_or_are_refused(message in grpc_message()) {
        untrusted::grpc_messages(&message);
    }

    #[test]
    fn any_bytes_as_a_grpc_message(message in prop::collection::vec(any::<u8>(), 0..256)) {
        untrusted::grpc_messages(&message);
    }

    #[test]
    fn config_files_resolve_or_are_refused(file in config_file()) {
        untrusted::config_file(&file);
    }

    #[test]
    fn texts_are_cut_as_the_whole_text_would_be(
        words in prop::collection::vec(
            "([a-zA-Z]{1,12}|[0-9]{1,6}|[.,;:!?'\"()-]|é|中文|😀|\u{301}| {1,40}|\n|\\PC)",
            0..120,
        ),
    ) {
        untrusted::truncation(words.concat().as_bytes());
    }

    #[test]
    fn any_bytes_as_a_text_or_token_ids(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        untrusted::truncation(&bytes);
    }
}

/// Every input of the fuzz seed corpus and of the regressions, through its target's check.
#[test]
fn the_fuzz_corpus_and_its_regressions_pass() {
    let fuzz = repo_root().join("fuzz");
    let mut targets: Vec<String> = std::fs::read_dir(fuzz.join("fuzz_targets"))
        .unwrap()
        .map(|entry| {
            entry
                .unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into()
        })
        .collect();
    targets.sort();
    let mut checked: Vec<&str> = untrusted::CHECKS.iter().map(|(name, _)| *name).collect();
    checked.sort();
    assert_eq!(targets, checked, "one fuzz target per check");
    let mut seen = 0;
    for (target, check) in untrusted::CHECKS {
        for folder in ["corpus", "regressions"] {
            let dir = repo_root().join("fuzz").join(folder).join(target);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let input = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| check(&input));
                assert!(outcome.is_ok(), "{} fails its check", path.display());
                seen += 1;
            }
        }
    }
    assert!(seen >= 30, "only {seen} corpus files");
}

/// A body the structured strategy could miss: the sizes right at the limits.
#[test]
fn bodies_at_the_limits() {
    let max = untrusted::LIMITS.max_inputs;
    for inputs in [max, max + 1] {
        untrusted::http_body(&serde_json::to_vec(&json!({ "input": vec!["a"; inputs] })).unwrap());
        untrusted::http_body(
            &serde_json::to_vec(&json!({ "input": vec![vec![1]; inputs] })).unwrap(),
        );
    }
    let ids = untrusted::LIMITS.max_tokens;
    for count in [ids, ids + 1] {
        untrusted::http_body(&serde_json::to_vec(&json!({ "input": vec![7; count] })).unwrap());
    }
}
