//! `dtype = "int8"` on the onnx engine, served and reported through the HTTP API. (The int8
//! graphs' quality gates are the onnx backend's own tests, `backends/onnx/tests`.)

use embedrt_testkit::golden;
use serde_json::json;

use crate::common::{assert_each_pair, cosine, embeddings_of, ok, Model, Server};

/// The lowest cosine to sentence-transformers' vectors int8 must keep.
const MIN_COSINE: f32 = 0.98;

#[test]
fn dtype_int8_is_served_and_reported_over_http() {
    let server = Server::builder()
        .model(Model::minilm("m8").on("onnx").set("dtype", "int8"))
        .start();
    let expected = golden::minilm();
    let body = ok(server.embed(json!({ "model": "m8", "input": expected.texts })));
    assert_each_pair(
        embeddings_of(&body),
        &expected.embeddings,
        |i, got, want| {
            let similarity = cosine(&got, want);
            assert!(similarity >= MIN_COSINE, "text {i}: cosine {similarity}");
        },
    );
    let models = server.models();
    assert_eq!(
        models["data"][0]["variants"][0]["dtype"], "int8",
        "{models}"
    );
}
