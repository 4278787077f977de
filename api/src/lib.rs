//! embedrt's front ends: the OpenAI-compatible HTTP API and the gRPC API over one set of models,
//! their Prometheus metrics, and the server that runs them.
//!
//! Modules depend on each other in one direction only:
//!
//! - leaves: [`shutdown`] (stop signals), [`config_source`] (the config file and its overrides),
//!   [`encoding`] (binary vector encodings), [`metrics`] (the Prometheus exporter),
//!   [`admission`] (how much work is taken on at once);
//! - [`state`]: what both front ends share (models, keys, sticky user, readiness);
//! - [`reload`]: swapping the models in from the config file, on top of `state`;
//! - [`http`] and [`grpc`]: the two front ends, side by side, neither using the other;
//! - [`server`]: runs everything; nothing depends on it.

#![deny(missing_docs)]

pub mod admission;
pub mod config_source;
pub mod encoding;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod reload;
pub mod server;
pub mod shutdown;
pub mod state;
