//! The shared layer: vectors in a Redis that several processes read and fill.
//!
//! Redis is an optimisation, never a dependency: every call has a short deadline, a failed or late
//! call counts as a miss, and after [`FAILURES_TO_OPEN`] failures in a row the layer is skipped
//! for [`OPEN_FOR`] (a circuit breaker) so a dead Redis costs requests nothing, then one request
//! tries again.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{CacheKey, Vector};
use crate::telemetry;

/// Failures in a row that open the breaker.
const FAILURES_TO_OPEN: u32 = 3;
/// How long an open breaker skips Redis before letting one call try again.
const OPEN_FOR: Duration = Duration::from_secs(2);

/// A Redis holding vectors as little-endian f32 bytes under [`CacheKey::redis_key`].
pub struct SharedLayer {
    client: redis::Client,
    connection: OnceLock<ConnectionManager>,
    timeout: Duration,
    ttl: Option<Duration>,
    breaker: Breaker,
}

impl SharedLayer {
    /// A layer on the Redis at `url` (connected on first use), each call given at most
    /// `timeout`, entries kept for `ttl`.
    ///
    /// # Errors
    ///
    /// When `url` is not a Redis URL.
    pub fn new(url: &str, timeout: Duration, ttl: Option<Duration>) -> redis::RedisResult<Self> {
        Ok(Self {
            client: redis::Client::open(url)?,
            connection: OnceLock::new(),
            timeout,
            ttl,
            breaker: Breaker::default(),
        })
    }

    /// The vectors filed under `keys` (`None` for each one Redis does not have), or `None` when
    /// Redis cannot answer in time or the breaker is open.
    pub async fn get_many(&self, model: &str, keys: &[CacheKey]) -> Option<Vec<Option<Vector>>> {
        let names: Vec<String> = keys.iter().map(CacheKey::redis_key).collect();
        let mut command = redis::cmd("MGET");
        command.arg(&names);
        let values: Vec<Option<Vec<u8>>> = self
            .call(
                model,
                |mut c| async move { command.query_async(&mut c).await },
            )
            .await?;
        Some(values.into_iter().map(|v| v.and_then(decode)).collect())
    }

    /// Files `entries` in Redis (one round trip); failures only count against the breaker.
    pub async fn put_many(&self, model: &str, entries: &[(CacheKey, Vector)]) {
        let mut pipeline = redis::pipe();
        for (key, vector) in entries {
            let command = pipeline.cmd("SET").arg(key.redis_key()).arg(encode(vector));
            if let Some(ttl) = self.ttl {
                command.arg("PX").arg(ttl.as_millis() as u64);
            }
            command.ignore();
        }
        let _: Option<()> = self
            .call(
                model,
                |mut c| async move { pipeline.query_async(&mut c).await },
            )
            .await;
    }

    /// Runs `request` on the connection within the deadline, unless the breaker is open;
    /// records failures.
    async fn call<T, F, Answer>(&self, model: &str, request: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Answer,
        Answer: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if !self.breaker.allows() {
            record_error(model, "circuit_open");
            return None;
        }
        let connection = self.connection()?.clone();
        let result = tokio::time::timeout(self.timeout, request(connection)).await;
        match result {
            Ok(Ok(value)) => {
                self.breaker.succeeded();
                Some(value)
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, "redis call failed");
                self.breaker.failed();
                record_error(model, "error");
                None
            }
            Err(_) => {
                self.breaker.failed();
                record_error(model, "timeout");
                None
            }
        }
    }

    /// The connection manager, made on first use (it reconnects by itself afterwards).
    fn connection(&self) -> Option<&ConnectionManager> {
        if let Some(connection) = self.connection.get() {
            return Some(connection);
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        match ConnectionManager::new_lazy_with_config(self.client.clone(), config) {
            Ok(connection) => Some(self.connection.get_or_init(|| connection)),
            Err(error) => {
                tracing::warn!(%error, "cannot set up the redis connection");
                None
            }
        }
    }
}

fn record_error(model: &str, kind: &'static str) {
    metrics::counter!(
        telemetry::CACHE_ERRORS,
        "layer" => "redis",
        "model" => model.to_string(),
        "kind" => kind
    )
    .increment(1);
}

/// A vector as Redis stores it.
fn encode(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A vector from what Redis stored; `None` for a value that cannot be one.
fn decode(bytes: Vec<u8>) -> Option<Vector> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    )
}

/// Counts failures in a row; open (skip Redis) for a while after too many.
#[derive(Default)]
struct Breaker {
    failures: AtomicU32,
    open_until: Mutex<Option<Instant>>,
}

impl Breaker {
    /// Whether a call may go to Redis now: the breaker is closed, or open long enough that one
    /// call may try (which re-opens it for another while if it fails).
    fn allows(&self) -> bool {
        let mut open_until = self.open_until.lock().unwrap_or_else(|p| p.into_inner());
        match *open_until {
            Some(until) if Instant::now() < until => false,
            Some(_) => {
                // Half-open: this call tries; the others wait for its outcome a while longer.
                *open_until = Some(Instant::now() + OPEN_FOR);
                true
            }
            None => true,
        }
    }

    fn succeeded(&self) {
        self.failures.store(0, Ordering::Relaxed);
        *self.open_until.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn failed(&self) {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= FAILURES_TO_OPEN {
            let mut open_until = self.open_until.lock().unwrap_or_else(|p| p.into_inner());
            if open_until.is_none() {
                tracing::warn!(
                    "redis failed {failures} times in a row; going on without it for a while"
                );
            }
            *open_until = Some(Instant::now() + OPEN_FOR);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_byte_for_byte() {
        let vector = [0.1f32, -2.5, f32::MIN_POSITIVE, 1e30];
        let back = decode(encode(&vector)).unwrap();
        assert_eq!(&*back, &vector);
        assert!(decode(vec![1, 2, 3]).is_none());
        assert!(decode(Vec::new()).is_none());
    }

    #[test]
    fn the_breaker_opens_after_failures_and_lets_one_call_try_later() {
        let breaker = Breaker::default();
        for _ in 0..FAILURES_TO_OPEN - 1 {
            breaker.failed();
            assert!(breaker.allows());
        }
        breaker.failed();
        assert!(!breaker.allows(), "open after {FAILURES_TO_OPEN} failures");
        *breaker.open_until.lock().unwrap() = Some(Instant::now());
        assert!(breaker.allows(), "half-open: one call tries");
        assert!(!breaker.allows(), "the others keep waiting");
        breaker.succeeded();
        assert!(breaker.allows());
    }
}
