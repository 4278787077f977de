//! What an embedrt backend needs, and nothing more.
//!
//! A backend (an inference engine such as ONNX Runtime or candle) implements [`Backend`]: it runs
//! padding-free [`Batch`]es of token ids and returns pooled vectors or token states. It learns
//! about the model it loads from a [`LoadDocument`], the versioned JSON contract that crosses the
//! plugin ABI, and exports itself as a plugin with [`export_plugin!`].
//!
//! This crate is deliberately small, in the spirit of TEI's `backends/core`: its only
//! dependencies are the ABI's `#[repr(C)]` types, serde, thiserror and tracing. Backends depend on
//! it alone, never on the runtime, so a backend plugin's dependency tree holds no async runtime,
//! HTTP or gRPC stack, tokenizer or hub client. The host side of the ABI (finding and opening
//! plugins) lives in `embedrt-runtime`.
//!
//! - [`backend`]: the [`Backend`] trait, [`Batch`], [`Matrix`], [`Capabilities`], [`BackendError`];
//! - [`document`]: the [`LoadDocument`] a backend loads from, its [`BackendSettings`] ([`Device`],
//!   [`DType`], options), and the [`WeightFiles`] a backend asks for in answer to a [`FilesQuery`];
//! - [`pooling`] and [`padded`]: the helpers backends that run padded tensors share;
//! - [`guest`]: the plugin side of the ABI, behind [`export_plugin!`];
//! - [`threads`]: how many threads a backend may use.

#![deny(missing_docs)]

pub mod backend;
pub mod document;
pub mod guest;
pub mod padded;
pub mod pooling;
pub mod threads;

pub use backend::{Backend, BackendError, Batch, Capabilities, Embeddings, Matrix, TokenStates};
pub use document::{
    architecture, BackendSettings, BatchLimits, DType, Device, FileSet, FilesQuery, LoadDocument,
    ModelSpec, WeightFiles,
};
pub use embedrt_plugin_abi as abi;
pub use pooling::Pooling;
