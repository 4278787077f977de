//! The end-to-end suite's harness, one module per concern:
//!
//! - [`server`]: a real `embedrt serve` process, started one way (`Server::builder()`), and
//!   the cap on how many run at once ([`alone`] for tests that load the machine);
//! - [`models`]: the `[[models]]` tables of its config, typed ([`Model`], [`Variant`]);
//! - [`http`]: requests to it and reading the answers ([`ok`], [`error`]);
//! - [`load`]: concurrent clients, and load while a test's steps run;
//! - [`process`]: processes tied to the test process, and free ports;
//! - [`python`]: pinned Python venvs and the client scripts of `tests/python`;
//! - [`redis`]: a `redis-server` of a test's own.
//!
//! Paths, the golden data, vector comparisons and temporary folders come from
//! `embedrt-testkit`, which the backends' own tests share.

pub mod http;
pub mod load;
pub mod models;
pub mod process;
pub mod python;
pub mod redis;
pub mod server;

pub use embedrt_testkit::paths::{build_dir, fixtures_dir, jina_dir, minilm_dir, repo_root};
pub use embedrt_testkit::vectors::{assert_each_pair, cosine, max_abs_diff};
pub use embedrt_testkit::{load_document, TempDir};
pub use http::{embeddings_of, error, header, ok};
pub use load::{concurrently, under_load, LoadOutcome};
pub use models::{broken_copy, served, Model, Variant, ENGINES};
pub use process::memory_mb;
pub use server::{alone, refusal, Exit, Server};
