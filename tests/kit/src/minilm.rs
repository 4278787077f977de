//! The all-MiniLM-L6-v2 checks a backend runs in-process, against sentence-transformers'
//! vectors.

use embedrt_runtime::backend_core::{AdapterId, Backend, Batch};
use embedrt_runtime::postprocess::l2_normalize;
use embedrt_runtime::ModelCard;

use crate::golden;
use crate::paths::minilm_dir;
use crate::vectors::{assert_each_pair, cosine};

/// The card of the default model, as `scripts/setup.sh` prepares it.
///
/// # Panics
///
/// When setup has not run, or the card cannot be read.
pub fn card() -> ModelCard {
    ModelCard::load(&minilm_dir()).unwrap()
}

/// Checks `backend` against sentence-transformers' vectors (cosine at least `min_cosine` for
/// every text, the golden token ids in one batch), and that an input alone gives the vector it
/// gets in that padded batch (cosine above `padding_cosine`).
///
/// # Panics
///
/// When a vector is off, naming the text.
pub fn check_backend(backend: &mut dyn Backend, min_cosine: f32, padding_cosine: f32) {
    let expected = golden::minilm();
    let batch = Batch::from_sequences(
        expected
            .token_ids
            .iter()
            .map(|ids| (ids.as_slice(), AdapterId::BASE)),
    );
    let embeddings = backend.embed(&batch).unwrap();
    assert_each_pair(
        0..embeddings.rows(),
        &expected.embeddings,
        |i, row, want| {
            let mut got = embeddings.row(row).to_vec();
            l2_normalize(&mut got);
            let similarity = cosine(&got, want);
            assert!(
                similarity >= min_cosine,
                "text {i} ({:?}): cosine {similarity}",
                expected.texts[i]
            );
        },
    );
    // One sequence alone gives the same vector as inside the padded batch.
    let longest = (0..batch.len())
        .max_by_key(|&i| batch.ids(i).len())
        .unwrap();
    let shortest = (0..batch.len())
        .min_by_key(|&i| batch.ids(i).len())
        .unwrap();
    let alone = backend
        .embed(&Batch::from_sequences([(
            batch.ids(shortest),
            AdapterId::BASE,
        )]))
        .unwrap();
    assert!(
        cosine(alone.row(0), embeddings.row(shortest)) > padding_cosine,
        "padding changed the result"
    );
    assert_ne!(longest, shortest);
}
