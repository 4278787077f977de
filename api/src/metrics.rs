//! The Prometheus exporter behind `GET /metrics`: installs the global `metrics` recorder with
//! histogram buckets suited to each metric, and keeps it trimmed.

use std::time::Duration;

use anyhow::Result;
use embedrt_runtime::telemetry;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Seconds: 1 ms to 30 s.
const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Sequences per batch.
const BATCH_SIZES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
/// Tokens per batch.
const BATCH_TOKENS: &[f64] = &[16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0];
/// Cosine agreement between a shadow and the answer.
const COSINES: &[f64] = &[0.9, 0.99, 0.999, 0.9999, 0.99999, 0.999999, 1.0];

/// Largest difference between a shadow's rerank logits and the answer's.
const LOGIT_DIFFS: &[f64] = &[1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0];

/// Installs the process-wide recorder and returns the handle that renders `/metrics`.
///
/// # Errors
///
/// When a bucket list is empty or a recorder is already installed.
pub fn install() -> Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)?
        .set_buckets_for_metric(Matcher::Full(telemetry::BATCH_SIZE.into()), BATCH_SIZES)?
        .set_buckets_for_metric(Matcher::Full(telemetry::BATCH_TOKENS.into()), BATCH_TOKENS)?
        .set_buckets_for_metric(Matcher::Prefix("embedrt_shadow_cosine".into()), COSINES)?
        .set_buckets_for_metric(
            Matcher::Full(telemetry::SHADOW_LOGIT_DIFF_MAX.into()),
            LOGIT_DIFFS,
        )?
        .install_recorder()?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}
