//! The file's `[server]` and `[cache]` tables, as written.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `[server]`: addresses, limits, keys and thread pools.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the HTTP API.
    pub http: SocketAddr,
    /// Address of the gRPC API; off when unset.
    pub grpc: Option<SocketAddr>,
    /// Largest gRPC message accepted, in bytes; larger ones are refused with `OUT_OF_RANGE`.
    pub grpc_max_request_bytes: usize,
    /// Largest gRPC message sent, in bytes; a larger answer fails with `OUT_OF_RANGE`.
    pub grpc_max_response_bytes: usize,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Folders searched for backend plugins, relative to the config file. Empty: the folder of the
    /// `embedrt` executable.
    pub plugin_dirs: Vec<PathBuf>,
    /// Threads of the async runtime that serves connections.
    pub async_threads: usize,
    /// Threads that tokenize requests; default: a quarter of the cores when every variant runs on
    /// the CPU (the backends need the rest), every core when one runs on a GPU (so tokenization
    /// never starves it).
    pub tokenizer_threads: Option<usize>,
    /// The key `POST /admin/reload` needs (`Authorization: Bearer <admin_key>`).
    pub admin_key: Option<String>,
    /// A file holding that key (a mounted Kubernetes Secret, say), read at startup and on reload;
    /// surrounding whitespace is ignored. Give this or `admin_key`, not both.
    pub admin_key_file: Option<PathBuf>,
    /// The admin endpoint without a key: `"open"` to anyone who reaches the HTTP listener, or
    /// `"off"` (SIGHUP still reloads). Unset: open when the HTTP listener is a loopback address,
    /// and a startup error otherwise.
    pub admin: Option<AdminSetting>,
    /// When not empty, the embedding API (HTTP `/v1/*` and every `embedrt.v1` gRPC method) needs
    /// `Authorization: Bearer <key>` with one of these keys. Health, readiness and metrics stay
    /// open.
    pub api_keys: Vec<String>,
    /// A request header whose value keeps a caller on one variant when the body has no `user`
    /// (for example `x-user-id`).
    pub sticky_header: Option<String>,
    /// On SIGTERM/SIGINT, how long the server keeps serving while `/ready` says `draining`
    /// before it stops accepting, so that load balancers take it out first (Kubernetes: longer
    /// than endpoint propagation, a few seconds). In-flight requests finish either way.
    pub drain_delay_ms: u64,
    /// Longest time one API request may take, from its arrival to its answer (reading the body,
    /// waiting in the queue, inference); past it the caller gets 504 (HTTP) or
    /// `DEADLINE_EXCEEDED` (gRPC, where a shorter `grpc-timeout` of the call's wins) and its
    /// queued inputs are dropped unrun. 0: no limit.
    pub request_timeout_ms: u64,
    /// Most API requests (HTTP and gRPC together) the server works on at once; more are
    /// answered at once with 429 and `Retry-After` (gRPC: `RESOURCE_EXHAUSTED`), before their
    /// body is read.
    pub max_requests_in_flight: usize,
    /// Most bytes of HTTP request bodies the server holds at once (by their `Content-Length`;
    /// `max_body_bytes` for a body sent without one); a request past it is answered at once
    /// with 429 and `Retry-After`, before its body is read.
    pub max_body_bytes_in_flight: usize,
    /// Most HTTP connections open at once; more are closed as soon as they are accepted. Lowered
    /// to what the process's file-descriptor limit allows (less 256).
    pub max_connections: usize,
    /// How long an HTTP connection may stay idle (no request in flight, no byte moved), and
    /// the longest a request head may take to arrive (clients that send headers slowly).
    /// Keep it longer than the keep-alive timeout of a proxy in front (nginx's upstream
    /// `keepalive_timeout` is 60 s), so the proxy never reuses a connection the server closes.
    pub idle_timeout_ms: u64,
}

/// `[server] admin`: what the admin endpoint does without a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminSetting {
    /// Anyone who reaches the HTTP listener may reload.
    Open,
    /// `POST /admin/reload` is refused; SIGHUP still reloads.
    Off,
}

impl Default for ServerConfig {
    fn default() -> Self {
        // On a small machine the backends deserve the cores: one thread each for I/O and tokenization.
        let light = (embedrt_backend_core::threads::cores() / 4).max(1);
        Self {
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            grpc: None,
            grpc_max_request_bytes: 4 << 20,
            grpc_max_response_bytes: 64 << 20,
            max_body_bytes: 4 << 20,
            plugin_dirs: Vec::new(),
            async_threads: light,
            tokenizer_threads: None,
            admin_key: None,
            admin_key_file: None,
            admin: None,
            api_keys: Vec::new(),
            sticky_header: None,
            drain_delay_ms: 0,
            request_timeout_ms: 60_000,
            max_requests_in_flight: 1024,
            max_body_bytes_in_flight: 32 << 20,
            max_connections: 8192,
            idle_timeout_ms: 75_000,
        }
    }
}

/// `[cache]`: vectors of inputs already embedded, kept in this process and, optionally, in a
/// Redis shared by several processes. See [`crate::cache`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Bytes the in-process layer may hold (keys, vectors and bookkeeping); 0 turns it off.
    pub memory_bytes: u64,
    /// A Redis shared by the processes serving the same models (`redis://host:port/db`); off
    /// when unset.
    pub redis_url: Option<String>,
    /// How long an entry lives, in both layers; 0 keeps entries until they are evicted.
    pub ttl_seconds: u64,
    /// Longest wait for one Redis call; a slower Redis counts as down (the request goes on
    /// without it).
    pub redis_timeout_ms: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            memory_bytes: 0,
            redis_url: None,
            ttl_seconds: 86_400,
            redis_timeout_ms: 50,
        }
    }
}

impl CacheConfig {
    /// Whether any layer is on.
    pub fn enabled(&self) -> bool {
        self.memory_bytes > 0 || self.redis_url.is_some()
    }

    /// The entries' lifetime, `None` for no expiry.
    pub fn ttl(&self) -> Option<Duration> {
        (self.ttl_seconds > 0).then(|| Duration::from_secs(self.ttl_seconds))
    }
}
