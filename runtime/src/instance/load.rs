//! Loading a model: ask each variant's plugin which files it needs, find or download them, read
//! the card, load every variant and warm each up.

use anyhow::{Context, Result};
use embedrt_backend_core::{Backend, BackendSettings, FilesQuery, LoadDocument};

use super::ModelInstance;
use crate::config::{ModelConfig, VariantConfig};
use crate::hub;
use crate::model::ModelCard;
use crate::plugin::host::PluginHost;
use crate::scheduler::Sequence;
use crate::tokenize::TextTokenizer;
use crate::variant::Variant;

impl ModelInstance {
    /// Loads the model of `config` with every variant's backend plugin and warms each up. A model
    /// given as a hub id gets the files every variant's backend asks for.
    ///
    /// # Errors
    ///
    /// When a plugin cannot be opened, a file cannot be had, the card cannot be read, a backend
    /// refuses the model (or its device or dtype), or the warm-up fails; the message names the
    /// model and variant.
    pub fn load(config: &ModelConfig, plugins: &PluginHost) -> Result<Self> {
        let context = || format!("model {:?}", config.name);
        let variant_configs = config.variants();
        let mut needs = Vec::with_capacity(variant_configs.len());
        for variant in &variant_configs {
            let plugin = plugins
                .open(&variant.backend)
                .with_context(|| variant_context(config, variant))?;
            let files = plugin
                .files(&FilesQuery::new(settings(variant)?))
                .with_context(|| variant_context(config, variant))?;
            needs.push((variant.backend.clone(), files));
        }
        let dir = hub::resolve(&config.path, &needs).with_context(context)?;
        let card = ModelCard::load(&dir).with_context(context)?;
        let variants = variant_configs
            .iter()
            .map(|variant| load_variant(config, variant, &card, plugins))
            .collect::<Result<Vec<_>>>()?;
        let max_tokens = variants
            .iter()
            .map(|v| v.capabilities().max_tokens)
            .fold(card.max_tokens, usize::min);
        let tokenizer = TextTokenizer::load(&card.path, max_tokens, card.vocab_size)?;
        let instance = Self::new(config, card, tokenizer, variants)?;
        instance
            .warm_up()
            .with_context(|| format!("{}: warm-up failed", context()))?;
        Ok(instance)
    }

    /// Runs one input through every replica of every variant, so the first client pays no
    /// start-up cost.
    fn warm_up(&self) -> Result<()> {
        let ids = self.tokenizer.encode("warm up", true)?;
        let sequence = Sequence::pooled(ids, self.card.backend_task(self.default_task));
        for variant in &self.variants {
            variant.warm_up(&sequence)?;
        }
        Ok(())
    }
}

fn variant_context(model: &ModelConfig, variant: &VariantConfig) -> String {
    format!(
        "model {:?}, variant {:?} ({} backend)",
        model.name,
        variant.name(),
        variant.backend
    )
}

/// The backend settings of `variant`, as its plugin gets them.
fn settings(variant: &VariantConfig) -> Result<BackendSettings> {
    Ok(BackendSettings {
        options: serde_json::to_value(&variant.options)?,
        device: variant.device,
        dtype: variant.dtype,
    })
}

/// Loads `variant` of `model` (whose card is `card`) with its backend plugin and starts it.
///
/// A shadow is loaded on a thread of the lowest CPU priority, so that every thread its backend
/// starts (its pool, its inference thread) inherits that priority: on a busy machine the serving
/// variants get the CPU first, and the shadow works with what is left.
fn load_variant(
    model: &ModelConfig,
    variant: &VariantConfig,
    card: &ModelCard,
    plugins: &PluginHost,
) -> Result<Variant> {
    if !variant.shadow {
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
    model: &ModelConfig,
    variant: &VariantConfig,
    card: &ModelCard,
    plugins: &PluginHost,
) -> Result<Variant> {
    let context = || variant_context(model, variant);
    let mut batching = model.batching.to_scheduler(variant.device);
    let limits = model.batching.limits(variant.device);
    let cores = embedrt_backend_core::threads::cores();
    let document = LoadDocument::new(card.spec(), settings(variant)?)
        .with_batch(limits)
        .with_cpu_threads((cores / variant.replicas).max(1));
    let replicas = (0..variant.replicas)
        .map(|_| {
            let backend = plugins.load_model(&variant.backend, &document)?;
            Ok(Box::new(backend) as Box<dyn Backend>)
        })
        .collect::<Result<Vec<_>>>()
        .with_context(context)?;
    let capabilities = replicas[0].capabilities();
    anyhow::ensure!(
        capabilities.hidden_size == card.hidden_size,
        "{}: the backend reports hidden size {} but config.json says {}",
        context(),
        capabilities.hidden_size,
        card.hidden_size
    );
    anyhow::ensure!(
        capabilities.max_tokens > 0,
        "{}: the backend reports a max length of 0",
        context()
    );
    // A single longest input must always fit a batch.
    batching.max_batch_tokens = batching
        .max_batch_tokens
        .max(card.max_tokens.min(capabilities.max_tokens));
    Variant::start(&model.name, variant, replicas, batching)
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
