//! Several models and engine variants in one process: the traffic split follows the weights,
//! a `user` always lands on the same variant, aliases reach the same deployment, and every
//! response names its variant and engine.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::common::{
    alone, concurrently, cosine, error, header, max_abs_diff, ok, Model, Server, Variant,
};

/// all-MiniLM-L6-v2 three ways: onnx 75 / candle 25 under three names, and two echo variants
/// split 80/20.
fn models() -> [Model; 2] {
    [
        Model::minilm("minilm")
            .set("aliases", vec!["mini", "all-MiniLM-L6-v2"])
            .variant(Variant::on("onnx").named("ort").weight(75))
            .variant(Variant::on("candle").named("rust").weight(25)),
        Model::minilm("split")
            .variant(Variant::on("echo").named("big").weight(80))
            .variant(Variant::on("echo").named("small").weight(20)),
    ]
}

fn server() -> Server {
    let [minilm, split] = models();
    Server::builder()
        .server("sticky_header", "X-User-Id")
        .model(minilm)
        .model(split)
        .start()
}

/// POSTs one request and returns (variant header, backend header, body); every answer names
/// its device too.
fn embed(server: &Server, body: Value) -> (String, String, Value) {
    let response = server.embed(body);
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-embedrt-device"), "cpu");
    let (variant, backend) = (
        header(&response, "x-embedrt-variant"),
        header(&response, "x-embedrt-backend"),
    );
    (variant, backend, ok(response))
}

#[test]
fn traffic_splits_by_weight_sticks_per_user_and_names_the_variant() {
    let _alone = alone(); // 2,000 requests from 8 clients
    let server = server();

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
            let response = crate::common::http::client()
                .post(format!("{}/v1/embeddings", server.url))
                .header("X-User-Id", format!("caller-{caller}"))
                .json(&json!({ "model": "split", "input": input }))
                .send()
                .unwrap();
            header(&response, "x-embedrt-variant")
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
    let server = server();
    for i in 0..20 {
        embed(
            &server,
            json!({ "model": "split", "input": [format!("m {i}"), "two"] }),
        );
    }
    error(server.embed(json!({ "model": "split", "input": [] })), 400);

    let text = server.get("/metrics").text().unwrap();
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
    let server = Server::builder()
        .model(
            Model::minilm("guarded")
                .variant(Variant::on("onnx").named("ort"))
                .variant(Variant::on("candle").named("check").shadow(1.0)),
        )
        .model(Model::minilm("plain").on("onnx"))
        .start();
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
                max_abs_diff(&a, &b) < 1e-5,
                "the answer is the primary's own"
            );
        }
    }
    let shadow = &server.models()["data"][0]["variants"][1];
    assert_eq!(
        (&shadow["shadow"], &shadow["weight"]),
        (&json!(true), &json!(0))
    );

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
        last = buckets(&server.get("/metrics").text().unwrap());
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
