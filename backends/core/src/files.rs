//! The files query and answer: which files of a model repository a backend needs, asked before
//! the model's own files are there (so a model given as a hub id can be downloaded).

use serde::{Deserialize, Serialize};

use crate::backend::BackendError;
use crate::document::read_versioned;
use crate::placement::BackendSettings;

/// What a backend is asked before the model's files are there: which weight files it needs for
/// these settings (the load document without its `card`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FilesQuery {
    /// The query's version (that of the load document).
    #[serde(default)]
    pub version: u32,
    /// The backend's options, device and dtype.
    #[serde(flatten)]
    pub settings: BackendSettings,
}

impl FilesQuery {
    /// A query of the current version.
    pub fn new(settings: BackendSettings) -> Self {
        Self {
            version: embedrt_plugin_abi::LOAD_DOCUMENT_VERSION,
            settings,
        }
    }

    /// Reads a query from JSON.
    ///
    /// # Errors
    ///
    /// [`BackendError::Load`] when the JSON does not hold a query, or holds one of a newer
    /// version than this crate knows.
    pub fn from_json(json: &str) -> Result<Self, BackendError> {
        read_versioned(json, "files query", |q: &Self| q.version)
    }

    /// The query as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a files query always serializes")
    }
}

/// The files of a model repository a backend needs (the ABI's files answer).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightFiles {
    /// Sets of files in order of preference: the first one the repository has is used. Empty: the
    /// backend needs no weight files.
    pub alternatives: Vec<FileSet>,
}

/// One way to get a model's weights.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSet {
    /// Files that must all be there, relative to the repository's root.
    pub files: Vec<String>,
    /// Files needed when the repository has them (external weight data).
    #[serde(default)]
    pub companions: Vec<String>,
}

impl FileSet {
    /// A set of `files` with no companions.
    pub fn of(files: &[&str]) -> Self {
        Self {
            files: files.iter().map(|f| f.to_string()).collect(),
            companions: Vec::new(),
        }
    }

    /// This set with `companions` added.
    pub fn with_companions(mut self, companions: &[&str]) -> Self {
        self.companions = companions.iter().map(|f| f.to_string()).collect();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::{DType, Device};

    #[test]
    fn the_query_round_trips_without_the_model() {
        let query = FilesQuery::new(BackendSettings {
            options: serde_json::json!({"file": "onnx/model.onnx"}),
            device: Device::Cuda(0),
            dtype: Some(DType::F16),
        });
        assert_eq!(FilesQuery::from_json(&query.to_json()).unwrap(), query);
        assert!(!query.to_json().contains("card"));
    }
}
