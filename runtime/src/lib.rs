//! embedrt's core: everything between a parsed request and a backend.
//!
//! - [`config`]: the TOML file as written ([`Config`]) and the [`Plan`] it resolves to once;
//! - [`cache`]: vectors of inputs already embedded, in memory and in a shared Redis;
//! - [`family`], [`kind`] and [`model`]: which model families embedrt serves, whether a model
//!   embeds or reranks, and what a model folder says about its model ([`ModelCard`]);
//! - [`hub`]: model folders given as hub ids, fetched with `hf-hub`;
//! - [`tokenize`]: the model's tokenizer, and the pool it runs on; [`cl100k`]: OpenAI's token
//!   ids read back into text, for models that take them;
//! - [`scheduler`]: dynamic batching in front of one backend;
//! - [`postprocess`]: Matryoshka truncation and normalization;
//! - [`plugin`]: the host side of the plugin ABI (backends are shared libraries);
//! - [`variant`], [`instance`], [`registry`], [`request`]: the served models, their backend
//!   variants, and their request path;
//! - [`telemetry`]: metric names and labels.
//!
//! Backends themselves depend only on `embedrt-backend-core` (re-exported here as
//! [`backend_core`]); nothing here knows HTTP, gRPC, candle or ONNX Runtime.

#![deny(missing_docs)]

pub mod cache;
pub mod cl100k;
pub mod config;
pub mod family;
pub mod hub;
pub mod instance;
pub mod kind;
pub mod model;
pub mod plugin;
pub mod postprocess;
pub mod registry;
pub mod request;
pub mod scheduler;
pub mod telemetry;
pub mod tokenize;
pub mod variant;

pub use config::{Config, Plan};
pub use embedrt_backend_core as backend_core;
pub use embedrt_backend_core::{
    AdapterId, Backend, BackendError, Batch, Capabilities, Embeddings, TokenStates,
};
pub use instance::{ModelInfo, ModelInstance, VariantInfo};
pub use kind::{Activation, ModelKind};
pub use model::{ModelCard, ResolvedTask, TaskId};
pub use registry::{Registry, ReloadReport};
pub use request::{
    EmbedError, EmbedRequest, EmbedResponse, Input, RerankRequest, RerankResponse, RerankResult,
    ServedBy, TokenizeRequest, TokenizeResponse,
};
