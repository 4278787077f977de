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
    /// The architecture, as detected from `config.json`.
    pub architecture: Architecture,
    /// Task (adapter) names in adapter order; task id `k + 1` selects adapter `k`, id 0 the base
    /// weights. Empty for models without adapters.
    #[serde(default)]
    pub tasks: Vec<String>,
    /// The instruction prepended to inputs of each task (same order as `tasks`; often empty).
    #[serde(default)]
    pub task_instructions: Vec<String>,
    /// The Matryoshka sizes the model was trained for; empty means any size up to `hidden_size`.
    #[serde(default)]
    pub matryoshka_dimensions: Vec<usize>,
}

/// Model families embedrt knows how to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    /// BERT-family encoders (BERT, MiniLM, bge, e5, gte) with absolute positions.
    Bert,
    /// jina-embeddings-v3: XLM-RoBERTa with rotary positions and stacked LoRA task adapters.
    JinaV3,
}

/// jina-embeddings-v3's documented context (its position tables allow 8194).
const JINA_V3_MAX_TOKENS: usize = 8192;

/// The task name that selects the base weights of a model with adapters.
pub const BASE_TASK: &str = "none";

impl ModelCard {
    /// The task id of `name` (`"none"` is 0, the base weights), if the model has that task.
    pub fn task_id(&self, name: &str) -> Option<u32> {
        if name == BASE_TASK {
            return Some(0);
        }
        self.tasks
            .iter()
            .position(|t| t == name)
            .map(|k| k as u32 + 1)
    }

    /// The instruction prepended to inputs of task `id` ("" for none).
    pub fn instruction(&self, id: u32) -> &str {
        id.checked_sub(1)
            .and_then(|k| self.task_instructions.get(k as usize))
            .map_or("", String::as_str)
    }
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
        let mut card = ModelCard {
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
            architecture: Architecture::Bert,
            tasks: Vec::new(),
            task_instructions: Vec::new(),
            matryoshka_dimensions: Vec::new(),
        };
        if config.get("lora_adaptations").is_some() {
            card.read_jina_v3(&config)?;
        }
        Ok(card)
    }

    /// Fills in what jina-embeddings-v3's config.json says (it has no `model_type`; its
    /// `lora_adaptations` identify it).
    fn read_jina_v3(&mut self, config: &Value) -> Result<()> {
        let list = |key: &str| config.get(key).cloned().unwrap_or(Value::Array(Vec::new()));
        self.architecture = Architecture::JinaV3;
        self.tasks = serde_json::from_value(list("lora_adaptations"))
            .context("config.json: `lora_adaptations` must be a list of strings")?;
        let instructions = config.get("task_instructions").and_then(Value::as_object);
        self.task_instructions = self
            .tasks
            .iter()
            .map(|task| {
                let instruction = instructions
                    .and_then(|i| i.get(task))
                    .and_then(Value::as_str);
                instruction.unwrap_or("").to_string()
            })
            .collect();
        self.matryoshka_dimensions = serde_json::from_value(list("matryoshka_dimensions"))
            .context("config.json: `matryoshka_dimensions` must be a list of integers")?;
        self.pooling = match config.get("emb_pooler").and_then(Value::as_str) {
            None => Pooling::Mean,
            Some("cls") => Pooling::Cls,
            Some(other) => bail!("config.json: unsupported `emb_pooler` {other:?}"),
        };
        // The official `encode` normalizes by default.
        self.normalize = true;
        self.max_tokens = self.max_tokens.min(JINA_V3_MAX_TOKENS);
        Ok(())
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
    fn detects_jina_v3_by_its_adapters() {
        let card = ModelCard::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/jina-v3-tiny"),
        )
        .unwrap();
        assert_eq!(card.architecture, Architecture::JinaV3);
        assert_eq!(card.tasks.len(), 5);
        assert_eq!(card.task_id("none"), Some(0));
        assert_eq!(card.task_id("retrieval.query"), Some(1));
        assert_eq!(card.task_id("text-matching"), Some(5));
        assert_eq!(card.task_id("summarization"), None);
        assert_eq!(
            card.instruction(2),
            "Represent the document for retrieval: "
        );
        assert_eq!(card.instruction(0), "");
        assert_eq!(card.matryoshka_dimensions, vec![8, 16, 32]);
        assert_eq!(
            (card.max_tokens, card.pad_token_id, card.pooling),
            (8192, 1, Pooling::Mean)
        );
        assert!(card.normalize);
    }

    #[test]
    fn missing_config_is_an_error() {
        let err = ModelCard::load(Path::new("/nonexistent/model")).unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");
    }
}
