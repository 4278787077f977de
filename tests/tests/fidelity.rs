//! Both engines against sentence-transformers' all-MiniLM-L6-v2 output: directly, and through the
//! HTTP API of a running server.

mod common;

use common::{cosine, load_document, minilm_dir, minilm_expected, minilm_model, Server};
use embedrt_runtime::backend_core::guest::BackendPlugin;
use embedrt_runtime::backend_core::{DType, LoadDocument};
use embedrt_runtime::postprocess::l2_normalize;
use embedrt_runtime::tokenize::TextTokenizer;
use embedrt_runtime::{Backend, Batch, ModelCard};
use serde_json::{json, Value};

const MIN_COSINE: f32 = 0.9999;
/// What f16 and bf16 must reach (the bar for GPU engines).
const HALF_MIN_COSINE: f32 = 0.999;

fn engine_config() -> LoadDocument {
    load_document(&ModelCard::load(&minilm_dir()).unwrap(), Value::Null)
}

#[test]
fn tokenizer_matches_sentence_transformers() {
    let card = ModelCard::load(&minilm_dir()).unwrap();
    assert_eq!(
        card.max_tokens, 256,
        "the sentence-transformers limit, not tokenizer.json's 128"
    );
    let tokenizer = TextTokenizer::load(&card.path, card.max_tokens, card.vocab_size).unwrap();
    let expected = minilm_expected();
    for (text, ids) in expected.texts.iter().zip(&expected.token_ids) {
        assert_eq!(
            &tokenizer.encode(text, true).unwrap(),
            ids,
            "token ids of {text:?}"
        );
    }
}

/// Checks `backend` against the reference at `min_cosine`, and that an input alone gives the
/// vector it gets in a padded batch (cosine above `padding_cosine`).
fn check_engine(mut backend: Box<dyn Backend>, min_cosine: f32, padding_cosine: f32) {
    let expected = minilm_expected();
    let batch = Batch::from_sequences(expected.token_ids.iter().map(|ids| (ids.as_slice(), 0)));
    let embeddings = backend.embed(&batch).unwrap();
    assert_eq!(embeddings.rows(), expected.texts.len());
    for (i, want) in expected.embeddings.iter().enumerate() {
        let mut got = embeddings.row(i).to_vec();
        l2_normalize(&mut got);
        let similarity = cosine(&got, want);
        assert!(
            similarity >= min_cosine,
            "text {i} ({:?}): cosine {similarity}",
            expected.texts[i]
        );
    }
    // One sequence alone gives the same vector as inside the padded batch.
    let longest = (0..batch.len())
        .max_by_key(|&i| batch.ids(i).len())
        .unwrap();
    let shortest = (0..batch.len())
        .min_by_key(|&i| batch.ids(i).len())
        .unwrap();
    let alone = backend
        .embed(&Batch::from_sequences([(batch.ids(shortest), 0)]))
        .unwrap();
    assert!(
        cosine(alone.row(0), embeddings.row(shortest)) > padding_cosine,
        "padding changed the result"
    );
    assert_ne!(longest, shortest);
}

#[test]
fn onnx_engine_matches_reference() {
    check_engine(
        Box::new(embedrt_onnx::OnnxBackend::load(&engine_config()).unwrap()),
        MIN_COSINE,
        0.99999,
    );
}

#[test]
fn candle_engine_matches_reference() {
    check_engine(
        Box::new(embedrt_candle::CandleBackend::load(&engine_config()).unwrap()),
        MIN_COSINE,
        0.99999,
    );
}

/// The f16 and bf16 paths a GPU runs (16-bit masks, softmax and matmuls), on the CPU.
#[test]
fn candle_engine_in_half_precision_matches_reference() {
    for dtype in [DType::F16, DType::Bf16] {
        let mut document = engine_config();
        document.settings.dtype = Some(dtype);
        let backend = embedrt_candle::CandleBackend::load(&document).unwrap();
        assert_eq!(backend.capabilities().dtype, Some(dtype));
        check_engine(Box::new(backend), HALF_MIN_COSINE, HALF_MIN_COSINE);
    }
}

#[test]
fn both_engines_match_reference_over_http() {
    let models =
        minilm_model("minilm-onnx", "onnx", "") + &minilm_model("minilm-candle", "candle", "");
    let server = Server::start("", &models);
    let expected = minilm_expected();
    let client = reqwest::blocking::Client::new();
    for model in ["minilm-onnx", "minilm-candle"] {
        let response: Value = client
            .post(format!("{}/v1/embeddings", server.url))
            .json(&json!({ "model": model, "input": expected.texts }))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(response["model"], model, "{response}");
        let data = response["data"].as_array().unwrap();
        assert_eq!(data.len(), expected.texts.len());
        for (i, item) in data.iter().enumerate() {
            assert_eq!(item["index"], i);
            let got: Vec<f32> = serde_json::from_value(item["embedding"].clone()).unwrap();
            let similarity = cosine(&got, &expected.embeddings[i]);
            assert!(
                similarity >= MIN_COSINE,
                "{model}, text {i}: cosine {similarity}"
            );
        }
        let tokens: usize = expected.token_ids.iter().map(Vec::len).sum();
        assert_eq!(response["usage"]["prompt_tokens"], tokens);
        assert_eq!(response["usage"]["total_tokens"], tokens);
    }
}
