//! Variants: the backends serving one model side by side, and the router that splits traffic
//! between them by weight, sticky per user.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use embedrt_backend_core::{Backend, BackendError, Capabilities, DType, Device};

use crate::config::{Role, VariantPlan};
use crate::request::EmbedError;
use crate::scheduler::{BatchPolicy, Restart, Scheduler, Sequence, SequenceResult, SubmitError};
use crate::telemetry::{self, VariantLabels};

/// One backend serving a model, with its own queue.
pub struct Variant {
    name: String,
    backend: String,
    device: Device,
    scheduler: Scheduler,
    weight: u32,
    shadow: Option<f64>,
    labels: VariantLabels,
}

impl Variant {
    /// Starts serving `replicas` (the same model loaded one or more times) as the variant
    /// `plan` of model `model`, with one queue batched by `batching` and an inference thread per
    /// replica; `restart` loads a replica again when its backend fails fatally.
    ///
    /// # Errors
    ///
    /// When an inference thread cannot be started.
    pub fn start(
        model: &str,
        plan: &VariantPlan,
        replicas: Vec<Box<dyn Backend>>,
        restart: Option<Restart>,
        batching: BatchPolicy,
    ) -> Result<Self> {
        let device = plan.settings.device;
        let labels = VariantLabels::new(model, &plan.name, &plan.backend, &device.to_string());
        let thread = format!("{model}-{}", plan.name);
        let scheduler = Scheduler::start(&thread, replicas, restart, batching, labels.clone())
            .with_context(|| format!("cannot start the inference threads of {thread}"))?;
        metrics::gauge!(telemetry::MODEL_LOADED, labels.labels()).increment(1.0);
        let (weight, shadow) = match plan.role {
            Role::Serving { weight } => (weight, None),
            // A shadow takes no share of the traffic.
            Role::Shadow { sample_rate } => (0, Some(sample_rate)),
        };
        Ok(Self {
            name: plan.name.clone(),
            backend: plan.backend.clone(),
            device,
            scheduler,
            weight,
            shadow,
            labels,
        })
    }

    /// The variant's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The backend's name (`onnx`, `candle`, ...).
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// Where the backend runs.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The number format the backend computes in, when it reports one.
    pub fn dtype(&self) -> Option<DType> {
        self.capabilities().dtype
    }

    /// This variant as an answer names it.
    pub fn served_by(&self) -> crate::request::ServedBy {
        crate::request::ServedBy {
            variant: self.name().to_string(),
            backend: self.backend().to_string(),
            device: self.device().to_string(),
        }
    }

    /// The backend and number format, as the cache files this variant's vectors under
    /// (`onnx/int8`): variants that share them compute the same vectors.
    pub fn backend_tag(&self) -> String {
        let dtype = self
            .dtype()
            .map_or("default".to_string(), |d| d.to_string());
        format!("{}/{dtype}", self.backend)
    }

    /// Its share of the traffic among the serving variants (0 for a shadow).
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// For a shadow, the fraction of requests it gets a copy of.
    pub fn shadow_rate(&self) -> Option<f64> {
        self.shadow
    }

    /// Whether the variant answers requests (not a shadow, and a weight above 0).
    pub fn serves(&self) -> bool {
        self.shadow.is_none() && self.weight > 0
    }

    /// The variant's metric labels.
    pub fn labels(&self) -> &VariantLabels {
        &self.labels
    }

    /// What the backend can do.
    pub fn capabilities(&self) -> &Capabilities {
        self.scheduler.capabilities()
    }

    /// Whether the backend still serves.
    pub fn is_healthy(&self) -> bool {
        self.scheduler.is_healthy()
    }

    /// Queues `sequences` and waits for every answer, in order.
    ///
    /// # Errors
    ///
    /// [`EmbedError::Overloaded`] when the queue is full, [`EmbedError::Unavailable`] when the
    /// backend failed or stopped, and the backend's error for a sequence it could not run.
    pub async fn run(&self, sequences: Vec<Sequence>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let receivers = self.scheduler.submit(sequences).map_err(|e| match e {
            SubmitError::QueueFull { .. } => EmbedError::Overloaded(e.to_string()),
            SubmitError::Unhealthy | SubmitError::Closed => EmbedError::Unavailable(e.to_string()),
        })?;
        let mut outputs = Vec::with_capacity(receivers.len());
        for receiver in receivers {
            let result: SequenceResult = receiver
                .await
                .map_err(|_| EmbedError::Unavailable("the inference thread stopped".into()))?;
            outputs.push(result.map_err(backend_error)?);
        }
        Ok(outputs)
    }

    /// How many replicas of the backend serve this variant.
    pub fn replicas(&self) -> usize {
        self.scheduler.replicas()
    }

    /// Runs `sequence` once on every replica, from a blocking thread (start-up warm-up).
    ///
    /// # Errors
    ///
    /// When the scheduler refuses it or a replica fails.
    pub fn warm_up(&self, sequence: &Sequence) -> Result<()> {
        for receiver in self.scheduler.submit_to_each(sequence)? {
            receiver
                .blocking_recv()
                .context("the inference thread stopped")??;
        }
        Ok(())
    }
}

impl Drop for Variant {
    fn drop(&mut self) {
        metrics::gauge!(telemetry::MODEL_LOADED, self.labels.labels()).decrement(1.0);
    }
}

fn backend_error(error: BackendError) -> EmbedError {
    match error {
        BackendError::InvalidInput(why) => EmbedError::invalid("input", why),
        BackendError::Unhealthy(why) => EmbedError::Unavailable(why),
        other => EmbedError::Internal(other.to_string()),
    }
}

/// Splits requests between serving variants in proportion to their weights. With a user key
/// the choice is a stable hash of it, so one user always gets the same variant; without one it is
/// pseudo-random.
pub struct Router {
    /// `(cumulative weight, variant index)` of the serving variants.
    buckets: Vec<(u64, usize)>,
    total: u64,
    counter: AtomicU64,
}

impl Router {
    /// A router over `variants` (shadows and weight-0 variants get no traffic).
    pub fn new(variants: &[Variant]) -> Self {
        let mut total = 0;
        let buckets = variants
            .iter()
            .enumerate()
            .filter(|(_, v)| v.serves())
            .map(|(i, v)| {
                total += u64::from(v.weight);
                (total, i)
            })
            .collect();
        Self {
            buckets,
            total,
            counter: AtomicU64::new(0),
        }
    }

    /// The index of the variant that serves a request from `user`.
    pub fn pick(&self, user: Option<&str>) -> usize {
        let draw = match user {
            Some(user) => fnv1a(user.as_bytes()),
            None => splitmix64(self.counter.fetch_add(1, Ordering::Relaxed)),
        } % self.total;
        self.buckets
            .iter()
            .find(|(upper, _)| draw < *upper)
            .map_or(0, |(_, i)| *i)
    }

    /// Whether a request numbered by the router's counter falls in a sample of `rate`.
    pub fn sample(&self, rate: f64) -> bool {
        let draw = splitmix64(self.counter.fetch_add(1, Ordering::Relaxed) ^ 0x5eed);
        (draw as f64 / u64::MAX as f64) < rate
    }
}

/// FNV-1a, 64 bits: a stable hash (the same in every process and version).
fn fnv1a(bytes: &[u8]) -> u64 {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    splitmix64(hash)
}

/// SplitMix64's finalizer: spreads consecutive inputs over the whole range.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(weights: &[u64]) -> Router {
        let mut total = 0;
        let buckets = weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                total += w;
                (total, i)
            })
            .collect();
        Router {
            buckets,
            total,
            counter: AtomicU64::new(0),
        }
    }

    #[test]
    fn split_follows_weights() {
        let router = router(&[90, 10]);
        let mut counts = [0usize; 2];
        for _ in 0..10_000 {
            counts[router.pick(None)] += 1;
        }
        assert!((8_800..=9_200).contains(&counts[0]), "{counts:?}");
    }

    #[test]
    fn users_are_sticky_and_spread() {
        let router = router(&[50, 50]);
        let mut counts = [0usize; 2];
        for user in 0..2_000 {
            let key = format!("user-{user}");
            let first = router.pick(Some(&key));
            assert!((0..5).all(|_| router.pick(Some(&key)) == first));
            counts[first] += 1;
        }
        assert!((900..=1_100).contains(&counts[0]), "{counts:?}");
    }
}
