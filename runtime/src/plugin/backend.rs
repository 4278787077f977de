//! A model loaded by a plugin, as a [`Backend`]: the plugin's files answer and load call, the
//! model's description, and every batch through the ABI. The conversions between the core types
//! and the ABI's live in `embedrt_backend_core::boundary`.

use embedrt_backend_core::{
    Backend, BackendError, Batch, Capabilities, Device, Embeddings, FileSet, FilesQuery,
    LoadDocument, Matrix, TokenStates, WeightFiles,
};
use embedrt_plugin_abi::{self as abi, BatchFn, ModelDescription, ModelHandle};

use super::call::{c_string, call, Text, ANSWER_CAPACITY};
use super::library::{Plugin, PluginHost};

impl PluginHost {
    /// Loads a model with the plugin of `backend`.
    ///
    /// # Errors
    ///
    /// [`BackendError::Load`] when the plugin cannot be opened or refuses the model.
    pub fn load_model(
        &self,
        backend: &str,
        document: &LoadDocument,
    ) -> Result<PluginBackend, BackendError> {
        let plugin = self
            .open(backend)
            .map_err(|e| BackendError::Load(e.to_string()))?;
        plugin.load(document)
    }
}

/// The weights an ABI 1.0 plugin, which cannot say, may need.
fn files_before_1_1() -> WeightFiles {
    WeightFiles {
        alternatives: vec![
            FileSet::of(&["model.safetensors"]),
            FileSet::of(&["onnx/model.onnx"]).with_companions(&["onnx/model.onnx_data"]),
            FileSet::of(&["model.onnx"]).with_companions(&["model.onnx_data"]),
        ],
    }
}

impl Plugin {
    /// The files of a model repository this backend needs with `query`'s settings.
    ///
    /// # Errors
    ///
    /// [`BackendError::Load`] when the plugin refuses the query or answers nonsense.
    pub fn files(&self, query: &FilesQuery) -> Result<WeightFiles, BackendError> {
        let Some(model_files) = self.api.model_files else {
            return Ok(files_before_1_1());
        };
        let json = c_string(query.to_json())?;
        let mut answer = Text::with_capacity(ANSWER_CAPACITY);
        let mut out = answer.buf();
        // SAFETY: the document and both buffers are valid for the call.
        call(BackendError::Load, |err| unsafe {
            model_files(json.as_ptr(), &mut out, err)
        })?;
        serde_json::from_str(&answer.text()).map_err(|e| {
            BackendError::Load(format!("{}: bad files answer: {e}", self.path.display()))
        })
    }

    /// Loads a model with this plugin.
    ///
    /// # Errors
    ///
    /// [`BackendError::Load`] when the plugin refuses the model, or when an ABI 1.0 plugin (which
    /// cannot be told a device or dtype) is asked for anything but the CPU in its own precision.
    pub fn load(&'static self, document: &LoadDocument) -> Result<PluginBackend, BackendError> {
        let settings = &document.settings;
        if self.api.abi_minor == 0 && (settings.device != Device::Cpu || settings.dtype.is_some()) {
            return Err(BackendError::Load(format!(
                "plugin {} speaks ABI 1.0, which cannot be told a device or dtype (it runs on the \
                 CPU in its own precision): leave out `device` and `dtype`, or rebuild the plugin \
                 against ABI 1.1",
                self.path.display()
            )));
        }
        let json = c_string(document.to_json())?;
        let mut handle: ModelHandle = std::ptr::null_mut();
        // SAFETY: arguments are valid for the call; the plugin writes the handle on success.
        call(BackendError::Load, |err| unsafe {
            (self.api.model_load)(json.as_ptr(), &mut handle, err)
        })?;
        // Wrapped before it is described, so that a failing description still frees the handle.
        let mut backend = PluginBackend {
            plugin: self,
            handle,
            capabilities: abi::Capabilities::default().into(),
            broken: None,
        };
        backend.capabilities = self.describe(handle)?;
        Ok(backend)
    }

    /// What the model behind `handle` can do: the sized 1.1 description when the plugin has it,
    /// else the 1.0 capabilities.
    fn describe(&self, handle: ModelHandle) -> Result<Capabilities, BackendError> {
        let Some(describe) = self.api.model_describe else {
            let mut caps = abi::Capabilities::default();
            // SAFETY: the handle is live; `caps` is a valid output location.
            call(BackendError::Load, |err| unsafe {
                (self.api.model_capabilities)(handle, &mut caps, err)
            })?;
            return Ok(caps.into());
        };
        let mut description = ModelDescription {
            struct_size: std::mem::size_of::<ModelDescription>(),
            ..ModelDescription::default()
        };
        // SAFETY: the handle is live; `description` is a valid, sized output location.
        call(BackendError::Load, |err| unsafe {
            describe(handle, &mut description, err)
        })?;
        Ok(Capabilities::from(&description))
    }
}

/// A model loaded by a plugin, usable wherever a [`Backend`] is.
pub struct PluginBackend {
    plugin: &'static Plugin,
    handle: ModelHandle,
    capabilities: Capabilities,
    broken: Option<String>,
}

// SAFETY: the ABI requires a model handle to be usable from any thread, one call at a time, which
// `&mut self` on every call guarantees.
unsafe impl Send for PluginBackend {}

impl PluginBackend {
    /// The backend's name as the plugin reports it.
    pub fn name(&self) -> &str {
        self.plugin.name()
    }

    /// Runs one of the plugin's batch functions into a fresh `[rows, hidden]` buffer.
    fn run(
        &mut self,
        batch: &Batch,
        rows: usize,
        function: BatchFn,
    ) -> Result<Matrix, BackendError> {
        if let Some(why) = &self.broken {
            return Err(BackendError::Unhealthy(why.clone()));
        }
        let hidden = self.capabilities.hidden_size;
        let view = batch.view();
        let mut out = vec![0f32; rows * hidden];
        let handle = self.handle;
        // SAFETY: the view borrows `batch`, which outlives the call; `out` has `out.len()` values.
        let result = call(BackendError::Inference, |err| unsafe {
            function(handle, &view, out.as_mut_ptr(), out.len(), err)
        });
        if let Err(BackendError::Unhealthy(why)) = &result {
            self.broken = Some(why.clone());
        }
        result.map(|()| Matrix::new(out, hidden))
    }
}

impl Backend for PluginBackend {
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn embed(&mut self, batch: &Batch) -> Result<Embeddings, BackendError> {
        self.run(batch, batch.len(), self.plugin.api.model_embed)
    }

    fn embed_tokens(&mut self, batch: &Batch) -> Result<TokenStates, BackendError> {
        self.run(
            batch,
            batch.input_ids.len(),
            self.plugin.api.model_embed_tokens,
        )
    }

    fn health(&mut self) -> Result<(), BackendError> {
        if let Some(why) = &self.broken {
            return Err(BackendError::Unhealthy(why.clone()));
        }
        let handle = self.handle;
        // SAFETY: the handle is live.
        call(BackendError::Inference, |err| unsafe {
            (self.plugin.api.model_health)(handle, err)
        })
    }
}

impl Drop for PluginBackend {
    fn drop(&mut self) {
        // SAFETY: the handle came from this plugin's `model_load` and is freed once.
        unsafe { (self.plugin.api.model_free)(self.handle) }
    }
}
