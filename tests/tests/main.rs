//! embedrt's end-to-end suite, one test binary (as ripgrep's `tests/tests.rs`): the real
//! `embedrt` binary and plugins of this build, driven by real clients. Each module is one
//! concern; `common` is the harness they share. Build everything first (`cargo build
//! --workspace`, as `scripts/test.sh` does): the tests start `target/<profile>/embedrt`.

/// The harness: servers, typed model configs, HTTP helpers, load, Python venvs, Redis.
mod common;

/// The embedding cache: memory and Redis, through the server.
mod cache;
/// The API as a contract: the OpenAPI document against the server, schemathesis, `/docs` in a
/// browser.
mod contract;
/// Qwen3-Embedding (a decoder) over HTTP on both engines with the official `openai` client.
mod decoders_http;
/// The backend plugins' dependency graph: never the runtime, never a server stack.
mod dependencies;
/// XLM-RoBERTa, MPNet and ModernBERT over HTTP on both engines.
mod encoders_http;
/// The runtime's tokenization and both engines' vectors over HTTP against the references.
mod fidelity;
/// GPU variants refused with what is missing, on a machine without one.
mod gpu_refusals;
/// `scripts/test-gpu.sh`, run on the CPU engines.
mod gpu_script;
/// The gRPC API: parity with HTTP, streams, errors, operations.
mod grpc;
/// Python's grpcio with generated stubs.
mod grpc_python;
/// Hostile and unlucky traffic: vanished callers, deadlines, huge texts and bodies, upload
/// floods, poison inputs.
mod hardening;
/// The OpenAI-compatible HTTP API: input shapes, encodings, limits, errors.
mod http_api;
/// Models given as hub ids, downloaded from a local file server.
mod hub;
/// `dtype = "int8"` served over HTTP.
mod int8;
/// jina-embeddings-v3 over HTTP on both engines.
mod jina_http;
/// The Kubernetes manifests against the API schemas, and the config they carry.
mod kubernetes;
/// The server's memory on every engine: back after a burst, flat under varied shapes.
mod memory;
/// Replicas behind a real nginx through a drain and a crash.
mod nginx;
/// The onnx backend finding ONNX Runtime by itself.
mod onnx_library;
/// The official `openai` Python client.
mod openai_client;
/// The openvino engine through the server: A/B with onnx, bf16, finding its library.
mod openvino;
/// The parsers of untrusted input under proptest, with the fuzz targets' invariants and corpus.
mod parsers;
/// The plugin loader: real plugins, broken ones, panics, ABI 1.0.
mod plugins;
/// The Python client's own suite against this build.
mod python_client;
/// Reloading the config under load.
mod reload;
/// `replicas = 2`: two copies of a model on one queue.
mod replicas;
/// Rerankers (cross-encoders) over HTTP's three shapes and gRPC on both engines.
mod rerank;
/// The shell library of `scripts/` and `benches/`: servers started on free ports, stopped on exit.
mod scripts;
/// `benches/soak.py` squeezed into 30 s: every fault, no valid request lost.
mod soak;
/// Starting and stopping the binary: config errors, flags, the admin key rule, SIGTERM.
mod startup;
/// The harness's own promise: no test server outlives the test process.
mod test_servers;
/// Several models and A/B variants in one process: weights, stickiness, metrics, shadows.
mod variants;
