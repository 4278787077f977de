//! Reloading the config file without a restart, under load: a model moves from onnx to candle
//! (SIGHUP) and back (admin endpoint), a broken config changes nothing, and not one of the
//! concurrent clients' requests fails.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::http::client;
use crate::common::{alone, concurrently, header, Model, Server};

const CLIENTS: usize = 40;

fn sighup(server: &Server) {
    server.signal(libc::SIGHUP);
}

#[test]
fn engines_swap_under_load_without_a_failed_request() {
    let _alone = alone(); // 40 clients for 20 s
    let server = Mutex::new(
        Server::builder()
            .server("admin_key", "secret")
            .model(Model::minilm("m").on("onnx"))
            .start(),
    );
    let rewrite = |model: Model| server.lock().unwrap().rewrite_models(&[model]);
    let url = server.lock().unwrap().url.clone();
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
            rewrite(Model::minilm("m").on("candle"));
            sighup(&server.lock().unwrap());
            wait_for("candle");
            std::thread::sleep(Duration::from_secs(5));

            // A broken config, by both routes: rejected, nothing changes.
            rewrite(Model::named("m").set("backend", 3));
            let server_now = server.lock().unwrap();
            assert_eq!(server_now.reload(None).0, 401, "the admin key is required");
            assert_eq!(
                server_now.reload(Some("secreT")).0,
                401,
                "a wrong key of the same length is refused"
            );
            let (status, body) = server_now.reload(Some("secret"));
            assert_eq!(status, 400, "{body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("unchanged"),
                "{body}"
            );
            sighup(&server_now);
            drop(server_now);
            std::thread::sleep(Duration::from_secs(2));
            assert_eq!(
                last_engine(),
                "candle",
                "a broken config leaves the running one"
            );

            rewrite(Model::minilm("m").on("onnx"));
            let (status, body) = server.lock().unwrap().reload(Some("secret"));
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["loaded"], json!(["m"]));
            wait_for("onnx");
            std::thread::sleep(Duration::from_secs(6));
            stop.store(true, Ordering::Relaxed);
            return Vec::new();
        }
        let mut outcomes = Vec::new();
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let response = client()
                .post(format!("{url}/v1/embeddings"))
                .json(&json!({ "model": "m", "input": format!("client {i} request {n}") }))
                .send();
            let outcome = match response {
                Ok(response) if response.status() == 200 => {
                    let engine = header(&response, "x-embedrt-backend");
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
