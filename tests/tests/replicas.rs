//! A variant with `replicas = 2`: two copies of the model, each on its own inference thread,
//! serve one queue through the real server, with the reference vectors, and both do work.

use embedrt_testkit::golden;
use serde_json::json;

use crate::common::{alone, concurrently, cosine, embeddings_of, ok, Model, Server};

/// CPU ticks (user + system) of each of `pid`'s threads whose name starts with `prefix`.
fn thread_ticks(pid: u32, prefix: &str) -> Vec<(String, u64)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let mut threads: Vec<(String, u64)> = tasks
        .filter_map(|task| {
            let dir = task.ok()?.path();
            let name = std::fs::read_to_string(dir.join("comm")).ok()?;
            let name = name.trim().to_string();
            if !name.starts_with(prefix) {
                return None;
            }
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            // Fields after the parenthesised name: state is field 3, utime 14 and stime 15.
            let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
            let ticks = fields[11].parse::<u64>().ok()? + fields[12].parse::<u64>().ok()?;
            Some((name, ticks))
        })
        .collect();
    threads.sort();
    threads
}

#[test]
fn two_replicas_share_the_queue_and_match_the_reference() {
    let _alone = alone(); // each replica's share of the CPU is measured
    let server = Server::builder()
        .model(Model::minilm("minilm").on("onnx").set("replicas", 2))
        .start();
    let variant = &server.models()["data"][0]["variants"][0];
    assert_eq!(variant["replicas"], 2, "{variant}");

    let expected = golden::minilm();
    let failures: Vec<String> = concurrently(8, |client_index| {
        let mut failures = Vec::new();
        for round in 0..40 {
            let i = (client_index + round) % expected.texts.len();
            let body = ok(server.embed(json!({ "model": "minilm", "input": expected.texts[i] })));
            let got = &embeddings_of(&body)[0];
            let similarity = cosine(got, &expected.embeddings[i]);
            if similarity < 0.9999 {
                failures.push(format!("text {i}: cosine {similarity}"));
            }
        }
        failures
    })
    .into_iter()
    .flatten()
    .collect();
    assert!(failures.is_empty(), "{failures:?}");

    // Both replicas' inference threads ran batches: each did a real share of the work.
    let threads = thread_ticks(server.pid(), "infer");
    let names: Vec<&str> = threads.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["infer0-minilm-o", "infer1-minilm-o"], "{threads:?}");
    let total: u64 = threads.iter().map(|(_, ticks)| ticks).sum();
    for (name, ticks) in &threads {
        assert!(
            *ticks * 5 >= total,
            "{name} did {ticks} of {total} ticks: {threads:?}"
        );
    }
}
