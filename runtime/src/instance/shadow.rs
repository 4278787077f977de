//! Shadow traffic: a sampled copy of a request's token ids runs on each shadow variant after the
//! answer has gone, and the cosine agreement of its vectors with the answer's is recorded (for
//! a reranker: the largest difference of its logits).

use std::sync::Arc;

use super::ModelInstance;
use crate::kind::ModelKind;
use crate::scheduler::Sequence;
use crate::telemetry;

impl ModelInstance {
    /// The shadows that get a copy of this request (each by its own sample rate).
    pub(super) fn sampled_shadows(&self) -> Vec<usize> {
        (0..self.variants.len())
            .filter(|&i| {
                self.variants[i]
                    .shadow_rate()
                    .is_some_and(|rate| self.router.sample(rate))
            })
            .collect()
    }

    /// Runs `sequences` on each of `shadows` in the background and records how closely their
    /// vectors agree with `answer` (cosine per input: the minimum and the mean per request).
    pub(super) fn spawn_shadows(
        self: &Arc<Self>,
        shadows: Vec<usize>,
        sequences: Vec<Sequence>,
        answer: Vec<Vec<f32>>,
    ) {
        let instance = Arc::clone(self);
        let reranks = matches!(self.card.kind, ModelKind::Reranker { .. });
        tokio::spawn(async move {
            for index in shadows {
                let shadow = &instance.variants[index];
                let labels = shadow.labels();
                let status = match shadow.run(sequences.clone()).await {
                    Ok(vectors) if reranks => {
                        let diff = vectors
                            .iter()
                            .flatten()
                            .zip(answer.iter().flatten())
                            .map(|(a, b)| (a - b).abs())
                            .fold(0f32, f32::max);
                        metrics::histogram!(telemetry::SHADOW_LOGIT_DIFF_MAX, labels.labels())
                            .record(diff as f64);
                        "ok"
                    }
                    Ok(vectors) => {
                        let cosines: Vec<f32> = vectors
                            .iter()
                            .zip(&answer)
                            .map(|(a, b)| cosine(a, b))
                            .collect();
                        let min = cosines.iter().copied().fold(f32::INFINITY, f32::min);
                        let mean = cosines.iter().sum::<f32>() / cosines.len().max(1) as f32;
                        metrics::histogram!(telemetry::SHADOW_COSINE_MIN, labels.labels())
                            .record(min as f64);
                        metrics::histogram!(telemetry::SHADOW_COSINE_MEAN, labels.labels())
                            .record(mean as f64);
                        "ok"
                    }
                    Err(error) => {
                        tracing::debug!(variant = shadow.name(), %error, "shadow copy failed");
                        telemetry::status_label::<()>(&Err(error))
                    }
                };
                metrics::counter!(telemetry::REQUESTS, labels.with("status", status)).increment(1);
            }
        });
    }
}

/// Cosine similarity of two vectors of the same length (0 when either is zero).
fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norms =
        a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norms > 0.0 {
        dot / norms
    } else {
        0.0
    }
}
