//! The `echo` test plugin: a deterministic backend with no weights, for testing the plugin
//! boundary, the scheduler and the API without a real model.
//!
//! Each embedding is a function of its sequence's token ids and nothing else, so a test can
//! recompute it. Options make it misbehave on purpose:
//! `panic_on_token` panics (the host must survive and load the model again), `reject_token`
//! fails the batch with an invalid-input error (the other inputs must still pass), `delay_ms`
//! makes every batch slow (to fill queues), and `load_once` refuses to load a model a second
//! time in the process (so the host's restart after a panic fails and the model stays down). It logs one line when it loads a model
//! (`echo model ready`), through the host's log sink.

#![deny(missing_docs)]

use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, Ordering};

use embedrt_backend_core::guest::BackendPlugin;
use embedrt_backend_core::{
    Backend, BackendError, Batch, Capabilities, DType, Embeddings, LoadDocument,
};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct EchoOptions {
    panic_on_token: Option<u32>,
    reject_token: Option<u32>,
    delay_ms: u64,
    load_once: bool,
}

/// Set once a model with `load_once` has loaded in this process.
static LOADED_ONCE: AtomicBool = AtomicBool::new(false);

struct Echo {
    capabilities: Capabilities,
    options: EchoOptions,
}

impl BackendPlugin for Echo {
    const NAME: &'static CStr = c"echo";

    fn load(document: &LoadDocument) -> Result<Self, BackendError> {
        let settings = &document.settings;
        settings.require_cpu("echo")?;
        let dtype = settings.dtype_among("echo", &[DType::F32])?;
        let options: EchoOptions = settings.options()?;
        if options.load_once && LOADED_ONCE.swap(true, Ordering::SeqCst) {
            return Err(BackendError::Load(
                "echo plugin told to load only once (`load_once`)".into(),
            ));
        }
        let echo = Self {
            capabilities: Capabilities {
                hidden_size: document.model.hidden_size,
                max_input_tokens: document.model.max_input_tokens,
                mixed_tasks: true,
                pads_batches: false,
                token_states: false,
                base_task: true,
                dtype: Some(dtype),
            },
            options,
        };
        tracing::info!(hidden = echo.capabilities.hidden_size, "echo model ready");
        Ok(echo)
    }
}

/// Value `j` of the echo embedding of `ids`.
fn echo_value(ids: &[u32], j: usize) -> f32 {
    let mixed = ids
        .iter()
        .enumerate()
        .fold(j as u64 + 1, |acc, (pos, &id)| {
            (acc * 31 + id as u64 * (pos as u64 + 7)) % 1_000_003
        });
    (mixed % 2001) as f32 / 1000.0 - 1.0
}

impl Backend for Echo {
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn embed(&mut self, batch: &Batch) -> Result<Embeddings, BackendError> {
        std::thread::sleep(std::time::Duration::from_millis(self.options.delay_ms));
        if let Some(token) = self
            .options
            .panic_on_token
            .filter(|t| batch.input_ids.contains(t))
        {
            panic!("echo plugin told to panic on token {token}");
        }
        if let Some(token) = self
            .options
            .reject_token
            .filter(|t| batch.input_ids.contains(t))
        {
            return Err(BackendError::InvalidInput(format!(
                "echo plugin rejects token {token}"
            )));
        }
        let hidden = self.capabilities.hidden_size;
        let data = (0..batch.len())
            .flat_map(|i| (0..hidden).map(move |j| echo_value(batch.ids(i), j)))
            .collect();
        Ok(Embeddings::new(data, hidden))
    }
}

embedrt_backend_core::export_plugin!(Echo);
