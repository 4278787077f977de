//! Model cards: what embedrt reads from a model folder in the Hugging Face / sentence-transformers
//! layout before any backend touches the weights. The model's [`family`] adds what
//! the generic files do not say.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use embedrt_backend_core::padded::Positions;
use embedrt_backend_core::{AdapterId, ModelSpec, Pooling};
use serde_json::Value;

use crate::family;
use crate::kind::ModelKind;

/// Everything about a model that does not depend on the backend that runs it.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelCard {
    /// The model folder.
    pub path: PathBuf,
    /// The model's family (see [`family::FAMILIES`]), by its architecture name.
    pub architecture: &'static str,
    /// Width of the encoder's output.
    pub hidden_size: usize,
    /// Number of token ids the model knows.
    pub vocab_size: usize,
    /// Longest input in tokens, special tokens included (the sentence-transformers limit when set).
    pub max_input_tokens: usize,
    /// How token states are pooled.
    pub pooling: Pooling,
    /// Whether the model's own pipeline L2-normalizes its output.
    pub normalize: bool,
    /// The id used to pad batches.
    pub pad_token_id: u32,
    /// The tasks requests may name besides `none` (the base model without instruction): adapter
    /// tasks first, in adapter order, then the sentence-transformers prompts that name no
    /// adapter, in name order.
    pub tasks: Vec<Task>,
    /// The task of requests that name none, when the model or its family has one.
    pub default_task: Option<String>,
    /// The Matryoshka sizes the model was trained for; empty means any size up to `hidden_size`.
    pub matryoshka_dimensions: Vec<usize>,
    /// What the model answers: embeddings, or rerank scores.
    pub kind: ModelKind,
    /// How many token types (segments) the model has embeddings for (`type_vocab_size`): a text
    /// pair's second segment is type 1 only where there are two.
    pub token_types: usize,
}

/// One task a request may name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// The name requests use, e.g. `retrieval.query`.
    pub name: String,
    /// The weights it runs with: one of the family's task adapters, or the base weights (a
    /// prompt).
    pub adapter: AdapterId,
    /// The instruction (prompt) prepended to every input of the task; often empty.
    pub instruction: Arc<str>,
}

/// A task's id among one model's tasks: [`TaskId::NONE`] is `none` (the base model without
/// instruction), the others follow [`ModelCard::tasks`]. This is the card's id space, not the
/// backend's: a prompt-only task has an id of its own but runs on [`AdapterId::BASE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TaskId(usize);

impl TaskId {
    /// `none`: the base weights, no instruction.
    pub const NONE: TaskId = TaskId(0);
}

/// A task as the request path runs it: the weights and the instruction before each input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedTask {
    /// The weights.
    pub adapter: AdapterId,
    /// The instruction prepended to every input ("" for none).
    pub instruction: Arc<str>,
}

/// The task name that selects the base weights (no adapter, no instruction).
pub const BASE_TASK: &str = "none";

impl ModelCard {
    /// The id of task `name` (`"none"` is [`TaskId::NONE`]), if the model has that task.
    pub fn task_id(&self, name: &str) -> Option<TaskId> {
        if name == BASE_TASK {
            return Some(TaskId::NONE);
        }
        self.tasks
            .iter()
            .position(|t| t.name == name)
            .map(|k| TaskId(k + 1))
    }

    /// The weights and instruction of task `id`.
    ///
    /// # Panics
    ///
    /// When `id` is none of this card's (it came from another model's card).
    pub fn task(&self, id: TaskId) -> ResolvedTask {
        match id.0.checked_sub(1) {
            None => ResolvedTask {
                adapter: AdapterId::BASE,
                instruction: Arc::from(""),
            },
            Some(k) => {
                let task = &self.tasks[k];
                ResolvedTask {
                    adapter: task.adapter,
                    instruction: Arc::clone(&task.instruction),
                }
            }
        }
    }

    /// The task names, in task-id order.
    pub fn task_names(&self) -> Vec<String> {
        self.tasks.iter().map(|t| t.name.clone()).collect()
    }

    /// What a backend is told about this model.
    pub fn spec(&self) -> ModelSpec {
        let mut adapters: Vec<(usize, &str)> = self
            .tasks
            .iter()
            .filter_map(|t| t.adapter.index().map(|k| (k, t.name.as_str())))
            .collect();
        adapters.sort_unstable();
        ModelSpec {
            path: self.path.clone(),
            architecture: self.architecture.to_string(),
            hidden_size: self.hidden_size,
            vocab_size: self.vocab_size,
            max_input_tokens: self.max_input_tokens,
            pooling: self.pooling,
            normalize: self.normalize,
            pad_token_id: self.pad_token_id,
            tasks: adapters
                .into_iter()
                .map(|(_, name)| name.to_string())
                .collect(),
            head: self.kind.head(),
        }
    }

    /// How many values a backend returns per input: the hidden size for an embedder, one
    /// logit for a reranker.
    pub fn output_width(&self) -> usize {
        self.kind.head().output_width(self.hidden_size)
    }
}

impl ModelCard {
    /// Reads the card of the model in `path`.
    ///
    /// Needs `config.json` and `tokenizer.json`; `1_Pooling/config.json`, `sentence_bert_config.json`,
    /// `tokenizer_config.json`, `modules.json` and `config_sentence_transformers.json` (its
    /// `prompts`) refine it when present.
    ///
    /// # Errors
    ///
    /// When a file is missing or malformed, or the model belongs to no family embedrt serves.
    pub fn load(path: &Path) -> Result<Self> {
        let config = read_json(&path.join("config.json"))?;
        if !path.join("tokenizer.json").is_file() {
            bail!("{} has no tokenizer.json", path.display());
        }
        let family = family::detect(&config)?;
        let traits = (family.traits)(&config)?;
        let kind = ModelKind::of(&config, family.architecture)?;
        let pad_token_id = config
            .get("pad_token_id")
            .and_then(Value::as_u64)
            .unwrap_or(0) as u32;
        let max_positions = usable_positions(
            usize_field(&config, "max_position_embeddings")?,
            Positions::of(family.architecture, pad_token_id),
        )?;
        let max_input_tokens = declared_max_tokens(path)?
            .unwrap_or(max_positions)
            .min(max_positions)
            .min(traits.max_input_tokens.unwrap_or(usize::MAX));
        let prompts = Prompts::read(path)?;
        let mut tasks: Vec<Task> = traits
            .adapters
            .into_iter()
            .enumerate()
            .map(|(k, (name, instruction))| {
                let instruction = if instruction.is_empty() {
                    prompts.get(&name).unwrap_or_default()
                } else {
                    instruction
                };
                Task {
                    name,
                    adapter: AdapterId::adapter(k),
                    instruction: Arc::from(instruction),
                }
            })
            .collect();
        for (name, instruction) in prompts.prompts {
            if !tasks.iter().any(|t| t.name == name) && name != BASE_TASK {
                tasks.push(Task {
                    name,
                    adapter: AdapterId::BASE,
                    instruction: Arc::from(instruction),
                });
            }
        }
        Ok(ModelCard {
            path: path.to_path_buf(),
            architecture: family.architecture,
            hidden_size: usize_field(&config, "hidden_size")?,
            vocab_size: usize_field(&config, "vocab_size")?,
            max_input_tokens,
            pooling: pooling(path)?.unwrap_or(traits.pooling),
            normalize: {
                let listed = normalizes(path)?;
                traits.normalize.unwrap_or(listed)
            },
            pad_token_id,
            tasks,
            default_task: traits
                .default_task
                .map(str::to_string)
                .or(prompts.default_name),
            matryoshka_dimensions: traits.matryoshka_dimensions,
            kind,
            token_types: config
                .get("type_vocab_size")
                .and_then(Value::as_u64)
                .map_or(2, |n| n as usize),
        })
    }
}

/// How many tokens a position table of `rows` rows holds when positions are numbered as
/// `positions` says: RoBERTa-style numbering (XLM-RoBERTa, MPNet) starts after the padding id,
/// so 514 rows hold 512 tokens.
///
/// # Errors
///
/// When the padding id leaves no row for a token.
fn usable_positions(rows: usize, positions: Positions) -> Result<usize> {
    match positions {
        Positions::FromZero => Ok(rows),
        Positions::AfterPadding { pad_token_id } => {
            let first = pad_token_id as usize + 1;
            rows.checked_sub(first).filter(|&n| n > 0).with_context(|| {
                format!(
                    "config.json: `max_position_embeddings` {rows} leaves no position after the \
                     padding id {pad_token_id}"
                )
            })
        }
    }
}

/// sentence-transformers' named prompts (`config_sentence_transformers.json`).
#[derive(Default)]
struct Prompts {
    /// `(name, prompt)` in name order.
    prompts: Vec<(String, String)>,
    /// `default_prompt_name`, when set.
    default_name: Option<String>,
}

impl Prompts {
    fn read(path: &Path) -> Result<Self> {
        let file = path.join("config_sentence_transformers.json");
        let Some(config) = read_optional_json(&file)? else {
            return Ok(Self::default());
        };
        let prompts = match config.get("prompts") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(name, prompt)| match prompt.as_str() {
                    Some(prompt) => Ok((name.clone(), prompt.to_string())),
                    None => bail!("{}: prompt {name:?} is not a string", file.display()),
                })
                .collect::<Result<_>>()?,
            Some(_) => bail!("{}: `prompts` must be an object", file.display()),
        };
        let default_name = config
            .get("default_prompt_name")
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok(Self {
            prompts,
            default_name,
        })
    }

    fn get(&self, name: &str) -> Option<String> {
        self.prompts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
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

/// The pooling `1_Pooling/config.json` asks for, when the folder has one.
///
/// # Errors
///
/// When it asks for a mode embedrt does not implement (mean of square-root length, weighted
/// mean), for several modes at once, or for pooling without the prompt's tokens.
fn pooling(path: &Path) -> Result<Option<Pooling>> {
    let file = path.join("1_Pooling/config.json");
    let Some(config) = read_optional_json(&file)? else {
        return Ok(None);
    };
    let flag = |key: &str| config.get(key).and_then(Value::as_bool).unwrap_or(false);
    let modes = [
        ("pooling_mode_mean_tokens", Some(Pooling::Mean)),
        ("pooling_mode_cls_token", Some(Pooling::Cls)),
        ("pooling_mode_lasttoken", Some(Pooling::LastToken)),
        ("pooling_mode_max_tokens", Some(Pooling::Max)),
        ("pooling_mode_mean_sqrt_len_tokens", None),
        ("pooling_mode_weightedmean_tokens", None),
    ];
    let asked: Vec<_> = modes.iter().filter(|(key, _)| flag(key)).collect();
    if config.get("include_prompt").and_then(Value::as_bool) == Some(false) {
        bail!(
            "{}: `include_prompt: false` (pooling without the prompt's tokens) is not supported",
            file.display()
        );
    }
    match asked.as_slice() {
        [] => Ok(None),
        [(_, Some(pooling))] => Ok(Some(*pooling)),
        [(key, None)] => bail!(
            "{}: `{key}` is not supported (embedrt pools by CLS, mean, max or last token)",
            file.display()
        ),
        _ => bail!(
            "{}: only one pooling mode at a time is supported, not {:?}",
            file.display(),
            asked.iter().map(|(key, _)| key).collect::<Vec<_>>()
        ),
    }
}

/// The sentence-transformers modules embedrt runs itself: the transformer, pooling and
/// normalization. Anything else (a `Dense` projection, a `LayerNorm`, ...) changes the
/// vectors, so a model with one is refused rather than served wrong.
const RUNNABLE_MODULES: [&str; 3] = [".Transformer", ".Pooling", ".Normalize"];

/// Whether `modules.json` (when there is one) ends in a `Normalize` module.
///
/// # Errors
///
/// When `modules.json` is malformed or lists a module embedrt does not implement; the message
/// names the module.
fn normalizes(path: &Path) -> Result<bool> {
    let file = path.join("modules.json");
    let Some(modules) = read_optional_json(&file)? else {
        return Ok(false);
    };
    let modules = modules
        .as_array()
        .with_context(|| format!("{}: expected a list of modules", file.display()))?;
    let mut normalize = false;
    for module in modules {
        let kind = module.get("type").and_then(Value::as_str).unwrap_or("");
        if !RUNNABLE_MODULES.iter().any(|suffix| kind.ends_with(suffix)) {
            let folder = module.get("path").and_then(Value::as_str).unwrap_or("");
            bail!(
                "{}: module {kind:?} (folder {folder:?}) is not one embedrt implements \
                 (it runs Transformer, Pooling and Normalize); the model cannot be served as it \
                 was trained",
                file.display()
            );
        }
        normalize |= kind.ends_with(".Normalize");
    }
    Ok(normalize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedrt_backend_core::architecture;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::create_dir_all(dir.join(name).parent().unwrap()).unwrap();
        std::fs::write(dir.join(name), text).unwrap();
    }

    /// A temporary folder with a small BERT `config.json` and a `tokenizer.json`.
    fn bert_folder(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("embedrt-card-{label}-{}", std::process::id()));
        write(
            &dir,
            "config.json",
            r#"{"model_type": "bert", "hidden_size": 8, "vocab_size": 100, "max_position_embeddings": 512}"#,
        );
        write(&dir, "tokenizer.json", "{}");
        dir
    }

    #[test]
    fn reads_sentence_transformers_layout() {
        let dir = bert_folder("st");
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
            (card.hidden_size, card.vocab_size, card.max_input_tokens),
            (8, 100, 256)
        );
        assert_eq!(card.pooling, Pooling::Cls);
        assert!(card.normalize);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sentence_transformers_prompts_are_tasks_without_adapters() {
        let dir = bert_folder("prompts");
        write(
            &dir,
            "config_sentence_transformers.json",
            r#"{"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": "query"}"#,
        );
        write(
            &dir,
            "1_Pooling/config.json",
            r#"{"pooling_mode_lasttoken": true}"#,
        );
        let card = ModelCard::load(&dir).unwrap();
        assert_eq!(
            card.task_names(),
            ["passage", "query"],
            "prompts in name order"
        );
        let query = card.task(card.task_id("query").unwrap());
        assert_eq!(&*query.instruction, "query: ");
        assert_eq!(
            query.adapter,
            AdapterId::BASE,
            "a prompt runs on the base weights"
        );
        assert_ne!(
            card.task_id("query"),
            card.task_id("none"),
            "yet has an id of its own"
        );
        assert_eq!(card.default_task.as_deref(), Some("query"));
        assert_eq!(card.pooling, Pooling::LastToken);
        assert!(card.spec().tasks.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn detects_jina_v3_by_its_adapters() {
        let card = ModelCard::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/jina-v3-tiny"),
        )
        .unwrap();
        assert_eq!(card.architecture, architecture::JINA_V3);
        assert_eq!(card.tasks.len(), 5);
        assert_eq!(card.task_id("none"), Some(TaskId::NONE));
        let task = |name: &str| card.task(card.task_id(name).unwrap());
        assert_eq!(task("retrieval.query").adapter, AdapterId::adapter(0));
        assert_eq!(card.task_id("summarization"), None);
        assert_eq!(
            &*task("retrieval.passage").instruction,
            "Represent the document for retrieval: "
        );
        assert_eq!(&*task("none").instruction, "");
        assert_eq!(task("none").adapter, AdapterId::BASE);
        assert_eq!(
            task("text-matching").adapter,
            AdapterId::adapter(4),
            "the fifth adapter"
        );
        assert_eq!(card.matryoshka_dimensions, vec![8, 16, 32]);
        assert_eq!(
            (card.max_input_tokens, card.pad_token_id, card.pooling),
            (8192, 1, Pooling::Mean)
        );
        assert!(card.normalize);
        assert_eq!(card.default_task.as_deref(), Some("text-matching"));
        assert_eq!(card.spec().tasks.len(), 5);
    }

    #[test]
    fn reads_the_encoder_fixtures() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures");
        for (folder, family, pooling, max, tasks) in [
            (
                "bge-m3-tiny",
                architecture::XLM_ROBERTA,
                Pooling::Cls,
                8192,
                &[][..],
            ),
            (
                "multilingual-e5-tiny",
                architecture::XLM_ROBERTA,
                Pooling::Mean,
                512,
                &["passage", "query"][..],
            ),
            (
                "all-mpnet-tiny",
                architecture::MPNET,
                Pooling::Mean,
                384,
                &[][..],
            ),
            (
                "modernbert-embed-tiny",
                architecture::MODERNBERT,
                Pooling::Mean,
                8192,
                &["document", "query"][..],
            ),
            (
                "qwen3-embedding-tiny",
                architecture::QWEN3,
                Pooling::LastToken,
                8192, // the family's bound, below sentence-transformers' 32,768
                &["document", "query"][..],
            ),
        ] {
            let card = ModelCard::load(&fixtures.join(folder)).unwrap();
            assert_eq!(
                (
                    card.architecture,
                    card.pooling,
                    card.max_input_tokens,
                    card.normalize
                ),
                (family, pooling, max, true),
                "{folder}"
            );
            assert_eq!(card.task_names(), tasks, "{folder}");
        }
    }

    #[test]
    fn roberta_style_families_lose_the_positions_before_the_first_token() {
        let dir = bert_folder("roberta");
        let config = |rows: usize| {
            format!(
                r#"{{"model_type": "xlm-roberta", "hidden_size": 8, "vocab_size": 100, "max_position_embeddings": {rows}, "pad_token_id": 1}}"#
            )
        };
        write(&dir, "config.json", &config(514));
        let card = ModelCard::load(&dir).unwrap();
        assert_eq!(card.architecture, architecture::XLM_ROBERTA);
        assert_eq!(card.max_input_tokens, 512);
        write(&dir, "config.json", &config(1));
        let err = ModelCard::load(&dir).unwrap_err().to_string();
        assert!(err.contains("leaves no position"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn max_pooling_is_read_and_unknown_modes_are_refused() {
        let dir = bert_folder("max");
        write(
            &dir,
            "1_Pooling/config.json",
            r#"{"pooling_mode_max_tokens": true, "include_prompt": true}"#,
        );
        assert_eq!(ModelCard::load(&dir).unwrap().pooling, Pooling::Max);
        for (config, named) in [
            (
                r#"{"pooling_mode_mean_sqrt_len_tokens": true}"#,
                "pooling_mode_mean_sqrt_len_tokens",
            ),
            (
                r#"{"pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": true}"#,
                "only one",
            ),
            (
                r#"{"pooling_mode_mean_tokens": true, "include_prompt": false}"#,
                "include_prompt",
            ),
        ] {
            write(&dir, "1_Pooling/config.json", config);
            let err = ModelCard::load(&dir).unwrap_err().to_string();
            assert!(err.contains(named), "{config}: {err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_module_embedrt_does_not_run_is_refused_by_name() {
        let dir = bert_folder("dense");
        write(
            &dir,
            "modules.json",
            r#"[{"type": "sentence_transformers.models.Transformer", "path": ""},
                {"type": "sentence_transformers.models.Pooling", "path": "1_Pooling"},
                {"type": "sentence_transformers.models.Dense", "path": "2_Dense"}]"#,
        );
        let err = ModelCard::load(&dir).unwrap_err().to_string();
        assert!(
            err.contains("sentence_transformers.models.Dense") && err.contains("2_Dense"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_the_cross_encoder_fixtures_as_rerankers() {
        use crate::kind::Activation;
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures");
        for (folder, family, activation, max, types) in [
            (
                "ms-marco-reranker-tiny",
                architecture::BERT,
                Activation::Identity,
                512,
                2,
            ),
            (
                "bge-reranker-tiny",
                architecture::XLM_ROBERTA,
                Activation::Sigmoid,
                8192,
                1,
            ),
        ] {
            let card = ModelCard::load(&fixtures.join(folder)).unwrap();
            assert_eq!(card.kind, ModelKind::Reranker { activation }, "{folder}");
            assert_eq!(
                (card.architecture, card.max_input_tokens, card.token_types),
                (family, max, types),
                "{folder}"
            );
            assert_eq!(card.output_width(), 1);
            assert_eq!(
                card.spec().head,
                embedrt_backend_core::Head::Classifier { labels: 1 }
            );
        }
        let embedder = ModelCard::load(&fixtures.join("bge-m3-tiny")).unwrap();
        assert_eq!(embedder.kind, ModelKind::Embedding);
        assert_eq!(embedder.output_width(), embedder.hidden_size);
    }

    #[test]
    fn missing_config_is_an_error() {
        let err = ModelCard::load(Path::new("/nonexistent/model")).unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");
    }
}
