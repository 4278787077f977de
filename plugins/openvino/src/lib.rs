//! The `openvino` backend plugin: [`embedrt_openvino::OpenVinoBackend`] behind embedrt's plugin
//! ABI.

#![deny(missing_docs)]

embedrt_backend_core::export_plugin!(embedrt_openvino::OpenVinoBackend);
