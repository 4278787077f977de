//! The `tensorrt` backend plugin: [`embedrt_onnx::TensorRtBackend`] behind embedrt's plugin ABI.
//!
//! It links no TensorRT or CUDA library: ONNX Runtime is opened at run time, and its TensorRT
//! provider is asked for when a model loads, so the plugin builds and loads everywhere and refuses
//! a model, saying what is missing, where TensorRT is not installed.

#![deny(missing_docs)]

embedrt_backend_core::export_plugin!(embedrt_onnx::TensorRtBackend);
