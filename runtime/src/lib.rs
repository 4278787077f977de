//! embedrt's core: everything between a parsed request and an engine.
//!
//! - [`backend`]: the [`Backend`] trait engines implement, and the padding-free [`Batch`];
//! - [`model`]: what a model folder says about the model ([`ModelCard`]);
//! - [`tokenize`]: the model's tokenizer, and the pool it runs on;
//! - [`scheduler`]: dynamic batching in front of one engine;
//! - [`padded`], [`pooling`], [`postprocess`]: from token states to the vectors clients get;
//! - [`plugin`]: engines as shared libraries behind a versioned C ABI;
//! - [`telemetry`]: metric names and labels;
//! - [`config`], [`hub`], [`instance`], [`variant`], [`registry`], [`request`]: the served
//!   models (local or from the hub), their engine variants, and their request path.
//!
//! Nothing here knows HTTP, gRPC, candle or ONNX Runtime.

pub mod backend;
pub mod config;
pub mod hub;
pub mod instance;
pub mod model;
pub mod padded;
pub mod plugin;
pub mod pooling;
pub mod postprocess;
pub mod registry;
pub mod request;
pub mod scheduler;
pub mod telemetry;
pub mod tokenize;
pub mod variant;

pub use backend::{Backend, BackendError, Batch, Capabilities, Embeddings, TokenStates};
pub use config::Config;
pub use instance::ModelInstance;
pub use model::ModelCard;
pub use registry::{Registry, ReloadReport};
pub use request::{
    EmbedError, EmbedRequest, EmbedResponse, Input, TokenizeRequest, TokenizeResponse,
};
