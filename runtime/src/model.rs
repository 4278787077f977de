//! Model cards: what embedrt reads from a model folder in the Hugging Face / sentence-transformers
//! layout before any engine touches the weights.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::pooling::Pooling;

/// Everything about a model that does not depend on the engine that runs it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// The model folder.
    pub path: PathBuf,
    /// Width of the encoder's output.
    pub hidden_size: usize,
    /// Number of token ids the model knows.
    pub vocab_size: usize,
    /// Longest input in tokens, special tokens included (the sentence-transformers limit when set).
    pub max_tokens: usize,
    /// How token states are pooled.
    pub pooling: Pooling,
    /// Whether the model's own pipeline L2-normalizes its output (a `Normalize` module).
    pub normalize: bool,
    /// The id used to pad batches.
    pub pad_token_id: u32,
}

impl ModelCard {
    /// Reads the card of the model in `path`.
    ///
    /// Needs `config.json` and `tokenizer.json`; `1_Pooling/config.json`, `sentence_bert_config.json`,
    /// `tokenizer_config.json` and `modules.json` refine it when present.
    pub fn load(path: &Path) -> Result<Self> {
        let config = read_json(&path.join("config.json"))?;
        if !path.join("tokenizer.json").is_file() {
            bail!("{} has no tokenizer.json", path.display());
        }
        let hidden_size = usize_field(&config, "hidden_size")?;
        let vocab_size = usize_field(&config, "vocab_size")?;
        let max_positions = usize_field(&config, "max_position_embeddings")?;
        Ok(ModelCard {
            path: path.to_path_buf(),
            hidden_size,
            vocab_size,
            max_tokens: declared_max_tokens(path)?
                .unwrap_or(max_positions)
                .min(max_positions),
            pooling: pooling(path)?,
            normalize: normalizes(path)?,
            pad_token_id: config
                .get("pad_token_id")
                .and_then(Value::as_u64)
                .unwrap_or(0) as u32,
        })
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

fn read_optional_json(path: &Path) -> Result<Option<Value>> {
    if path.is_file() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

fn usize_field(config: &Value, key: &str) -> Result<usize> {
    config
        .get(key)
        .and_then(Value::as_u64)
        .map(|v| v as usize)
        .with_context(|| format!("config.json lacks a numeric `{key}`"))
}

/// The sentence-transformers limit, else a sane `model_max_length` from tokenizer_config.json.
fn declared_max_tokens(path: &Path) -> Result<Option<usize>> {
    if let Some(st) = read_optional_json(&path.join("sentence_bert_config.json"))? {
        if let Some(max) = st.get("max_seq_length").and_then(Value::as_u64) {
            return Ok(Some(max as usize));
        }
    }
    let from_tokenizer = read_optional_json(&path.join("tokenizer_config.json"))?
        .and_then(|tc| tc.get("model_max_length").and_then(Value::as_u64))
        .filter(|&max| max <= 1 << 20);
    Ok(from_tokenizer.map(|max| max as usize))
}

fn pooling(path: &Path) -> Result<Pooling> {
    let Some(config) = read_optional_json(&path.join("1_Pooling/config.json"))? else {
        return Ok(Pooling::Mean);
    };
    let flag = |key: &str| config.get(key).and_then(Value::as_bool).unwrap_or(false);
    match (
        flag("pooling_mode_mean_tokens"),
        flag("pooling_mode_cls_token"),
    ) {
        (true, false) => Ok(Pooling::Mean),
        (false, true) => Ok(Pooling::Cls),
        _ => bail!(
            "{}: only mean or CLS pooling is supported",
            path.join("1_Pooling/config.json").display()
        ),
    }
}

fn normalizes(path: &Path) -> Result<bool> {
    let Some(modules) = read_optional_json(&path.join("modules.json"))? else {
        return Ok(false);
    };
    Ok(modules.as_array().into_iter().flatten().any(|module| {
        module
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.ends_with(".Normalize"))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::create_dir_all(dir.join(name).parent().unwrap()).unwrap();
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn reads_sentence_transformers_layout() {
        let dir = std::env::temp_dir().join(format!("embedrt-card-{}", std::process::id()));
        write(
            &dir,
            "config.json",
            r#"{"hidden_size": 8, "vocab_size": 100, "max_position_embeddings": 512}"#,
        );
        write(&dir, "tokenizer.json", "{}");
        write(
            &dir,
            "tokenizer_config.json",
            r#"{"model_max_length": 128}"#,
        );
        write(
            &dir,
            "sentence_bert_config.json",
            r#"{"max_seq_length": 256}"#,
        );
        write(
            &dir,
            "1_Pooling/config.json",
            r#"{"pooling_mode_cls_token": true}"#,
        );
        write(
            &dir,
            "modules.json",
            r#"[{"type": "sentence_transformers.models.Normalize"}]"#,
        );
        let card = ModelCard::load(&dir).unwrap();
        assert_eq!(
            (card.hidden_size, card.vocab_size, card.max_tokens),
            (8, 100, 256)
        );
        assert_eq!(card.pooling, Pooling::Cls);
        assert!(card.normalize);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_config_is_an_error() {
        let err = ModelCard::load(Path::new("/nonexistent/model")).unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");
    }
}
