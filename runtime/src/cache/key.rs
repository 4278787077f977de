//! What a cached vector is filed under: a SHA-256 over everything that changes the vector before
//! post-processing.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use embedrt_backend_core::AdapterId;
use sha2::{Digest, Sha256};

/// Bumped when the meaning of a cached vector changes (what is hashed, how vectors are stored),
/// so a shared Redis never serves an older process's entries to a newer one.
const KEY_VERSION: &[u8] = b"embedrt-cache-v1";

/// A model's identity: a digest of its weight, tokenizer and config files' contents (and names),
/// so two processes share entries exactly when they serve the same files, whatever the model is
/// called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelIdentity([u8; 32]);

impl ModelIdentity {
    /// Hashes the files of the model folder `dir` that decide its vectors: `config.json`, the
    /// tokenizer's files, and every weight file (`*.onnx`, `*.onnx_data`, `*.safetensors`,
    /// `*.bin`) in the folder and its `onnx/` subfolder.
    ///
    /// # Errors
    ///
    /// When a file cannot be read.
    pub fn of_folder(dir: &Path) -> Result<Self> {
        let mut digest = Sha256::new();
        for (name, path) in identity_files(dir)? {
            digest.update(name.as_bytes());
            digest.update([0]);
            let mut file =
                std::fs::File::open(&path).with_context(|| format!("{}", path.display()))?;
            std::io::copy(&mut file, &mut digest).with_context(|| format!("{}", path.display()))?;
        }
        Ok(Self(digest.finalize().into()))
    }

    /// An identity from a known digest (tests, and models assembled in memory).
    pub fn from_digest(digest: [u8; 32]) -> Self {
        Self(digest)
    }
}

/// The files [`ModelIdentity::of_folder`] hashes, by path relative to `dir`, in name order.
fn identity_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    const NAMED: [&str; 5] = [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "sentence_bert_config.json",
    ];
    const WEIGHTS: [&str; 4] = [".onnx", ".onnx_data", ".safetensors", ".bin"];
    let mut files = Vec::new();
    for folder in ["", "onnx"] {
        let path = dir.join(folder);
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("{}", path.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let wanted = NAMED.contains(&name.as_str())
                || WEIGHTS.iter().any(|suffix| name.ends_with(suffix));
            if wanted
                && entry
                    .file_type()
                    .is_ok_and(|t| t.is_file() || t.is_symlink())
            {
                let relative = if folder.is_empty() {
                    name
                } else {
                    format!("{folder}/{name}")
                };
                files.push((relative, entry.path()));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The key of one input's vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// The key of the sequence `ids` (token ids after tokenization: the task's instruction,
    /// special tokens and truncation are in them) run with `adapter` on a variant whose backend
    /// and number format `backend` names (e.g. `onnx/int8`, [`Variant::backend_tag`]), of the
    /// model `model`. The adapter is hashed as the ABI's integer, so keys stay those of earlier
    /// versions.
    ///
    /// [`Variant::backend_tag`]: crate::variant::Variant::backend_tag
    pub fn new(model: &ModelIdentity, backend: &str, adapter: AdapterId, ids: &[u32]) -> Self {
        let mut digest = Sha256::new();
        digest.update(KEY_VERSION);
        digest.update(model.0);
        digest.update((backend.len() as u64).to_le_bytes());
        digest.update(backend.as_bytes());
        digest.update(adapter.to_abi().to_le_bytes());
        digest.update((ids.len() as u64).to_le_bytes());
        for id in ids {
            digest.update(id.to_le_bytes());
        }
        Self(digest.finalize().into())
    }

    /// The key as Redis stores it: `embedrt:` and 64 hex digits.
    pub fn redis_key(&self) -> String {
        use std::fmt::Write;
        let mut key = String::with_capacity(8 + 64);
        key.push_str("embedrt:");
        for byte in self.0 {
            // Writing into the String itself: no allocation per byte.
            let _ = write!(key, "{byte:02x}");
        }
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_of_the_key_matters() {
        let model = ModelIdentity::from_digest([1; 32]);
        let other_model = ModelIdentity::from_digest([2; 32]);
        let base = CacheKey::new(&model, "onnx/f32", AdapterId::BASE, &[101, 7592, 102]);
        assert_eq!(
            base,
            CacheKey::new(&model, "onnx/f32", AdapterId::BASE, &[101, 7592, 102])
        );
        let changed = [
            CacheKey::new(&other_model, "onnx/f32", AdapterId::BASE, &[101, 7592, 102]),
            CacheKey::new(&model, "onnx/int8", AdapterId::BASE, &[101, 7592, 102]),
            CacheKey::new(&model, "candle/f32", AdapterId::BASE, &[101, 7592, 102]),
            CacheKey::new(&model, "onnx/f32", AdapterId::adapter(0), &[101, 7592, 102]),
            CacheKey::new(&model, "onnx/f32", AdapterId::BASE, &[101, 7592]),
            CacheKey::new(&model, "onnx/f32", AdapterId::BASE, &[101, 7593, 102]),
        ];
        for key in changed {
            assert_ne!(key, base);
        }
        let redis = base.redis_key();
        assert!(
            redis.starts_with("embedrt:") && redis.len() == 8 + 64,
            "{redis}"
        );
    }

    #[test]
    fn identity_follows_file_contents_not_the_folder_name() {
        let root = std::env::temp_dir().join(format!("embedrt-identity-{}", std::process::id()));
        let (a, b) = (root.join("a"), root.join("b"));
        for dir in [&a, &b] {
            std::fs::create_dir_all(dir.join("onnx")).unwrap();
            std::fs::write(dir.join("config.json"), "{}").unwrap();
            std::fs::write(dir.join("tokenizer.json"), "tok").unwrap();
            std::fs::write(dir.join("onnx/model.onnx"), "graph").unwrap();
            std::fs::write(dir.join("README.md"), "not part of it").unwrap();
        }
        std::fs::write(b.join("README.md"), "different, still not part of it").unwrap();
        let identity = |dir: &Path| ModelIdentity::of_folder(dir).unwrap();
        assert_eq!(identity(&a), identity(&b));
        std::fs::write(b.join("onnx/model.onnx"), "other graph").unwrap();
        assert_ne!(identity(&a), identity(&b));
        std::fs::write(b.join("onnx/model.onnx"), "graph").unwrap();
        std::fs::write(b.join("tokenizer.json"), "other tok").unwrap();
        assert_ne!(identity(&a), identity(&b));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
