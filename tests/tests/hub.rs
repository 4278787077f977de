//! Models named by hub id: downloaded through `hf-hub` from `HF_ENDPOINT` (here a small file server
//! on loopback that lists and serves the tiny jina fixture the way the hub does) into `HF_HOME`.
//! Each backend asks for its own files, so one model served by two backends gets both sets; a
//! companion file the repository lists but cannot deliver, and anything missing offline, is an
//! error that names it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use embedrt_testkit::golden;
use serde_json::{json, Value};

use crate::common::server::ServerBuilder;
use crate::common::{jina_dir, max_abs_diff, ok, Exit, Model, Server, TempDir, Variant};

const REPO: &str = "jinaai/jina-embeddings-v3";

/// Serves `GET /{owner}/{name}/resolve/{revision}/{file}` from the fixture folder, with the
/// headers `hf-hub` reads (`ETag`, `X-Repo-Commit`) and byte ranges.
async fn serve_file(
    UrlPath((owner, name, _revision, file)): UrlPath<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if format!("{owner}/{name}") != REPO || file.contains("..") {
        return StatusCode::NOT_FOUND.into_response();
    }
    let path: PathBuf = jina_dir().join(&file);
    let Ok(bytes) = std::fs::read(&path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let size = bytes.len();
    let etag = format!(
        "\"{:x}-{size}\"",
        bytes
            .iter()
            .fold(0u64, |h, &b| h.wrapping_mul(31).wrapping_add(b as u64))
    );
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="));
    let (status, start, end) = match range.and_then(|r| r.split_once('-')) {
        Some((start, end)) => {
            let start: usize = start.parse().unwrap_or(0);
            let end = end
                .parse::<usize>()
                .map_or(size.saturating_sub(1), |e| e.min(size.saturating_sub(1)));
            (StatusCode::PARTIAL_CONTENT, start, end)
        }
        None => (StatusCode::OK, 0, size.saturating_sub(1)),
    };
    let body = bytes.get(start..=end).unwrap_or_default().to_vec();
    (
        status,
        [
            (header::ETAG, etag),
            (
                header::HeaderName::from_static("x-repo-commit"),
                "0123456789abcdef0123456789abcdef01234567".to_string(),
            ),
            (header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}")),
        ],
        body,
    )
        .into_response()
}

/// The fixture's files, relative to its folder, as the hub's listing names them.
fn fixture_files(dir: &std::path::Path, prefix: &str, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        if entry.file_type().unwrap().is_dir() {
            fixture_files(&entry.path(), &format!("{name}/"), out);
        } else {
            out.push(name);
        }
    }
}

/// Answers `GET /api/models/{owner}/{name}/revision/{revision}` as the hub does: the
/// repository's files (`siblings`) and commit, plus the `phantoms` that are listed but cannot be
/// downloaded.
async fn list_files(
    State(phantoms): State<Vec<String>>,
    UrlPath((owner, name, _revision)): UrlPath<(String, String, String)>,
) -> Response {
    if format!("{owner}/{name}") != REPO {
        return StatusCode::NOT_FOUND.into_response();
    }
    let mut files = Vec::new();
    fixture_files(&jina_dir(), "", &mut files);
    files.extend(phantoms);
    let siblings: Vec<Value> = files.iter().map(|f| json!({ "rfilename": f })).collect();
    Json(json!({ "siblings": siblings, "sha": "0123456789abcdef0123456789abcdef01234567" }))
        .into_response()
}

/// Starts the file server on a free loopback port, on its own thread.
fn start_file_server() -> SocketAddr {
    start_file_server_listing(&[])
}

/// Starts the file server, listing `phantoms` too (files it cannot deliver).
fn start_file_server_listing(phantoms: &[&str]) -> SocketAddr {
    let phantoms: Vec<String> = phantoms.iter().map(|p| p.to_string()).collect();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let app = axum::Router::new()
                .route(
                    "/{owner}/{name}/resolve/{revision}/{*file}",
                    get(serve_file),
                )
                .route(
                    "/api/models/{owner}/{name}/revision/{revision}",
                    get(list_files),
                )
                .with_state(phantoms);
            axum::serve(tokio::net::TcpListener::from_std(listener).unwrap(), app)
                .await
                .unwrap();
        });
    });
    address
}

/// A model named `name` from the hub repository [`REPO`].
fn hub_model(name: &str) -> Model {
    Model::named(name).path(Path::new(REPO))
}

/// A server whose `hf-hub` downloads from the file server at `address` into the cache `home`.
fn from_hub(address: SocketAddr, home: &TempDir) -> ServerBuilder {
    Server::builder()
        .env("HF_ENDPOINT", format!("http://{address}"))
        .env("HF_HOME", home.path())
}

/// A server with the cache `home` and no network (`HF_HUB_OFFLINE`).
fn offline(home: &TempDir) -> ServerBuilder {
    Server::builder()
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HOME", home.path())
}

/// The official output for the first text with task text-matching at 32 dimensions.
fn official_text_matching() -> (String, Vec<f32>) {
    let expected = golden::jina(&jina_dir());
    let case = expected
        .cases
        .iter()
        .find(|c| c.task.as_deref() == Some("text-matching") && c.dimensions == 32)
        .unwrap();
    (expected.texts[0].clone(), case.embeddings[0].clone())
}

#[test]
fn one_hub_model_served_by_two_backends_gets_the_files_of_both() {
    let address = start_file_server();
    let home = TempDir::new("hf-home-ab");
    let server = from_hub(address, &home)
        .model(
            hub_model("jina")
                .variant(Variant::on("candle").named("rust"))
                .variant(Variant::on("onnx").named("ort")),
        )
        .start();
    let (text, want) = official_text_matching();
    let mut variants = std::collections::HashSet::new();
    for user in 0..20 {
        let response = server.embed(
            json!({ "model": "jina", "input": text, "task": "text-matching", "user": format!("u{user}") }),
        );
        assert_eq!(response.status(), 200);
        let variant = crate::common::header(&response, "x-embedrt-variant");
        let body = ok(response);
        let got: Vec<f32> = serde_json::from_value(body["data"][0]["embedding"].clone()).unwrap();
        let diff = max_abs_diff(&got, &want);
        assert!(diff <= 1e-4, "{variant}: {diff}");
        variants.insert(variant);
    }
    assert_eq!(variants.len(), 2, "both variants answered: {variants:?}");
}

#[test]
fn a_listed_companion_that_cannot_be_had_is_an_error_that_names_it() {
    let address = start_file_server_listing(&["onnx/model.onnx_data"]);
    let home = TempDir::new("hf-home-companion");
    let Exit { code, log } = from_hub(address, &home)
        .model(hub_model("jina").on("onnx"))
        .run_to_exit();
    assert_eq!(code, Some(1));
    assert!(
        log.contains("onnx/model.onnx_data, which the onnx backend needs"),
        "{log}"
    );
}

#[test]
fn a_hub_id_downloads_into_the_cache_and_serves_on_both_engines() {
    let address = start_file_server();
    let home = TempDir::new("hf-home");
    let server = from_hub(address, &home)
        .model(hub_model("jina-candle").on("candle"))
        .model(hub_model("jina-onnx").on("onnx"))
        .start();

    let (text, want) = official_text_matching();
    for model in ["jina-candle", "jina-onnx"] {
        let body =
            ok(server.embed(json!({ "model": model, "input": text, "task": "text-matching" })));
        let got: Vec<f32> = serde_json::from_value(body["data"][0]["embedding"].clone()).unwrap();
        let diff = max_abs_diff(&got, &want);
        assert!(diff <= 1e-4, "{model}: {diff}");
    }
    drop(server);

    // The files are now in the standard cache layout, and a second start needs no network.
    let snapshot = home
        .path()
        .join("hub/models--jinaai--jina-embeddings-v3/snapshots");
    assert!(
        std::fs::read_dir(&snapshot).unwrap().next().is_some(),
        "{}",
        snapshot.display()
    );
    offline(&home).model(hub_model("jina").on("candle")).start();
}

#[test]
fn offline_without_the_files_names_what_is_missing() {
    let home = TempDir::new("hf-empty");
    let Exit { code, log } = offline(&home)
        .model(hub_model("jina").on("onnx"))
        .run_to_exit();
    assert_eq!(code, Some(1));
    for needle in [
        REPO,
        "config.json",
        "tokenizer.json",
        "onnx/model.onnx",
        "HF_HUB_OFFLINE",
    ] {
        assert!(log.contains(needle), "{needle} not in: {log}");
    }
}
