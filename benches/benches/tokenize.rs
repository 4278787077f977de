//! Tokenization cost per input: a short sentence and a 256-token passage, with all-MiniLM-L6-v2's
//! tokenizer (run `scripts/setup.sh` first).

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use embedrt_runtime::tokenize::TextTokenizer;
use embedrt_runtime::ModelCard;

fn model_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../.assets/models/all-MiniLM-L6-v2"
    ))
}

fn tokenize(c: &mut Criterion) {
    let card = ModelCard::load(&model_dir()).expect("run scripts/setup.sh first");
    let tokenizer =
        TextTokenizer::load(&card.path, card.max_input_tokens, card.vocab_size).unwrap();
    let sentence = "The search service indexes thousands of product descriptions before lunch.";
    let passage =
        "Embeddings map text to vectors so that similar meanings land close together. ".repeat(20);
    c.bench_function("tokenize/sentence", |b| {
        b.iter(|| tokenizer.encode(sentence, true).unwrap())
    });
    c.bench_function("tokenize/passage_256", |b| {
        b.iter(|| tokenizer.encode(&passage, true).unwrap())
    });
}

criterion_group!(benches, tokenize);
criterion_main!(benches);
