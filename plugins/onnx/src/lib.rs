//! The `onnx` backend plugin: [`embedrt_onnx::OnnxBackend`] behind embedrt's plugin ABI.

#![deny(missing_docs)]

embedrt_backend_core::export_plugin!(embedrt_onnx::OnnxBackend);
