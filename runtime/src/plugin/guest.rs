//! The plugin side of the ABI: export a [`Backend`] implementation as a plugin.
//!
//! A plugin crate is one line: its engine's name and the function that loads a model.
//!
//! ```ignore
//! embedrt_runtime::export_plugin!(c"my-engine", my_engine::MyBackend::load);
//! ```
//!
//! Every exported function catches panics and reports them as [`Status::PANIC`].

use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use embedrt_plugin_abi::{
    BatchView, Capabilities as AbiCapabilities, ErrorBuf, ModelHandle, PluginApi, Status,
    ABI_MAJOR, ABI_MINOR,
};

use super::EngineConfig;
use crate::backend::{Backend, BackendError, Batch, Matrix};

/// An engine a plugin exports.
pub trait Engine {
    /// The engine's name, as configs write it in `backend = "..."`.
    const NAME: &'static CStr;

    /// Loads the model described by `config`.
    fn load(config: EngineConfig) -> Result<Box<dyn Backend>, BackendError>;
}

/// The function table for `E`, to be returned by the plugin's entry symbol.
pub const fn plugin_api<E: Engine>() -> PluginApi {
    PluginApi {
        abi_major: ABI_MAJOR,
        abi_minor: ABI_MINOR,
        struct_size: std::mem::size_of::<PluginApi>(),
        name: E::NAME.as_ptr(),
        model_load: model_load::<E>,
        model_capabilities,
        model_embed,
        model_embed_tokens,
        model_health,
        model_free,
    }
}

/// Exports an engine as this library's plugin entry point.
///
/// `$name` is the engine's name as a C string literal; `$load` is a function
/// `fn(&EngineConfig) -> Result<B, BackendError>` for some `B: Backend`.
#[macro_export]
macro_rules! export_plugin {
    ($name:literal, $load:path) => {
        struct ExportedEngine;

        impl $crate::plugin::guest::Engine for ExportedEngine {
            const NAME: &'static ::std::ffi::CStr = $name;

            fn load(
                config: $crate::plugin::EngineConfig,
            ) -> ::std::result::Result<::std::boxed::Box<dyn $crate::Backend>, $crate::BackendError>
            {
                Ok(::std::boxed::Box::new($load(&config)?))
            }
        }

        /// The plugin's entry point: returns its function table.
        #[no_mangle]
        pub extern "C" fn embedrt_plugin_entry_v1() -> *const $crate::plugin::abi::PluginApi {
            static API: $crate::plugin::abi::PluginApi =
                $crate::plugin::guest::plugin_api::<ExportedEngine>();
            &API
        }
    };
}

struct LoadedModel {
    backend: Box<dyn Backend>,
}

fn status_of(error: &BackendError) -> Status {
    match error {
        BackendError::InvalidInput(_) => Status::INVALID_ARGUMENT,
        BackendError::Unhealthy(_) => Status::PANIC,
        BackendError::Unsupported(_) => Status::UNSUPPORTED,
        BackendError::Load(_) | BackendError::Inference(_) => Status::ERROR,
    }
}

/// Copies `message` (cut at a character boundary) into the host's buffer.
unsafe fn write_error(err: *mut ErrorBuf, message: &str) {
    let Some(err) = err.as_mut() else { return };
    let mut len = message.len().min(err.capacity);
    while !message.is_char_boundary(len) {
        len -= 1;
    }
    if !err.data.is_null() {
        std::ptr::copy_nonoverlapping(message.as_ptr(), err.data, len);
    }
    if !err.len.is_null() {
        *err.len = len;
    }
}

/// Runs `body`, turning an error or a panic into a status and a message.
unsafe fn guarded(err: *mut ErrorBuf, body: impl FnOnce() -> Result<(), BackendError>) -> Status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => Status::OK,
        Ok(Err(error)) => {
            write_error(err, error.message());
            status_of(&error)
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            write_error(err, &format!("plugin panicked: {what}"));
            Status::PANIC
        }
    }
}

unsafe fn model<'a>(handle: ModelHandle) -> Result<&'a mut LoadedModel, BackendError> {
    (handle as *mut LoadedModel)
        .as_mut()
        .ok_or_else(|| BackendError::InvalidInput("null model handle".into()))
}

/// Copies the host's borrowed arrays into a [`Batch`].
unsafe fn batch_from_view(view: *const BatchView) -> Result<Batch, BackendError> {
    let view = view
        .as_ref()
        .ok_or_else(|| BackendError::InvalidInput("null batch".into()))?;
    let slice = |ptr: *const u32, len: usize| -> Vec<u32> {
        if len == 0 {
            Vec::new()
        } else {
            std::slice::from_raw_parts(ptr, len).to_vec()
        }
    };
    let batch = Batch {
        input_ids: slice(view.input_ids, view.num_tokens),
        token_type_ids: slice(view.token_type_ids, view.num_tokens),
        position_ids: slice(view.position_ids, view.num_tokens),
        cu_seq_lengths: slice(view.cu_seq_lengths, view.num_seqs + 1),
        task_ids: slice(view.task_ids, view.num_seqs),
        max_len: view.max_len as usize,
    };
    if batch.cu_seq_lengths.last().copied() != Some(view.num_tokens as u32) {
        return Err(BackendError::InvalidInput(
            "cu_seq_lengths does not end at num_tokens".into(),
        ));
    }
    Ok(batch)
}

unsafe fn copy_out(result: Matrix, out: *mut f32, out_len: usize) -> Result<(), BackendError> {
    if result.data.len() != out_len {
        return Err(BackendError::Inference(format!(
            "engine produced {} values, the host expects {out_len}",
            result.data.len()
        )));
    }
    std::ptr::copy_nonoverlapping(result.data.as_ptr(), out, out_len);
    Ok(())
}

unsafe extern "C" fn model_load<E: Engine>(
    config_json: *const c_char,
    out_model: *mut ModelHandle,
    err: *mut ErrorBuf,
) -> Status {
    guarded(err, || {
        if config_json.is_null() || out_model.is_null() {
            return Err(BackendError::InvalidInput("null argument".into()));
        }
        let json = CStr::from_ptr(config_json)
            .to_str()
            .map_err(|e| BackendError::Load(e.to_string()))?;
        let config: EngineConfig = serde_json::from_str(json)
            .map_err(|e| BackendError::Load(format!("bad engine config: {e}")))?;
        let backend = E::load(config)?;
        *out_model = Box::into_raw(Box::new(LoadedModel { backend })) as ModelHandle;
        Ok(())
    })
}

unsafe extern "C" fn model_capabilities(
    handle: ModelHandle,
    out: *mut AbiCapabilities,
    err: *mut ErrorBuf,
) -> Status {
    guarded(err, || {
        let caps = model(handle)?.backend.capabilities();
        let out = out
            .as_mut()
            .ok_or_else(|| BackendError::InvalidInput("null output".into()))?;
        *out = AbiCapabilities {
            hidden_size: caps.hidden_size as u32,
            max_tokens: caps.max_tokens as u32,
            mixed_tasks: caps.mixed_tasks.into(),
            pads_batches: caps.pads_batches.into(),
            token_states: caps.token_states.into(),
            base_task: caps.base_task.into(),
        };
        Ok(())
    })
}

/// Runs `run` on the model and the host's batch, writing its result to the host's buffer.
unsafe fn run_batch(
    handle: ModelHandle,
    batch: *const BatchView,
    out: *mut f32,
    out_len: usize,
    err: *mut ErrorBuf,
    run: fn(&mut dyn Backend, &Batch) -> Result<Matrix, BackendError>,
) -> Status {
    guarded(err, || {
        let model = model(handle)?;
        let batch = batch_from_view(batch)?;
        copy_out(run(model.backend.as_mut(), &batch)?, out, out_len)
    })
}

unsafe extern "C" fn model_embed(
    handle: ModelHandle,
    batch: *const BatchView,
    out: *mut f32,
    out_len: usize,
    err: *mut ErrorBuf,
) -> Status {
    run_batch(handle, batch, out, out_len, err, |backend, batch| {
        backend.embed(batch)
    })
}

unsafe extern "C" fn model_embed_tokens(
    handle: ModelHandle,
    batch: *const BatchView,
    out: *mut f32,
    out_len: usize,
    err: *mut ErrorBuf,
) -> Status {
    run_batch(handle, batch, out, out_len, err, |backend, batch| {
        backend.embed_tokens(batch)
    })
}

unsafe extern "C" fn model_health(handle: ModelHandle, err: *mut ErrorBuf) -> Status {
    guarded(err, || model(handle)?.backend.health())
}

unsafe extern "C" fn model_free(handle: ModelHandle) {
    if !handle.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            drop(Box::from_raw(handle as *mut LoadedModel))
        }));
    }
}
