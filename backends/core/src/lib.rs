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
//! - [`backend`]: the [`Backend`] trait, [`Batch`] (with an [`AdapterId`] per sequence),
//!   [`Matrix`], [`Capabilities`], [`BackendError`];
//! - [`document`]: the [`LoadDocument`] a backend loads from ([`ModelSpec`], [`BatchLimits`]);
//! - [`placement`]: the [`BackendSettings`] of a variant ([`Device`], [`DType`], options) and
//!   the checks that refuse what a backend cannot run;
//! - [`files`]: the [`WeightFiles`] a backend asks for in answer to a [`FilesQuery`];
//! - [`boundary`]: every conversion between these types and the ABI's, both directions;
//! - [`pooling`] and [`padded`]: the helpers backends that run padded tensors share; [`graph`]:
//!   the inputs and output of an exported graph bound by name;
//! - [`guest`]: the plugin side of the ABI, behind [`export_plugin!`];
//! - [`library`]: where an engine's shared library is looked for, in one order for every engine;
//! - [`threads`]: how many threads a backend may use.

#![deny(missing_docs)]

pub mod backend;
pub mod boundary;
pub mod document;
pub mod files;
pub mod graph;
pub mod guest;
pub mod library;
pub mod padded;
pub mod placement;
pub mod pooling;
pub mod threads;

pub use backend::{
    AdapterId, Backend, BackendError, Batch, Capabilities, Embeddings, Matrix, TokenStates,
};
pub use document::{architecture, BatchLimits, Head, LoadDocument, ModelSpec};
pub use embedrt_plugin_abi as abi;
pub use files::{FileSet, FilesQuery, WeightFiles};
pub use placement::{BackendSettings, DType, Device};
pub use pooling::Pooling;
