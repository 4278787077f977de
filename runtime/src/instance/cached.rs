//! The embedding cache in front of a variant: the vectors it has come from it, only the rest
//! run on the backend, and those are stored. A reranker's logits are cached the same way, keyed
//! by each pair's token ids.

use std::sync::Arc;

use super::ModelInstance;
use crate::cache::{CacheKey, Vector};
use crate::request::EmbedError;
use crate::scheduler::Sequence;
use crate::variant::Variant;

impl ModelInstance {
    /// The pooled vectors of `sequences`, in order: from the cache where it has them, the rest
    /// from `variant` (then stored in the cache).
    pub(super) async fn run_cached(
        self: &Arc<Self>,
        variant: &Variant,
        sequences: Vec<Sequence>,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let Some((cache, identity)) = &self.cache else {
            return self.run_with_shadows(variant, sequences).await;
        };
        let backend = variant.backend_tag();
        let keys: Vec<CacheKey> = sequences
            .iter()
            .map(|s| CacheKey::new(identity, &backend, s.adapter, &s.ids))
            .collect();
        let width = self.card.output_width();
        let found: Vec<Option<Vector>> = cache
            .lookup(&self.name, &keys)
            .await
            .into_iter()
            // A stored value of the wrong width (another writer's mistake) is a miss.
            .map(|vector| vector.filter(|v| v.len() == width))
            .collect();
        let missing: Vec<Sequence> = sequences
            .into_iter()
            .zip(&found)
            .filter(|(_, hit)| hit.is_none())
            .map(|(sequence, _)| sequence)
            .collect();
        let mut computed = if missing.is_empty() {
            Vec::new()
        } else {
            self.run_with_shadows(variant, missing).await?
        }
        .into_iter();
        let mut entries = Vec::new();
        let mut vectors = Vec::with_capacity(keys.len());
        for (key, hit) in keys.into_iter().zip(found) {
            let vector = match hit {
                Some(vector) => vector.to_vec(),
                None => {
                    let vector = computed.next().ok_or_else(|| {
                        EmbedError::Internal("the backend answered fewer inputs".into())
                    })?;
                    entries.push((key, Vector::from(vector.as_slice())));
                    vector
                }
            };
            vectors.push(vector);
        }
        cache.store(&self.name, entries);
        Ok(vectors)
    }
}
