//! The embedding cache through the real server: the in-process layer (hits byte-identical,
//! order and usage kept with some inputs cached, every `dimensions` from one entry, tasks apart,
//! bounded under 100,000 distinct inputs, per-model opt-out) and the Redis layer against a real
//! `redis-server` (two processes share it; killing it mid-load fails no request).

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::common::redis::RedisServer;
use crate::common::{
    alone, assert_each_pair, cosine, embeddings_of, ok, under_load, LoadOutcome, Model, Server,
};

/// POSTs `body` to `/v1/embeddings` and returns the parsed answer (asserting 200).
fn embed(server: &Server, body: Value) -> Value {
    ok(server.embed(body))
}

/// The raw bytes of each base64-encoded vector of an answer, in order.
fn raw_vectors(answer: &Value) -> Vec<Vec<u8>> {
    answer["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            base64::engine::general_purpose::STANDARD
                .decode(item["embedding"].as_str().unwrap())
                .unwrap()
        })
        .collect()
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn hits(server: &Server, layer: &str, model: &str) -> f64 {
    server.metric(
        "embedrt_cache_hits_total",
        &[("layer", layer), ("model", model)],
    )
}

fn misses(server: &Server, layer: &str, model: &str) -> f64 {
    server.metric(
        "embedrt_cache_misses_total",
        &[("layer", layer), ("model", model)],
    )
}

#[test]
fn memory_layer_serves_repeats_exactly_in_order_for_every_dimension() {
    let server = Server::builder()
        .cache("memory_bytes", 64i64 << 20)
        .model(Model::minilm("minilm").on("onnx"))
        .start();
    let plain = Server::builder()
        .model(Model::minilm("minilm").on("onnx"))
        .start();
    let body =
        |input: &[&str]| json!({ "model": "minilm", "input": input, "encoding_format": "base64" });

    let first = embed(&server, body(&["alpha", "beta"]));
    assert_eq!(
        (
            misses(&server, "memory", "minilm"),
            hits(&server, "memory", "minilm")
        ),
        (2.0, 0.0)
    );
    let first = raw_vectors(&first);

    // Two of three inputs cached: only "gamma" runs; the order and the token count hold.
    let mixed = embed(&server, body(&["beta", "gamma", "alpha"]));
    assert_eq!(hits(&server, "memory", "minilm"), 2.0);
    assert_eq!(misses(&server, "memory", "minilm"), 3.0);
    let vectors = raw_vectors(&mixed);
    assert_eq!(vectors[0], first[1], "beta, byte for byte");
    assert_eq!(vectors[2], first[0], "alpha, byte for byte");
    let uncached = embed(&plain, body(&["beta", "gamma", "alpha"]));
    assert_eq!(
        mixed["usage"], uncached["usage"],
        "usage counts every input"
    );
    assert_each_pair(&vectors, raw_vectors(&uncached), |_, got, want| {
        assert!(cosine(&floats(got), &floats(&want)) > 0.99999);
    });

    // One entry serves every Matryoshka size: the cached vector, cut and normalized again.
    let short = embed(
        &server,
        json!({ "model": "minilm", "input": ["alpha"], "dimensions": 64, "encoding_format": "base64" }),
    );
    assert_eq!(hits(&server, "memory", "minilm"), 3.0);
    let cut = floats(&raw_vectors(&short)[0]);
    let full = floats(&first[0]);
    let norm = full[..64].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert_eq!(cut.len(), 64);
    for (a, b) in cut.iter().zip(&full[..64]) {
        assert!((a - b / norm).abs() < 1e-6);
    }
}

#[test]
fn tasks_are_cached_apart() {
    let server = Server::builder()
        .cache("memory_bytes", 16i64 << 20)
        .model(Model::jina("jina").on("onnx"))
        .start();
    let plain = Server::builder()
        .model(Model::jina("jina").on("onnx"))
        .start();
    let body = |task: &str| json!({ "model": "jina", "input": ["the same text"], "task": task });
    for server in [&server, &server, &plain] {
        let query = embed(server, body("retrieval.query"));
        let passage = embed(server, body("retrieval.passage"));
        assert_ne!(
            query["data"][0]["embedding"],
            passage["data"][0]["embedding"]
        );
    }
    assert_eq!(
        hits(&server, "memory", "jina"),
        2.0,
        "the second round hit, per task"
    );
    let cached = embed(&server, body("retrieval.passage"));
    let fresh = embed(&plain, body("retrieval.passage"));
    let (a, b) = (
        embeddings_of(&cached).remove(0),
        embeddings_of(&fresh).remove(0),
    );
    assert!(cosine(&a, &b) > 0.99999);
}

#[test]
fn memory_layer_stays_within_its_bound_and_models_may_opt_out() {
    let bound = 1_000_000i64;
    let server = Server::builder()
        .cache("memory_bytes", bound)
        .model(Model::minilm("echo").on("echo"))
        .model(Model::minilm("off").on("echo").set("cache", false))
        .start();
    for chunk in 0..50 {
        let input: Vec<String> = (0..2000)
            .map(|i| format!("distinct input {chunk} {i}"))
            .collect();
        embed(&server, json!({ "model": "echo", "input": input }));
    }
    assert_eq!(misses(&server, "memory", "echo"), 100_000.0);
    let held = server.metric("embedrt_cache_bytes", &[("layer", "memory")]);
    assert!(
        held > 0.0 && held <= bound as f64,
        "{held} bytes held, bound {bound}"
    );
    // Full of inputs seen once, the layer admits by frequency (moka's TinyLFU): an input asked
    // for again and again is kept, then served.
    for _ in 0..8 {
        embed(
            &server,
            json!({ "model": "echo", "input": ["asked for again"] }),
        );
    }
    assert!(hits(&server, "memory", "echo") >= 1.0);

    for _ in 0..2 {
        embed(&server, json!({ "model": "off", "input": ["x"] }));
    }
    assert_eq!(
        hits(&server, "memory", "off") + misses(&server, "memory", "off"),
        0.0,
        "`cache = false` keeps the model out of the cache"
    );
}

/// A server of all-MiniLM-L6-v2 on onnx with only the Redis layer, at `redis`.
fn with_redis(redis: &RedisServer) -> crate::common::server::ServerBuilder {
    Server::builder()
        .cache("redis_url", redis.url())
        .cache("redis_timeout_ms", 200)
        .model(Model::minilm("minilm").on("onnx"))
}

#[test]
fn two_processes_share_vectors_through_redis() {
    let redis = RedisServer::start();
    let first = with_redis(&redis).start();
    let second = with_redis(&redis).start();
    let input: Vec<String> = (0..20)
        .map(|i| format!("shared sentence number {i}"))
        .collect();
    let body = json!({ "model": "minilm", "input": input, "encoding_format": "base64" });

    let computed = raw_vectors(&embed(&first, body.clone()));
    assert_eq!(misses(&first, "redis", "minilm"), 20.0);
    // The first process writes to Redis off the request path: wait until all 20 are there.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let served = embed(&second, body.clone());
        if hits(&second, "redis", "minilm") >= 20.0 {
            assert_eq!(
                raw_vectors(&served),
                computed,
                "byte-identical from the other process"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the second process never hit");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn redis_killed_mid_load_fails_no_request() {
    let _alone = alone(); // 20 clients for 7 s
    let mut redis = RedisServer::start();
    let server = with_redis(&redis).cache("memory_bytes", 0).start();
    // Half the inputs repeat across clients, half are new.
    let body = |client, round| {
        let input = [
            format!("common sentence {}", round % 10),
            format!("client {client} sentence {round}"),
        ];
        json!({ "model": "minilm", "input": input })
    };
    let ((), LoadOutcome { sent, failures }) = under_load(&server.url, 20, body, || {
        std::thread::sleep(Duration::from_secs(3));
        redis.kill();
        std::thread::sleep(Duration::from_secs(4));
    });
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed",
        failures.len()
    );
    assert!(sent > 100, "{sent} requests");
    assert!(
        hits(&server, "redis", "minilm") > 0.0,
        "Redis served before it died"
    );
    let errors = server.metric("embedrt_cache_errors_total", &[("layer", "redis")]);
    assert!(errors > 0.0, "the dead Redis is counted");
}
