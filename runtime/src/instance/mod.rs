//! A served model: its card, tokenizer and variants, and the request path through them.
//!
//! The jobs are apart: `load` finds the files, loads every variant through its plugin and warms
//! up; `plan` turns a request into the checked, resolved `RequestPlan` the request path
//! runs; `pipeline` is that path (tokenization, routing, batching, post-processing); `rerank`
//! is a cross-encoder's path (pairs in, documents sorted by score out); `cached`
//! puts the embedding cache in front of a variant; `shadow` copies sampled requests to shadow
//! variants. A [`ModelInstance`] can also be assembled from variants around in-memory backends
//! ([`ModelInstance::new`]), which is how the pipeline is unit-tested.

mod cached;
mod load;
mod pipeline;
mod plan;
mod rerank;
mod shadow;

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use embedrt_backend_core::{AdapterId, Capabilities};

use crate::cache::{EmbeddingCache, ModelIdentity};
use crate::config::ModelPlan;
use crate::kind::ModelKind;
use crate::model::{ModelCard, ResolvedTask, BASE_TASK};
use crate::request::EmbedError;
use crate::tokenize::TextTokenizer;
use crate::variant::{Router, Variant};

/// One served model, on one or more backend variants that share its tokenizer.
pub struct ModelInstance {
    name: String,
    aliases: Vec<String>,
    /// The aliases that carry a task, with the task their requests run when they name none.
    alias_tasks: Vec<(String, String, ResolvedTask)>,
    card: ModelCard,
    tokenizer: Arc<TextTokenizer>,
    variants: Vec<Variant>,
    router: Router,
    deployment: Deployment,
    max_inputs: usize,
    max_tokens: usize,
    truncate: bool,
    default_task: ResolvedTask,
    /// The embedding cache and this model's identity in it, when the model uses one.
    cache: Option<(Arc<EmbeddingCache>, ModelIdentity)>,
}

/// What every serving variant of a model can do, so that a request is accepted or refused the
/// same way whichever variant the router picks: the backends of the serving variants that lack
/// a capability (none, when all have it).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Deployment {
    /// Backends that cannot run the base weights ([`AdapterId::BASE`]).
    without_base_task: Vec<String>,
    /// Backends that cannot return token states (late chunking).
    without_token_states: Vec<String>,
}

impl Deployment {
    fn of(variants: &[Variant]) -> Self {
        let lacking = |has: fn(&Capabilities) -> bool| -> Vec<String> {
            let mut backends: Vec<String> = variants
                .iter()
                .filter(|v| v.serves() && !has(v.capabilities()))
                .map(|v| v.backend().to_string())
                .collect();
            backends.sort_unstable();
            backends.dedup();
            backends
        };
        Self {
            without_base_task: lacking(|c| c.base_task),
            without_token_states: lacking(|c| c.token_states),
        }
    }

    /// Refuses `task` of the model `card` when a serving backend cannot run its weights: the one
    /// rule for the default task at startup and for every request.
    fn check_task(&self, task: &ResolvedTask, card: &ModelCard) -> Result<(), EmbedError> {
        if task.adapter != AdapterId::BASE || self.without_base_task.is_empty() {
            return Ok(());
        }
        Err(EmbedError::invalid(
            "task",
            format!(
                "the {} backend cannot run task `{BASE_TASK}` (the base weights); name one of \
                 this model's tasks: {}",
                self.without_base_task.join(" and "),
                card.task_names().join(", ")
            ),
        ))
    }

    /// Refuses late chunking when a serving backend cannot return token states.
    fn check_late_chunking(&self) -> Result<(), EmbedError> {
        if self.without_token_states.is_empty() {
            return Ok(());
        }
        Err(EmbedError::invalid(
            "late_chunking",
            format!(
                "the {} backend of this model cannot return token states, which late chunking \
                 needs",
                self.without_token_states.join(" and ")
            ),
        ))
    }
}

/// A model as `GET /v1/models` and gRPC `ListModels` describe it.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    /// The name clients use.
    pub name: String,
    /// What the model answers: embeddings or rerank scores.
    pub kind: ModelKind,
    /// Other names of the model.
    pub aliases: Vec<String>,
    /// The aliases that carry a task, each with its task: requests through such a name that
    /// name no task run it.
    pub alias_tasks: BTreeMap<String, String>,
    /// The backend of the first variant (kept for clients that read one backend; `variants`
    /// says what serves an A/B-tested model).
    pub backend: String,
    /// Every variant, serving ones and shadows, in configuration order.
    pub variants: Vec<VariantInfo>,
    /// The tasks requests may name (besides `none`).
    pub tasks: Vec<String>,
    /// Width of the full embedding.
    pub dimensions: usize,
    /// The Matryoshka sizes; empty means any size up to `dimensions`.
    pub matryoshka_dimensions: Vec<usize>,
    /// The longest input in tokens, special tokens included (`max_tokens` on the wire).
    pub max_input_tokens: usize,
    /// The most inputs (a reranker: documents) one request may carry.
    pub max_inputs: usize,
    /// How many token ids there are for requests to send: ids from 0 up to this, exclusive.
    pub token_vocabulary: usize,
}

/// One variant of a [`ModelInfo`].
#[derive(Clone, Debug, PartialEq)]
pub struct VariantInfo {
    /// The variant's name.
    pub name: String,
    /// Its backend.
    pub backend: String,
    /// Where it runs (`cpu`, `cuda:0`).
    pub device: String,
    /// The number format it computes in, when its backend reports one.
    pub dtype: Option<String>,
    /// Its share of the traffic.
    pub weight: u32,
    /// Whether it is a shadow.
    pub shadow: bool,
    /// Copies of the model serving it from one queue.
    pub replicas: usize,
}

impl ModelInstance {
    /// Assembles a model from its card, its tokenizer and its started variants, with the request
    /// settings of `plan` (name, aliases, input limit, truncation, default task). Does not warm
    /// up.
    ///
    /// # Errors
    ///
    /// When the default task is unknown, or a serving variant cannot run it.
    pub fn new(
        plan: &ModelPlan,
        card: ModelCard,
        tokenizer: TextTokenizer,
        variants: Vec<Variant>,
    ) -> Result<Self> {
        let deployment = Deployment::of(&variants);
        let default_task = default_task(&card, &deployment, plan.default_task.as_deref())
            .with_context(|| format!("model {:?}: `default_task`", plan.name))?;
        let alias_tasks = plan
            .aliases
            .iter()
            .filter_map(|alias| alias.task.as_ref().map(|task| (&alias.name, task)))
            .map(|(alias, task)| {
                let resolved = default_task_named(&card, &deployment, task).with_context(|| {
                    format!("model {:?}: the task of the alias {alias:?}", plan.name)
                })?;
                Ok((alias.clone(), task.clone(), resolved))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            name: plan.name.clone(),
            aliases: plan.aliases.iter().map(|a| a.name.clone()).collect(),
            alias_tasks,
            card,
            tokenizer: Arc::new(tokenizer),
            router: Router::new(&variants),
            variants,
            deployment,
            max_inputs: plan.max_inputs,
            max_tokens: plan.max_tokens,
            truncate: plan.truncate,
            default_task,
            cache: None,
        })
    }

    /// This model, looking its inputs up in `cache` before running them (the model's identity
    /// in it: a hash of its files, [`ModelIdentity::of_folder`]).
    ///
    /// # Errors
    ///
    /// When a model file cannot be read to hash it.
    pub fn with_cache(mut self, cache: Arc<EmbeddingCache>) -> Result<Self> {
        let started = std::time::Instant::now();
        let identity = ModelIdentity::of_folder(&self.card.path)
            .with_context(|| format!("model {:?}: hashing its files for the cache", self.name))?;
        tracing::info!(model = %self.name, seconds = started.elapsed().as_secs_f32(), "cache identity ready");
        self.cache = Some((cache, identity));
        Ok(self)
    }

    /// The name clients use.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Other names of this model.
    pub fn aliases(&self) -> &[String] {
        &self.aliases
    }

    /// The task requests through the name `name` run when they name none: the alias's, when
    /// `name` is an alias with a task, else the model's default.
    pub(crate) fn default_task_for(&self, name: Option<&str>) -> &ResolvedTask {
        name.and_then(|name| self.alias_tasks.iter().find(|(alias, ..)| alias == name))
            .map_or(&self.default_task, |(.., task)| task)
    }

    /// The model card.
    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// The variants, serving ones and shadows, in configuration order.
    pub fn variants(&self) -> &[Variant] {
        &self.variants
    }

    /// The longest input in tokens, special tokens included.
    pub fn max_input_tokens(&self) -> usize {
        self.tokenizer.max_input_tokens()
    }

    /// The most inputs one request may carry.
    pub fn max_inputs(&self) -> usize {
        self.max_inputs
    }

    /// The most tokens one request may carry, summed over its inputs.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Whether every variant's backend still serves.
    pub fn is_healthy(&self) -> bool {
        self.variants.iter().all(Variant::is_healthy)
    }

    /// The model as the APIs list it.
    pub fn info(&self) -> ModelInfo {
        ModelInfo {
            name: self.name.clone(),
            kind: self.card.kind,
            aliases: self.aliases.clone(),
            alias_tasks: self
                .alias_tasks
                .iter()
                .map(|(alias, task, _)| (alias.clone(), task.clone()))
                .collect(),
            backend: self.variants[0].backend().to_string(),
            variants: self
                .variants
                .iter()
                .map(|v| VariantInfo {
                    name: v.name().to_string(),
                    backend: v.backend().to_string(),
                    device: v.device().to_string(),
                    dtype: v.dtype().map(|d| d.to_string()),
                    weight: v.weight(),
                    shadow: v.shadow_rate().is_some(),
                    replicas: v.replicas(),
                })
                .collect(),
            tasks: self.card.task_names(),
            dimensions: self.card.hidden_size,
            matryoshka_dimensions: self.card.matryoshka_dimensions.clone(),
            max_input_tokens: self.max_input_tokens(),
            max_inputs: self.max_inputs,
            token_vocabulary: self.tokenizer.id_count(),
        }
    }
}

/// The task of `configured`, else of the card's default task, else `none` (the base model), as
/// every serving variant can run it.
fn default_task(
    card: &ModelCard,
    deployment: &Deployment,
    configured: Option<&str>,
) -> Result<ResolvedTask> {
    if card.tasks.is_empty() {
        anyhow::ensure!(configured.is_none(), "the model has no tasks");
    }
    let name = configured
        .or(card.default_task.as_deref())
        .unwrap_or(BASE_TASK);
    default_task_named(card, deployment, name)
}

/// The task `name` of `card`, checked to run on every serving variant: what a default (the
/// model's, or an alias's) must be.
fn default_task_named(
    card: &ModelCard,
    deployment: &Deployment,
    name: &str,
) -> Result<ResolvedTask> {
    let id = card.task_id(name).with_context(|| {
        format!(
            "unknown task {name:?}; the model's tasks are {} and {BASE_TASK}",
            card.task_names().join(", ")
        )
    })?;
    let task = card.task(id);
    deployment.check_task(&task, card)?;
    Ok(task)
}

/// The model of the one `[[models]]` table in `toml`, whose folder is `dir`, with each variant
/// served by the in-memory backend `backend` makes for the card and the variant's index,
/// assembled without plugins or warm-up: how the request paths are unit-tested.
#[cfg(test)]
fn assembled(
    dir: &std::path::Path,
    toml: &str,
    backend: impl Fn(&ModelCard, usize) -> Box<dyn embedrt_backend_core::Backend>,
) -> Arc<ModelInstance> {
    use crate::config::{Config, Overrides};
    let plan = Config::parse(toml)
        .unwrap()
        .resolve(std::path::Path::new("/"), &Overrides::default())
        .unwrap();
    let model = &plan.models[0];
    let card = ModelCard::load(dir).unwrap();
    let tokenizer =
        TextTokenizer::load(&card.path, card.max_input_tokens, card.vocab_size).unwrap();
    let variants = model
        .variants
        .iter()
        .enumerate()
        .map(|(index, variant)| {
            let backends = vec![backend(&card, index)];
            Variant::start(
                &model.name,
                variant,
                backends,
                None,
                variant.batching.clone(),
            )
            .unwrap()
        })
        .collect();
    Arc::new(ModelInstance::new(model, card, tokenizer, variants).unwrap())
}
