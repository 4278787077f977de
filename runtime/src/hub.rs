//! Models named by a hub id (`jinaai/jina-embeddings-v3`) instead of a local folder: their files
//! come through `hf-hub` into the standard Hugging Face cache (`HF_HOME`), from `HF_ENDPOINT` when
//! it is set. With `HF_HUB_OFFLINE=1`, or when the download fails, the error names the missing files.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hf_hub::api::sync::ApiBuilder;
use hf_hub::Cache;

/// Files every model needs.
const REQUIRED: &[&str] = &["config.json", "tokenizer.json"];
/// Files that refine the model card when the repository has them.
const OPTIONAL: &[&str] = &[
    "tokenizer_config.json",
    "special_tokens_map.json",
    "sentence_bert_config.json",
    "modules.json",
    "1_Pooling/config.json",
];

/// The weight files an engine can use, in order of preference; the first group that exists wins.
fn weight_files(engine: &str) -> &'static [&'static [&'static str]] {
    match engine {
        "candle" => &[&["model.safetensors"]],
        "onnx" => &[
            &["onnx/model.onnx", "onnx/model.onnx_data"],
            &["model.onnx"],
        ],
        _ => &[
            &["model.safetensors"],
            &["onnx/model.onnx", "onnx/model.onnx_data"],
            &["model.onnx"],
        ],
    }
}

/// Whether `path` could be a hub id: `owner/name`, nothing more.
pub fn is_hub_id(path: &Path) -> bool {
    let Some(text) = path.to_str() else {
        return false;
    };
    let parts: Vec<&str> = text.split('/').collect();
    parts.len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && *p != "."
                && *p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
}

/// The local folder of the model `path`: `path` itself when it is a folder, else the cache
/// snapshot of hub id `path` with the files that `engine` needs, downloaded when missing.
pub fn resolve(path: &Path, engine: &str) -> Result<PathBuf> {
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    if !is_hub_id(path) {
        bail!(
            "{} is not a model folder (and not a hub id like `owner/name`)",
            path.display()
        );
    }
    let id = path.to_str().unwrap_or_default();
    let fetcher = Fetcher::new(id)?;
    let mut missing = Vec::new();
    let mut config_path = None;
    for file in REQUIRED {
        match fetcher.get(file) {
            Ok(local) => config_path = config_path.or(Some(local)),
            Err(why) => missing.push(format!("{file} ({why})")),
        }
    }
    for file in OPTIONAL {
        let _ = fetcher.get(file);
    }
    let found_weights = weight_files(engine).iter().any(|group| {
        let primary = fetcher.get(group[0]).is_ok();
        if primary {
            group[1..].iter().for_each(|extra| drop(fetcher.get(extra)));
        }
        primary
    });
    if !found_weights {
        let wanted: Vec<&str> = weight_files(engine).iter().map(|group| group[0]).collect();
        missing.push(format!(
            "weights for the {engine} engine (one of {wanted:?})"
        ));
    }
    if !missing.is_empty() {
        bail!(
            "model {id}: missing {}{}",
            missing.join(", "),
            if fetcher.offline {
                "; HF_HUB_OFFLINE is set, so nothing was downloaded"
            } else {
                ""
            }
        );
    }
    // Every file sits in the same snapshot folder; config.json is at its top.
    let config_path = config_path.context("config.json was found")?;
    Ok(config_path
        .parent()
        .context("snapshot folder")?
        .to_path_buf())
}

/// Gets files of one repository from the cache, or from the hub when online.
struct Fetcher {
    id: String,
    cache: Cache,
    api: Option<hf_hub::api::sync::Api>,
    offline: bool,
}

impl Fetcher {
    fn new(id: &str) -> Result<Self> {
        let offline = std::env::var("HF_HUB_OFFLINE")
            .is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
        let api = if offline {
            None
        } else {
            Some(
                ApiBuilder::from_env()
                    .with_progress(false)
                    .build()
                    .context("cannot set up the hub client")?,
            )
        };
        Ok(Self {
            id: id.to_string(),
            cache: Cache::from_env(),
            api,
            offline,
        })
    }

    /// The local path of `file`, downloading it when it is not cached; the error says why not.
    fn get(&self, file: &str) -> Result<PathBuf, String> {
        if let Some(path) = self.cache.model(self.id.clone()).get(file) {
            return Ok(path);
        }
        match &self.api {
            None => Err("not in the cache".into()),
            Some(api) => {
                tracing::info!(model = %self.id, file, "downloading");
                api.model(self.id.clone())
                    .get(file)
                    .map_err(|e| e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_are_owner_slash_name() {
        assert!(is_hub_id(Path::new("jinaai/jina-embeddings-v3")));
        assert!(is_hub_id(Path::new(
            "sentence-transformers/all-MiniLM-L6-v2"
        )));
        assert!(!is_hub_id(Path::new("models/a/b")));
        assert!(!is_hub_id(Path::new("../models")));
        assert!(!is_hub_id(Path::new("/abs/path")));
        assert!(!is_hub_id(Path::new("single")));
    }

    #[test]
    fn a_missing_folder_that_is_no_hub_id_is_an_error() {
        let err = resolve(Path::new("/no/such/model"), "onnx").unwrap_err();
        assert!(err.to_string().contains("not a model folder"), "{err}");
    }
}
