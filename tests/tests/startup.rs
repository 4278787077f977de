//! Starting and stopping the real binary: config errors name the key, `--http` and `--grpc`
//! override the config, and SIGTERM lets every accepted request finish.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    build_dir, concurrently, free_port, minilm_model, serve_until_exit, spawn_tied, Server, TempDir,
};
use reqwest::blocking::Client;
use serde_json::{json, Value};

#[test]
fn config_errors_stop_startup_and_name_the_key() {
    let model = minilm_model("m", "onnx", "");
    let (code, log) = serve_until_exit(&format!("{model}\nmax_batch = 8\n"), &[]);
    assert_eq!(code, Some(1));
    assert!(log.contains("max_batch"), "{log}");
    let (code, log) = serve_until_exit(
        &format!("{model}\nbatching = {{ max_batch_tokens = 0 }}\n"),
        &[],
    );
    assert_eq!(code, Some(1));
    assert!(log.contains("models[0].batching.max_batch_tokens"), "{log}");
    let (code, log) = serve_until_exit(
        &minilm_model("m", "onnx", "").replace("backend", "engine"),
        &[],
    );
    assert_eq!(code, Some(1));
    assert!(log.contains("engine"), "{log}");
}

#[test]
fn every_example_config_parses() {
    let dir = common::repo_root().join("configs");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            embedrt_runtime::Config::from_file(&path)
                .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            seen += 1;
        }
    }
    assert!(seen >= 2, "configs/ holds the examples");
}

#[test]
fn address_flags_override_the_config() {
    let (port, grpc_port) = (free_port(), free_port());
    let dir = TempDir::new("http-flag");
    let path = dir.0.join("config.toml");
    let config = format!(
        "[server]\nhttp = \"127.0.0.1:1\"\nplugin_dirs = [{:?}]\n{}",
        build_dir().display().to_string(),
        minilm_model("m", "echo", "")
    );
    std::fs::write(&path, config).unwrap();
    let mut command = Command::new(build_dir().join("embedrt"));
    command
        .args(["serve", "--config"])
        .arg(&path)
        .args(["--http", &format!("127.0.0.1:{port}")])
        .args(["--grpc", &format!("127.0.0.1:{grpc_port}")])
        .stderr(Stdio::null());
    let mut child = spawn_tied(command).unwrap();
    let client = Client::new();
    let healthy = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        client
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .is_ok_and(|r| r.status() == 200)
    });
    let grpc = std::net::TcpStream::connect(("127.0.0.1", grpc_port)).is_ok();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(healthy, "the server did not listen on the --http address");
    assert!(grpc, "the server did not listen on the --grpc address");
}

#[test]
fn sigterm_finishes_accepted_requests_then_exits_cleanly() {
    let models = minilm_model(
        "slow",
        "echo",
        "options = { delay_ms = 400 }\nbatching = { max_batch_requests = 1 }",
    );
    let server = Server::start("", &models);
    let url = server.url.clone();
    let results = concurrently(4, |i| {
        if i == 0 {
            // Let the three requests reach the queue, then ask the server to stop.
            std::thread::sleep(Duration::from_millis(150));
            server.signal(libc::SIGTERM);
            return None;
        }
        let response = Client::new()
            .post(format!("{url}/v1/embeddings"))
            .json(&json!({ "model": "slow", "input": format!("in flight {i}") }))
            .send()
            .unwrap();
        Some((
            response.status().as_u16(),
            response.json::<Value>().unwrap(),
        ))
    });
    for (status, body) in results.into_iter().flatten() {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 384);
    }
    let (code, log) = server.wait_exit(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{log}");
}
