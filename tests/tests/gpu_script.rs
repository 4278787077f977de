//! `scripts/test-gpu.sh`, the GPU machine's acceptance check, run here on the CPU engines so the
//! script itself is tested: it starts each engine's server, checks every reference vector and runs
//! the 60-client load; and its checker fails an engine whose vectors are off.

use std::process::Command;

use crate::common::process::stdout_of;
use crate::common::{alone, build_dir, fixtures_dir, minilm_dir, repo_root, Model, Server};

#[test]
fn the_gpu_check_passes_every_cpu_engine_in_full_and_half_precision() {
    let _alone = alone(); // its own servers, and 60 clients
    let stdout = stdout_of(
        Command::new(repo_root().join("scripts/test-gpu.sh"))
            .args(["--device", "cpu", "--seconds", "1", "--engines"])
            .arg("candle-f32 candle-f16 onnx-f32")
            .arg("--bin")
            .arg(build_dir())
            .arg("--minilm")
            .arg(minilm_dir()),
    );
    for engine in ["candle-f32", "candle-f16", "onnx-f32"] {
        assert!(stdout.contains(&format!("{engine}: PASS")), "{stdout}");
        assert!(
            stdout.contains(&format!("{engine}: jina-v3 mixed batch: lowest cosine")),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("{engine} 60 clients c=60")),
            "{stdout}"
        );
    }
    assert!(stdout.contains("all engines passed on cpu"), "{stdout}");
}

#[test]
fn the_checker_fails_an_engine_whose_vectors_are_off() {
    // `minilm` answered by the echo backend: right width, wrong vectors.
    let server = Server::builder()
        .model(Model::minilm("minilm").on("echo"))
        .model(Model::jina("jina").on("candle"))
        .start();
    let output = Command::new("python3")
        .arg(repo_root().join("scripts/check_engine.py"))
        .args(["--url", &server.url, "--label", "echo"])
        .arg("--fixtures")
        .arg(fixtures_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("echo: FAIL all-MiniLM-L6-v2 text 0: cosine"),
        "{stdout}"
    );
    assert!(
        stdout.contains("echo: jina-v3 mixed batch: lowest cosine 1.0"),
        "{stdout}"
    );
    assert!(!stdout.contains("PASS"), "{stdout}");
}
