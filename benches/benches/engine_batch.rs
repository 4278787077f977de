//! Raw in-process backend throughput: one batch of single sentences through each backend at
//! several batch sizes, no server in between. The best of these is the ceiling the server should
//! approach. Needs `scripts/setup.sh`.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use embedrt_runtime::backend_core::guest::BackendPlugin;
use embedrt_runtime::backend_core::{BackendSettings, LoadDocument};
use embedrt_runtime::tokenize::TextTokenizer;
use embedrt_runtime::{AdapterId, Backend, Batch, ModelCard};

fn engines() -> Vec<(&'static str, Box<dyn Backend>)> {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../.assets/models/all-MiniLM-L6-v2"
    ));
    let card = ModelCard::load(&dir).expect("run scripts/setup.sh first");
    let config = LoadDocument::new(card.spec(), BackendSettings::default());
    vec![
        (
            "onnx",
            Box::new(embedrt_onnx::OnnxBackend::load(&config).unwrap()),
        ),
        (
            "candle",
            Box::new(embedrt_candle::CandleBackend::load(&config).unwrap()),
        ),
    ]
}

fn engine_batch(c: &mut Criterion) {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../.assets/models/all-MiniLM-L6-v2"
    ));
    let card = ModelCard::load(&dir).unwrap();
    let tokenizer =
        TextTokenizer::load(&card.path, card.max_input_tokens, card.vocab_size).unwrap();
    let sentences: Vec<Vec<u32>> = include_str!("../data/sentences.txt")
        .lines()
        .take(64)
        .map(|line| tokenizer.encode(line, true).unwrap())
        .collect();
    let mut group = c.benchmark_group("engine_batch");
    group.sample_size(10);
    for (name, mut engine) in engines() {
        for size in [1, 8, 32, 64] {
            let batch = Batch::from_sequences(
                sentences[..size]
                    .iter()
                    .map(|ids| (ids.as_slice(), AdapterId::BASE)),
            );
            group.throughput(Throughput::Elements(size as u64));
            group.bench_with_input(BenchmarkId::new(name, size), &batch, |b, batch| {
                b.iter(|| engine.embed(batch).unwrap())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, engine_batch);
criterion_main!(benches);
