//! The server's answers against the fixtures' reference outputs: the runtime's tokenization
//! against the reference tokenizers, and both engines' vectors through the HTTP API. (Each
//! engine's vectors in-process are its own crate's tests, `backends/<name>/tests`.)

use embedrt_runtime::tokenize::TextTokenizer;
use embedrt_testkit::golden;
use embedrt_testkit::jina::{fixture, sequence, tokenizer};
use embedrt_testkit::minilm;
use serde_json::json;

use crate::common::{assert_each_pair, cosine, ok, Model, Server};

const MIN_COSINE: f32 = 0.9999;

#[test]
fn tokenizer_matches_sentence_transformers() {
    let card = minilm::card();
    assert_eq!(
        card.max_input_tokens, 256,
        "the sentence-transformers limit, not tokenizer.json's 128"
    );
    let tokenizer =
        TextTokenizer::load(&card.path, card.max_input_tokens, card.vocab_size).unwrap();
    let expected = golden::minilm();
    assert_each_pair(&expected.texts, &expected.token_ids, |_, text, ids| {
        assert_eq!(
            &tokenizer.encode(text, true).unwrap(),
            ids,
            "token ids of {text:?}"
        );
    });
}

#[test]
fn jina_token_ids_match_the_official_tokenizer_for_every_task() {
    let (card, expected) = fixture("");
    let tokenizer = tokenizer(&card);
    for (task, want) in &expected.token_ids {
        assert_each_pair(&expected.texts, want, |_, text, want| {
            let (ids, _) = sequence(&card, &tokenizer, Some(task), text);
            assert_eq!(&ids, want, "task {task}, text {text:?}");
        });
    }
    assert_eq!(expected.token_ids.len(), 6, "five adapters and none");
}

#[test]
fn both_engines_match_reference_over_http() {
    let server = Server::builder()
        .model(Model::minilm("minilm-onnx").on("onnx"))
        .model(Model::minilm("minilm-candle").on("candle"))
        .start();
    let expected = golden::minilm();
    for model in ["minilm-onnx", "minilm-candle"] {
        let response = ok(server.embed(json!({ "model": model, "input": expected.texts })));
        assert_eq!(response["model"], model, "{response}");
        let data = response["data"].as_array().unwrap();
        assert_each_pair(data, &expected.embeddings, |i, item, want| {
            assert_eq!(item["index"], i);
            let got: Vec<f32> = serde_json::from_value(item["embedding"].clone()).unwrap();
            let similarity = cosine(&got, want);
            assert!(
                similarity >= MIN_COSINE,
                "{model}, text {i}: cosine {similarity}"
            );
        });
        let tokens: usize = expected.token_ids.iter().map(Vec::len).sum();
        assert_eq!(response["usage"]["prompt_tokens"], tokens);
        assert_eq!(response["usage"]["total_tokens"], tokens);
    }
}
