//! embedrt's front end: the OpenAI-compatible HTTP API and the server that runs it.

pub mod error;
pub mod openai;
pub mod routes;
pub mod server;
