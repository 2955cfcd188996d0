//! What `serve` serves: the current export, refused with what to run if the
//! pipeline has not made one or its results do not form one chain, and the
//! `GET /metadata` body (model, parameters, stage keys; `serve` adds the
//! folder's labels).

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::json;

/// The export folder and the server's metadata.
pub fn export_folder(
    pipeline: &runner::Pipeline,
    artifacts: &Path,
) -> Result<(PathBuf, serde_json::Value)> {
    // Checked under the run lock, and served from the store entry the
    // check found (immutable), not through the link a later run moves.
    let _writer = runner::RunLock::acquire(artifacts, true)?;
    let lock = crate::trained::current_chain(pipeline, artifacts, "export")?;
    let export = &lock.stages["export"];
    let folder = runner::store::Store::open_read_only(artifacts)?.entry_dir("export", &export.key);
    let keys: serde_json::Map<String, serde_json::Value> = lock
        .stages
        .iter()
        .map(|(stage, entry)| (stage.clone(), json!(entry.key)))
        .collect();
    let metadata = json!({
        "model": export.params.get("model").and_then(|m| m.get("source")),
        "parameters": export.params,
        "stage_keys": keys,
    });
    Ok((folder, metadata))
}
