//! Reloading the config file without a restart, under load: a model moves from onnx to candle
//! (SIGHUP) and back (admin endpoint), a broken config changes nothing, and not one of the
//! concurrent clients' requests fails.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{concurrently, minilm_model, Server};
use reqwest::blocking::Client;
use serde_json::{json, Value};

const CLIENTS: usize = 40;

fn reload_by_endpoint(server: &Server, key: Option<&str>) -> (u16, Value) {
    let mut request = Client::new().post(format!("{}/admin/reload", server.url));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().unwrap();
    (response.status().as_u16(), response.json().unwrap())
}

fn sighup(server: &Server) {
    server.signal(libc::SIGHUP);
}

#[test]
fn engines_swap_under_load_without_a_failed_request() {
    let server = Server::start("admin_key = \"secret\"", &minilm_model("m", "onnx", ""));
    let stop = AtomicBool::new(false);
    let engines_seen = Mutex::new(Vec::<String>::new());
    let last_engine = || {
        engines_seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    };
    let wait_for = |engine: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while last_engine() != engine {
            assert!(
                Instant::now() < deadline,
                "the served engine never became {engine}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    let results = concurrently(CLIENTS + 1, |i| {
        if i == CLIENTS {
            // The conductor: swap engines while the clients run (about 20 s in all).
            std::thread::sleep(Duration::from_secs(4));
            server.rewrite_models(&minilm_model("m", "candle", ""));
            sighup(&server);
            wait_for("candle");
            std::thread::sleep(Duration::from_secs(5));

            // A broken config, by both routes: rejected, nothing changes.
            server.rewrite_models("[[models]]\nname = \"m\"\nbackend = 3\n");
            assert_eq!(
                reload_by_endpoint(&server, None).0,
                401,
                "the admin key is required"
            );
            let (status, body) = reload_by_endpoint(&server, Some("secret"));
            assert_eq!(status, 400, "{body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("unchanged"),
                "{body}"
            );
            sighup(&server);
            std::thread::sleep(Duration::from_secs(2));
            assert_eq!(
                last_engine(),
                "candle",
                "a broken config leaves the running one"
            );

            server.rewrite_models(&minilm_model("m", "onnx", ""));
            let (status, body) = reload_by_endpoint(&server, Some("secret"));
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["loaded"], json!(["m"]));
            wait_for("onnx");
            std::thread::sleep(Duration::from_secs(6));
            stop.store(true, Ordering::Relaxed);
            return Vec::new();
        }
        let client = Client::new();
        let mut outcomes = Vec::new();
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let response = client
                .post(format!("{}/v1/embeddings", server.url))
                .json(&json!({ "model": "m", "input": format!("client {i} request {n}") }))
                .send();
            let outcome = match response {
                Ok(response) if response.status() == 200 => {
                    let engine = response.headers()["x-embedrt-backend"]
                        .to_str()
                        .unwrap()
                        .to_string();
                    let body: Value = response.json().unwrap();
                    let valid = body["data"][0]["embedding"]
                        .as_array()
                        .is_some_and(|v| v.len() == 384);
                    engines_seen.lock().unwrap().push(engine);
                    valid
                        .then_some(())
                        .ok_or_else(|| format!("invalid body {body}"))
                }
                Ok(response) => Err(format!(
                    "status {}: {}",
                    response.status(),
                    response.text().unwrap_or_default()
                )),
                Err(error) => Err(error.to_string()),
            };
            outcomes.push(outcome);
        }
        outcomes
    });

    let outcomes: Vec<_> = results.into_iter().flatten().collect();
    let failures: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        outcomes.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        outcomes.len() > 200,
        "the clients kept sending ({} requests)",
        outcomes.len()
    );
    let seen = engines_seen.into_inner().unwrap();
    let changes = seen.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(
        changes >= 2,
        "onnx -> candle -> onnx, seen {changes} changes"
    );
}
