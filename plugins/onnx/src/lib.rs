//! The `onnx` engine plugin: [`embedrt_onnx::OnnxBackend`] behind embedrt's plugin ABI.

embedrt_runtime::export_plugin!(c"onnx", embedrt_onnx::OnnxBackend::load);
