//! The encoder fixtures' checks (bge-m3, multilingual-e5, all-mpnet, modernbert-embed), run by
//! every backend in-process: each prompt case's token ids and vectors, with all texts in one
//! batch and each text alone.

use embedrt_runtime::backend_core::{AdapterId, Backend, Batch};
use embedrt_runtime::postprocess::finish;
use embedrt_runtime::ModelCard;

use crate::golden::{self, Encoder};
use crate::jina::tokenizer;
use crate::paths::fixtures_dir;
use crate::vectors::{assert_each_pair, Closeness};

/// The encoder fixtures' folders under `../shared/fixtures`: two XLM-RoBERTa, one MPNet, one
/// ModernBERT.
pub const FIXTURES: [&str; 4] = [
    "bge-m3-tiny",
    "multilingual-e5-tiny",
    "all-mpnet-tiny",
    "modernbert-embed-tiny",
];

/// The fixtures' tolerance for f32 engines: cosine and largest component difference.
pub const F32: Closeness = Closeness::CosineAndMaxAbs(0.9999, 1e-4);

/// The card and golden data of the encoder fixture `name` (one of [`FIXTURES`]).
///
/// # Panics
///
/// When the fixture cannot be read.
pub fn fixture(name: &str) -> (ModelCard, Encoder) {
    let dir = fixtures_dir().join(name);
    (ModelCard::load(&dir).unwrap(), golden::encoder(&dir))
}

/// Tokenizes every text of every case as the server does (the case's prompt, then the text),
/// checks the ids against the reference's, and runs each case's texts through `backend` in one
/// batch and one at a time; returns how many cases ran.
///
/// # Panics
///
/// When a token id or a vector differs (the message names the fixture, case and text).
pub fn check_cases(
    card: &ModelCard,
    expected: &Encoder,
    backend: &mut dyn Backend,
    closeness: Closeness,
) -> usize {
    let tokenizer = tokenizer(card);
    let name = card.path.display();
    for case in &expected.cases {
        let task = card.task(
            card.task_id(case.prompt_name.as_deref().unwrap_or("none"))
                .unwrap(),
        );
        assert_eq!(
            &*task.instruction, case.prompt,
            "{name}: the prompt of {:?}",
            case.prompt_name
        );
        let sequences: Vec<Vec<u32>> = expected
            .texts
            .iter()
            .map(|text| {
                tokenizer
                    .encode(&format!("{}{text}", task.instruction), true)
                    .unwrap()
            })
            .collect();
        assert_eq!(
            sequences, case.token_ids,
            "{name}: token ids of {:?}",
            case.prompt_name
        );
        let check =
            |pooled: &embedrt_runtime::backend_core::Embeddings, rows: &[Vec<f32>], alone: bool| {
                assert_each_pair(0..pooled.rows(), rows, |i, row, want| {
                    let got = finish(pooled.row(row).to_vec(), None, card.normalize);
                    if let Err(why) = closeness.accepts(&got, want) {
                        panic!(
                            "{name} {:?}, text {i} (alone: {alone}): {why}",
                            case.prompt_name
                        );
                    }
                });
            };
        let batch = Batch::from_sequences(
            sequences
                .iter()
                .map(|ids| (ids.as_slice(), AdapterId::BASE)),
        );
        check(&backend.embed(&batch).unwrap(), &case.embeddings, false);
        for (ids, want) in sequences.iter().zip(&case.embeddings) {
            let one = Batch::from_sequences([(ids.as_slice(), AdapterId::BASE)]);
            check(
                &backend.embed(&one).unwrap(),
                std::slice::from_ref(want),
                true,
            );
        }
    }
    expected.cases.len()
}
