//! Execution providers: where ONNX Runtime runs a graph.
//!
//! The CPU needs none. CUDA and TensorRT are registered with `error_on_failure`: by default `ort`
//! falls back to the CPU when a provider cannot start, and a GPU variant that silently runs on the
//! CPU is worse than one that does not start. Each refusal names the library that was loaded and
//! what the provider needs.

use std::path::Path;

use embedrt_backend_core::BackendError;
use ort::ep::{ExecutionProvider, ExecutionProviderDispatch, CUDA};

use crate::library::Library;

/// What the CUDA provider needs, for error messages.
const CUDA_NEEDS: &str = "The CUDA provider comes with ONNX Runtime's GPU build (PyPI \
    `onnxruntime-gpu`, built for CUDA 13: `libonnxruntime_providers_cuda.so` beside \
    `libonnxruntime.so`) and needs an NVIDIA driver and CUDA 13's cuBLAS, cuRAND and runtime \
    libraries on the library path (or in the `cuda_libraries` option's folder). Run \
    scripts/setup.sh --gpu, or name a GPU build with the `library` option.";

/// What the TensorRT provider needs, for error messages.
pub(crate) const TENSORRT_NEEDS: &str = "The TensorRT provider comes with ONNX Runtime's GPU \
    build (PyPI `onnxruntime-gpu`: `libonnxruntime_providers_tensorrt.so` beside \
    `libonnxruntime.so`) and needs TensorRT 10 (`libnvinfer.so.10`, `libnvonnxparser.so.10`, e.g. \
    from NVIDIA's `tensorrt-cu13-libs` wheel) and cuDNN 9 on the library path, besides what the \
    CUDA provider needs. Run scripts/setup.sh --gpu, or name a GPU build with the `library` \
    option.";

/// Checks that `library` was built with the provider `P`.
///
/// # Errors
///
/// [`BackendError::Load`] naming the library and `needs` when it was not.
pub(crate) fn require<P: ExecutionProvider>(
    library: &Library,
    needs: &str,
) -> Result<(), BackendError> {
    match P::is_available() {
        Ok(true) => Ok(()),
        Ok(false) => Err(BackendError::Load(format!(
            "the ONNX Runtime library {} has no {}. {needs}",
            library.path.display(),
            P::NAME
        ))),
        Err(e) => Err(BackendError::Load(format!(
            "cannot list the execution providers of {}: {e}",
            library.path.display()
        ))),
    }
}

/// Loads CUDA's libraries from `folder` (the `cuda_libraries` option) when one is given, so the
/// providers find them there before the system's library path.
///
/// # Errors
///
/// [`BackendError::Load`] naming the folder and the library it lacks.
pub(crate) fn preload_cuda(folder: Option<&Path>) -> Result<(), BackendError> {
    let Some(folder) = folder else {
        return Ok(());
    };
    ort::ep::cuda::preload_dylibs(Some(folder), None).map_err(|e| {
        BackendError::Load(format!(
            "the `cuda_libraries` folder {}: {e}",
            folder.display()
        ))
    })
}

/// The CUDA provider on GPU `index`, checked to exist in `library`.
///
/// # Errors
///
/// [`BackendError::Load`] when the library has no CUDA provider.
pub(crate) fn cuda(
    library: &Library,
    index: u32,
) -> Result<ExecutionProviderDispatch, BackendError> {
    require::<CUDA>(library, CUDA_NEEDS)?;
    Ok(CUDA::default()
        .with_device_id(index as i32)
        .build()
        .error_on_failure())
}

/// Says why registering `providers` of `library` failed: ONNX Runtime's own message (which names
/// the shared library it could not open) and what they need.
pub(crate) fn registration_error(
    library: &Library,
    providers: &[ExecutionProviderDispatch],
    error: impl std::fmt::Display,
) -> BackendError {
    let names: Vec<&str> = providers.iter().map(|p| p.name()).collect();
    let needs = if names
        .iter()
        .any(|n| n.to_ascii_lowercase().contains("tensorrt"))
    {
        TENSORRT_NEEDS
    } else {
        CUDA_NEEDS
    };
    BackendError::Load(format!(
        "cannot start {} of the ONNX Runtime library {}: {error}. {needs}",
        names.join(" and "),
        library.path.display()
    ))
}
