//! Models named by a hub id (`jinaai/jina-embeddings-v3`) instead of a local folder: their files
//! come through `hf-hub` into the standard Hugging Face cache (`HF_HOME`), from `HF_ENDPOINT` when
//! it is set.
//!
//! [`resolve`] gets the files every model needs (the config and tokenizer, and the
//! sentence-transformers files that refine the card) and the weight files each of the model's
//! backends asked for ([`WeightFiles`]): the union over all of its variants. Online, the
//! repository's file list decides which alternative is there and which companions (external
//! weight data) must come too; with `HF_HUB_OFFLINE=1` (or when the list cannot be had) only the
//! cache is used. The error names every file it could not get.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use embedrt_backend_core::{FileSet, WeightFiles};
use hf_hub::api::sync::{Api, ApiBuilder};
use hf_hub::Cache;

use crate::config::ModelSource;

/// Files every model needs.
const REQUIRED: &[&str] = &["config.json", "tokenizer.json"];
/// Files that refine the model card when the repository has them.
const OPTIONAL: &[&str] = &[
    "tokenizer_config.json",
    "special_tokens_map.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "modules.json",
    "1_Pooling/config.json",
];

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

/// The local folder of the model `source`: the folder itself; for a hub repository, the cache
/// snapshot holding the files every model needs plus, for each of `needs` (one entry per
/// variant: its backend's name and the weight files it asked for), the first alternative the
/// repository has and its listed companions, downloaded when missing.
///
/// # Errors
///
/// When a local folder is not there, or anything a hub model needs cannot be had; the message
/// names every missing file and why (offline, not in the repository, the download's error).
pub fn resolve(source: &ModelSource, needs: &[(String, WeightFiles)]) -> Result<PathBuf> {
    let id = match source {
        ModelSource::Local(path) if path.is_dir() => return Ok(path.clone()),
        ModelSource::Local(path) => bail!(
            "{} is not a model folder (and not a hub id like `owner/name`)",
            path.display()
        ),
        ModelSource::Hub(id) => id,
    };
    let repository = Repository::open(id)?;
    let mut missing = Vec::new();
    let mut dir = None;
    for file in REQUIRED {
        match repository.get(file) {
            Ok(local) => dir = dir.or_else(|| local.parent().map(Path::to_path_buf)),
            Err(why) => missing.push(format!("{file} ({why})")),
        }
    }
    for file in OPTIONAL.iter().filter(|file| repository.has(file)) {
        if let Err(why) = repository.get(file) {
            missing.push(format!("{file} ({why})"));
        }
    }
    let mut fetched = HashSet::new();
    for (backend, files) in needs {
        let Some(set) = repository.choose(files) else {
            let wanted: Vec<String> = files
                .alternatives
                .iter()
                .map(|set| set.files.join(" + "))
                .collect();
            missing.push(format!(
                "weights for the {backend} backend (one of {wanted:?})"
            ));
            continue;
        };
        let companions = set.companions.iter().filter(|c| repository.has(c));
        for file in set.files.iter().chain(companions) {
            if fetched.insert(file.as_str()) {
                if let Err(why) = repository.get(file) {
                    missing.push(format!("{file}, which the {backend} backend needs ({why})"));
                }
            }
        }
    }
    if !missing.is_empty() {
        bail!("{}", repository.missing(&missing));
    }
    // Every file of one revision sits in the same snapshot folder; config.json is at its top.
    dir.context("config.json was found")
}

/// One hub repository, read through the cache and (unless offline) the hub.
struct Repository {
    id: String,
    cache: Cache,
    api: Option<Api>,
    /// The repository's files, when the hub could list them.
    listing: Option<HashSet<String>>,
    /// Why there is no listing.
    unlisted: String,
}

impl Repository {
    fn open(id: &str) -> Result<Self> {
        let offline = std::env::var("HF_HUB_OFFLINE")
            .is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
        let cache = Cache::from_env();
        if offline {
            return Ok(Self {
                id: id.to_string(),
                cache,
                api: None,
                listing: None,
                unlisted: "HF_HUB_OFFLINE is set, so nothing was downloaded".into(),
            });
        }
        let api = ApiBuilder::from_env()
            .with_progress(false)
            .build()
            .context("cannot set up the hub client")?;
        let (listing, unlisted) = match api.model(id.to_string()).info() {
            Ok(info) => (
                Some(info.siblings.into_iter().map(|s| s.rfilename).collect()),
                String::new(),
            ),
            Err(why) => {
                tracing::warn!(model = id, %why, "cannot list the repository; trying each file");
                (None, format!("the repository could not be listed ({why})"))
            }
        };
        Ok(Self {
            id: id.to_string(),
            cache,
            api: Some(api),
            listing,
            unlisted,
        })
    }

    /// Whether the repository has `file`: by its listing; without one, by whether the file can be
    /// had (from the cache, or downloaded when online).
    fn has(&self, file: &str) -> bool {
        match &self.listing {
            Some(listing) => listing.contains(file),
            None => self.get(file).is_ok(),
        }
    }

    fn cached(&self, file: &str) -> Option<PathBuf> {
        self.cache.model(self.id.clone()).get(file)
    }

    /// The first alternative of `files` whose files the repository has.
    fn choose<'a>(&self, files: &'a WeightFiles) -> Option<&'a FileSet> {
        files
            .alternatives
            .iter()
            .find(|set| set.files.iter().all(|file| self.has(file)))
    }

    /// The local path of `file`, downloading it when it is not cached; the error says why not.
    fn get(&self, file: &str) -> Result<PathBuf, String> {
        if let Some(path) = self.cached(file) {
            return Ok(path);
        }
        let unlisted = self.listing.as_ref().is_some_and(|l| !l.contains(file));
        match &self.api {
            None => Err("not in the cache".into()),
            Some(_) if unlisted => Err("not in the repository".into()),
            Some(api) => {
                tracing::info!(model = %self.id, file, "downloading");
                api.model(self.id.clone())
                    .get(file)
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// An error message listing `missing` things, with why the repository could not be listed.
    fn missing(&self, missing: &[String]) -> String {
        let why = if self.listing.is_none() {
            format!("; {}", self.unlisted)
        } else {
            String::new()
        };
        format!("model {}: missing {}{why}", self.id, missing.join(", "))
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
        let source = ModelSource::Local(PathBuf::from("/no/such/model"));
        let err = resolve(&source, &[]).unwrap_err();
        assert!(err.to_string().contains("not a model folder"), "{err}");
    }
}
