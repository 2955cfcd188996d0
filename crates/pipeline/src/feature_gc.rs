//! `gc` of the embed stage's feature store: keeps the vectors the current
//! embed result was made from, removes the rest.

use std::path::Path;

use anyhow::{Context, Result};
use runner::manifest::LockFile;

/// What was (or would be) removed; `None` when the store was left alone
/// (see [`referenced`]). The caller holds the run lock (`gc` takes it
/// once for the store and the feature store). A dry run changes nothing.
pub fn gc(
    _lock: &runner::RunLock,
    artifacts: &Path,
    dry_run: bool,
) -> Result<Option<embed::store::Pruned>> {
    let dir = artifacts.join(".cache").join("embed");
    if !dir.is_dir() {
        return Ok(Some(embed::store::Pruned::default()));
    }
    let mut store = if dry_run {
        embed::store::FeatureStore::peek(&dir)?
    } else {
        embed::store::FeatureStore::open(&dir)?.0
    };
    // The current outputs are chunks too: the rows they hold are kept there
    // (whole), not in an older chunk that holds the same keys.
    let outputs = current_outputs(artifacts)?;
    store.prefer(&outputs)?;
    let Some(keep) = referenced(artifacts, &store)? else {
        return Ok(None);
    };
    store.retain(&keep, &outputs, dry_run).map(Some)
}

/// The digests of the current embed outputs: chunks of the store themselves
/// (adopted by hard link), kept whole.
fn current_outputs(artifacts: &Path) -> Result<Vec<String>> {
    let lock = LockFile::load(&artifacts.join("pipeline.lock"))?;
    Ok(lock
        .stages
        .get("embed")
        .map(|embed| embed.outputs.values().map(|o| o.digest.clone()).collect())
        .unwrap_or_default())
}

/// The rows of `store` that the current embed result uses, marked (a bit
/// each): the keys of its model digest and pooling (from `pipeline.lock`)
/// over the current encode result's token ids. `None` when the embed
/// result was not made from the current encode result (a partial run
/// since): then what it references is not at hand, and nothing is removed.
fn referenced(
    artifacts: &Path,
    store: &embed::store::FeatureStore,
) -> Result<Option<embed::store::Marks>> {
    let mut marks = embed::store::Marks::default();
    let lock = LockFile::load(&artifacts.join("pipeline.lock"))?;
    let (Some(embed), Some(encode)) = (lock.stages.get("embed"), lock.stages.get("encode")) else {
        return Ok(Some(marks));
    };
    let splits = ["train.parquet", "val.parquet", "test.parquet"];
    let current = splits.iter().all(|split| {
        embed
            .inputs
            .get(&format!("encode/{split}"))
            .map(|r| &r.digest)
            == encode.outputs.get(*split).map(|o| &o.digest)
    });
    if !current {
        return Ok(None);
    }
    let model_digest = &embed
        .inputs
        .get("model/model.onnx")
        .context("pipeline.lock: embed has no model/model.onnx input")?
        .digest;
    let params = embed::EmbedParams {
        pooling: serde_json::from_value(embed.params["pooling"].clone())
            .context("pipeline.lock: embed.pooling")?,
        ..embed::EmbedParams::default()
    };
    let entry = artifacts.join(".store").join("encode").join(&encode.key);
    let paths = splits.map(|split| entry.join(split));
    embed::stage::for_each_key(
        &[&paths[0], &paths[1], &paths[2]],
        model_digest,
        &params,
        |_, key| {
            store.mark(&mut marks, key);
            Ok(())
        },
    )?;
    Ok(Some(marks))
}
