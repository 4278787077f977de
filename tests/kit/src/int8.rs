//! The quality gates an int8 variant passes against its engine's fp32 one, on held-out text the
//! quantizers never calibrate on (the onnx and the openvino backends' tests share them).

use embedrt_runtime::backend_core::{AdapterId, Backend, Batch};
use embedrt_runtime::postprocess::l2_normalize;
use embedrt_runtime::tokenize::TextTokenizer;

use crate::golden;
use crate::paths::repo_root;
use crate::vectors::cosine;

/// Per vector: the mean cosine to the fp32 vector is at least this...
pub const MEAN_COSINE: f32 = 0.995;
/// ...and the lowest at least this.
pub const MIN_COSINE: f32 = 0.98;
/// Ranking: each sentence's nearest neighbours under int8 and under fp32...
pub const NEIGHBOURS: usize = 10;
/// ...overlap this much on average.
pub const MIN_OVERLAP: f32 = 0.9;

/// How an int8 variant compares with its fp32 one.
#[derive(Clone, Copy, Debug)]
pub struct Agreement {
    /// Mean cosine over the held-out texts.
    pub mean: f32,
    /// Lowest cosine.
    pub lowest: f32,
    /// Mean overlap of the [`NEIGHBOURS`] nearest sentences.
    pub overlap: f32,
}

/// The held-out texts: the load generator's 1,000 sentences (the ranking set) then the golden
/// fixture's texts, none of which the quantizers calibrate on.
///
/// # Panics
///
/// When a held-out text is a calibration text.
pub fn held_out() -> Vec<String> {
    let read = |path: &str| -> Vec<String> {
        std::fs::read_to_string(repo_root().join(path))
            .unwrap()
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(str::to_string)
            .collect()
    };
    let sentences = read("benches/data/sentences.txt");
    let calibration = read("scripts/data/calibration.txt");
    assert_eq!(sentences.len(), 1000);
    let texts: Vec<String> = sentences
        .into_iter()
        .chain(golden::minilm().texts)
        .collect();
    for text in &texts {
        assert!(
            !calibration.contains(text),
            "{text:?} is a calibration text"
        );
    }
    texts
}

/// Normalized embeddings of `texts` by `backend`, 32 at a time.
///
/// # Panics
///
/// When a text cannot be tokenized or the backend fails.
pub fn embed(
    backend: &mut dyn Backend,
    tokenizer: &TextTokenizer,
    texts: &[String],
) -> Vec<Vec<f32>> {
    let ids: Vec<Vec<u32>> = texts
        .iter()
        .map(|text| tokenizer.encode(text, true).unwrap())
        .collect();
    let mut vectors = Vec::with_capacity(texts.len());
    for chunk in ids.chunks(32) {
        let batch =
            Batch::from_sequences(chunk.iter().map(|ids| (ids.as_slice(), AdapterId::BASE)));
        let pooled = backend.embed(&batch).unwrap();
        for row in 0..chunk.len() {
            let mut vector = pooled.row(row).to_vec();
            l2_normalize(&mut vector);
            vectors.push(vector);
        }
    }
    vectors
}

/// The `k` nearest others of each vector, by cosine (the vectors are normalized).
fn neighbours(vectors: &[Vec<f32>], k: usize) -> Vec<Vec<usize>> {
    (0..vectors.len())
        .map(|i| {
            let mut scored: Vec<(f32, usize)> = (0..vectors.len())
                .filter(|&j| j != i)
                .map(|j| (cosine(&vectors[i], &vectors[j]), j))
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            scored.into_iter().take(k).map(|(_, j)| j).collect()
        })
        .collect()
}

/// Embeds the [`held_out`] texts with `fp32` and `int8` (all-MiniLM-L6-v2's tokenizer) and
/// asserts the gates; prints and returns the figures.
///
/// # Panics
///
/// When a gate fails, or an int8 vector of a golden text is below [`MIN_COSINE`] of
/// sentence-transformers' own.
pub fn check_gates(fp32: &mut dyn Backend, int8: &mut dyn Backend, what: &str) -> Agreement {
    let card = crate::minilm::card();
    let tokenizer =
        TextTokenizer::load(&card.path, card.max_input_tokens, card.vocab_size).unwrap();
    let texts = held_out();
    let reference = embed(fp32, &tokenizer, &texts);
    let quantized = embed(int8, &tokenizer, &texts);
    let cosines: Vec<f32> = reference
        .iter()
        .zip(&quantized)
        .map(|(a, b)| cosine(a, b))
        .collect();
    assert_eq!(cosines.len(), texts.len());
    let mean = cosines.iter().sum::<f32>() / cosines.len() as f32;
    let lowest = cosines.iter().copied().fold(f32::INFINITY, f32::min);
    let (fp32_near, int8_near) = (
        neighbours(&reference[..1000], NEIGHBOURS),
        neighbours(&quantized[..1000], NEIGHBOURS),
    );
    let overlap = fp32_near
        .iter()
        .zip(&int8_near)
        .map(|(a, b)| a.iter().filter(|j| b.contains(j)).count() as f32 / NEIGHBOURS as f32)
        .sum::<f32>()
        / 1000.0;
    eprintln!(
        "{what} int8 vs fp32 on {} held-out texts: mean cosine {mean:.4}, min {lowest:.4}, \
         {NEIGHBOURS}-NN overlap {overlap:.3}",
        texts.len()
    );
    assert!(mean >= MEAN_COSINE, "mean cosine {mean}");
    assert!(lowest >= MIN_COSINE, "lowest cosine {lowest}");
    assert!(overlap >= MIN_OVERLAP, "{NEIGHBOURS}-NN overlap {overlap}");
    for (i, want) in golden::minilm().embeddings.iter().enumerate() {
        let similarity = cosine(&quantized[1000 + i], want);
        assert!(
            similarity >= MIN_COSINE,
            "golden text {i}: cosine {similarity}"
        );
    }
    Agreement {
        mean,
        lowest,
        overlap,
    }
}
