//! Backends as plugins: the host side of the C ABI of [`embedrt_plugin_abi`]. The guest side, which
//! backend crates use to export themselves, is in `embedrt-backend-core`.
//!
//! [`host`] finds and opens plugin libraries and wraps each loaded model in a
//! [`Backend`](embedrt_backend_core::Backend); `log` receives the plugins' log lines.

pub mod host;
mod log;

pub use embedrt_plugin_abi as abi;
