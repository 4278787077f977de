//! The TOML configuration file and the [`Plan`] it resolves to.
//!
//! [`Config`] and the types below it are the file's schema, exactly as written (unknown keys
//! are errors that name the key). [`Config::resolve`] (or [`Plan::from_file`]) turns it into the
//! [`Plan`] the server runs, once: see [`plan`] for what that absorbs. Everything past startup
//! (the registry, the scheduler, the front ends) reads the plan, never the file's types.

mod error;
mod model;
pub mod plan;
mod server;

use std::path::Path;

use serde::Deserialize;

pub use error::ConfigError;
pub use model::{AliasConfig, AliasTable, BatchingConfig, ModelConfig, TokenIds, VariantConfig};
pub use plan::{
    Access, AdminAccess, AdmissionLimits, Alias, ConnectionLimits, Listeners, MessageLimits,
    ModelPlan, ModelSource, Overrides, Plan, Role, ServerPlan, VariantPlan,
};
pub use server::{AdminSetting, CacheConfig, ServerConfig};

/// The whole configuration file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Process-wide settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// The embedding cache; off unless configured.
    #[serde(default)]
    pub cache: CacheConfig,
    /// The models to serve; at least one.
    pub models: Vec<ModelConfig>,
}

impl Config {
    /// Reads and parses the file `path` (paths inside stay as written).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Read`] when the file cannot be read, [`ConfigError::Syntax`] when it is not
    /// TOML of the schema.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses a configuration (paths stay as written; nothing is checked beyond the schema).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Syntax`] for invalid TOML, an unknown key or a value of the wrong type; the
    /// message names the key and its line.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Ok(toml::from_str(text)?)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::time::Duration;

    use embedrt_backend_core::{BatchLimits, DType, Device};

    use super::*;

    const MINIMAL: &str = r#"
        [[models]]
        name = "m"
        path = "models/m"
        backend = "onnx"
    "#;

    /// `text` resolved from a file in `/etc/embedrt`, without overrides.
    fn resolve(text: &str) -> Result<Plan, ConfigError> {
        Config::parse(text)?.resolve(Path::new("/etc/embedrt"), &Overrides::default())
    }

    /// The key `text` is refused for, and the problem.
    fn refusal(text: &str) -> (String, String) {
        match resolve(text).unwrap_err() {
            ConfigError::Invalid { key, problem } => (key, problem),
            other => panic!("not a refusal of a value: {other}"),
        }
    }

    #[test]
    fn defaults_fill_the_rest() {
        let plan = resolve(MINIMAL).unwrap();
        assert_eq!(plan.server.listeners.http.to_string(), "127.0.0.1:8080");
        let variant = &plan.models[0].variants[0];
        assert_eq!(variant.batching.limits.max_batch_rows, 64);
        assert_eq!(variant.name, "onnx", "a variant is named after its backend");
        assert_eq!(variant.role, Role::Serving { weight: 1 });
        assert!(plan.models[0].truncate);
        assert_eq!(plan.models[0].token_ids, TokenIds::Model);
        assert_eq!(plan.server.access.admin, AdminAccess::Open, "on loopback");
    }

    #[test]
    fn token_ids_are_the_models_or_openais() {
        let plan = resolve(&format!("{MINIMAL}token_ids = \"cl100k_base\"\n")).unwrap();
        assert_eq!(plan.models[0].token_ids, TokenIds::Cl100kBase);
        let err = Config::parse(&format!("{MINIMAL}token_ids = \"o200k_base\"\n")).unwrap_err();
        assert!(format!("{err:#}").contains("cl100k_base"), "{err:#}");
    }

    #[test]
    fn gpu_variants_get_gpu_batches_and_every_core_for_tokenizing() {
        let cores = embedrt_backend_core::threads::cores();
        let cpu_only = resolve(MINIMAL).unwrap();
        assert_eq!(cpu_only.server.tokenizer_threads, (cores / 4).max(1));
        let gpu = resolve(&format!("{MINIMAL}device = \"cuda\"\n")).unwrap();
        assert_eq!(gpu.server.tokenizer_threads, cores);
        let gpu_batch = BatchLimits {
            max_batch_rows: 256,
            max_batch_tokens: 32768,
        };
        assert_eq!(gpu.models[0].variants[0].batching.limits, gpu_batch);
        assert_eq!(
            cpu_only.models[0].variants[0].batching.limits,
            BatchLimits {
                max_batch_rows: 64,
                max_batch_tokens: 16384
            }
        );
        let set = resolve(&format!(
            "[server]\ntokenizer_threads = 3\n{MINIMAL}device = \"cuda:1\"\n\
             batching = {{ max_batch_requests = 32 }}\n"
        ))
        .unwrap();
        assert_eq!(set.server.tokenizer_threads, 3);
        assert_eq!(
            set.models[0].variants[0].batching.limits,
            BatchLimits {
                max_batch_rows: 32,
                max_batch_tokens: gpu_batch.max_batch_tokens
            }
        );
    }

    #[test]
    fn full_example_parses() {
        let plan = resolve(
            r#"
            [server]
            http = "0.0.0.0:9000"
            admin_key = "secret"
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
        let variant = &plan.models[0].variants[0];
        assert_eq!(variant.settings.options["threads"], 2);
        assert_eq!(variant.batching.max_wait, Duration::from_millis(5));
        assert_eq!(
            plan.server.access.admin,
            AdminAccess::Key("secret".to_string())
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::parse(&format!("{MINIMAL}\nmax_batch = 3")).unwrap_err();
        assert!(matches!(err, ConfigError::Syntax(_)));
        assert!(format!("{err:#}").contains("max_batch"), "{err:#}");
        let err = Config::parse(&format!("[server]\nhttp_port = 1\n{MINIMAL}")).unwrap_err();
        assert!(format!("{err:#}").contains("http_port"), "{err:#}");
    }

    #[test]
    fn variants_and_aliases() {
        let plan = resolve(
            r#"
            [[models]]
            name = "m"
            aliases = ["m2", { name = "m-query", task = "query" }, { name = "m3" }]
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
        let variants = &plan.models[0].variants;
        let names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["onnx", "rust", "check"]);
        assert_eq!(variants[1].role, Role::Serving { weight: 10 });
        assert_eq!(variants[2].role, Role::Shadow { sample_rate: 0.5 });
        assert!(variants[1].serves() && !variants[2].serves());
        assert_eq!(
            plan.models[0].names().collect::<Vec<_>>(),
            ["m", "m2", "m-query", "m3"]
        );
        let tasks: Vec<Option<&str>> = plan.models[0]
            .aliases
            .iter()
            .map(|a| a.task.as_deref())
            .collect();
        assert_eq!(tasks, [None, Some("query"), None]);
    }

    #[test]
    fn bad_variants_are_named() {
        let base = "[[models]]\nname = \"m\"\npath = \"p\"\n";
        let refused = |extra: &str| refusal(&format!("{base}{extra}"));
        assert_eq!(refused("").0, "models[0].backend");
        let (key, problem) =
            refused("backend = \"onnx\"\n[[models.variants]]\nbackend = \"onnx\"\n");
        assert_eq!(key, "models[0].backend");
        assert!(problem.contains("not both"), "{problem}");
        let twice =
            "[[models.variants]]\nbackend = \"onnx\"\n[[models.variants]]\nbackend = \"onnx\"\n";
        assert_eq!(refused(twice).0, "models[0].variants[1].name");
        let shadow_only = "[[models.variants]]\nbackend = \"onnx\"\nshadow = true\n";
        let (key, problem) = refused(shadow_only);
        assert_eq!(key, "models[0].variants");
        assert!(problem.contains("at least one must serve"), "{problem}");
        let (key, problem) = refused("backend = \"onnx\"\naliases = [\"m\"]\n");
        assert_eq!(key, "models[0].name");
        assert!(problem.contains("\"m\""), "{problem}");
        let (key, problem) =
            refused("backend = \"onnx\"\naliases = [{ name = \"m\", task = \"q\" }]\n");
        assert_eq!(key, "models[0].name");
        assert!(problem.contains("\"m\""), "{problem}");
        let (key, _) = refused("backend = \"onnx\"\naliases = [\" \"]\n");
        assert_eq!(key, "models[0].aliases[0]");
        let misspelt =
            format!("{base}backend = \"onnx\"\naliases = [{{ name = \"q\", tsk = \"q\" }}]\n");
        let err = resolve(&misspelt).unwrap_err().to_string();
        assert!(
            err.contains("aliases") && err.contains("optionally `task`"),
            "{err}"
        );
        let rate = "[[models.variants]]\nbackend = \"onnx\"\n[[models.variants]]\nname = \"s\"\n\
                    backend = \"onnx\"\nshadow = true\nsample_rate = 1.5\n";
        assert_eq!(refused(rate).0, "models[0].variants[1].sample_rate");
    }

    #[test]
    fn device_and_dtype_per_variant() {
        let plan = resolve(&format!("{MINIMAL}device = \"cuda:1\"\ndtype = \"bf16\"\n")).unwrap();
        let settings = &plan.models[0].variants[0].settings;
        assert_eq!(
            (settings.device, settings.dtype),
            (Device::Cuda(1), Some(DType::Bf16))
        );
        let default = &resolve(MINIMAL).unwrap().models[0].variants[0].settings;
        assert_eq!((default.device, default.dtype), (Device::Cpu, None));
        let err = Config::parse(&format!("{MINIMAL}device = \"tpu\"\n")).unwrap_err();
        assert!(format!("{err:#}").contains("\"tpu\""), "{err:#}");
        let err = Config::parse(&format!("{MINIMAL}dtype = \"f8\"\n")).unwrap_err();
        assert!(format!("{err:#}").contains("f8"), "{err:#}");
        let base = "[[models]]\nname = \"m\"\npath = \"p\"\ndevice = \"cuda\"\n[[models.variants]]\nbackend = \"onnx\"\n";
        let (key, problem) = refusal(base);
        assert_eq!(key, "models[0].device");
        assert!(
            problem.contains("put `device` in each variant"),
            "{problem}"
        );
    }

    #[test]
    fn cache_is_off_unless_configured_and_per_model() {
        let plan = resolve(MINIMAL).unwrap();
        assert!(!plan.cache.enabled());
        assert!(plan.models[0].cache);
        let plan = resolve(&format!(
            "[cache]\nmemory_bytes = 1048576\nredis_url = \"redis://127.0.0.1:6379\"\nttl_seconds = 0\n{MINIMAL}cache = false\n"
        ))
        .unwrap();
        assert!(plan.cache.enabled());
        assert_eq!(plan.cache.ttl(), None);
        assert!(!plan.models[0].cache);
        let (key, _) = refusal(&format!("[cache]\nredis_url = \"localhost\"\n{MINIMAL}"));
        assert_eq!(key, "cache.redis_url");
        let err = Config::parse(&format!("[cache]\nmemory = 1\n{MINIMAL}")).unwrap_err();
        assert!(format!("{err:#}").contains("memory"), "{err:#}");
    }

    #[test]
    fn replicas_per_variant() {
        let replicas = |text: &str| {
            resolve(text).map(|plan| {
                plan.models[0]
                    .variants
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
        let (key, problem) = refusal(&format!("{MINIMAL}replicas = 0\n"));
        assert_eq!(key, "models[0].replicas");
        assert_eq!(problem, "must be between 1 and 64");
        let zero_in_variant = two.replace("replicas = 3", "replicas = 0");
        assert_eq!(
            refusal(&format!("{base}{zero_in_variant}")).0,
            "models[0].variants[0].replicas"
        );
        let (key, problem) = refusal(&format!("{base}replicas = 2\n{two}"));
        assert_eq!(key, "models[0].replicas");
        assert!(
            problem.contains("put `replicas` in each variant"),
            "{problem}"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let (key, problem) = refusal(&format!(
            "{MINIMAL}\nbatching = {{ max_batch_requests = 0 }}"
        ));
        assert_eq!(
            (key.as_str(), problem.as_str()),
            (
                "models[0].batching.max_batch_requests",
                "must be at least 1"
            )
        );
        let (key, _) = refusal(&format!("{MINIMAL}{MINIMAL}"));
        assert_eq!(key, "models[1].name", "the second model repeats the name");
        let err = Config::parse("[server]\nhttp = \"not an address\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("http"), "{err:#}");
        assert_eq!(refusal("models = []\n").0, "models");
        let (key, _) = refusal(&format!("[server]\nsticky_header = \"x user\"\n{MINIMAL}"));
        assert_eq!(key, "server.sticky_header");
        let (key, _) = refusal(&format!("[server]\napi_keys = [\" \"]\n{MINIMAL}"));
        assert_eq!(key, "server.api_keys");
        let (key, _) = refusal(&format!("[server]\nasync_threads = 0\n{MINIMAL}"));
        assert_eq!(key, "server.async_threads");
    }

    #[test]
    fn paths_resolve_against_the_file_and_the_command_line_wins() {
        let text = "[server]\nhttp = \"127.0.0.1:1\"\nplugin_dirs = [\"plugins\"]\n\
             sticky_header = \"X-User-Id\"\n\
             [[models]]\nname = \"m\"\npath = \"local/models/m\"\nbackend = \"onnx\"\n\
             [[models]]\nname = \"hub\"\npath = \"owner/model\"\nbackend = \"onnx\"\n";
        let plan = resolve(text).unwrap();
        assert_eq!(
            plan.models[0].source,
            ModelSource::Local(PathBuf::from("/etc/embedrt/local/models/m")),
            "no hub id: a folder next to the file"
        );
        assert_eq!(
            plan.models[1].source,
            ModelSource::Hub("owner/model".into()),
            "no such folder, and it reads as a hub id"
        );
        assert_eq!(
            plan.server.plugin_dirs,
            [PathBuf::from("/etc/embedrt/plugins")]
        );
        assert_eq!(plan.server.sticky_header.as_deref(), Some("x-user-id"));
        let http: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        let grpc: SocketAddr = "127.0.0.1:9002".parse().unwrap();
        let overrides = Overrides {
            http: Some(http),
            grpc: Some(grpc),
            default_plugin_dir: Some(PathBuf::from("/opt/embedrt/bin")),
        };
        let plan = Config::parse(text)
            .unwrap()
            .resolve(Path::new("/etc/embedrt"), &overrides)
            .unwrap();
        assert_eq!(
            plan.server.listeners,
            Listeners {
                http,
                grpc: Some(grpc)
            }
        );
        assert_eq!(
            plan.server.plugin_dirs,
            [PathBuf::from("/etc/embedrt/plugins")],
            "the default folder is for files that name none"
        );
        let plan = Config::parse(MINIMAL)
            .unwrap()
            .resolve(Path::new("/etc/embedrt"), &overrides)
            .unwrap();
        assert_eq!(plan.server.plugin_dirs, [PathBuf::from("/opt/embedrt/bin")]);
    }

    #[test]
    fn a_public_listener_needs_an_admin_key_or_an_explicit_choice() {
        let public =
            |server: &str| format!("[server]\nhttp = \"0.0.0.0:8080\"\n{server}\n{MINIMAL}");
        let (key, problem) = refusal(&public(""));
        assert_eq!(key, "server.admin_key");
        assert!(problem.contains("0.0.0.0:8080"), "{problem}");
        assert!(problem.contains("admin = \"off\""), "{problem}");
        let admin = |server: &str| resolve(&public(server)).unwrap().server.access.admin;
        assert_eq!(admin("admin = \"open\""), AdminAccess::Open);
        assert_eq!(admin("admin = \"off\""), AdminAccess::Off);
        assert_eq!(admin("admin_key = \"k\""), AdminAccess::Key("k".into()));
        // The command line's listener counts, not the file's.
        let overrides = Overrides {
            http: Some("0.0.0.0:8080".parse().unwrap()),
            ..Overrides::default()
        };
        let err = Config::parse(MINIMAL)
            .unwrap()
            .resolve(Path::new("/etc/embedrt"), &overrides)
            .unwrap_err();
        assert_eq!(err.key(), Some("server.admin_key"));
        let ipv6 = "[server]\nhttp = \"[::1]:8080\"\n".to_string() + MINIMAL;
        assert_eq!(
            resolve(&ipv6).unwrap().server.access.admin,
            AdminAccess::Open,
            "loopback, v6"
        );
        assert_eq!(refusal(&public("admin_key = \" \"")).0, "server.admin_key");
        assert_eq!(
            refusal(&public("admin_key = \"k\"\nadmin = \"open\"")).0,
            "server.admin"
        );
        assert_eq!(
            refusal(&public("admin_key = \"k\"\nadmin_key_file = \"f\"")).0,
            "server.admin_key_file"
        );
        let (key, problem) = refusal(&public("admin_key_file = \"no-such-file\""));
        assert_eq!(key, "server.admin_key_file");
        assert!(problem.contains("/etc/embedrt/no-such-file"), "{problem}");
    }

    #[test]
    fn the_admin_key_file_is_read_and_trimmed() {
        let dir = std::env::temp_dir().join(format!("embedrt-admin-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("admin-key"), "s3cret\n").unwrap();
        let text =
            format!("[server]\nhttp = \"0.0.0.0:8080\"\nadmin_key_file = \"admin-key\"\n{MINIMAL}");
        let plan = Config::parse(&text)
            .unwrap()
            .resolve(&dir, &Overrides::default())
            .unwrap();
        assert_eq!(plan.server.access.admin, AdminAccess::Key("s3cret".into()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
