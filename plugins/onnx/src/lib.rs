//! The `onnx` backend plugin: [`embedrt_onnx::OnnxBackend`] behind embedrt's plugin ABI.

embedrt_backend_core::export_plugin!(embedrt_onnx::OnnxBackend);
