//! Model families: one entry per family says how embedrt recognises a model of it and what the
//! family implies beyond the generic Hugging Face and sentence-transformers files (pooling, task
//! adapters and their instructions, the default task, Matryoshka sizes, a documented context).
//!
//! Adding a family is one [`Family`] entry in [`FAMILIES`] plus one model implementation per
//! backend that should run it, dispatched on [`Family::architecture`] (see docs/ARCHITECTURE.md).

use anyhow::{bail, Context, Result};
use embedrt_backend_core::{architecture, Pooling};
use serde_json::Value;

/// What embedrt knows about one model family.
pub struct Family {
    /// The family's name; backends pick their implementation by it (the load document's
    /// `card.architecture`).
    pub architecture: &'static str,
    /// Whether a model's `config.json` belongs to this family.
    pub detect: fn(&Value) -> bool,
    /// What the family implies for a model with this `config.json`.
    pub traits: fn(&Value) -> Result<Traits>,
}

/// What a family implies for one model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Traits {
    /// Pooling when the folder has no `1_Pooling/config.json`.
    pub pooling: Pooling,
    /// `Some`: the family's own pipeline always normalizes (or never); `None`: `modules.json`
    /// decides.
    pub normalize: Option<bool>,
    /// The family's documented context in tokens, when shorter than its position table.
    pub max_input_tokens: Option<usize>,
    /// Task adapters in adapter order, each with its instruction prefix (often empty).
    pub adapters: Vec<(String, String)>,
    /// The task requests get when neither they nor the config name one.
    pub default_task: Option<&'static str>,
    /// The Matryoshka sizes the model was trained for; empty means any size.
    pub matryoshka_dimensions: Vec<usize>,
}

/// Every family embedrt serves, most specific first.
pub static FAMILIES: &[Family] = &[
    Family {
        architecture: architecture::JINA_V3,
        // jina-embeddings-v3's config.json has no `model_type` of its own; its adapters identify it.
        detect: |config| config.get("lora_adaptations").is_some(),
        traits: jina_v3,
    },
    Family {
        architecture: architecture::BERT,
        detect: |config| has_model_type(config, "bert"),
        traits: plain_encoder,
    },
    Family {
        architecture: architecture::XLM_ROBERTA,
        detect: |config| has_model_type(config, "xlm-roberta"),
        traits: plain_encoder,
    },
    Family {
        architecture: architecture::MPNET,
        detect: |config| has_model_type(config, "mpnet"),
        traits: plain_encoder,
    },
    Family {
        architecture: architecture::MODERNBERT,
        detect: |config| has_model_type(config, "modernbert"),
        traits: plain_encoder,
    },
    Family {
        architecture: architecture::QWEN3,
        detect: |config| has_model_type(config, "qwen3"),
        traits: qwen3,
    },
];

/// The longest input a Qwen3 embedder takes unless its folder says less: its position table
/// allows 32,768 tokens, but one such input's attention scores are 32,768² per head, so the
/// default stays at 8,192, where a batch of the token budget's size keeps attention memory to
/// what the encoders' 8,192-token models use.
const QWEN3_MAX_INPUT_TOKENS: usize = 8192;

/// A Qwen3 decoder as an embedder: last-token pooling unless the folder says otherwise (its
/// tokenizer appends `<|endoftext|>`, the token pooled), normalization as `modules.json` says,
/// a bounded context, no adapters (the query instruction is a sentence-transformers prompt).
fn qwen3(config: &Value) -> Result<Traits> {
    Ok(Traits {
        pooling: Pooling::LastToken,
        max_input_tokens: Some(QWEN3_MAX_INPUT_TOKENS),
        ..plain_encoder(config)?
    })
}

/// A plain encoder's traits: mean pooling unless the folder says otherwise, normalization as
/// `modules.json` says, the position table's context, no adapters, any Matryoshka size.
fn plain_encoder(_: &Value) -> Result<Traits> {
    Ok(Traits {
        pooling: Pooling::Mean,
        normalize: None,
        max_input_tokens: None,
        adapters: Vec::new(),
        default_task: None,
        matryoshka_dimensions: Vec::new(),
    })
}

fn has_model_type(config: &Value, model_type: &str) -> bool {
    config.get("model_type").and_then(Value::as_str) == Some(model_type)
}

/// The family of the model whose `config.json` is `config`.
///
/// # Errors
///
/// When no family matches; the message names the model type and the families served.
pub fn detect(config: &Value) -> Result<&'static Family> {
    if let Some(family) = FAMILIES.iter().find(|family| (family.detect)(config)) {
        return Ok(family);
    }
    let model_type = config
        .get("model_type")
        .and_then(Value::as_str)
        .unwrap_or("(none)");
    let known: Vec<&str> = FAMILIES.iter().map(|f| f.architecture).collect();
    bail!(
        "config.json: model_type {model_type:?} is not a family embedrt serves (families: {})",
        known.join(", ")
    )
}

/// jina-embeddings-v3: five LoRA adapters named by `lora_adaptations`, instructions from
/// `task_instructions`, Matryoshka sizes, `text-matching` by default; the official `encode`
/// normalizes, and the model is documented for 8192 tokens (its position table allows 8194).
fn jina_v3(config: &Value) -> Result<Traits> {
    let list = |key: &str| config.get(key).cloned().unwrap_or(Value::Array(Vec::new()));
    let names: Vec<String> = serde_json::from_value(list("lora_adaptations"))
        .context("config.json: `lora_adaptations` must be a list of strings")?;
    let instructions = config.get("task_instructions").and_then(Value::as_object);
    let adapters = names
        .into_iter()
        .map(|name| {
            let instruction = instructions
                .and_then(|i| i.get(&name))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            (name, instruction)
        })
        .collect();
    let pooling = match config.get("emb_pooler").and_then(Value::as_str) {
        None => Pooling::Mean,
        Some("cls") => Pooling::Cls,
        Some(other) => bail!("config.json: unsupported `emb_pooler` {other:?}"),
    };
    Ok(Traits {
        pooling,
        normalize: Some(true),
        max_input_tokens: Some(8192),
        adapters,
        default_task: Some("text-matching"),
        matryoshka_dimensions: serde_json::from_value(list("matryoshka_dimensions"))
            .context("config.json: `matryoshka_dimensions` must be a list of integers")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn families_are_told_apart_by_their_config() {
        let bert = detect(&json!({ "model_type": "bert" })).unwrap();
        assert_eq!(bert.architecture, architecture::BERT);
        let jina = detect(&json!({ "model_type": "bert", "lora_adaptations": ["a"] })).unwrap();
        assert_eq!(jina.architecture, architecture::JINA_V3);
        let err = detect(&json!({ "model_type": "t5" }))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("\"t5\"")
                && err.contains("jina-v3, bert, xlm-roberta, mpnet, modernbert, qwen3"),
            "{err}"
        );
    }

    #[test]
    fn the_encoder_families_are_told_apart_by_model_type() {
        for (model_type, family) in [
            ("xlm-roberta", architecture::XLM_ROBERTA),
            ("mpnet", architecture::MPNET),
            ("modernbert", architecture::MODERNBERT),
            ("qwen3", architecture::QWEN3),
        ] {
            let found = detect(&json!({ "model_type": model_type })).unwrap();
            assert_eq!(found.architecture, family);
        }
    }

    #[test]
    fn jina_traits_pair_adapters_with_instructions() {
        let traits = jina_v3(&json!({
            "lora_adaptations": ["retrieval.query", "text-matching"],
            "task_instructions": { "retrieval.query": "Q: " },
            "matryoshka_dimensions": [32, 64],
        }))
        .unwrap();
        assert_eq!(
            traits.adapters,
            [
                ("retrieval.query".into(), "Q: ".into()),
                ("text-matching".into(), String::new())
            ]
        );
        assert_eq!(traits.default_task, Some("text-matching"));
        assert_eq!(traits.matryoshka_dimensions, [32, 64]);
        assert!(jina_v3(&json!({ "lora_adaptations": [1] })).is_err());
    }
}
