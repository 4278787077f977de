//! The plugin loader: the real engine plugins load, broken plugins are refused with clear errors,
//! and a panicking plugin is isolated (the server stays up, the model turns unhealthy).

use std::time::Duration;

use embedrt_runtime::backend_core::{BackendSettings, DType, Device, FilesQuery, LoadDocument};
use embedrt_runtime::plugin::{open_library, PluginError, PluginHost};
use embedrt_runtime::{AdapterId, Backend, BackendError, Batch};
use embedrt_testkit::minilm;
use serde_json::{json, Value};

use crate::common::{build_dir, load_document, max_abs_diff, ok, Exit, Model, Server, TempDir};

fn host() -> PluginHost {
    PluginHost::new(vec![build_dir()])
}

fn config(options: Value) -> LoadDocument {
    load_document(&minilm::card(), options)
}

/// A batch of `sequences` on the base weights.
fn batch(sequences: &[&[u32]]) -> Batch {
    Batch::from_sequences(sequences.iter().map(|ids| (*ids, AdapterId::BASE)))
}

#[test]
fn real_engine_plugins_load_and_embed() {
    for engine in ["onnx", "candle"] {
        let mut backend = host().load_model(engine, &config(Value::Null)).unwrap();
        assert_eq!(backend.name(), engine);
        assert_eq!(backend.capabilities().hidden_size, 384);
        assert_eq!(
            backend.capabilities().dtype,
            Some(DType::F32),
            "ABI 1.1's description carries the dtype"
        );
        let batch = batch(&[&[101, 7592, 102], &[101, 102]]);
        let embeddings = backend.embed(&batch).unwrap();
        assert_eq!((embeddings.rows(), embeddings.dim), (2, 384));
        let tokens = backend.embed_tokens(&batch).unwrap();
        assert_eq!(tokens.rows(), 5);
        backend.health().unwrap();
    }
}

#[test]
fn wrong_abi_major_is_refused() {
    let err = host().open("bad-abi").unwrap_err();
    assert!(
        matches!(err, PluginError::AbiMismatch { major: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("ABI 99.0"), "{err}");
}

#[test]
fn library_without_entry_symbol_is_refused() {
    let err = host().open("no-entry").unwrap_err();
    assert!(matches!(err, PluginError::MissingEntry { .. }), "{err}");
    assert!(err.to_string().contains("embedrt_plugin_entry_v1"), "{err}");
}

#[test]
fn a_file_that_is_no_library_is_refused() {
    let dir = TempDir::new("not-a-library");
    let path = dir.path().join(PluginHost::file_name("fake").unwrap());
    std::fs::write(&path, b"not an ELF file").unwrap();
    assert!(matches!(open_library(&path), Err(PluginError::Open { .. })));
}

#[test]
fn unknown_engine_and_bad_options_are_load_errors() {
    let err = host()
        .load_model("nonexistent", &config(Value::Null))
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("embedrt_plugin_nonexistent"),
        "{err}"
    );
    let err = host()
        .load_model("onnx", &config(json!({ "no_such_option": 1 })))
        .err()
        .unwrap();
    assert!(
        matches!(&err, BackendError::Load(m) if m.contains("no_such_option")),
        "{err}"
    );
}

#[test]
fn a_panicking_plugin_is_isolated() {
    let mut backend = host()
        .load_model("echo", &config(json!({ "panic_on_token": 7 })))
        .unwrap();
    let fine = batch(&[&[1, 2, 3]]);
    let first = backend.embed(&fine).unwrap();
    let err = backend.embed(&batch(&[&[1, 7]])).unwrap_err();
    assert!(
        matches!(&err, BackendError::Unhealthy(m) if m.contains("panicked")),
        "{err}"
    );
    // After a panic the model stays marked unhealthy.
    assert!(matches!(
        backend.embed(&fine),
        Err(BackendError::Unhealthy(_))
    ));
    assert!(backend.health().is_err());
    // A fresh model from the same plugin is fine and deterministic.
    let mut fresh = host().load_model("echo", &config(Value::Null)).unwrap();
    assert_eq!(fresh.embed(&fine).unwrap(), first);
}

#[test]
fn a_panicking_plugin_does_not_take_the_server_down() {
    let mut server = Server::builder()
        .model(
            Model::minilm("fragile")
                .on("echo")
                .option("panic_on_token", 7),
        )
        .model(Model::minilm("sturdy").on("echo"))
        .start();
    let post = |model: &str, input: Value| server.embed(json!({ "model": model, "input": input }));
    assert_eq!(post("fragile", json!("hello")).status(), 200);
    let response = post("fragile", json!([101, 7, 102]));
    assert_eq!(response.status(), 500, "the request that killed it fails");
    let body: Value = response.json().unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("panicked"),
        "{body}"
    );
    assert_eq!(
        post("fragile", json!("hello")).status(),
        200,
        "the model was loaded again and serves"
    );
    assert_eq!(
        post("sturdy", json!("hello")).status(),
        200,
        "other models still serve"
    );
    assert_eq!(server.get("/ready").status(), 200);
    assert!(server.is_running());
}

#[test]
fn a_model_that_fails_to_load_stops_startup_with_a_clear_error() {
    let Exit { code, log } = Server::builder()
        .model(Model::minilm("broken").on("bad-abi"))
        .run_to_exit();
    assert_eq!(code, Some(1));
    assert!(log.contains("ABI 99.0"), "{log}");
}

/// The vector the `abi-1-0` test plugin computes for `ids`, L2-normalized.
fn abi_1_0_vector(ids: &[u32], hidden: usize) -> Vec<f32> {
    let sum: u64 = ids.iter().map(|&id| u64::from(id)).sum();
    let mut v: Vec<f32> = (0..hidden)
        .map(|j| 1.0 + ((sum + j as u64) % 7) as f32)
        .collect();
    embedrt_runtime::postprocess::l2_normalize(&mut v);
    v
}

#[test]
fn a_plugin_built_against_abi_1_0_loads_on_this_host() {
    let plugin = host().open("abi-1-0").unwrap();
    assert_eq!((plugin.name(), plugin.abi_minor()), ("abi-1-0", 0));
    let files = plugin
        .files(&FilesQuery::new(BackendSettings::default()))
        .unwrap();
    assert!(
        !files.alternatives.is_empty(),
        "a 1.0 plugin gets the default weight list"
    );
    let mut backend = host().load_model("abi-1-0", &config(Value::Null)).unwrap();
    let caps = backend.capabilities().clone();
    assert_eq!(
        (caps.hidden_size, caps.max_input_tokens, caps.dtype),
        (384, 256, None)
    );
    let batch = batch(&[&[101, 7592, 102], &[101, 102]]);
    let pooled = backend.embed(&batch).unwrap();
    for i in 0..2 {
        let mut row = pooled.row(i).to_vec();
        embedrt_runtime::postprocess::l2_normalize(&mut row);
        assert_eq!(row, abi_1_0_vector(batch.ids(i), 384));
    }
    backend.health().unwrap();

    // A 1.0 plugin cannot be told a device or dtype, so asking for one is refused, not ignored.
    let mut document = config(Value::Null);
    document.settings.dtype = Some(DType::F32);
    let err = host().load_model("abi-1-0", &document).err().unwrap();
    assert!(err.to_string().contains("speaks ABI 1.0"), "{err}");

    // Served over HTTP next to a 1.1 plugin.
    let server = Server::builder()
        .model(Model::minilm("old").on("abi-1-0"))
        .model(Model::minilm("new").on("echo"))
        .start();
    let body = ok(server.embed(json!({ "model": "old", "input": [[101, 7592, 102]] })));
    let got: Vec<f32> = serde_json::from_value(body["data"][0]["embedding"].clone()).unwrap();
    let want = abi_1_0_vector(&[101, 7592, 102], 384);
    assert!(max_abs_diff(&got, &want) < 1e-6, "{body}");
    let models = server.models();
    assert_eq!(models["data"][0]["variants"][0]["dtype"], Value::Null);
    assert_eq!(models["data"][1]["variants"][0]["dtype"], "f32");
}

#[test]
fn backends_refuse_devices_and_dtypes_they_cannot_run() {
    let mut on_gpu = config(Value::Null);
    on_gpu.settings.device = Device::Cuda(0);
    // Each says why in its own terms: CPU only, no CUDA provider in this library, no CUDA in
    // this build of the plugin.
    for (backend, says) in [
        (
            "echo",
            "the echo backend runs on the CPU only; device \"cuda:0\"",
        ),
        ("onnx", "CUDAExecutionProvider"),
        (
            "candle",
            "device \"cuda:0\": this candle plugin was built without CUDA",
        ),
    ] {
        let err = host().load_model(backend, &on_gpu).err().unwrap();
        assert!(err.to_string().contains(says), "{backend}: {err}");
    }
    let mut int8 = config(Value::Null);
    int8.settings.dtype = Some(DType::Int8);
    let err = host().load_model("candle", &int8).err().unwrap();
    assert!(
        err.to_string()
            .contains("the candle backend has no int8; int8 runs on the onnx backend"),
        "{err}"
    );

    // In a config file, the server stops at startup and names the model, variant and reason.
    let Exit { code, log } = Server::builder()
        .model(Model::minilm("gpu").on("onnx").set("device", "cuda:1"))
        .run_to_exit();
    assert_eq!(code, Some(1));
    assert!(
        log.contains("model \"gpu\"") && log.contains("CUDAExecutionProvider"),
        "{log}"
    );
}

#[test]
fn backend_log_lines_reach_the_server_log() {
    let server = Server::builder()
        .model(Model::minilm("ort").on("onnx"))
        .model(Model::minilm("echo").on("echo"))
        .start();
    server.signal(libc::SIGTERM);
    let Exit { code, log } = server.wait_exit(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{log}");
    for line in ["ONNX Runtime session ready", "echo model ready"] {
        assert!(
            log.lines()
                .any(|l| l.contains(line) && l.contains("embedrt_plugin")),
            "{line:?} is not in the server's log:\n{log}"
        );
    }
}
