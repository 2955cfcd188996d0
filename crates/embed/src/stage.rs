//! The embed stage: encoded splits -> feature Parquet files.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use tables::encoded::EncodedRow;
use tables::features::FeatureTable;

use crate::encoder::Encoder;
use crate::local::Local;
use crate::params::{EmbedParams, Executor};
use crate::ray::Ray;
use crate::store::FeatureStore;
use crate::through_store;

pub const OUTPUTS: [&str; 3] = ["train.parquet", "val.parquet", "test.parquet"];

#[derive(Debug, Default)]
pub struct EmbedSummary {
    pub notes: Vec<String>,
    pub rows: usize,
    pub tokens: usize,
    pub session_seconds: f64,
    pub embed_seconds: f64,
    pub device: String,
}

/// The model the stage runs: its graph, and that graph's content digest
/// (part of every feature-store key).
pub struct ModelGraph<'a> {
    pub path: &'a Path,
    pub digest: &'a str,
}

/// Embeds the three encoded splits into `out_dir`, taking every row the
/// feature store in `store_dir` already holds from there and adding the
/// rows it embeds to it, a chunk at a time.
pub fn run(
    params: &EmbedParams,
    encoded: [&Path; 3],
    model: ModelGraph,
    store_dir: &Path,
    out_dir: &Path,
    provenance: tables::Provenance,
) -> Result<EmbedSummary> {
    params.check()?;
    let (rows, split_sizes) = read_splits(encoded)?;
    let keys = through_store::keys(&rows, model.digest, params);
    let (mut store, store_warnings) = FeatureStore::open(store_dir)?;
    let mut summary = EmbedSummary {
        notes: store_warnings,
        ..Default::default()
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("embed {bar:30} {pos}/{len} new rows  {per_sec}  ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // One pass over the new rows of the three splits together: fewer,
    // fuller batches (and on a GPU fewer new batch shapes) than three
    // passes. Each chunk is committed as it is finished: a resume point.
    let result = match params.executor {
        Executor::Local => embed_here(
            params,
            model.path,
            &rows,
            &keys,
            &mut store,
            &bar,
            &mut summary,
        ),
        Executor::Ray => {
            let mut ray = Ray::new(params, model.path, store_dir);
            let result = through_store::features(&mut ray, &rows, &keys, &mut store, &bar);
            summary.device = ray.device();
            summary.notes.append(&mut ray.notes);
            result
        }
    };
    // Cleared before an error is printed, too.
    bar.finish_and_clear();
    let (mut features, used) = result?;
    let hidden = used.hidden;
    let provenance = provenance
        .with("hidden_size", hidden.to_string())
        .with("pooling", params.pooling.name())
        .with("device", summary.device.clone());
    summary.embed_seconds = used.embed_seconds;
    summary.rows = used.distinct;
    summary.tokens = used.tokens;
    summary.notes.extend(used.warnings.iter().cloned());

    // Parquet encoding of a feature matrix is CPU-bound (~1.8 s for SST-2's
    // training split on one core of the 2-core machine): the three files are
    // written at once, each on its own thread.
    let write_started = Instant::now();
    // Split the feature matrix from the back: the training split's features
    // (the largest part) stay in the matrix's own allocation; only the
    // smaller val and test parts are copied out (split_off).
    let mut end = rows.len();
    let mut split_tables: Vec<FeatureTable> = split_sizes
        .iter()
        .rev()
        .map(|&size| {
            let split = &rows[end - size..end];
            end -= size;
            FeatureTable {
                row_ids: split.iter().map(|r| r.row_id).collect(),
                labels: split.iter().map(|r| r.label).collect(),
                hidden,
                features: features.split_off(end * hidden),
            }
        })
        .collect();
    split_tables.reverse();
    std::thread::scope(|scope| {
        let writers: Vec<_> = split_tables
            .into_iter()
            .zip(OUTPUTS)
            .map(|(table, name)| {
                let (path, provenance) = (out_dir.join(name), &provenance);
                scope.spawn(move || tables::features::write(&path, table, provenance))
            })
            .collect();
        writers
            .into_iter()
            .try_for_each(|w| w.join().expect("a Parquet writer thread panicked"))
    })?;
    let write_seconds = write_started.elapsed().as_secs_f64();
    summary.notes.push(used.summary());
    if summary.rows > 0 {
        summary.notes.push(format!(
            "{} distinct inputs, {} tokens on {} in {:.2}s ({:.0} rows/s, {:.0} tokens/s)",
            summary.rows,
            summary.tokens,
            summary.device,
            summary.embed_seconds,
            summary.rows as f64 / summary.embed_seconds,
            summary.tokens as f64 / summary.embed_seconds,
        ));
    }
    summary.notes.push(format!(
        "session created in {:.2}s; written in {write_seconds:.2}s; H = {hidden}, pooling {:?}",
        summary.session_seconds, params.pooling
    ));
    Ok(summary)
}

/// [`through_store::features`] on a session of this process (the local
/// executor); the session's creation time, device and warnings go into
/// `summary`.
fn embed_here(
    params: &EmbedParams,
    model: &Path,
    rows: &[EncodedRow],
    keys: &[tables::feature_chunks::Key],
    store: &mut FeatureStore,
    bar: &ProgressBar,
    summary: &mut EmbedSummary,
) -> Result<(Vec<f32>, through_store::StoreUse)> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let started = Instant::now();
    let (mut encoder, warnings) = Encoder::open(model, params.pooling, params.device, threads)?;
    summary.session_seconds = started.elapsed().as_secs_f64();
    summary.device = encoder.device.to_string();
    summary.notes.extend(warnings);
    let mut local = Local {
        encoder: &mut encoder,
        params,
    };
    through_store::features(&mut local, rows, keys, store, bar)
}

/// How many of the encoded splits' rows the feature store in `store_dir`
/// lacks, and how many rows there are: what a run would embed. Reads only.
pub fn rows_to_embed(
    params: &EmbedParams,
    encoded: [&Path; 3],
    model_digest: &str,
    store_dir: &Path,
) -> Result<(usize, usize)> {
    let (rows, _) = read_splits(encoded)?;
    let store = FeatureStore::peek(store_dir)?;
    let keys = through_store::keys(&rows, model_digest, params);
    let new = keys.iter().filter(|k| !store.contains(k)).count();
    Ok((new, rows.len()))
}

/// The rows of the three encoded splits, one split after another, and each
/// split's row count.
pub fn read_splits(encoded: [&Path; 3]) -> Result<(Vec<EncodedRow>, [usize; 3])> {
    let mut rows = Vec::new();
    let mut sizes = [0; 3];
    for (size, path) in sizes.iter_mut().zip(encoded) {
        let (split, _) = tables::encoded::read(path)?;
        *size = split.len();
        rows.extend(split);
    }
    Ok((rows, sizes))
}
