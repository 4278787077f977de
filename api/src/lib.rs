//! embedrt's front end: the OpenAI-compatible HTTP API, its Prometheus metrics, and the server
//! that runs them.

pub mod error;
pub mod metrics;
pub mod openai;
pub mod routes;
pub mod server;
