//! Loading a model: ask each variant's plugin which files it needs, find or download them, read
//! the card, load every variant and warm each up.

use std::sync::Arc;

use anyhow::{Context, Result};
use embedrt_backend_core::{Backend, FilesQuery, LoadDocument};

use super::ModelInstance;
use crate::config::{ModelPlan, Role, VariantPlan};
use crate::hub;
use crate::kind::ModelKind;
use crate::model::ModelCard;
use crate::plugin::PluginHost;
use crate::scheduler::{BatchPolicy, Restart, Sequence};
use crate::tokenize::TextTokenizer;
use crate::variant::Variant;

impl ModelInstance {
    /// Loads the model of `plan` with every variant's backend plugin and warms each up. A model
    /// from the hub gets the files every variant's backend asks for.
    ///
    /// # Errors
    ///
    /// When a plugin cannot be opened, a file cannot be had, the card cannot be read, a backend
    /// refuses the model (or its device or dtype), or the warm-up fails; the message names the
    /// model and variant.
    pub fn load(plan: &ModelPlan, plugins: &PluginHost) -> Result<Self> {
        let context = || format!("model {:?}", plan.name);
        let mut needs = Vec::with_capacity(plan.variants.len());
        for variant in &plan.variants {
            let plugin = plugins
                .open(&variant.backend)
                .with_context(|| variant_context(plan, variant))?;
            let files = plugin
                .files(&FilesQuery::new(variant.settings.clone()))
                .with_context(|| variant_context(plan, variant))?;
            needs.push((variant.backend.clone(), files));
        }
        let dir = hub::resolve(&plan.source, &needs).with_context(context)?;
        let card = ModelCard::load(&dir).with_context(context)?;
        let variants = plan
            .variants
            .iter()
            .map(|variant| load_variant(plan, variant, &card, plugins))
            .collect::<Result<Vec<_>>>()?;
        let max_input_tokens = variants
            .iter()
            .map(|v| v.capabilities().max_input_tokens)
            .fold(card.max_input_tokens, usize::min);
        let tokenizer = TextTokenizer::load(&card.path, max_input_tokens, card.vocab_size)?
            .reading_ids_as(plan.token_ids);
        let instance = Self::new(plan, card, tokenizer, variants)?;
        instance
            .warm_up()
            .with_context(|| format!("{}: warm-up failed", context()))?;
        Ok(instance)
    }

    /// Runs one input through every replica of every variant, so the first client pays no
    /// start-up cost.
    fn warm_up(&self) -> Result<()> {
        let ids = self.tokenizer.encode("warm up", true)?;
        let sequence = Sequence::pooled(ids, self.default_task.adapter);
        for variant in &self.variants {
            variant.warm_up(&sequence)?;
        }
        Ok(())
    }
}

fn variant_context(model: &ModelPlan, variant: &VariantPlan) -> String {
    format!(
        "model {:?}, variant {:?} ({} backend)",
        model.name, variant.name, variant.backend
    )
}

/// Loads `variant` of `model` (whose card is `card`) with its backend plugin and starts it.
///
/// A shadow is loaded on a thread of the lowest CPU priority, so that every thread its backend
/// starts (its pool, its inference thread) inherits that priority: on a busy machine the serving
/// variants get the CPU first, and the shadow works with what is left.
fn load_variant(
    model: &ModelPlan,
    variant: &VariantPlan,
    card: &ModelCard,
    plugins: &PluginHost,
) -> Result<Variant> {
    if !matches!(variant.role, Role::Shadow { .. }) {
        return load_variant_here(model, variant, card, plugins);
    }
    std::thread::scope(|scope| {
        let loader = scope.spawn(|| {
            lower_thread_priority();
            load_variant_here(model, variant, card, plugins)
        });
        loader
            .join()
            .map_err(|_| anyhow::anyhow!("loading the shadow variant panicked"))?
    })
}

fn load_variant_here(
    model: &ModelPlan,
    variant: &VariantPlan,
    card: &ModelCard,
    plugins: &PluginHost,
) -> Result<Variant> {
    let context = || variant_context(model, variant);
    // One view of the limits for the backend (its load document) and the scheduler, raised
    // where needed so that the model's longest input always fits a batch.
    let batching = BatchPolicy {
        limits: variant.batching.limits.admitting(card.max_input_tokens),
        ..variant.batching.clone()
    };
    let cores = embedrt_backend_core::threads::cores();
    let document = LoadDocument::new(card.spec(), variant.settings.clone())
        .with_batch(batching.limits)
        .with_cpu_threads((cores / variant.replicas).max(1));
    let plugin = plugins.open(&variant.backend).with_context(context)?;
    let restart: Restart = Arc::new(move || {
        let backend = plugin.load(&document)?;
        Ok(Box::new(backend) as Box<dyn Backend>)
    });
    let replicas = (0..variant.replicas)
        .map(|_| restart())
        .collect::<Result<Vec<_>, _>>()
        .with_context(context)?;
    let capabilities = replicas[0].capabilities();
    anyhow::ensure!(
        capabilities.hidden_size == card.output_width(),
        "{}: the backend reports an output {} wide, but the model's is {} ({}; a plugin older \
         than rerankers reports its hidden size for a classifier)",
        context(),
        capabilities.hidden_size,
        card.output_width(),
        match card.kind {
            ModelKind::Embedding => "config.json's hidden size",
            ModelKind::Reranker { .. } => "one logit per pair",
        }
    );
    anyhow::ensure!(
        capabilities.max_input_tokens > 0,
        "{}: the backend reports a max length of 0",
        context()
    );
    Variant::start(&model.name, variant, replicas, Some(restart), batching)
}

/// Gives the calling thread (and the threads it starts from now on) the lowest CPU priority.
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscall; on Linux, `who = 0` with PRIO_PROCESS names the calling thread.
    unsafe {
        if libc::setpriority(libc::PRIO_PROCESS, 0, 19) != 0 {
            tracing::warn!("cannot lower the shadow's thread priority");
        }
    }
}
