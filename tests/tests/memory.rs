//! The server's memory on every engine and dtype: rounds of the same varied traffic (many batch
//! and sequence shapes) leave it flat after the first, and on onnx and candle it comes back
//! within seconds of a burst. Each engine's test is one server: steady traffic, one burst, then
//! the rounds. OpenVINO keeps what it built for the burst's shape (about 130 MB for all-MiniLM's
//! 64 x 144-token batches) for the life of the compiled model, whether or not the inference
//! request is made anew, so on openvino only the rounds after the burst are checked.
//! The openvino tests are ignored for now: padding batches up to a few shapes cut the growth
//! (BENCHMARKS.md, "OpenVINO's memory under varied shapes") but not yet within 25% of the first
//! round on every run; `cargo test -p embedrt-tests --test e2e -- --ignored memory::` runs them.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::process::stdout_of;
use crate::common::{alone, concurrently, memory_mb, ok, repo_root, Model, Server};

/// Rounds of `benches/memory_rounds.py` after the burst, and its clients (several, so that the
/// scheduler forms new batch shapes each round, as real traffic does).
const ROUNDS: usize = 5;
const CLIENTS: usize = 8;

/// Whether an engine hands a burst's memory back (see the module's doc).
#[derive(Clone, Copy, PartialEq, Eq)]
enum AfterBurst {
    ComesBack,
    Kept,
}

#[test]
fn memory_is_bounded_on_onnx() {
    memory_is_bounded(Model::minilm("minilm").on("onnx"), AfterBurst::ComesBack);
}

#[test]
fn memory_is_bounded_on_candle() {
    memory_is_bounded(Model::minilm("minilm").on("candle"), AfterBurst::ComesBack);
}

#[test]
#[ignore = "openvino keeps memory per new batch shape: with buckets int8 still rose 39% from round 1 to 2 under load before levelling (issue 37)"]
fn memory_is_bounded_on_openvino_f32() {
    memory_is_bounded(Model::minilm("minilm").on("openvino"), AfterBurst::Kept);
}

#[test]
#[ignore = "openvino keeps memory per new batch shape: with buckets int8 still rose 39% from round 1 to 2 under load before levelling (issue 37)"]
fn memory_is_bounded_on_openvino_int8() {
    let model = Model::minilm("minilm").on("openvino").set("dtype", "int8");
    memory_is_bounded(model, AfterBurst::Kept);
}

/// bf16 runs where the CPU computes it (elsewhere it is refused at load, which
/// `openvino::bf16_over_http_stays_within_its_gate` checks).
#[test]
#[ignore = "openvino keeps memory per new batch shape: with buckets int8 still rose 39% from round 1 to 2 under load before levelling (issue 37)"]
fn memory_is_bounded_on_openvino_bf16() {
    if !crate::openvino::cpu_has_bf16() {
        eprintln!("skipped: this CPU has no bf16 (AVX512_BF16 or AMX), so openvino refuses it");
        return;
    }
    let model = Model::minilm("minilm").on("openvino").set("dtype", "bf16");
    memory_is_bounded(model, AfterBurst::Kept);
}

/// Serves `model` alone and checks: memory back within 25% of steady traffic's within 10 s of a
/// burst's answer (where `after_burst` says it comes back), and within 25% of the first round's
/// after every later round.
fn memory_is_bounded(model: Model, after_burst: AfterBurst) {
    let _alone = alone();
    // What is measured is memory, not time: no request deadline cuts the burst short on a slow
    // or busy machine (onnx, both cores held by busy loops, 2026-12-07: passed).
    let server = Server::builder()
        .server("request_timeout_ms", 0)
        .model(model)
        .start();
    let pid = server.pid();
    steady_traffic(&server);
    std::thread::sleep(Duration::from_secs(2));
    let steady = memory_mb(pid, "VmRSS");
    burst(&server);
    let peak = memory_mb(pid, "VmHWM");
    let bound = steady * 1.25;
    // The burst must have raised memory past the bound, or the test would show nothing.
    assert!(peak > bound, "peak {peak:.0} MB, steady {steady:.0} MB");
    if after_burst == AfterBurst::ComesBack {
        comes_back_to(pid, bound, peak, steady);
    }
    let rounds = memory_rounds(&server);
    let first = rounds[1];
    for (round, &after) in rounds.iter().enumerate().skip(2) {
        assert!(
            after <= first * 1.25,
            "{after:.0} MB after round {round}, {first:.0} MB after the first: {rounds:?}"
        );
    }
    ok(server.embed(json!({ "input": "still serving" })));
}

/// Waits up to 10 s for the process `pid` to be back within `bound` MB after a burst.
fn comes_back_to(pid: u32, bound: f64, peak: f64, steady: f64) {
    // jemalloc hands freed pages back after a second: ten is that with room for a busy machine.
    let answered = Instant::now();
    let mut now = memory_mb(pid, "VmRSS");
    while now > bound && answered.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(250));
        now = memory_mb(pid, "VmRSS");
    }
    assert!(
        now <= bound,
        "{now:.0} MB 10 s after the burst (peak {peak:.0} MB), steady {steady:.0} MB"
    );
}

/// Requests of 10 short sentences from 8 clients.
fn steady_traffic(server: &Server) {
    concurrently(8, |client| {
        for request in 0..25 {
            let inputs: Vec<String> = (0..10)
                .map(|i| format!("client {client} asks question {request}.{i} about memory"))
                .collect();
            ok(server.embed(json!({ "input": inputs })));
        }
    });
}

/// One request of 2,048 inputs of ~128 tokens.
fn burst(server: &Server) {
    let long = "the quick brown fox jumps over the lazy dog ".repeat(14);
    let answer = ok(reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(900))
        .build()
        .unwrap()
        .post(format!("{}/v1/embeddings", server.url))
        .json(&json!({ "input": vec![long; 2048] }))
        .send()
        .unwrap());
    assert_eq!(answer["data"].as_array().unwrap().len(), 2048);
}

/// The server's resident memory (MB) before and after each of [`ROUNDS`] rounds of
/// `benches/memory_rounds.py` (each read after a rest, so only what is kept counts).
fn memory_rounds(server: &Server) -> Vec<f64> {
    let out = crate::common::TempDir::new("memory-rounds");
    let json_path = out.path().join("rounds.json");
    stdout_of(
        Command::new("python3")
            .arg(repo_root().join("benches/memory_rounds.py"))
            .arg(&server.url)
            .arg(server.pid().to_string())
            .arg(ROUNDS.to_string())
            .arg(CLIENTS.to_string())
            .arg(&json_path),
    );
    let rounds: Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    rounds["rss_mb"]
        .as_array()
        .unwrap()
        .iter()
        .map(|mb| mb.as_f64().unwrap())
        .collect()
}
