//! Several models and engine variants in one process: the traffic split follows the weights,
//! a `user` always lands on the same variant, aliases reach the same deployment, and every
//! response names its variant and engine.

mod common;

use std::collections::HashMap;

use common::{concurrently, cosine, minilm_dir, Server};
use reqwest::blocking::Client;
use serde_json::{json, Value};

fn config() -> String {
    let path = minilm_dir().display().to_string();
    format!(
        r#"
[[models]]
name = "minilm"
aliases = ["mini", "all-MiniLM-L6-v2"]
path = {path:?}
  [[models.variants]]
  name = "ort"
  backend = "onnx"
  weight = 75
  [[models.variants]]
  name = "rust"
  backend = "candle"
  weight = 25

[[models]]
name = "split"
path = {path:?}
  [[models.variants]]
  name = "big"
  backend = "echo"
  weight = 80
  [[models.variants]]
  name = "small"
  backend = "echo"
  weight = 20
"#
    )
}

/// POSTs one request and returns (variant header, backend header, body); every answer names
/// its device too.
fn embed(server: &Server, body: Value) -> (String, String, Value) {
    let response = Client::new()
        .post(format!("{}/v1/embeddings", server.url))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-embedrt-device"], "cpu");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string()
    };
    let (variant, backend) = (header("x-embedrt-variant"), header("x-embedrt-backend"));
    (variant, backend, response.json().unwrap())
}

#[test]
fn traffic_splits_by_weight_sticks_per_user_and_names_the_variant() {
    let server = Server::start("sticky_header = \"X-User-Id\"", &config());

    // 2,000 anonymous requests: within a few percent of 80/20.
    let variants = concurrently(8, |t| {
        (0..250)
            .map(|i| {
                embed(
                    &server,
                    json!({ "model": "split", "input": format!("t{t} r{i}") }),
                )
                .0
            })
            .collect::<Vec<_>>()
    });
    let mut counts: HashMap<String, usize> = HashMap::new();
    for variant in variants.into_iter().flatten() {
        *counts.entry(variant).or_default() += 1;
    }
    let big = counts.get("big").copied().unwrap_or(0) as f64 / 2000.0;
    assert!((0.76..=0.84).contains(&big), "{counts:?}");
    assert_eq!(counts.values().sum::<usize>(), 2000);

    // A user always gets the same variant; many users spread over both.
    let mut seen = HashMap::new();
    for user in 0..200 {
        let user = format!("user-{user}");
        let first = embed(
            &server,
            json!({ "model": "split", "input": "x", "user": user }),
        )
        .0;
        for _ in 0..3 {
            assert_eq!(
                embed(
                    &server,
                    json!({ "model": "split", "input": "y", "user": user })
                )
                .0,
                first
            );
        }
        *seen.entry(first).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "{seen:?}");

    // Without `user`, the configured header keeps a caller on one variant.
    for caller in 0..50 {
        let sticky = |input: &str| {
            let response = Client::new()
                .post(format!("{}/v1/embeddings", server.url))
                .header("X-User-Id", format!("caller-{caller}"))
                .json(&json!({ "model": "split", "input": input }))
                .send()
                .unwrap();
            response.headers()["x-embedrt-variant"]
                .to_str()
                .unwrap()
                .to_string()
        };
        let first = sticky("a");
        assert!((0..3).all(|_| sticky("b") == first));
    }

    // Both engines of a model answer, under every alias, with the same vectors.
    let mut by_backend = HashMap::new();
    for user in 0..40 {
        for name in ["minilm", "mini", "all-MiniLM-L6-v2"] {
            let (variant, backend, body) = embed(
                &server,
                json!({ "model": name, "input": "hello", "user": format!("u{user}") }),
            );
            assert_eq!(body["model"], "minilm");
            assert!(
                matches!(
                    (variant.as_str(), backend.as_str()),
                    ("ort", "onnx") | ("rust", "candle")
                ),
                "{variant} {backend}"
            );
            let vector: Vec<f32> =
                serde_json::from_value(body["data"][0]["embedding"].clone()).unwrap();
            by_backend.entry(backend).or_insert(vector);
        }
    }
    assert_eq!(by_backend.len(), 2, "40 users reach both engines");
    assert!(cosine(&by_backend["onnx"], &by_backend["candle"]) > 0.9999);

    // The model list shows aliases and variants.
    let models = server.models();
    let minilm = &models["data"][0];
    assert_eq!(minilm["aliases"], json!(["mini", "all-MiniLM-L6-v2"]));
    assert_eq!(
        minilm["variants"][0],
        json!({ "name": "ort", "backend": "onnx", "device": "cpu", "dtype": "f32", "weight": 75, "shadow": false, "replicas": 1 })
    );
    assert_eq!(models["data"].as_array().unwrap().len(), 2);
}

#[test]
fn metrics_are_prometheus_text_per_model_variant_and_engine() {
    let server = Server::start("", &config());
    for i in 0..20 {
        embed(
            &server,
            json!({ "model": "split", "input": [format!("m {i}"), "two"] }),
        );
    }
    let bad = Client::new()
        .post(format!("{}/v1/embeddings", server.url))
        .json(&json!({ "model": "split", "input": [] }))
        .send()
        .unwrap();
    assert_eq!(bad.status(), 400);

    let text = Client::new()
        .get(format!("{}/metrics", server.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let samples = |name: &'static str| scrape.samples.iter().filter(move |s| s.metric == name);
    let value = |sample: &prometheus_parse::Sample| match &sample.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        other => panic!("{other:?}"),
    };

    let ok: f64 = samples("embedrt_requests_total")
        .filter(|s| s.labels.get("model") == Some("split") && s.labels.get("status") == Some("ok"))
        .map(value)
        .sum();
    assert_eq!(ok, 20.0, "{text}");
    let invalid = samples("embedrt_requests_total")
        .filter(|s| s.labels.get("status") == Some("invalid"))
        .map(value)
        .sum::<f64>();
    assert_eq!(invalid, 1.0);
    for name in [
        "embedrt_request_duration_seconds",
        "embedrt_queue_duration_seconds",
        "embedrt_inference_duration_seconds",
        "embedrt_batch_size",
        "embedrt_batch_tokens",
    ] {
        let histogram = samples(name)
            .find(|s| s.labels.get("variant").is_some())
            .unwrap_or_else(|| panic!("{name} missing"));
        assert!(
            matches!(histogram.value, prometheus_parse::Value::Histogram(_)),
            "{name}: {:?}",
            histogram.value
        );
    }
    let loaded: Vec<_> = samples("embedrt_model_loaded")
        .map(|s| (s.labels.get("variant").unwrap().to_string(), value(s)))
        .collect();
    assert!(
        samples("embedrt_model_loaded").all(|s| s.labels.get("device") == Some("cpu")),
        "every variant is labelled with its device: {text}"
    );
    for variant in ["ort", "rust", "big", "small"] {
        assert!(loaded.contains(&(variant.to_string(), 1.0)), "{loaded:?}");
    }
    assert!(samples("embedrt_queue_depth").count() >= 1);
}

#[test]
fn a_shadow_gets_a_copy_and_reports_its_agreement_without_touching_the_answer() {
    let path = minilm_dir().display().to_string();
    let models = format!(
        r#"
[[models]]
name = "guarded"
path = {path:?}
  [[models.variants]]
  name = "ort"
  backend = "onnx"
  [[models.variants]]
  name = "check"
  backend = "candle"
  shadow = true
  sample_rate = 1.0

[[models]]
name = "plain"
path = {path:?}
backend = "onnx"
"#
    );
    let server = Server::start("", &models);
    for i in 0..20 {
        let input = json!([format!("shadowed request {i}"), "a second sentence"]);
        let (variant, backend, guarded) =
            embed(&server, json!({ "model": "guarded", "input": input }));
        assert_eq!(
            (variant.as_str(), backend.as_str()),
            ("ort", "onnx"),
            "a shadow never answers"
        );
        let (_, _, plain) = embed(&server, json!({ "model": "plain", "input": input }));
        for k in 0..2 {
            let a: Vec<f32> =
                serde_json::from_value(guarded["data"][k]["embedding"].clone()).unwrap();
            let b: Vec<f32> =
                serde_json::from_value(plain["data"][k]["embedding"].clone()).unwrap();
            assert!(
                common::max_abs_diff(&a, &b) < 1e-5,
                "the answer is the primary's own"
            );
        }
    }

    // The copies run in the background; wait for all 20 to be recorded.
    let buckets = |text: &str| -> Vec<(f64, f64)> {
        let scrape =
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        scrape
            .samples
            .into_iter()
            .filter(|s| {
                s.metric == "embedrt_shadow_cosine_min" && s.labels.get("variant") == Some("check")
            })
            .flat_map(|s| match s.value {
                prometheus_parse::Value::Histogram(buckets) => buckets
                    .into_iter()
                    .map(|b| (b.less_than, b.count))
                    .collect(),
                _ => Vec::new(),
            })
            .collect()
    };
    let mut last = Vec::new();
    for _ in 0..100 {
        last = buckets(
            &Client::new()
                .get(format!("{}/metrics", server.url))
                .send()
                .unwrap()
                .text()
                .unwrap(),
        );
        if last
            .iter()
            .any(|&(le, count)| le.is_infinite() && count == 20.0)
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let count_at = |bound: f64| last.iter().find(|(le, _)| *le == bound).map(|(_, c)| *c);
    assert_eq!(count_at(f64::INFINITY), Some(20.0), "{last:?}");
    assert_eq!(
        count_at(0.9999),
        Some(0.0),
        "candle agrees with onnx to better than 0.9999: {last:?}"
    );
}
