//! Starting and stopping the real binary: config errors name the key, every shipped config
//! resolves, `--http` and `--grpc` override the config, a public listener needs an admin key or
//! an explicit choice, and SIGTERM lets every accepted request finish.

use std::path::Path;
use std::time::{Duration, Instant};

use embedrt_runtime::config::{AdminAccess, Config, Overrides, Plan};
use serde_json::json;

use crate::common::http::client;
use crate::common::{concurrently, error, repo_root, Exit, Model, Server};

#[test]
fn config_errors_stop_startup_and_name_the_key() {
    let Exit { code, log } = Server::builder()
        .model(Model::minilm("m").on("onnx").set("max_batch", 8))
        .run_to_exit();
    assert_eq!(code, Some(1));
    assert!(log.contains("max_batch"), "{log}");
    let Exit { code, log } = Server::builder()
        .model(
            Model::minilm("m")
                .on("onnx")
                .batching("max_batch_tokens", 0),
        )
        .run_to_exit();
    assert_eq!(code, Some(1));
    assert!(log.contains("models[0].batching.max_batch_tokens"), "{log}");
    let Exit { code, log } = Server::builder()
        .model(Model::minilm("m").set("engine", "onnx"))
        .run_to_exit();
    assert_eq!(code, Some(1));
    assert!(log.contains("engine"), "{log}");
}

/// The config files of the repository: `configs/` and the container image's.
fn shipped_configs() -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("configs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.push(repo_root().join("deploy/docker/embedrt.toml"));
    files.sort();
    files
}

#[test]
fn every_shipped_config_resolves() {
    let files = shipped_configs();
    for path in &files {
        Plan::from_file(path, &Overrides::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    assert!(files.len() >= 3, "configs/ holds the examples: {files:?}");
    // The image listens on every interface, so its admin endpoint must not be open.
    let image = Plan::from_file(
        &repo_root().join("deploy/docker/embedrt.toml"),
        &Overrides::default(),
    )
    .unwrap();
    assert!(!image.server.listeners.http.ip().is_loopback());
    assert_eq!(image.server.access.admin, AdminAccess::Off);
}

#[test]
fn address_flags_override_the_config() {
    let server = Server::builder()
        .model(Model::minilm("m").on("echo"))
        .ports_by_flags()
        .spawn();
    let healthy = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        client()
            .get(format!("{}/health", server.url))
            .send()
            .is_ok_and(|r| r.status() == 200)
    });
    let grpc_port = server.grpc_url.rsplit(':').next().unwrap();
    let grpc = std::net::TcpStream::connect(format!("127.0.0.1:{grpc_port}")).is_ok();
    assert!(healthy, "the server did not listen on the --http address");
    assert!(grpc, "the server did not listen on the --grpc address");
}

#[test]
fn a_public_listener_without_an_admin_key_is_refused_unless_the_config_chooses() {
    // A file whose HTTP API listens on every interface, without an admin key: refused at
    // startup, naming the key.
    let Exit { code, log } = Server::builder()
        .model(Model::minilm("m").on("echo"))
        .server("http", "0.0.0.0:1")
        .run_to_exit();
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("server.admin_key") && log.contains("0.0.0.0:1"),
        "{log}"
    );
    // The text of the refusal, resolved in-process: the key and what to do.
    let text = "[server]\nhttp = \"0.0.0.0:8080\"\n[[models]]\nname = \"m\"\npath = \"m\"\nbackend = \"onnx\"\n";
    let err = Config::parse(text)
        .unwrap()
        .resolve(Path::new("/"), &Overrides::default())
        .unwrap_err();
    assert_eq!(err.key(), Some("server.admin_key"));
    for choice in ["admin_key", "admin = \"off\"", "admin = \"open\""] {
        assert!(err.to_string().contains(choice), "{err}");
    }

    // `admin = "off"`: it starts, and the endpoint refuses everyone.
    let off = Server::builder()
        .model(Model::minilm("m").on("echo"))
        .server("admin", "off")
        .start();
    let refused = off.post("/admin/reload", &json!({}));
    assert_eq!(error(refused, 403)["code"], "admin_off");
    // With a key: the key, not one of the same length.
    let keyed = Server::builder()
        .model(Model::minilm("m").on("echo"))
        .server("admin_key", "0123456789")
        .start();
    assert_eq!(keyed.reload(Some("0123456788")).0, 401);
    assert_eq!(keyed.reload(Some("0123456789")).0, 200);
    assert_eq!(keyed.reload(None).0, 401);
}

#[test]
fn sigterm_finishes_accepted_requests_then_exits_cleanly() {
    let server = Server::builder()
        .model(
            Model::minilm("slow")
                .on("echo")
                .option("delay_ms", 400)
                .batching("max_batch_requests", 1),
        )
        .start();
    let results = concurrently(4, |i| {
        if i == 0 {
            // Once the three requests are in (one running, two queued), ask the server to stop.
            let deadline = Instant::now() + Duration::from_secs(30);
            while server.metric("embedrt_queue_depth", &[("model", "slow")]) < 2.0 {
                assert!(Instant::now() < deadline, "the requests never queued");
                std::thread::sleep(Duration::from_millis(10));
            }
            server.signal(libc::SIGTERM);
            return None;
        }
        let response = server.embed(json!({ "model": "slow", "input": format!("in flight {i}") }));
        Some((
            response.status().as_u16(),
            response.json::<serde_json::Value>().unwrap(),
        ))
    });
    for (status, body) in results.into_iter().flatten() {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 384);
    }
    let Exit { code, log } = server.wait_exit(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{log}");
}
