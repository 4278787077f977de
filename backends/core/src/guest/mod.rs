//! The plugin side of the ABI: export a [`Backend`] as a plugin.
//!
//! A plugin crate implements [`BackendPlugin`] for its backend type and exports it with
//! [`export_plugin!`](crate::export_plugin):
//!
//! ```
//! use std::ffi::CStr;
//!
//! use embedrt_backend_core::guest::BackendPlugin;
//! use embedrt_backend_core::{Backend, BackendError, Batch, Capabilities, Embeddings, LoadDocument};
//!
//! /// Embeds every sequence as its length (a one-dimensional model).
//! struct Lengths(Capabilities);
//!
//! impl Backend for Lengths {
//!     fn capabilities(&self) -> &Capabilities {
//!         &self.0
//!     }
//!
//!     fn embed(&mut self, batch: &Batch) -> Result<Embeddings, BackendError> {
//!         let lengths = (0..batch.len()).map(|i| batch.ids(i).len() as f32).collect();
//!         Ok(Embeddings::new(lengths, 1))
//!     }
//! }
//!
//! impl BackendPlugin for Lengths {
//!     const NAME: &'static CStr = c"lengths";
//!
//!     fn load(document: &LoadDocument) -> Result<Self, BackendError> {
//!         document.settings.require_cpu("lengths")?;
//!         Ok(Lengths(Capabilities {
//!             hidden_size: 1,
//!             max_input_tokens: document.model.max_input_tokens,
//!             mixed_tasks: true,
//!             pads_batches: false,
//!             token_states: false,
//!             base_task: true,
//!             dtype: None,
//!         }))
//!     }
//! }
//!
//! embedrt_backend_core::export_plugin!(Lengths);
//! # fn main() {}
//! ```
//!
//! Every exported function catches panics and reports them as [`Status::PANIC`]. The plugin's
//! `tracing` events go to the host's log once the host installs its sink (see `log`).

mod log;

use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use embedrt_plugin_abi::{
    self as abi, BatchView, ModelDescription, ModelHandle, PluginApi, Status, TextBuf, ABI_MAJOR,
    ABI_MINOR,
};

use crate::backend::{Backend, BackendError, Batch, Matrix};
use crate::document::LoadDocument;
use crate::files::{FilesQuery, WeightFiles};

/// A backend that can be exported as a plugin: its name, the files it needs and how it loads.
pub trait BackendPlugin: Backend + Sized + 'static {
    /// The backend's name, as configs write it in `backend = "..."`.
    const NAME: &'static CStr;

    /// Loads the model `document` describes.
    ///
    /// # Errors
    ///
    /// [`BackendError::Load`] when the model, its options, its device or its dtype cannot be had.
    fn load(document: &LoadDocument) -> Result<Self, BackendError>;

    /// The files of a model repository this backend needs with `query`'s settings (used to
    /// download a model given as a hub id); by default, none.
    ///
    /// # Errors
    ///
    /// [`BackendError::Load`] when the options are unusable.
    fn files(query: &FilesQuery) -> Result<WeightFiles, BackendError> {
        let _ = query;
        Ok(WeightFiles::default())
    }
}

/// The function table for `B`, to be returned by the plugin's entry symbol.
pub const fn plugin_api<B: BackendPlugin>() -> PluginApi {
    PluginApi {
        abi_major: ABI_MAJOR,
        abi_minor: ABI_MINOR,
        struct_size: std::mem::size_of::<PluginApi>(),
        name: B::NAME.as_ptr(),
        model_load: model_load::<B>,
        model_capabilities,
        model_embed,
        model_embed_tokens,
        model_health,
        model_free,
        set_log_sink: Some(log::set_log_sink),
        model_describe: Some(model_describe),
        model_files: Some(model_files::<B>),
    }
}

/// Exports a [`BackendPlugin`] as this library's plugin entry point.
#[macro_export]
macro_rules! export_plugin {
    ($backend:ty) => {
        /// The plugin's entry point: returns its function table.
        #[no_mangle]
        pub extern "C" fn embedrt_plugin_entry_v1() -> *const $crate::abi::PluginApi {
            static API: $crate::abi::PluginApi = $crate::guest::plugin_api::<$backend>();
            &API
        }
    };
}

struct LoadedModel {
    backend: Box<dyn Backend>,
}

/// Copies as much of `text` as fits into the host's buffer, cut at a character boundary; returns
/// whether all of it fit.
unsafe fn put(buf: *mut TextBuf, text: &str) -> bool {
    let Some(buf) = buf.as_mut() else {
        return false;
    };
    let mut len = text.len().min(buf.capacity);
    while !text.is_char_boundary(len) {
        len -= 1;
    }
    if !buf.data.is_null() {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.data, len);
    }
    if !buf.len.is_null() {
        *buf.len = len;
    }
    len == text.len() && !buf.data.is_null() && !buf.len.is_null()
}

/// Copies a whole answer into the host's buffer, or fails when it does not fit.
unsafe fn write_text(out: *mut TextBuf, text: &str) -> Result<(), BackendError> {
    if put(out, text) {
        return Ok(());
    }
    let capacity = out.as_ref().map_or(0, |buf| buf.capacity);
    Err(BackendError::InvalidInput(format!(
        "the answer needs {} bytes, the host's buffer holds {capacity}",
        text.len()
    )))
}

/// Runs `body`, turning an error or a panic into a status and a message.
unsafe fn guarded(err: *mut TextBuf, body: impl FnOnce() -> Result<(), BackendError>) -> Status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => Status::OK,
        Ok(Err(error)) => {
            put(err, error.message());
            error.status()
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            put(err, &format!("plugin panicked: {what}"));
            Status::PANIC
        }
    }
}

unsafe fn model<'a>(handle: ModelHandle) -> Result<&'a mut LoadedModel, BackendError> {
    (handle as *mut LoadedModel)
        .as_mut()
        .ok_or_else(|| BackendError::InvalidInput("null model handle".into()))
}

/// The host's NUL-terminated JSON text.
unsafe fn json<'a>(text: *const c_char) -> Result<&'a str, BackendError> {
    if text.is_null() {
        return Err(BackendError::InvalidInput("null document".into()));
    }
    CStr::from_ptr(text)
        .to_str()
        .map_err(|e| BackendError::Load(e.to_string()))
}

unsafe fn copy_out(result: Matrix, out: *mut f32, out_len: usize) -> Result<(), BackendError> {
    if result.data.len() != out_len {
        return Err(BackendError::Inference(format!(
            "backend produced {} values, the host expects {out_len}",
            result.data.len()
        )));
    }
    std::ptr::copy_nonoverlapping(result.data.as_ptr(), out, out_len);
    Ok(())
}

unsafe extern "C" fn model_load<B: BackendPlugin>(
    load_document: *const c_char,
    out_model: *mut ModelHandle,
    err: *mut TextBuf,
) -> Status {
    guarded(err, || {
        if out_model.is_null() {
            return Err(BackendError::InvalidInput("null argument".into()));
        }
        let backend = Box::new(B::load(&LoadDocument::from_json(json(load_document)?)?)?);
        *out_model = Box::into_raw(Box::new(LoadedModel { backend })) as ModelHandle;
        Ok(())
    })
}

unsafe extern "C" fn model_files<B: BackendPlugin>(
    files_query: *const c_char,
    out: *mut TextBuf,
    err: *mut TextBuf,
) -> Status {
    guarded(err, || {
        let files = B::files(&FilesQuery::from_json(json(files_query)?)?)?;
        let json = serde_json::to_string(&files).map_err(|e| BackendError::Load(e.to_string()))?;
        write_text(out, &json)
    })
}

/// The host's output location, or an error for a null one.
unsafe fn output<'a, T>(out: *mut T) -> Result<&'a mut T, BackendError> {
    out.as_mut()
        .ok_or_else(|| BackendError::InvalidInput("null output".into()))
}

unsafe extern "C" fn model_capabilities(
    handle: ModelHandle,
    out: *mut abi::Capabilities,
    err: *mut TextBuf,
) -> Status {
    guarded(err, || {
        *output(out)? = model(handle)?.backend.capabilities().into();
        Ok(())
    })
}

unsafe extern "C" fn model_describe(
    handle: ModelHandle,
    out: *mut ModelDescription,
    err: *mut TextBuf,
) -> Status {
    guarded(err, || {
        let ours = ModelDescription::from(model(handle)?.backend.capabilities());
        let out = output(out)?;
        // Write the fields both sides know: everything after `struct_size`, up to the smaller size.
        let header = std::mem::size_of::<usize>();
        let written = out.struct_size.min(ours.struct_size);
        if written > header {
            std::ptr::copy_nonoverlapping(
                (&ours as *const ModelDescription).cast::<u8>().add(header),
                (out as *mut ModelDescription).cast::<u8>().add(header),
                written - header,
            );
        }
        out.struct_size = written;
        Ok(())
    })
}

/// Runs `run` on the model and the host's batch, writing its result to the host's buffer.
unsafe fn run_batch(
    handle: ModelHandle,
    batch: *const BatchView,
    out: *mut f32,
    out_len: usize,
    err: *mut TextBuf,
    run: fn(&mut dyn Backend, &Batch) -> Result<Matrix, BackendError>,
) -> Status {
    guarded(err, || {
        let model = model(handle)?;
        let batch = Batch::from_view(batch)?;
        copy_out(run(model.backend.as_mut(), &batch)?, out, out_len)
    })
}

unsafe extern "C" fn model_embed(
    handle: ModelHandle,
    batch: *const BatchView,
    out: *mut f32,
    out_len: usize,
    err: *mut TextBuf,
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
    err: *mut TextBuf,
) -> Status {
    run_batch(handle, batch, out, out_len, err, |backend, batch| {
        backend.embed_tokens(batch)
    })
}

unsafe extern "C" fn model_health(handle: ModelHandle, err: *mut TextBuf) -> Status {
    guarded(err, || model(handle)?.backend.health())
}

unsafe extern "C" fn model_free(handle: ModelHandle) {
    if !handle.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            drop(Box::from_raw(handle as *mut LoadedModel))
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::DType;
    use crate::{Capabilities, Embeddings};
    use embedrt_plugin_abi::DTypeCode;

    struct Fixed(Capabilities);

    impl Backend for Fixed {
        fn capabilities(&self) -> &Capabilities {
            &self.0
        }

        fn embed(&mut self, batch: &Batch) -> Result<Embeddings, BackendError> {
            Ok(Embeddings::new(vec![0.0; batch.len()], 1))
        }
    }

    fn handle() -> ModelHandle {
        let backend = Box::new(Fixed(Capabilities {
            hidden_size: 8,
            max_input_tokens: 16,
            mixed_tasks: true,
            pads_batches: false,
            token_states: false,
            base_task: true,
            dtype: Some(DType::Bf16),
        }));
        Box::into_raw(Box::new(LoadedModel { backend })) as ModelHandle
    }

    #[test]
    fn a_description_fills_only_what_the_host_knows() {
        let model = handle();
        // A host that knows every field.
        let mut full = ModelDescription {
            struct_size: std::mem::size_of::<ModelDescription>(),
            ..ModelDescription::default()
        };
        let status = unsafe { model_describe(model, &mut full, std::ptr::null_mut()) };
        assert_eq!(status, Status::OK);
        assert_eq!(
            (full.capabilities.hidden_size, full.dtype),
            (8, DTypeCode::BF16)
        );
        assert_eq!(full.struct_size, std::mem::size_of::<ModelDescription>());
        // A host whose struct ends before `dtype`: that field is left alone.
        let known = std::mem::offset_of!(ModelDescription, dtype);
        let mut short = ModelDescription {
            struct_size: known,
            dtype: DTypeCode(99),
            ..ModelDescription::default()
        };
        let status = unsafe { model_describe(model, &mut short, std::ptr::null_mut()) };
        assert_eq!(status, Status::OK);
        let caps = short.capabilities;
        assert_eq!((caps.hidden_size, caps.max_input_tokens), (8, 16));
        assert_eq!((short.struct_size, short.dtype), (known, DTypeCode(99)));
        unsafe { model_free(model) };
    }

    #[test]
    fn the_files_answer_must_fit_the_hosts_buffer() {
        let mut data = [0u8; 4];
        let mut len = 0usize;
        let mut out = TextBuf {
            data: data.as_mut_ptr(),
            capacity: data.len(),
            len: &mut len,
        };
        let err = unsafe { write_text(&mut out, "too long") }.unwrap_err();
        assert!(err.to_string().contains("needs 8 bytes"), "{err}");
        unsafe { write_text(&mut out, "fits") }.unwrap();
        assert_eq!((&data, len), (b"fits", 4));
    }
}
