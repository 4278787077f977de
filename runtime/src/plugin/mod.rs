//! Backends as plugins: the host side of the C ABI of [`embedrt_plugin_abi`]. The guest side,
//! which backend crates use to export themselves, is in `embedrt-backend-core`, and so are the
//! conversions between the two sides' types (`embedrt_backend_core::boundary`).
//!
//! - `library`: finding, opening and checking plugin libraries ([`PluginHost`], [`Plugin`]);
//! - `call`: the plumbing of one plugin call (host-owned text buffers, statuses to errors);
//! - `backend`: a model a plugin loaded, as a [`Backend`](embedrt_backend_core::Backend)
//!   ([`PluginBackend`]);
//! - `log`: the sink plugins write their log lines to.
//!
//! The host speaks every minor version of ABI 1: it copies a plugin's table as far as both sides
//! know it and uses a minor's functions only where the plugin has them (an older plugin lacks
//! them; a newer one's extra fields are not read).

mod backend;
mod call;
mod library;
mod log;

pub use backend::PluginBackend;
pub use embedrt_plugin_abi as abi;
pub use library::{open_library, Plugin, PluginError, PluginHost};
