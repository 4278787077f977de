//! GPU variants on a machine without a GPU build, a GPU or TensorRT: startup (and a reload) stops
//! with an error that names what is missing and where it looked, and never falls back to the CPU.

use serde_json::json;

use crate::common::{build_dir, header, Exit, Model, Server};

/// Starts a server with `models`, expecting it to refuse; returns its log.
fn refused(models: Vec<Model>) -> String {
    let builder = models
        .into_iter()
        .fold(Server::builder(), |builder, model| builder.model(model));
    let Exit { code, log } = builder.run_to_exit();
    assert_eq!(code, Some(1), "{log}");
    log
}

fn assert_says(log: &str, parts: &[&str]) {
    for part in parts {
        assert!(log.contains(part), "the log does not say {part:?}:\n{log}");
    }
}

#[test]
fn onnx_on_cuda_names_the_library_and_the_missing_provider() {
    let log = refused(vec![Model::minilm("m").on("onnx").set("device", "cuda")]);
    assert_says(
        &log,
        &[
            "variant \"onnx\"",
            "libonnxruntime.so",
            "CUDAExecutionProvider",
            "scripts/setup.sh --gpu",
        ],
    );
}

#[test]
fn tensorrt_builds_beside_the_others_and_refuses_without_tensorrt() {
    let plugin = build_dir().join("libembedrt_plugin_tensorrt.so");
    assert!(plugin.is_file(), "{} is not built", plugin.display());
    let log = refused(vec![Model::minilm("m")
        .on("tensorrt")
        .set("device", "cuda:0")]);
    assert_says(
        &log,
        &[
            "tensorrt backend",
            "libonnxruntime.so",
            "TensorrtExecutionProvider",
            "libnvinfer.so.10",
        ],
    );
    let log = refused(vec![Model::jina("j").on("tensorrt")]);
    assert_says(&log, &["runs on an NVIDIA GPU", "device = \"cuda\""]);
}

#[test]
fn candle_on_cuda_says_the_plugin_has_no_cuda_and_how_to_build_one() {
    for model in [
        Model::minilm("m")
            .on("candle")
            .set("device", "cuda")
            .set("dtype", "f16"),
        Model::jina("j").on("candle").set("device", "cuda:1"),
    ] {
        let log = refused(vec![model]);
        assert_says(
            &log,
            &["built without CUDA", "scripts/build-cuda-plugin.sh"],
        );
    }
}

#[test]
fn a_reload_to_a_gpu_variant_is_refused_and_the_cpu_one_keeps_serving() {
    let mut server = Server::builder()
        .model(Model::minilm("m").on("candle"))
        .start();
    server.rewrite_models(&[Model::minilm("m").on("onnx").set("device", "cuda")]);
    let response = server.post("/admin/reload", &json!({}));
    assert_eq!(response.status().as_u16(), 400);
    let body: serde_json::Value = response.json().unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert_says(message, &["CUDAExecutionProvider", "unchanged"]);
    let response = server.embed(json!({ "model": "m", "input": "still here" }));
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(header(&response, "x-embedrt-backend"), "candle");
}
