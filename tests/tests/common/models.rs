//! The `[[models]]` tables of a test server's config, built as typed TOML instead of written by
//! hand: `Model::minilm("m").on("onnx").set("max_inputs_per_request", 4)`, or with variants,
//! `Model::jina("ab").variant(Variant::on("candle")).variant(Variant::on("onnx"))`.

use std::path::Path;

use embedrt_testkit::paths::{fixtures_dir, jina_dir, minilm_dir};
use embedrt_testkit::TempDir;
use toml::{Table, Value};

/// The CPU engines every fixture runs on in the suite.
pub const ENGINES: [&str; 2] = ["candle", "onnx"];

/// The name [`Model::fixture_on`] serves a fixture as on an engine: `<fixture>-<engine>`.
pub fn served(fixture: &str, engine: &str) -> String {
    format!("{fixture}-{engine}")
}

/// One `[[models]]` table.
#[derive(Clone, Debug)]
pub struct Model {
    table: Table,
    variants: Vec<Table>,
}

impl Model {
    /// A model table with only its `name` (add `path`, a backend or variants).
    pub fn named(name: &str) -> Self {
        let mut table = Table::new();
        table.insert("name".into(), name.into());
        Self {
            table,
            variants: Vec::new(),
        }
    }

    /// The fixture folder `fixture` of `../shared/fixtures` on `engine`, named
    /// [`served`]`(fixture, engine)`.
    pub fn fixture_on(fixture: &str, engine: &str) -> Self {
        Self::named(&served(fixture, engine))
            .path(&fixtures_dir().join(fixture))
            .on(engine)
    }

    /// all-MiniLM-L6-v2 (as `scripts/setup.sh` prepares it) named `name`.
    pub fn minilm(name: &str) -> Self {
        Self::named(name).path(&minilm_dir())
    }

    /// The tiny jina-embeddings-v3 of the fixtures, named `name`.
    pub fn jina(name: &str) -> Self {
        Self::named(name).path(&jina_dir())
    }

    /// This model at `path` (a folder, or a hub id).
    pub fn path(self, path: &Path) -> Self {
        self.set("path", path.display().to_string())
    }

    /// This model served by `backend` alone (the `backend` shorthand).
    pub fn on(self, backend: &str) -> Self {
        self.set("backend", backend)
    }

    /// This model with `key = value`.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.table.insert(key.into(), value.into());
        self
    }

    /// This model with one more alias whose requests run `task` when they name none
    /// (`aliases = [{ name, task }]`).
    pub fn task_alias(mut self, name: &str, task: &str) -> Self {
        let mut alias = Table::new();
        alias.insert("name".into(), name.into());
        alias.insert("task".into(), task.into());
        let aliases = self
            .table
            .entry("aliases")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(aliases) = aliases {
            aliases.push(Value::Table(alias));
        }
        self
    }

    /// This model with the backend option `key = value` (`options = { key = value }`).
    pub fn option(self, key: &str, value: impl Into<Value>) -> Self {
        self.set_in("options", key, value)
    }

    /// This model with the batching setting `key = value` (`batching = { key = value }`).
    pub fn batching(self, key: &str, value: impl Into<Value>) -> Self {
        self.set_in("batching", key, value)
    }

    /// This model with one more `[[models.variants]]` table.
    pub fn variant(mut self, variant: Variant) -> Self {
        self.variants.push(variant.0);
        self
    }

    fn set_in(mut self, table: &str, key: &str, value: impl Into<Value>) -> Self {
        let inner = self
            .table
            .entry(table)
            .or_insert_with(|| Value::Table(Table::new()));
        if let Value::Table(inner) = inner {
            inner.insert(key.into(), value.into());
        }
        self
    }

    /// The table, as the config file holds it.
    pub(super) fn to_toml(&self) -> Value {
        let mut table = self.table.clone();
        if !self.variants.is_empty() {
            let variants = self.variants.iter().cloned().map(Value::Table).collect();
            table.insert("variants".into(), Value::Array(variants));
        }
        Value::Table(table)
    }
}

/// One `[[models.variants]]` table.
#[derive(Clone, Debug)]
pub struct Variant(Table);

impl Variant {
    /// A variant on `backend`, named after it unless [`Variant::named`].
    pub fn on(backend: &str) -> Self {
        let mut table = Table::new();
        table.insert("backend".into(), backend.into());
        Self(table)
    }

    /// This variant named `name`.
    pub fn named(self, name: &str) -> Self {
        self.set("name", name)
    }

    /// This variant with `weight` of the traffic.
    pub fn weight(self, weight: i64) -> Self {
        self.set("weight", weight)
    }

    /// This variant as a shadow copied `sample_rate` of the requests.
    pub fn shadow(self, sample_rate: f64) -> Self {
        self.set("shadow", true).set("sample_rate", sample_rate)
    }

    /// This variant with `key = value`.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.insert(key.into(), value.into());
        self
    }
}

/// A copy of the fixture `name` with `edit` applied to its config.json, without the files
/// `drop`: a folder the server should refuse.
///
/// # Panics
///
/// When the fixture cannot be copied or its config.json read or written.
pub fn broken_copy(name: &str, edit: impl Fn(&mut serde_json::Value), drop: &[&str]) -> TempDir {
    let dir = TempDir::copy_of(name, &fixtures_dir().join(name));
    for file in drop {
        std::fs::remove_file(dir.path().join(file)).unwrap();
    }
    let config = dir.path().join("config.json");
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(&config, value.to_string()).unwrap();
    dir
}
