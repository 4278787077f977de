//! The in-process layer: a concurrent cache bounded by the bytes its entries take.

use std::sync::Arc;
use std::time::Duration;

use super::{CacheKey, Vector};

/// What one entry costs besides its vector: the key, the `Arc`'s counts and moka's bookkeeping
/// (measured roughly; the bound holds with it counted).
const ENTRY_OVERHEAD: usize = 32 + 16 + 96;

/// Vectors by key, evicting the least valuable (moka's TinyLFU) past `capacity` bytes.
pub struct MemoryLayer {
    entries: moka::sync::Cache<CacheKey, Vector>,
}

impl MemoryLayer {
    /// A layer that holds at most `capacity` bytes, each entry for at most `ttl`.
    pub fn new(capacity: u64, ttl: Option<Duration>) -> Self {
        let mut builder = moka::sync::Cache::builder().max_capacity(capacity).weigher(
            |_key: &CacheKey, vector: &Vector| -> u32 {
                u32::try_from(entry_bytes(vector)).unwrap_or(u32::MAX)
            },
        );
        if let Some(ttl) = ttl {
            builder = builder.time_to_live(ttl);
        }
        Self {
            entries: builder.build(),
        }
    }

    /// The vector filed under `key`, if held.
    pub fn get(&self, key: &CacheKey) -> Option<Vector> {
        self.entries.get(key)
    }

    /// Files `vector` under `key`.
    pub fn insert(&self, key: CacheKey, vector: Vector) {
        self.entries.insert(key, vector);
    }

    /// The bytes held now, after pending evictions ran.
    pub fn bytes(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
    }
}

/// What `vector` costs in the layer, overhead included.
fn entry_bytes(vector: &Arc<[f32]>) -> usize {
    ENTRY_OVERHEAD + std::mem::size_of_val::<[f32]>(vector)
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedrt_backend_core::AdapterId;

    #[test]
    fn stays_within_its_bound() {
        let capacity = 200_000;
        let layer = MemoryLayer::new(capacity, None);
        let identity = super::super::ModelIdentity::from_digest([0; 32]);
        for i in 0..10_000u32 {
            let key = CacheKey::new(&identity, "test", AdapterId::BASE, &[i]);
            layer.insert(key, Arc::from(vec![i as f32; 384]));
        }
        let held = layer.bytes();
        assert!(held <= capacity, "{held} bytes held, bound {capacity}");
        assert!(held > capacity / 2, "the layer is used: {held} bytes");
    }
}
