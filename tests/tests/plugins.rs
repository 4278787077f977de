//! The plugin loader: the real engine plugins load, broken plugins are refused with clear errors,
//! and a panicking plugin is isolated (the server stays up, the model turns unhealthy).

mod common;

use common::{build_dir, load_document, minilm_dir, minilm_model, Server};
use embedrt_runtime::backend_core::LoadDocument;
use embedrt_runtime::plugin::host::{open_library, PluginError, PluginHost};
use embedrt_runtime::{Backend, BackendError, Batch, ModelCard};
use serde_json::{json, Value};

fn host() -> PluginHost {
    PluginHost::new(vec![build_dir()])
}

fn config(options: Value) -> LoadDocument {
    load_document(&ModelCard::load(&minilm_dir()).unwrap(), options)
}

#[test]
fn real_engine_plugins_load_and_embed() {
    for engine in ["onnx", "candle"] {
        let mut backend = host().load_model(engine, &config(Value::Null)).unwrap();
        assert_eq!(backend.name(), engine);
        assert_eq!(backend.capabilities().hidden_size, 384);
        let batch = Batch::from_sequences([(&[101, 7592, 102][..], 0), (&[101, 102][..], 0)]);
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
    let dir = common::TempDir::new("not-a-library");
    let path = dir.0.join(PluginHost::file_name("fake").unwrap());
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
    let ok = Batch::from_sequences([(&[1, 2, 3][..], 0)]);
    let first = backend.embed(&ok).unwrap();
    let err = backend
        .embed(&Batch::from_sequences([(&[1, 7][..], 0)]))
        .unwrap_err();
    assert!(
        matches!(&err, BackendError::Unhealthy(m) if m.contains("panicked")),
        "{err}"
    );
    // After a panic the model stays marked unhealthy.
    assert!(matches!(
        backend.embed(&ok),
        Err(BackendError::Unhealthy(_))
    ));
    assert!(backend.health().is_err());
    // A fresh model from the same plugin is fine and deterministic.
    let mut fresh = host().load_model("echo", &config(Value::Null)).unwrap();
    assert_eq!(fresh.embed(&ok).unwrap(), first);
}

#[test]
fn a_panicking_plugin_does_not_take_the_server_down() {
    let models = minilm_model("fragile", "echo", "options = { panic_on_token = 7 }")
        + &minilm_model("sturdy", "echo", "");
    let mut server = Server::start("", &models);
    let client = reqwest::blocking::Client::new();
    let post = |model: &str, input: Value| {
        client
            .post(format!("{}/v1/embeddings", server.url))
            .json(&json!({ "model": model, "input": input }))
            .send()
            .unwrap()
    };
    assert_eq!(post("fragile", json!("hello")).status(), 200);
    let response = post("fragile", json!([101, 7, 102]));
    assert_eq!(response.status(), 503);
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
        503,
        "the model stays unhealthy"
    );
    assert_eq!(
        post("sturdy", json!("hello")).status(),
        200,
        "other models still serve"
    );
    let ready = client.get(format!("{}/ready", server.url)).send().unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.json::<Value>().unwrap()["models"], json!(["fragile"]));
    assert!(server.is_running());
}

#[test]
fn a_model_that_fails_to_load_stops_startup_with_a_clear_error() {
    let server = Server::spawn("", &minilm_model("broken", "bad-abi", ""));
    let (code, log) = server.wait_exit(std::time::Duration::from_secs(60));
    assert_eq!(code, Some(1));
    assert!(log.contains("ABI 99.0"), "{log}");
}
