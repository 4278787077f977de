//! The configuration resolved once into the [`Plan`] the server runs.
//!
//! [`Config`] is the file as written (ripgrep's "low args"); [`Config::resolve`] turns it, with
//! the command line's [`Overrides`] and the file's folder, into a [`Plan`] ("high args") in one
//! step, and nothing after it reads the file's types: paths are resolved, the `backend`
//! shorthand is a variant like any other, every variant has its role, its backend settings and
//! its batch policy with the device's defaults filled in, and the server's listeners, keys,
//! limits and thread counts are final. Every check happens here, so a plan that exists can be
//! served; a refusal is a [`ConfigError`] that names the key.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use embedrt_backend_core::{BackendSettings, BatchLimits, Device};

use super::model::AliasConfig;
use super::{
    AdminSetting, BatchingConfig, CacheConfig, Config, ConfigError, ModelConfig, ServerConfig,
    TokenIds, VariantConfig,
};
use crate::scheduler::BatchPolicy;

/// The most replicas a variant may have (each holds a copy of the weights).
const MAX_REPLICAS: usize = 64;

/// What the command line says over the file, and where plugins are when the file names no
/// folder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--http`: replaces `[server] http`.
    pub http: Option<SocketAddr>,
    /// `--grpc`: replaces (or sets) `[server] grpc`.
    pub grpc: Option<SocketAddr>,
    /// The plugin folder used when `[server] plugin_dirs` is empty (the `embedrt` executable's).
    pub default_plugin_dir: Option<PathBuf>,
}

/// Everything the server runs, resolved from a [`Config`].
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The process: listeners, limits, keys, threads.
    pub server: ServerPlan,
    /// The embedding cache (checked; off unless configured).
    pub cache: CacheConfig,
    /// The models, in the file's order.
    pub models: Vec<ModelPlan>,
}

/// The process-wide part of a [`Plan`].
#[derive(Clone, Debug, PartialEq)]
pub struct ServerPlan {
    /// Where the APIs listen.
    pub listeners: Listeners,
    /// Size limits of requests and answers.
    pub limits: MessageLimits,
    /// Who may call what.
    pub access: Access,
    /// The header (lower case) whose value keeps a caller on one variant, if any.
    pub sticky_header: Option<String>,
    /// Folders searched for backend plugins, in order.
    pub plugin_dirs: Vec<PathBuf>,
    /// Threads of the async runtime.
    pub async_threads: usize,
    /// Threads that tokenize requests.
    pub tokenizer_threads: usize,
    /// How long `/ready` says `draining` before the listeners close on shutdown.
    pub drain_delay: Duration,
    /// Longest time one API request may take; `None`: no limit.
    pub request_timeout: Option<Duration>,
    /// How much work the server takes on at once.
    pub admission: AdmissionLimits,
    /// How many HTTP connections stay open, and for how long without a request.
    pub connections: ConnectionLimits,
}

/// How many HTTP connections stay open, and for how long without a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Longest idle time of a connection, and longest wait for a request head.
    pub idle_timeout: Duration,
}

/// How much work the server takes on at once; past it, requests are refused before their body
/// is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Most API requests in flight, HTTP and gRPC together.
    pub max_requests: usize,
    /// Most bytes of HTTP request bodies held at once.
    pub max_body_bytes: usize,
}

/// Where the APIs listen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listeners {
    /// The HTTP API.
    pub http: SocketAddr,
    /// The gRPC API, when served.
    pub grpc: Option<SocketAddr>,
}

/// Size limits, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageLimits {
    /// Largest HTTP request body.
    pub max_body_bytes: usize,
    /// Largest gRPC message a client may send.
    pub grpc_request_bytes: usize,
    /// Largest gRPC message the server sends.
    pub grpc_response_bytes: usize,
}

/// The keys that guard the APIs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// Keys of the embedding API; empty: open.
    pub api_keys: Vec<String>,
    /// Who may use `POST /admin/reload`.
    pub admin: AdminAccess,
}

/// Who may use the admin endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminAccess {
    /// Callers with `Authorization: Bearer <key>`.
    Key(String),
    /// Anyone who reaches the HTTP listener: chosen with `admin = "open"`, or a loopback
    /// listener without a key.
    Open,
    /// Nobody (`admin = "off"`); SIGHUP still reloads.
    Off,
}

/// One served model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelPlan {
    /// The name clients use.
    pub name: String,
    /// More names for it.
    pub aliases: Vec<Alias>,
    /// Where its files are.
    pub source: ModelSource,
    /// The backends serving it, in the file's order (the shorthand is one variant).
    pub variants: Vec<VariantPlan>,
    /// Most inputs in one request.
    pub max_inputs: usize,
    /// Most tokens in one request, summed over its inputs.
    pub max_tokens: usize,
    /// Whether over-long inputs are cut when a request does not say.
    pub truncate: bool,
    /// The task of requests that name none, when the file names one.
    pub default_task: Option<String>,
    /// Whether the model uses the cache (when one is configured).
    pub cache: bool,
    /// Whose token ids requests send.
    pub token_ids: TokenIds,
}

/// Another name of a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alias {
    /// The name.
    pub name: String,
    /// The task of requests through this name that name none; `None`: the model's default.
    pub task: Option<String>,
}

/// Where a model's files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSource {
    /// A folder on this machine.
    Local(PathBuf),
    /// A hub repository (`owner/name`), downloaded into the Hugging Face cache.
    Hub(String),
}

/// One backend serving a model.
#[derive(Clone, Debug, PartialEq)]
pub struct VariantPlan {
    /// The variant's name (the configured one, else the backend's).
    pub name: String,
    /// The backend plugin.
    pub backend: String,
    /// What the plugin is told: its options, device and dtype.
    pub settings: BackendSettings,
    /// Whether it answers requests or shadows them.
    pub role: Role,
    /// Copies of the model it loads.
    pub replicas: usize,
    /// How its scheduler forms batches (the device's defaults filled in).
    pub batching: BatchPolicy,
}

/// What a variant does with the traffic.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Role {
    /// It answers requests, with this share of the traffic relative to the other serving
    /// variants (0: none).
    Serving {
        /// The share.
        weight: u32,
    },
    /// It gets a copy of this fraction of the requests after they were answered.
    Shadow {
        /// The fraction, 0 to 1.
        sample_rate: f64,
    },
}

impl Plan {
    /// Reads, parses and resolves the configuration file `path`; relative paths inside are
    /// resolved against the file's folder.
    ///
    /// # Errors
    ///
    /// When the file cannot be read, is not valid, or cannot be served (see [`Config::resolve`]).
    pub fn from_file(path: &Path, overrides: &Overrides) -> Result<Self, ConfigError> {
        let config = Config::read(path)?;
        config.resolve(path.parent().unwrap_or(Path::new(".")), overrides)
    }
}

impl AliasConfig {
    /// The alias's name.
    pub fn name(&self) -> &str {
        match self {
            AliasConfig::Name(name) => name,
            AliasConfig::Table(table) => &table.name,
        }
    }

    fn to_plan(&self) -> Alias {
        let task = match self {
            AliasConfig::Name(_) => None,
            AliasConfig::Table(table) => table.task.clone(),
        };
        Alias {
            name: self.name().to_string(),
            task,
        }
    }
}

impl ModelPlan {
    /// Every name clients may use for this model.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str()).chain(self.aliases.iter().map(|a| a.name.as_str()))
    }
}

impl VariantPlan {
    /// Whether the variant answers requests (not a shadow, and a weight above 0).
    pub fn serves(&self) -> bool {
        matches!(self.role, Role::Serving { weight } if weight > 0)
    }
}

impl Config {
    /// Resolves this configuration, read from a file in `base`, with `overrides`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError::Invalid`] naming the key for: no models; an empty or repeated model
    /// name or alias; both or neither of `backend` and `[[models.variants]]`, or shorthand keys
    /// beside variants; two variants of one name; replicas outside 1 to 64; a sample rate
    /// outside 0 to 1; no serving variant; a zero count or size; a Redis URL of another
    /// scheme; an empty API key; a sticky header that is no header name; an admin key file that
    /// cannot be read, or an admin key beside `admin`; and an HTTP listener that is not a
    /// loopback address while the admin endpoint has no key and `admin` does not say `"open"`
    /// or `"off"` (anyone who reaches the listener could reload the models).
    pub fn resolve(&self, base: &Path, overrides: &Overrides) -> Result<Plan, ConfigError> {
        if self.models.is_empty() {
            return Err(ConfigError::invalid(
                "models",
                "is empty: configure at least one [[models]] table",
            ));
        }
        let mut names = HashSet::new();
        let models = self
            .models
            .iter()
            .enumerate()
            .map(|(i, model)| resolve_model(model, &format!("models[{i}]"), base, &mut names))
            .collect::<Result<Vec<_>, _>>()?;
        let on_gpu = models
            .iter()
            .flat_map(|model| &model.variants)
            .any(|variant| variant.settings.device != Device::Cpu);
        Ok(Plan {
            server: resolve_server(&self.server, base, overrides, on_gpu)?,
            cache: resolve_cache(&self.cache)?,
            models,
        })
    }
}

/// Refuses `value` 0 for `key`.
fn at_least_one(key: &str, value: usize) -> Result<usize, ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(key, "must be at least 1"));
    }
    Ok(value)
}

fn resolve_server(
    server: &ServerConfig,
    base: &Path,
    overrides: &Overrides,
    on_gpu: bool,
) -> Result<ServerPlan, ConfigError> {
    let listeners = Listeners {
        http: overrides.http.unwrap_or(server.http),
        grpc: overrides.grpc.or(server.grpc),
    };
    let cores = embedrt_backend_core::threads::cores();
    let tokenizer_threads = match server.tokenizer_threads {
        Some(threads) => at_least_one("server.tokenizer_threads", threads)?,
        None if on_gpu => cores,
        None => (cores / 4).max(1),
    };
    if server.api_keys.iter().any(|key| key.trim().is_empty()) {
        return Err(ConfigError::invalid(
            "server.api_keys",
            "holds an empty key",
        ));
    }
    if server.max_body_bytes_in_flight < server.max_body_bytes {
        return Err(ConfigError::invalid(
            "server.max_body_bytes_in_flight",
            format!(
                "is below `server.max_body_bytes` ({}): a body of the largest size could never \
                 be read",
                server.max_body_bytes
            ),
        ));
    }
    let mut plugin_dirs: Vec<PathBuf> = server.plugin_dirs.iter().map(|d| base.join(d)).collect();
    if plugin_dirs.is_empty() {
        plugin_dirs.extend(overrides.default_plugin_dir.clone());
    }
    Ok(ServerPlan {
        limits: MessageLimits {
            max_body_bytes: at_least_one("server.max_body_bytes", server.max_body_bytes)?,
            grpc_request_bytes: at_least_one(
                "server.grpc_max_request_bytes",
                server.grpc_max_request_bytes,
            )?,
            grpc_response_bytes: at_least_one(
                "server.grpc_max_response_bytes",
                server.grpc_max_response_bytes,
            )?,
        },
        access: Access {
            api_keys: server.api_keys.clone(),
            admin: admin_access(server, listeners.http, base)?,
        },
        sticky_header: server
            .sticky_header
            .as_deref()
            .map(header_name)
            .transpose()?,
        plugin_dirs,
        async_threads: at_least_one("server.async_threads", server.async_threads)?,
        tokenizer_threads,
        drain_delay: Duration::from_millis(server.drain_delay_ms),
        request_timeout: (server.request_timeout_ms > 0)
            .then(|| Duration::from_millis(server.request_timeout_ms)),
        connections: ConnectionLimits {
            max_connections: at_least_one("server.max_connections", server.max_connections)?,
            idle_timeout: match server.idle_timeout_ms {
                0 => {
                    return Err(ConfigError::invalid(
                        "server.idle_timeout_ms",
                        "must be at least 1",
                    ))
                }
                ms => Duration::from_millis(ms),
            },
        },
        admission: AdmissionLimits {
            max_requests: at_least_one(
                "server.max_requests_in_flight",
                server.max_requests_in_flight,
            )?,
            max_body_bytes: at_least_one(
                "server.max_body_bytes_in_flight",
                server.max_body_bytes_in_flight,
            )?,
        },
        listeners,
    })
}

/// Who may reload, from the admin key (or its file), `admin` and where HTTP listens.
fn admin_access(
    server: &ServerConfig,
    http: SocketAddr,
    base: &Path,
) -> Result<AdminAccess, ConfigError> {
    let key = match (&server.admin_key, &server.admin_key_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                "server.admin_key_file",
                "is set beside `server.admin_key`: give one of them",
            ))
        }
        (Some(key), None) => Some(("server.admin_key", key.clone())),
        (None, Some(file)) => {
            let path = base.join(file);
            let key = std::fs::read_to_string(&path).map_err(|e| {
                ConfigError::invalid(
                    "server.admin_key_file",
                    format!("cannot be read ({}): {e}", path.display()),
                )
            })?;
            Some(("server.admin_key_file", key.trim().to_string()))
        }
        (None, None) => None,
    };
    match (key, server.admin) {
        (Some((key, value)), _) if value.trim().is_empty() => {
            Err(ConfigError::invalid(key, "is empty"))
        }
        (Some(_), Some(setting)) => Err(ConfigError::invalid(
            "server.admin",
            format!(
                "is {:?} beside an admin key: leave `admin` out to require the key",
                format!("{setting:?}").to_lowercase()
            ),
        )),
        (Some((_, value)), None) => Ok(AdminAccess::Key(value)),
        (None, Some(AdminSetting::Open)) => Ok(AdminAccess::Open),
        (None, Some(AdminSetting::Off)) => Ok(AdminAccess::Off),
        (None, None) if http.ip().is_loopback() => Ok(AdminAccess::Open),
        (None, None) => Err(ConfigError::invalid(
            "server.admin_key",
            format!(
                "is not set while the HTTP API listens on {http}, which is not a loopback \
                 address: `POST /admin/reload` would let anyone who reaches it reload the models. \
                 Set `admin_key` (or `admin_key_file`), or choose with `admin = \"off\"` (SIGHUP \
                 still reloads) or `admin = \"open\"`"
            ),
        )),
    }
}

/// `name` as a header name in lower case, if it is one (an HTTP token).
fn header_name(name: &str) -> Result<String, ConfigError> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(ConfigError::invalid(
            "server.sticky_header",
            format!("is not a header name: {name:?}"),
        ));
    }
    Ok(name.to_ascii_lowercase())
}

fn resolve_cache(cache: &CacheConfig) -> Result<CacheConfig, ConfigError> {
    if let Some(url) = &cache.redis_url {
        if !url.starts_with("redis://") && !url.starts_with("rediss://") {
            return Err(ConfigError::invalid(
                "cache.redis_url",
                format!("must start with redis:// or rediss://, got {url:?}"),
            ));
        }
        at_least_one("cache.redis_timeout_ms", cache.redis_timeout_ms as usize)?;
    }
    Ok(cache.clone())
}

fn resolve_model<'a>(
    model: &'a ModelConfig,
    prefix: &str,
    base: &Path,
    names: &mut HashSet<&'a str>,
) -> Result<ModelPlan, ConfigError> {
    let key = |field: &str| format!("{prefix}.{field}");
    if model.name.trim().is_empty() {
        return Err(ConfigError::invalid(key("name"), "must not be empty"));
    }
    let aliases: Vec<Alias> = model.aliases.iter().map(AliasConfig::to_plan).collect();
    for (i, alias) in aliases.iter().enumerate() {
        if alias.name.trim().is_empty() {
            return Err(ConfigError::invalid(
                key(&format!("aliases[{i}]")),
                "the name must not be empty",
            ));
        }
    }
    for name in
        std::iter::once(model.name.as_str()).chain(model.aliases.iter().map(AliasConfig::name))
    {
        if !names.insert(name) {
            return Err(ConfigError::invalid(
                key("name"),
                format!("uses the name {name:?}, which another model or alias has"),
            ));
        }
    }
    let variants = variants_of(model, &key)?;
    let batching = &model.batching;
    for (field, value) in [
        ("batching.max_batch_tokens", batching.max_batch_tokens),
        ("batching.max_batch_requests", batching.max_batch_requests),
        (
            "batching.max_queued_inputs",
            Some(batching.max_queued_inputs),
        ),
    ] {
        if let Some(value) = value {
            at_least_one(&key(field), value)?;
        }
    }
    let variants = variants
        .into_iter()
        .map(|(variant, replicas_key)| {
            resolve_variant(variant, batching, &replicas_key, &key("options"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (j, variant) in variants.iter().enumerate() {
        if variants[..j].iter().any(|other| other.name == variant.name) {
            return Err(ConfigError::invalid(
                key(&format!("variants[{j}].name")),
                format!(
                    "repeats the variant name {:?}: give the variants distinct `name`s",
                    variant.name
                ),
            ));
        }
        if let Role::Shadow { sample_rate } = variant.role {
            if !(0.0..=1.0).contains(&sample_rate) {
                return Err(ConfigError::invalid(
                    key(&format!("variants[{j}].sample_rate")),
                    "must be between 0 and 1",
                ));
            }
        }
    }
    if !variants.iter().any(VariantPlan::serves) {
        return Err(ConfigError::invalid(
            key("variants"),
            "has no serving variant: at least one must serve (not a shadow, weight above 0)",
        ));
    }
    Ok(ModelPlan {
        name: model.name.clone(),
        aliases,
        source: source(&model.path, base),
        variants,
        max_inputs: at_least_one(&key("max_inputs_per_request"), model.max_inputs_per_request)?,
        max_tokens: at_least_one(&key("max_tokens_per_request"), model.max_tokens_per_request)?,
        truncate: model.truncate,
        default_task: model.default_task.clone(),
        cache: model.cache,
        token_ids: model.token_ids,
    })
}

/// The variants of `model`, each with the key its `replicas` is written under: the `backend`
/// shorthand as one variant, or the `[[models.variants]]` tables.
fn variants_of(
    model: &ModelConfig,
    key: &dyn Fn(&str) -> String,
) -> Result<Vec<(VariantConfig, String)>, ConfigError> {
    match (&model.backend, model.variants.is_empty()) {
        (Some(_), false) => Err(ConfigError::invalid(
            key("backend"),
            "is given beside `[[models.variants]]`: give either, not both",
        )),
        (None, true) => Err(ConfigError::invalid(
            key("backend"),
            "is missing: name a backend, or add `[[models.variants]]`",
        )),
        (Some(backend), true) => Ok(vec![(
            VariantConfig {
                name: None,
                backend: backend.clone(),
                options: model.options.clone(),
                device: model.device,
                dtype: model.dtype,
                weight: 1,
                shadow: false,
                sample_rate: 1.0,
                replicas: model.replicas,
            },
            key("replicas"),
        )]),
        (None, false) => {
            let shorthand = [
                ("options", !model.options.is_empty()),
                ("device", model.device != Device::Cpu),
                ("dtype", model.dtype.is_some()),
                ("replicas", model.replicas != 1),
            ];
            if let Some((field, _)) = shorthand.iter().find(|(_, set)| *set) {
                return Err(ConfigError::invalid(
                    key(field),
                    format!("is set beside variants: put `{field}` in each variant"),
                ));
            }
            Ok(model
                .variants
                .iter()
                .enumerate()
                .map(|(j, variant)| (variant.clone(), key(&format!("variants[{j}].replicas"))))
                .collect())
        }
    }
}

fn resolve_variant(
    variant: VariantConfig,
    batching: &BatchingConfig,
    replicas_key: &str,
    options_key: &str,
) -> Result<VariantPlan, ConfigError> {
    if !(1..=MAX_REPLICAS).contains(&variant.replicas) {
        return Err(ConfigError::invalid(
            replicas_key,
            format!("must be between 1 and {MAX_REPLICAS}"),
        ));
    }
    let options = serde_json::to_value(&variant.options)
        .map_err(|e| ConfigError::invalid(options_key, format!("is not valid JSON: {e}")))?;
    let defaults = BatchLimits::default_for(variant.device);
    Ok(VariantPlan {
        name: variant.name.unwrap_or_else(|| variant.backend.clone()),
        role: if variant.shadow {
            Role::Shadow {
                sample_rate: variant.sample_rate,
            }
        } else {
            Role::Serving {
                weight: variant.weight,
            }
        },
        replicas: variant.replicas,
        batching: BatchPolicy {
            limits: BatchLimits {
                max_batch_rows: batching
                    .max_batch_requests
                    .unwrap_or(defaults.max_batch_rows),
                max_batch_tokens: batching
                    .max_batch_tokens
                    .unwrap_or(defaults.max_batch_tokens),
            },
            max_wait: Duration::from_millis(batching.max_wait_ms),
            max_queued: batching.max_queued_inputs,
        },
        settings: BackendSettings {
            options,
            device: variant.device,
            dtype: variant.dtype,
        },
        backend: variant.backend,
    })
}

/// Where the model `path` (as the file writes it, relative to `base`) is: a folder next to the
/// config file, unless no such folder exists and `path` reads as a hub id (`owner/name`).
fn source(path: &Path, base: &Path) -> ModelSource {
    let local = base.join(path);
    match path.to_str() {
        Some(id) if !local.exists() && crate::hub::is_hub_id(path) => {
            ModelSource::Hub(id.to_string())
        }
        _ => ModelSource::Local(local),
    }
}
