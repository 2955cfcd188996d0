//! Records of what produced a result: one `manifest.json` inside every store
//! entry, and `pipeline.lock`, the human-readable table of current results.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fsutil::write_atomic;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputRecord {
    pub digest: String,
    /// Where an external input was read from (absent for stage outputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputRecord {
    pub digest: String,
    pub bytes: u64,
}

/// Everything known about one stage result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub stage: String,
    pub version: u32,
    pub key: String,
    /// RFC 3339, UTC.
    pub finished: String,
    pub duration_s: f64,
    #[serde(default)]
    pub notes: Vec<String>,
    pub params: Value,
    pub inputs: BTreeMap<String, InputRecord>,
    pub outputs: BTreeMap<String, OutputRecord>,
}

pub const MANIFEST_FILE: &str = "manifest.json";

impl Manifest {
    pub fn read(dir: &Path) -> Option<Manifest> {
        let bytes = fs::read(dir.join(MANIFEST_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self)?;
        write_atomic(&dir.join(MANIFEST_FILE), &bytes)
    }
}

/// `pipeline.lock`: the manifest of each stage's current result, as TOML.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockFile {
    #[serde(flatten)]
    pub stages: BTreeMap<String, Manifest>,
}

const LOCK_HEADER: &str = "\
# pipeline.lock: written by the stage runner after every stage; do not edit.
# One table per stage: the key of its current result (under .store/<stage>/<key>),
# the parameters and input digests that produced it, and its output digests.
";

impl LockFile {
    pub fn load(path: &Path) -> Result<LockFile> {
        match fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).with_context(|| {
                format!("{} is not a valid lock file; delete it and the runner rebuilds it from the store", path.display())
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LockFile::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let body = toml::to_string_pretty(self).context("cannot serialise the lock file")?;
        write_atomic(path, format!("{LOCK_HEADER}\n{body}").as_bytes())
    }
}
