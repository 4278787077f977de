//! What a model is for, read from its `config.json`: embeddings, or relevance scores for
//! (query, document) pairs (a cross-encoder reranker), and how a reranker's logit becomes its
//! score.

use anyhow::{bail, Result};
use embedrt_backend_core::{architecture, Head};
use serde_json::Value;

/// What a served model answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// One vector per input (`/v1/embeddings`).
    Embedding,
    /// One relevance score per (query, document) pair (`/v1/rerank`): a sequence-classification
    /// model with one label.
    Reranker {
        /// What turns the model's logit into its score.
        activation: Activation,
    },
}

/// The function sentence-transformers' `CrossEncoder` applies to a reranker's logit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// The logit as it is (ms-marco cross-encoders).
    Identity,
    /// `1 / (1 + e^-x)`, a score in (0, 1): the default for one label (bge-reranker).
    Sigmoid,
    /// `tanh(x)`, a score in (-1, 1).
    Tanh,
}

/// The activations' names as sentence-transformers writes them in `config.json` (the module
/// path; older versions wrote the same under `sbert_ce_default_activation_function`).
const ACTIVATIONS: [(&str, Activation); 3] = [
    ("torch.nn.modules.linear.Identity", Activation::Identity),
    ("torch.nn.modules.activation.Sigmoid", Activation::Sigmoid),
    ("torch.nn.modules.activation.Tanh", Activation::Tanh),
];

/// The families whose classifier heads the engines run.
const RERANKER_FAMILIES: [&str; 2] = [architecture::BERT, architecture::XLM_ROBERTA];

impl Activation {
    /// The score of `logit`.
    pub fn apply(self, logit: f32) -> f32 {
        match self {
            Activation::Identity => logit,
            Activation::Sigmoid => 1.0 / (1.0 + (-logit).exp()),
            Activation::Tanh => logit.tanh(),
        }
    }
}

impl ModelKind {
    /// What the kind of a model of `family` with this `config.json` is.
    ///
    /// A model is a reranker when its `architectures` name a `...ForSequenceClassification`;
    /// its activation is the one `sentence_transformers.activation_fn` (or the older
    /// `sbert_ce_default_activation_function`) names, else sigmoid, sentence-transformers'
    /// default for one label.
    ///
    /// # Errors
    ///
    /// For a classifier with more than one label, of a family whose heads the engines do not
    /// run, or with an activation embedrt does not implement; the message names it.
    pub fn of(config: &Value, family: &str) -> Result<Self> {
        let classifies = config
            .get("architectures")
            .and_then(Value::as_array)
            .is_some_and(|names| {
                names
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|name| name.ends_with("ForSequenceClassification"))
            });
        if !classifies {
            return Ok(ModelKind::Embedding);
        }
        if !RERANKER_FAMILIES.contains(&family) {
            bail!(
                "config.json: sequence classification (a reranker) is served for the {} \
                 families, not {family}",
                RERANKER_FAMILIES.join(" and ")
            );
        }
        let labels = labels(config);
        if labels != 1 {
            bail!(
                "config.json: the classifier has {labels} labels; embedrt serves rerankers with \
                 one label (one relevance score per pair)"
            );
        }
        let named = config
            .get("sentence_transformers")
            .and_then(|st| st.get("activation_fn"))
            .or_else(|| config.get("sbert_ce_default_activation_function"))
            .and_then(Value::as_str);
        let activation = match named {
            None => Activation::Sigmoid,
            Some(name) => match ACTIVATIONS.iter().find(|(known, _)| *known == name) {
                Some((_, activation)) => *activation,
                None => bail!(
                    "config.json: the reranker's activation {name:?} is not one embedrt \
                     implements ({})",
                    ACTIVATIONS.map(|(known, _)| known).join(", ")
                ),
            },
        };
        Ok(ModelKind::Reranker { activation })
    }

    /// What the backend's network must end in for this kind.
    pub fn head(self) -> Head {
        match self {
            ModelKind::Embedding => Head::Pooled,
            ModelKind::Reranker { .. } => Head::Classifier { labels: 1 },
        }
    }

    /// The kind's name in the APIs: `embedding` or `rerank`.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Embedding => "embedding",
            ModelKind::Reranker { .. } => "rerank",
        }
    }
}

/// The number of labels transformers gives a config: as many as `id2label` names, else
/// `num_labels`, else its default of 2.
fn labels(config: &Value) -> usize {
    if let Some(names) = config.get("id2label").and_then(Value::as_object) {
        return names.len();
    }
    config
        .get("num_labels")
        .and_then(Value::as_u64)
        .map_or(2, |n| n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn classifier(extra: Value) -> Value {
        let mut config = json!({
            "architectures": ["BertForSequenceClassification"],
            "id2label": { "0": "LABEL_0" },
        });
        config
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        config
    }

    #[test]
    fn a_classifier_with_one_label_is_a_reranker_with_its_named_activation() {
        let bert = architecture::BERT;
        let embedder = json!({ "architectures": ["BertModel"] });
        assert_eq!(
            ModelKind::of(&embedder, bert).unwrap(),
            ModelKind::Embedding
        );
        assert_eq!(
            ModelKind::of(&json!({}), bert).unwrap(),
            ModelKind::Embedding
        );
        let identity = json!({ "sentence_transformers": {
            "activation_fn": "torch.nn.modules.linear.Identity" } });
        let older = json!({
            "sbert_ce_default_activation_function": "torch.nn.modules.activation.Tanh" });
        for (extra, activation) in [
            (json!({}), Activation::Sigmoid),
            (identity, Activation::Identity),
            (older, Activation::Tanh),
        ] {
            let kind = ModelKind::of(&classifier(extra), bert).unwrap();
            assert_eq!(kind, ModelKind::Reranker { activation });
            assert_eq!(kind.head(), Head::Classifier { labels: 1 });
            assert_eq!(kind.name(), "rerank");
        }
    }

    #[test]
    fn what_embedrt_cannot_score_is_refused_by_name() {
        let two = json!({ "id2label": { "0": "no", "1": "yes" } });
        let unnamed = json!({ "architectures": ["BertForSequenceClassification"] });
        let softmax = json!({ "sentence_transformers": {
            "activation_fn": "torch.nn.modules.activation.Softmax" } });
        for (config, family, named) in [
            (classifier(two), architecture::BERT, "2 labels"),
            (unnamed, architecture::BERT, "2 labels"),
            (classifier(softmax), architecture::BERT, "Softmax"),
            (classifier(json!({})), architecture::MPNET, "mpnet"),
        ] {
            let err = ModelKind::of(&config, family).unwrap_err().to_string();
            assert!(err.contains(named), "{err}");
        }
    }

    #[test]
    fn activations_score_as_sentence_transformers_does() {
        assert_eq!(Activation::Identity.apply(-8.0), -8.0);
        assert!((Activation::Sigmoid.apply(-8.115_141) - 0.000_298_888_54).abs() < 1e-9);
        assert!((Activation::Tanh.apply(0.5) - 0.5f32.tanh()).abs() < 1e-9);
    }
}
