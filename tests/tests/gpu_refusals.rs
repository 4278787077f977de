//! GPU variants on a machine without a GPU build, a GPU or TensorRT: startup (and a reload) stops
//! with an error that names what is missing and where it looked, and never falls back to the CPU.

mod common;

use common::{jina_model, minilm_model, serve_until_exit, Server};
use reqwest::blocking::Client;
use serde_json::{json, Value};

/// Starts a server with `models`, expecting it to refuse; returns its log.
fn refused(models: &str) -> String {
    let (code, log) = serve_until_exit(models, &[]);
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
    let log = refused(&minilm_model("m", "onnx", "device = \"cuda\""));
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
    let plugin = common::build_dir().join("libembedrt_plugin_tensorrt.so");
    assert!(plugin.is_file(), "{} is not built", plugin.display());
    let log = refused(&minilm_model("m", "tensorrt", "device = \"cuda:0\""));
    assert_says(
        &log,
        &[
            "tensorrt backend",
            "libonnxruntime.so",
            "TensorrtExecutionProvider",
            "libnvinfer.so.10",
        ],
    );
    let log = refused(&jina_model("j", "tensorrt"));
    assert_says(&log, &["runs on an NVIDIA GPU", "device = \"cuda\""]);
}

#[test]
fn candle_on_cuda_says_the_plugin_has_no_cuda_and_how_to_build_one() {
    for model in [
        minilm_model("m", "candle", "device = \"cuda\"\ndtype = \"f16\""),
        jina_model("j", "candle") + "device = \"cuda:1\"\n",
    ] {
        let log = refused(&model);
        assert_says(
            &log,
            &["built without CUDA", "scripts/build-cuda-plugin.sh"],
        );
    }
}

#[test]
fn a_reload_to_a_gpu_variant_is_refused_and_the_cpu_one_keeps_serving() {
    let server = Server::start("", &minilm_model("m", "candle", ""));
    server.rewrite_models(&minilm_model("m", "onnx", "device = \"cuda\""));
    let client = Client::new();
    let response = client
        .post(format!("{}/admin/reload", server.url))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert_says(message, &["CUDAExecutionProvider", "unchanged"]);
    let response = client
        .post(format!("{}/v1/embeddings", server.url))
        .json(&json!({ "model": "m", "input": "still here" }))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["x-embedrt-backend"], "candle");
}
