//! The TOML configuration file: server settings and the models to serve.
//!
//! Unknown keys and bad values are errors at startup that name the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use embedrt_backend_core::{BatchLimits, DType, Device};
use serde::Deserialize;

use crate::scheduler::BatchingConfig;

/// The whole configuration file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Process-wide settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// The embedding cache; off unless configured.
    #[serde(default)]
    pub cache: CacheSettings,
    /// The models to serve; at least one.
    pub models: Vec<ModelConfig>,
}

/// `[server]`: addresses, limits and thread pools.
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
    /// never starves it). See [`Config::tokenizer_threads`].
    pub tokenizer_threads: Option<usize>,
    /// When set, `POST /admin/reload` needs `Authorization: Bearer <admin_key>`.
    pub admin_key: Option<String>,
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
            api_keys: Vec::new(),
            sticky_header: None,
            drain_delay_ms: 0,
        }
    }
}

/// `[cache]`: vectors of inputs already embedded, kept in this process and, optionally, in a
/// Redis shared by several processes. See [`crate::cache`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
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

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            memory_bytes: 0,
            redis_url: None,
            ttl_seconds: 86_400,
            redis_timeout_ms: 50,
        }
    }
}

impl CacheSettings {
    /// Whether any layer is on.
    pub fn enabled(&self) -> bool {
        self.memory_bytes > 0 || self.redis_url.is_some()
    }

    /// The entries' lifetime, `None` for no expiry.
    pub fn ttl(&self) -> Option<Duration> {
        (self.ttl_seconds > 0).then(|| Duration::from_secs(self.ttl_seconds))
    }
}

/// `[[models]]`: one served model.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The name clients put in `model`.
    pub name: String,
    /// More names for the same deployment.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The model folder, relative to the config file; or a hub id (`owner/name`) to download.
    pub path: PathBuf,
    /// The backend plugin that runs it (`onnx`, `candle`, ...): shorthand for one variant. Give
    /// either this or `variants`.
    #[serde(default)]
    pub backend: Option<String>,
    /// Backend options of the `backend` shorthand, handed to the plugin as JSON.
    #[serde(default)]
    pub options: toml::Table,
    /// Device of the `backend` shorthand.
    #[serde(default)]
    pub device: Device,
    /// Number format of the `backend` shorthand; default: the backend's.
    #[serde(default)]
    pub dtype: Option<DType>,
    /// Copies of the `backend` shorthand's model, each on its own share of the cores.
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// `[[models.variants]]`: backends serving this model side by side (A/B tests, shadows).
    #[serde(default)]
    pub variants: Vec<VariantConfig>,
    /// Most inputs in one request.
    #[serde(default = "default_max_inputs")]
    pub max_inputs_per_request: usize,
    /// Whether over-long inputs are cut (true) or rejected (false) when a request does not say.
    #[serde(default = "default_truncate")]
    pub truncate: bool,
    /// For models with task adapters: the task of requests that name none (default
    /// `text-matching`; `none` selects the base weights).
    #[serde(default)]
    pub default_task: Option<String>,
    /// Batching limits.
    #[serde(default)]
    pub batching: BatchingSettings,
    /// Whether this model uses the `[cache]` (when one is configured).
    #[serde(default = "default_cache")]
    pub cache: bool,
}

/// `[[models.variants]]`: one backend serving a model, with its share of the traffic.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantConfig {
    /// The variant's name (in metrics and the `x-embedrt-variant` header); default: the backend.
    #[serde(default)]
    pub name: Option<String>,
    /// The backend plugin.
    pub backend: String,
    /// Backend options, handed to the plugin as JSON.
    #[serde(default)]
    pub options: toml::Table,
    /// Where the backend runs: `"cpu"` (default), `"cuda"` or `"cuda:N"`.
    #[serde(default)]
    pub device: Device,
    /// The number format to compute in (`"f32"`, `"f16"`, `"bf16"`, `"int8"`); default: the
    /// backend's. A backend refuses what it cannot run.
    #[serde(default)]
    pub dtype: Option<DType>,
    /// Share of the traffic, relative to the other serving variants' weights.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// A shadow gets a copy of the traffic after the serving variant answered; its vectors are
    /// compared with the answer (metrics) and never returned.
    #[serde(default)]
    pub shadow: bool,
    /// For shadows: the fraction of requests copied, 0 to 1.
    #[serde(default = "default_sample_rate")]
    pub sample_rate: f64,
    /// How many copies of the model the backend loads, each with `cores / replicas` threads and
    /// its own inference thread, all taking batches from the variant's one queue. On a CPU, 2
    /// single-threaded copies on 2 cores answer more than one 2-threaded copy (see BENCHMARKS.md,
    /// "Replicas") at the cost of memory (one copy of the weights each) and of single-request
    /// latency (one core per batch).
    #[serde(default = "default_replicas")]
    pub replicas: usize,
}

impl VariantConfig {
    /// The variant's name: the configured one, else the backend's.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.backend)
    }
}

fn default_weight() -> u32 {
    1
}

fn default_sample_rate() -> f64 {
    1.0
}

fn default_replicas() -> usize {
    1
}

/// The most replicas a variant may have (each holds a copy of the weights).
const MAX_REPLICAS: usize = 64;

impl ModelConfig {
    /// The variants, with the `backend`/`options` shorthand as a single variant.
    pub fn variants(&self) -> Vec<VariantConfig> {
        match &self.backend {
            Some(backend) => vec![VariantConfig {
                name: None,
                backend: backend.clone(),
                options: self.options.clone(),
                device: self.device,
                dtype: self.dtype,
                weight: 1,
                shadow: false,
                sample_rate: 1.0,
                replicas: self.replicas,
            }],
            None => self.variants.clone(),
        }
    }

    /// Every name clients may use for this model.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str()).chain(self.aliases.iter().map(String::as_str))
    }
}

fn default_max_inputs() -> usize {
    2048
}

fn default_truncate() -> bool {
    true
}

fn default_cache() -> bool {
    true
}

/// `batching = { ... }`: how the scheduler forms batches.
///
/// The batch size limits default by device, per variant: a GPU is fed larger batches (more work per
/// kernel launch) than a CPU, whose latency grows with batch size.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchingSettings {
    /// Most tokens in one batch (padding counted for backends that pad); default: by the
    /// variant's device ([`BatchLimits::default_for`]).
    pub max_batch_tokens: Option<usize>,
    /// Most sequences in one batch; default: by the variant's device
    /// ([`BatchLimits::default_for`]).
    pub max_batch_requests: Option<usize>,
    /// How long the oldest queued input may wait for others to join its batch, in milliseconds.
    /// 0: an idle backend starts at once; under load, batches still form from what queued while
    /// the backend was busy.
    pub max_wait_ms: u64,
    /// Most inputs waiting; beyond it requests get 429 (a request larger than this is taken
    /// when nothing is waiting).
    pub max_queued_inputs: usize,
}

impl Default for BatchingSettings {
    fn default() -> Self {
        Self {
            max_batch_tokens: None,
            max_batch_requests: None,
            max_wait_ms: 0,
            max_queued_inputs: 4096,
        }
    }
}

impl BatchingSettings {
    /// The batch limits of a variant on `device`: the configured ones, else the device's defaults.
    pub fn limits(&self, device: Device) -> BatchLimits {
        let defaults = BatchLimits::default_for(device);
        BatchLimits {
            max_rows: self.max_batch_requests.unwrap_or(defaults.max_rows),
            max_tokens: self.max_batch_tokens.unwrap_or(defaults.max_tokens),
        }
    }

    /// The scheduler's view of these settings for a variant on `device`.
    pub fn to_scheduler(&self, device: Device) -> BatchingConfig {
        let limits = self.limits(device);
        BatchingConfig {
            max_batch_tokens: limits.max_tokens,
            max_batch_requests: limits.max_rows,
            max_wait: Duration::from_millis(self.max_wait_ms),
            max_queued: self.max_queued_inputs,
        }
    }
}

impl Config {
    /// Reads and checks `path`; relative paths inside are resolved against the file's folder.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let mut config =
            Self::parse(&text).with_context(|| format!("invalid config {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for model in &mut config.models {
            // A relative path is a folder next to the config file, unless no such folder exists
            // and it reads as a hub id (`owner/name`).
            let local = base.join(&model.path);
            if local.exists() || !crate::hub::is_hub_id(&model.path) {
                model.path = local;
            }
        }
        config.server.plugin_dirs = config
            .server
            .plugin_dirs
            .iter()
            .map(|dir| base.join(dir))
            .collect();
        Ok(config)
    }

    /// Parses and checks a configuration; paths stay as written.
    pub fn parse(text: &str) -> Result<Self> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Threads that tokenize requests: `server.tokenizer_threads`, else every core when a variant
    /// runs on a GPU, else a quarter of the cores (at least one).
    pub fn tokenizer_threads(&self) -> usize {
        let cores = embedrt_backend_core::threads::cores();
        let on_gpu = self
            .models
            .iter()
            .flat_map(ModelConfig::variants)
            .any(|variant| variant.device != Device::Cpu);
        self.server
            .tokenizer_threads
            .unwrap_or(if on_gpu { cores } else { (cores / 4).max(1) })
    }

    fn validate(&self) -> Result<()> {
        let at_least_one = |key: String, value: usize| -> Result<()> {
            if value == 0 {
                bail!("`{key}` must be at least 1");
            }
            Ok(())
        };
        if self.models.is_empty() {
            bail!("`models` is empty: configure at least one [[models]] table");
        }
        at_least_one("server.async_threads".into(), self.server.async_threads)?;
        if let Some(threads) = self.server.tokenizer_threads {
            at_least_one("server.tokenizer_threads".into(), threads)?;
        }
        at_least_one("server.max_body_bytes".into(), self.server.max_body_bytes)?;
        at_least_one(
            "server.grpc_max_request_bytes".into(),
            self.server.grpc_max_request_bytes,
        )?;
        at_least_one(
            "server.grpc_max_response_bytes".into(),
            self.server.grpc_max_response_bytes,
        )?;
        if let Some(url) = &self.cache.redis_url {
            if !url.starts_with("redis://") && !url.starts_with("rediss://") {
                bail!("`cache.redis_url` must start with redis:// or rediss://, got {url:?}");
            }
            at_least_one(
                "cache.redis_timeout_ms".into(),
                self.cache.redis_timeout_ms as usize,
            )?;
        }
        if self.server.api_keys.iter().any(|key| key.trim().is_empty()) {
            bail!("`server.api_keys` holds an empty key");
        }
        let mut names = std::collections::HashSet::new();
        for (i, model) in self.models.iter().enumerate() {
            let key = |field: &str| format!("models[{i}].{field}");
            if model.name.trim().is_empty() {
                bail!("`{}` must not be empty", key("name"));
            }
            for name in model.names() {
                if !names.insert(name) {
                    bail!("`{}`: the name {name:?} is used twice", key("name"));
                }
            }
            validate_variants(model, &key)?;
            at_least_one(key("max_inputs_per_request"), model.max_inputs_per_request)?;
            if let Some(tokens) = model.batching.max_batch_tokens {
                at_least_one(key("batching.max_batch_tokens"), tokens)?;
            }
            if let Some(rows) = model.batching.max_batch_requests {
                at_least_one(key("batching.max_batch_requests"), rows)?;
            }
            at_least_one(
                key("batching.max_queued_inputs"),
                model.batching.max_queued_inputs,
            )?;
        }
        Ok(())
    }
}

/// One backend per model: either `backend` or `variants`, unique variant names, something to serve.
fn validate_variants(model: &ModelConfig, key: &dyn Fn(&str) -> String) -> Result<()> {
    match (&model.backend, model.variants.is_empty()) {
        (Some(_), false) => {
            bail!(
                "`{}`: give either `backend` or `[[models.variants]]`, not both",
                key("backend")
            )
        }
        (None, true) => {
            bail!(
                "`{}` is missing: name a backend, or add `[[models.variants]]`",
                key("backend")
            )
        }
        _ => {}
    }
    if model.backend.is_none() {
        let shorthand = [
            ("options", !model.options.is_empty()),
            ("device", model.device != Device::Cpu),
            ("dtype", model.dtype.is_some()),
            ("replicas", model.replicas != 1),
        ];
        if let Some((field, _)) = shorthand.iter().find(|(_, set)| *set) {
            bail!(
                "`{}`: with variants, put `{field}` in each variant",
                key(field)
            );
        }
    }
    let variants = model.variants();
    for (j, variant) in variants.iter().enumerate() {
        if variants[..j]
            .iter()
            .any(|other| other.name() == variant.name())
        {
            bail!(
                "`{}`: two variants are named {:?}; give them distinct `name`s",
                key(&format!("variants[{j}].name")),
                variant.name()
            );
        }
        if !(1..=MAX_REPLICAS).contains(&variant.replicas) {
            let field = match model.backend {
                Some(_) => "replicas".to_string(),
                None => format!("variants[{j}].replicas"),
            };
            bail!("`{}` must be between 1 and {MAX_REPLICAS}", key(&field));
        }
        if !(0.0..=1.0).contains(&variant.sample_rate) {
            bail!(
                "`{}` must be between 0 and 1",
                key(&format!("variants[{j}].sample_rate"))
            );
        }
    }
    if !variants.iter().any(|v| !v.shadow && v.weight > 0) {
        bail!(
            "`{}`: at least one variant must serve (not a shadow, weight above 0)",
            key("variants")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [[models]]
        name = "m"
        path = "models/m"
        backend = "onnx"
    "#;

    #[test]
    fn defaults_fill_the_rest() {
        let config = Config::parse(MINIMAL).unwrap();
        assert_eq!(config.server.http.to_string(), "127.0.0.1:8080");
        assert_eq!(
            config.models[0]
                .batching
                .to_scheduler(Device::Cpu)
                .max_batch_requests,
            64
        );
        assert!(config.models[0].truncate);
    }

    #[test]
    fn gpu_variants_get_gpu_batches_and_every_core_for_tokenizing() {
        let cores = embedrt_backend_core::threads::cores();
        let cpu_only = Config::parse(MINIMAL).unwrap();
        assert_eq!(cpu_only.tokenizer_threads(), (cores / 4).max(1));
        let gpu = Config::parse(&format!("{MINIMAL}device = \"cuda\"\n")).unwrap();
        assert_eq!(gpu.tokenizer_threads(), cores);
        let batching = &gpu.models[0].batching;
        let gpu_batch = BatchLimits {
            max_rows: 256,
            max_tokens: 32768,
        };
        assert_eq!(batching.limits(Device::Cuda(0)), gpu_batch);
        assert_eq!(
            batching.limits(Device::Cpu),
            BatchLimits {
                max_rows: 64,
                max_tokens: 16384
            }
        );
        let set = Config::parse(&format!(
            "[server]\ntokenizer_threads = 3\n{MINIMAL}device = \"cuda:1\"\n\
             batching = {{ max_batch_requests = 32 }}\n"
        ))
        .unwrap();
        assert_eq!(set.tokenizer_threads(), 3);
        assert_eq!(
            set.models[0].batching.limits(Device::Cuda(1)),
            BatchLimits {
                max_rows: 32,
                max_tokens: gpu_batch.max_tokens
            }
        );
    }

    #[test]
    fn full_example_parses() {
        let config = Config::parse(
            r#"
            [server]
            http = "0.0.0.0:9000"
            tokenizer_threads = 2
            [[models]]
            name = "m"
            path = "m"
            backend = "candle"
            options = { threads = 2 }
            batching = { max_batch_tokens = 4096, max_batch_requests = 8, max_wait_ms = 5 }
            "#,
        )
        .unwrap();
        assert_eq!(config.models[0].options["threads"].as_integer(), Some(2));
        assert_eq!(
            config.models[0].batching.to_scheduler(Device::Cpu).max_wait,
            Duration::from_millis(5)
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::parse(&format!("{MINIMAL}\nmax_batch = 3")).unwrap_err();
        assert!(format!("{err:#}").contains("max_batch"), "{err:#}");
        let err = Config::parse(&format!("[server]\nhttp_port = 1\n{MINIMAL}")).unwrap_err();
        assert!(format!("{err:#}").contains("http_port"), "{err:#}");
    }

    #[test]
    fn variants_and_aliases() {
        let config = Config::parse(
            r#"
            [[models]]
            name = "m"
            aliases = ["m2"]
            path = "p"
            [[models.variants]]
            backend = "onnx"
            weight = 90
            [[models.variants]]
            name = "rust"
            backend = "candle"
            weight = 10
            [[models.variants]]
            name = "check"
            backend = "candle"
            shadow = true
            sample_rate = 0.5
            "#,
        )
        .unwrap();
        let variants = config.models[0].variants();
        let names: Vec<&str> = variants.iter().map(VariantConfig::name).collect();
        assert_eq!(names, ["onnx", "rust", "check"]);
        assert_eq!(config.models[0].names().collect::<Vec<_>>(), ["m", "m2"]);
    }

    #[test]
    fn bad_variants_are_named() {
        let base = "[[models]]\nname = \"m\"\npath = \"p\"\n";
        let err = |extra: &str| {
            Config::parse(&format!("{base}{extra}"))
                .unwrap_err()
                .to_string()
        };
        assert!(err("").contains("models[0].backend"));
        assert!(
            err("backend = \"onnx\"\n[[models.variants]]\nbackend = \"onnx\"\n")
                .contains("not both")
        );
        let twice =
            "[[models.variants]]\nbackend = \"onnx\"\n[[models.variants]]\nbackend = \"onnx\"\n";
        assert!(err(twice).contains("models[0].variants[1].name"));
        let shadow_only = "[[models.variants]]\nbackend = \"onnx\"\nshadow = true\n";
        assert!(err(shadow_only).contains("at least one variant must serve"));
        assert!(err("backend = \"onnx\"\naliases = [\"m\"]\n").contains("used twice"));
    }

    #[test]
    fn device_and_dtype_per_variant() {
        let config =
            Config::parse(&format!("{MINIMAL}device = \"cuda:1\"\ndtype = \"bf16\"\n")).unwrap();
        let variant = &config.models[0].variants()[0];
        assert_eq!(
            (variant.device, variant.dtype),
            (Device::Cuda(1), Some(DType::Bf16))
        );
        let default = &Config::parse(MINIMAL).unwrap().models[0].variants()[0];
        assert_eq!((default.device, default.dtype), (Device::Cpu, None));
        let err = Config::parse(&format!("{MINIMAL}device = \"tpu\"\n")).unwrap_err();
        assert!(format!("{err:#}").contains("\"tpu\""), "{err:#}");
        let err = Config::parse(&format!("{MINIMAL}dtype = \"f8\"\n")).unwrap_err();
        assert!(format!("{err:#}").contains("f8"), "{err:#}");
        let base = "[[models]]\nname = \"m\"\npath = \"p\"\ndevice = \"cuda\"\n[[models.variants]]\nbackend = \"onnx\"\n";
        let err = Config::parse(base).unwrap_err();
        assert!(
            err.to_string().contains("put `device` in each variant"),
            "{err}"
        );
    }

    #[test]
    fn cache_is_off_unless_configured_and_per_model() {
        let config = Config::parse(MINIMAL).unwrap();
        assert!(!config.cache.enabled());
        assert!(config.models[0].cache);
        let config = Config::parse(&format!(
            "[cache]\nmemory_bytes = 1048576\nredis_url = \"redis://127.0.0.1:6379\"\nttl_seconds = 0\n{MINIMAL}cache = false\n"
        ))
        .unwrap();
        assert!(config.cache.enabled());
        assert_eq!(config.cache.ttl(), None);
        assert!(!config.models[0].cache);
        let err =
            Config::parse(&format!("[cache]\nredis_url = \"localhost\"\n{MINIMAL}")).unwrap_err();
        assert!(err.to_string().contains("cache.redis_url"), "{err}");
        let err = Config::parse(&format!("[cache]\nmemory = 1\n{MINIMAL}")).unwrap_err();
        assert!(format!("{err:#}").contains("memory"), "{err:#}");
    }

    #[test]
    fn replicas_per_variant() {
        let replicas = |text: &str| {
            Config::parse(text).map(|config| {
                config.models[0]
                    .variants()
                    .iter()
                    .map(|v| v.replicas)
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(replicas(MINIMAL).unwrap(), [1]);
        assert_eq!(replicas(&format!("{MINIMAL}replicas = 2\n")).unwrap(), [2]);
        let base = "[[models]]\nname = \"m\"\npath = \"p\"\n";
        let two = "[[models.variants]]\nbackend = \"onnx\"\nreplicas = 3\n[[models.variants]]\nname = \"b\"\nbackend = \"candle\"\n";
        assert_eq!(replicas(&format!("{base}{two}")).unwrap(), [3, 1]);
        let err = replicas(&format!("{MINIMAL}replicas = 0\n")).unwrap_err();
        assert!(
            err.to_string()
                .contains("models[0].replicas` must be between 1 and 64"),
            "{err}"
        );
        let err = replicas(&format!("{base}replicas = 2\n{two}")).unwrap_err();
        assert!(
            err.to_string().contains("put `replicas` in each variant"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let err = Config::parse(&format!(
            "{MINIMAL}\nbatching = {{ max_batch_requests = 0 }}"
        ))
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("models[0].batching.max_batch_requests"),
            "{err}"
        );
        let err = Config::parse(&format!("{MINIMAL}{MINIMAL}")).unwrap_err();
        assert!(err.to_string().contains("used twice"), "{err}");
        let err = Config::parse("[server]\nhttp = \"not an address\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("http"), "{err:#}");
    }
}
