//! The cross-encoder fixtures' checks (ms-marco-MiniLM's and bge-reranker-v2-m3's layouts), run
//! by every backend in-process and by the end-to-end tests: each pair's token ids, its logit
//! within the fixtures' tolerance, scores after the model's activation, and the ranking.

use embedrt_runtime::backend_core::{AdapterId, Backend, Batch};
use embedrt_runtime::tokenize::EncodedPair;
use embedrt_runtime::{ModelCard, ModelKind};

use crate::golden::{self, CrossEncoder};
use crate::jina::tokenizer;
use crate::paths::fixtures_dir;

/// The reranker fixtures' folders under `../shared/fixtures`: a BERT one with raw logits for
/// scores, an XLM-RoBERTa one with sigmoid scores.
pub const RERANKERS: [&str; 2] = ["ms-marco-reranker-tiny", "bge-reranker-tiny"];

/// The fixtures' tolerance for logits: absolute up to 1, relative above.
pub const LOGIT_TOLERANCE: f32 = 1e-4;

/// The card and golden data of the reranker fixture `name` (one of [`RERANKERS`]).
///
/// # Panics
///
/// When the fixture cannot be read.
pub fn fixture(name: &str) -> (ModelCard, CrossEncoder) {
    let dir = fixtures_dir().join(name);
    (ModelCard::load(&dir).unwrap(), golden::cross_encoder(&dir))
}

/// Whether logit `got` is within [`LOGIT_TOLERANCE`] of `want` (relative for |want| > 1).
pub fn logit_close(got: f32, want: f32) -> bool {
    (got - want).abs() <= LOGIT_TOLERANCE * want.abs().max(1.0)
}

/// Checks `logits` (one per document, in document order) against the fixture: each logit, each
/// score after the model's activation, and the ranking those scores give.
///
/// # Panics
///
/// When a logit, a score or the ranking differs (the message names the fixture and document).
pub fn check_logits(card: &ModelCard, expected: &CrossEncoder, logits: &[f32], label: &str) {
    let name = card.path.display();
    let ModelKind::Reranker { activation } = card.kind else {
        panic!("{name} is no reranker");
    };
    assert_eq!(logits.len(), expected.raw_logits.len(), "{name} {label}");
    for (i, (&got, &want)) in logits.iter().zip(&expected.raw_logits).enumerate() {
        assert!(
            logit_close(got, want),
            "{name} {label}: document {i}: logit {got}, want {want}"
        );
        let score = activation.apply(got);
        assert!(
            logit_close(score, expected.scores[i]),
            "{name} {label}: document {i}: score {score}, want {}",
            expected.scores[i]
        );
    }
    assert_eq!(
        ranking(logits),
        expected
            .ranking
            .iter()
            .map(|r| r.corpus_id)
            .collect::<Vec<_>>(),
        "{name} {label}: ranking"
    );
}

/// Document indices by logit, best first.
pub fn ranking(logits: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    order
}

/// Tokenizes every (query, document) pair as the server does, checks the ids against the
/// reference's, and runs the pairs through `backend` in one batch and one at a time; returns the
/// logits of both runs, in document order.
///
/// # Panics
///
/// When a token id differs or the backend fails.
pub fn run_pairs(
    card: &ModelCard,
    expected: &CrossEncoder,
    backend: &mut dyn Backend,
) -> (Vec<f32>, Vec<f32>) {
    let tokenizer = tokenizer(card);
    let pairs: Vec<EncodedPair> = expected
        .documents
        .iter()
        .map(|document| {
            tokenizer
                .encode_pair(&expected.query, document, true, None)
                .unwrap()
                .for_token_types(card.token_types)
        })
        .collect();
    let ids: Vec<&Vec<u32>> = pairs.iter().map(|pair| &pair.ids).collect();
    assert_eq!(
        ids,
        expected.token_ids.iter().collect::<Vec<_>>(),
        "{}: pair token ids",
        card.path.display()
    );
    let mut logits = |pairs: &[EncodedPair]| {
        let mut batch = Batch::from_sequences(
            pairs
                .iter()
                .map(|pair| (pair.ids.as_slice(), AdapterId::BASE)),
        );
        for (i, pair) in pairs.iter().enumerate() {
            batch.set_token_types(i, &pair.type_ids);
        }
        let out = backend.embed(&batch).unwrap();
        assert_eq!(out.dim, 1, "one logit per pair");
        out.data
    };
    let batched = logits(&pairs);
    let alone = pairs
        .iter()
        .flat_map(|pair| logits(std::slice::from_ref(pair)))
        .collect();
    (batched, alone)
}

/// [`run_pairs`], then [`check_logits`] on both runs.
///
/// # Panics
///
/// When a token id, a logit, a score or the ranking differs.
pub fn check_pairs(card: &ModelCard, expected: &CrossEncoder, backend: &mut dyn Backend) {
    let (batched, alone) = run_pairs(card, expected, backend);
    check_logits(card, expected, &batched, "batched");
    check_logits(card, expected, &alone, "alone");
}
