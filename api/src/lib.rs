//! embedrt's front ends: the OpenAI-compatible HTTP API and the gRPC API over one set of models,
//! their Prometheus metrics, and the server that runs them.

pub mod error;
pub mod grpc;
pub mod metrics;
pub mod openai;
pub mod routes;
pub mod server;
pub mod state;
pub mod tokenize;
