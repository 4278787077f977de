//! The embedding cache: pooled vectors of inputs a backend already ran, looked up before the
//! backend, in two layers: this process's memory (bounded by bytes) and, optionally, a Redis
//! shared by several processes.
//!
//! What is cached is the backend's pooled vector, *before* Matryoshka truncation and
//! normalization, so one entry serves every `dimensions`, `normalized` and `encoding_format`.
//! Entries are filed under a [`CacheKey`]: a hash of the model's files ([`ModelIdentity`]), the
//! variant's backend and number format, the adapter, and the token ids (which carry the
//! task's instruction, the special tokens and truncation). Keying on token ids rather than text
//! means a hit still pays for tokenization (a few percent of a request's CPU), and in exchange
//! text and token-id inputs share entries and no tokenizer setting can be left out of the key.
//! Late-chunking requests bypass the cache (their vectors depend on the whole document).
//!
//! A lookup asks memory first, then Redis for what memory lacks (one `MGET`); Redis hits are
//! copied into memory. What neither has goes to the backend, and its vectors are stored in both
//! layers (Redis in the background, off the request's path). Redis down or slow never fails a
//! request: see [`shared`](SharedLayer).

mod key;
mod memory;
mod shared;

use std::sync::Arc;
use std::time::Duration;

pub use key::{CacheKey, ModelIdentity};
use memory::MemoryLayer;
use shared::SharedLayer;

use crate::config::CacheConfig;
use crate::telemetry;

/// A cached vector.
pub type Vector = Arc<[f32]>;

/// Both layers; either may be off.
pub struct EmbeddingCache {
    memory: Option<MemoryLayer>,
    shared: Option<Arc<SharedLayer>>,
}

impl EmbeddingCache {
    /// The cache `settings` describe; `None` when both layers are off.
    ///
    /// # Errors
    ///
    /// When the Redis URL cannot be parsed.
    pub fn new(settings: &CacheConfig) -> anyhow::Result<Option<Self>> {
        if !settings.enabled() {
            return Ok(None);
        }
        let memory = (settings.memory_bytes > 0)
            .then(|| MemoryLayer::new(settings.memory_bytes, settings.ttl()));
        let shared = match &settings.redis_url {
            Some(url) => Some(Arc::new(
                SharedLayer::new(
                    url,
                    Duration::from_millis(settings.redis_timeout_ms),
                    settings.ttl(),
                )
                .map_err(|e| anyhow::anyhow!("`cache.redis_url`: {e}"))?,
            )),
            None => None,
        };
        Ok(Some(Self { memory, shared }))
    }

    /// The vectors of `keys` for model `model`, in order, `None` where neither layer has one;
    /// records hits and misses per layer.
    pub async fn lookup(&self, model: &str, keys: &[CacheKey]) -> Vec<Option<Vector>> {
        let mut found: Vec<Option<Vector>> = match &self.memory {
            Some(memory) => keys.iter().map(|key| memory.get(key)).collect(),
            None => vec![None; keys.len()],
        };
        if self.memory.is_some() {
            record(model, "memory", &found);
        }
        let Some(shared) = &self.shared else {
            return found;
        };
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| found[i].is_none()).collect();
        if missing.is_empty() {
            return found;
        }
        let asked: Vec<CacheKey> = missing.iter().map(|&i| keys[i]).collect();
        let answers = shared
            .get_many(model, &asked)
            .await
            .unwrap_or_else(|| vec![None; asked.len()]);
        record(model, "redis", &answers);
        for (i, answer) in missing.into_iter().zip(answers) {
            if let (Some(vector), Some(memory)) = (&answer, &self.memory) {
                memory.insert(keys[i], Arc::clone(vector));
            }
            found[i] = answer;
        }
        found
    }

    /// Stores the backend's vectors `entries` of model `model`: in memory now, in Redis in the
    /// background.
    pub fn store(&self, model: &str, entries: Vec<(CacheKey, Vector)>) {
        if entries.is_empty() {
            return;
        }
        if let Some(memory) = &self.memory {
            for (key, vector) in &entries {
                memory.insert(*key, Arc::clone(vector));
            }
        }
        if let Some(shared) = &self.shared {
            let shared = Arc::clone(shared);
            let model = model.to_string();
            tokio::spawn(async move { shared.put_many(&model, &entries).await });
        }
    }

    /// Sets the `embedrt_cache_bytes` gauge to what the in-process layer holds now, after its
    /// pending evictions ran. Called when the metrics are scraped rather than on every store,
    /// which kept that bookkeeping off the request path.
    pub fn record_bytes(&self) {
        if let Some(memory) = &self.memory {
            metrics::gauge!(telemetry::CACHE_BYTES, "layer" => "memory").set(memory.bytes() as f64);
        }
    }
}

/// Counts the hits and misses of one layer's answers.
fn record(model: &str, layer: &'static str, answers: &[Option<Vector>]) {
    let hits = answers.iter().filter(|a| a.is_some()).count() as u64;
    let misses = answers.len() as u64 - hits;
    let labels = [("layer", layer.to_string()), ("model", model.to_string())];
    if hits > 0 {
        metrics::counter!(telemetry::CACHE_HITS, &labels).increment(hits);
    }
    if misses > 0 {
        metrics::counter!(telemetry::CACHE_MISSES, &labels).increment(misses);
    }
}
