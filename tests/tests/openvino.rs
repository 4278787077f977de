//! The openvino engine through the server: one model A/B-tested between onnx and openvino over
//! HTTP (both variants answer, with the same vectors, and `/v1/models` and the metrics name each
//! one's backend and dtype); bf16 over HTTP against sentence-transformers' vectors; without
//! OpenVINO's library the error lists every place it looked, and a library beside TBB's NUMA
//! binding is refused.

use std::collections::HashSet;
use std::time::Duration;

use embedrt_testkit::golden;
use serde_json::json;

use crate::common::{
    assert_each_pair, concurrently, cosine, embeddings_of, header, ok, repo_root, Exit, Model,
    Server, TempDir, Variant,
};
use crate::onnx_library::serve_from;

#[test]
fn an_ab_split_between_onnx_and_openvino_serves_both_alike() {
    let server = Server::builder()
        .model(
            Model::minilm("ab")
                .variant(Variant::on("onnx").named("onnx"))
                .variant(Variant::on("openvino").named("openvino")),
        )
        .start();
    let text = "The A/B test compares engines on identical token ids.";
    let mut vectors = Vec::new();
    let mut seen = HashSet::new();
    for user in 0..40 {
        let response =
            server.embed(json!({"model": "ab", "input": text, "user": format!("u{user}")}));
        let variant = header(&response, "x-embedrt-variant");
        let backend = header(&response, "x-embedrt-backend");
        assert_eq!(variant, backend);
        if seen.insert(variant) {
            vectors.push(embeddings_of(&ok(response)).remove(0));
        }
    }
    assert_eq!(seen.len(), 2, "both variants answered: {seen:?}");
    assert!(cosine(&vectors[0], &vectors[1]) >= 0.9999);
    let variants = &server.models()["data"][0]["variants"];
    assert_eq!(variants[1]["backend"], "openvino");
    assert_eq!(variants[1]["dtype"], "f32");
    for backend in ["onnx", "openvino"] {
        let answered = server.metric(
            "embedrt_requests_total",
            &[("model", "ab"), ("backend", backend), ("status", "ok")],
        );
        assert!(answered > 0.0, "{backend}: {answered}");
    }
}

/// Batches padded up to a bucket (the default) and run in their own shapes (`exact_shapes`)
/// give the reference vectors, for a request of texts of different lengths (so padding rows and
/// columns are added); an option of the wrong type is refused at load, saying what it expected.
#[test]
fn bucketed_and_exact_shapes_both_match_the_reference() {
    let server = Server::builder()
        .model(Model::minilm("bucketed").on("openvino"))
        .model(
            Model::minilm("exact")
                .on("openvino")
                .option("exact_shapes", true),
        )
        .start();
    let expected = golden::minilm();
    for model in ["bucketed", "exact"] {
        let body = ok(server.embed(json!({"model": model, "input": expected.texts})));
        assert_reference_vectors(&body, &expected, 0.9999);
    }
    let Exit { code, log } = Server::builder()
        .model(
            Model::minilm("wrong")
                .on("openvino")
                .option("exact_shapes", "yes"),
        )
        .run_to_exit();
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("bad backend options") && log.contains("expected a boolean"),
        "{log}"
    );
}

/// A model compiled afresh whenever it has sat idle (`rebuild_kept_mb = 0`) keeps answering
/// the reference vectors, also to clients whose requests arrive while it compiles, and says so
/// in the log.
#[test]
fn a_model_compiled_afresh_when_idle_still_answers_the_reference() {
    let server = Server::builder()
        .model(
            Model::minilm("rebuilt")
                .on("openvino")
                .option("rebuild_idle_ms", 50)
                .option("rebuild_kept_mb", 0),
        )
        .start();
    let expected = golden::minilm();
    for pause_ms in [0, 300, 60, 120, 45, 300] {
        std::thread::sleep(Duration::from_millis(pause_ms));
        let bodies = concurrently(4, |_| ok(server.embed(json!({"input": expected.texts}))));
        for body in &bodies {
            assert_reference_vectors(body, &expected, 0.9999);
        }
    }
    server.signal(libc::SIGTERM);
    let Exit { code, log } = server.wait_exit(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{log}");
    let rebuilds = log.matches("compiled afresh").count();
    assert!(rebuilds >= 2, "{rebuilds} rebuilds: {log}");
}

/// Whether this CPU computes bf16 (AVX512_BF16 or AMX), as Linux reports its flags.
pub(crate) fn cpu_has_bf16() -> bool {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    cpuinfo
        .split_whitespace()
        .any(|flag| flag == "avx512_bf16" || flag == "amx_bf16")
}

#[test]
fn bf16_over_http_stays_within_its_gate() {
    let builder =
        Server::builder().model(Model::minilm("bf16").on("openvino").set("dtype", "bf16"));
    if !cpu_has_bf16() {
        // Refused at load, saying why.
        let Exit { code, log } = builder.run_to_exit();
        assert_eq!(code, Some(1), "{log}");
        assert!(log.contains("AVX512_BF16 or AMX"), "{log}");
        return;
    }
    let server = builder.start();
    let expected = golden::minilm();
    let body = ok(server.embed(json!({"model": "bf16", "input": expected.texts})));
    assert_eq!(server.models()["data"][0]["variants"][0]["dtype"], "bf16");
    assert_reference_vectors(&body, &expected, 0.999);
}

/// Asserts that `body` (an answer to `expected.texts`) holds one vector per text, each at cosine
/// `min_cosine` or closer to the reference's.
fn assert_reference_vectors(body: &serde_json::Value, expected: &golden::MiniLm, min_cosine: f32) {
    let got = embeddings_of(body);
    assert_each_pair(&got, &expected.embeddings, |i, got, want| {
        let similarity = cosine(got, want);
        assert!(
            similarity >= min_cosine,
            "{:?}: cosine {similarity}",
            expected.texts[i]
        );
    });
}

#[test]
fn without_openvino_the_error_lists_every_place_it_looked() {
    let empty = TempDir::new("empty-path");
    let outside = TempDir::new("no-openvino");
    let Exit { code, log } =
        serve_from(&outside, empty.path(), "openvino").wait_exit(Duration::from_secs(60));
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("cannot find OpenVINO's C library"), "{log}");
    let mut from = 0;
    for place in [
        "the `library` option: not set",
        "OPENVINO_LIBRARY: not set",
        ".assets/openvino/libopenvino_c.so",
        "python3's openvino package",
        "the system library path",
    ] {
        let at = log[from..]
            .find(place)
            .unwrap_or_else(|| panic!("{place:?} missing or out of order in:\n{log}"));
        from += at;
    }
}

/// The `openvino` package of python3 carries TBB's NUMA binding, which aborts a process on
/// jemalloc: found there, the library is refused with the reason, not loaded.
#[test]
fn a_library_beside_tbbs_numa_binding_is_refused() {
    let bin = repo_root().join(".assets/openvino-venv/bin");
    let outside = TempDir::new("pip-openvino");
    let Exit { code, log } =
        serve_from(&outside, &bin, "openvino").wait_exit(Duration::from_secs(60));
    assert_eq!(code, Some(1), "{log}");
    let line = log
        .lines()
        .find(|line| line.contains("python3's openvino package"))
        .unwrap_or_else(|| panic!("the python package was not tried:\n{log}"));
    assert!(line.contains("libtbbbind"), "{line}");
}
