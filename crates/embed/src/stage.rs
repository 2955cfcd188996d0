//! The embed stage: encoded splits -> feature Parquet files.

use std::path::Path;
use std::time::Instant;

use std::collections::HashSet;

use anyhow::{Context, Result, ensure};
use indicatif::{ProgressBar, ProgressStyle};
use tables::encoded::EncodedRow;
use tables::feature_chunks::Key;
use tables::features::{FeatureTable, FeatureWriter};

use crate::encoder::Encoder;
use crate::gather::Gathered;
use crate::local::Local;
use crate::params::{EmbedParams, Executor};
use crate::ray::Ray;
use crate::store::{self, ChunksUsed, FeatureStore};
use crate::through_store::{self, Embedder};

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

/// Distinct new rows embedded at a time unless `embed.window_rows` says
/// otherwise: what the stage holds of the encoded data (~250 bytes a row
/// with its key), whatever the row count.
pub const WINDOW_ROWS: usize = 262_144;

/// Rows read at a time from an encoded split, and written at a time to an
/// embed output.
const READ_ROWS: usize = tables::features::ROWS_PER_GROUP;

/// Embeds the three encoded splits into `out_dir`, taking every row the
/// feature store in `store_dir` already holds from there and adding the
/// rows it embeds to it, a chunk at a time. Three streaming passes over
/// the encoded splits, so that memory does not grow with their size (but
/// for the store's key index):
/// 1. note the stored chunks the rows need, and check each one's digest
///    (a damaged chunk is dropped and its rows embedded again);
/// 2. embed the rows the store lacks, `embed.window_rows` distinct ones at
///    a time, committing each chunk as it is finished (a resume point);
/// 3. write each split's vectors from the store, a row group at a time.
pub fn run(
    params: &EmbedParams,
    encoded: [&Path; 3],
    model: ModelGraph,
    store_dir: &Path,
    out_dir: &Path,
    provenance: tables::Provenance,
) -> Result<EmbedSummary> {
    params.check()?;
    let (mut store, store_warnings) = FeatureStore::open(store_dir)?;
    let mut summary = EmbedSummary {
        notes: store_warnings,
        ..Default::default()
    };
    let mut used = ChunksUsed::default();
    let mut rows = 0;
    let mut missing = 0;
    for_each_key(&encoded, model.digest, params, |_, key| {
        rows += 1;
        missing += usize::from(!used.note(&store, key));
        Ok(())
    })?;
    let (warnings, lost) = store.verify(&used)?;
    summary.notes.extend(warnings);
    missing += lost;
    drop(used);

    let bar = ProgressBar::new(missing as u64);
    bar.set_style(
        ProgressStyle::with_template("embed {bar:30} {pos}/{len} new rows  {per_sec}  ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // One pass over the new rows of the three splits together: fewer,
    // fuller batches (and on a GPU fewer new batch shapes) than three
    // passes.
    let result = match params.executor {
        Executor::Local => {
            let threads = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
            let started = Instant::now();
            let (mut encoder, warnings) =
                Encoder::open(model.path, params.pooling, params.device, threads)?;
            summary.session_seconds = started.elapsed().as_secs_f64();
            summary.device = encoder.device.to_string();
            summary.notes.extend(warnings);
            let mut local = Local {
                encoder: &mut encoder,
                params,
            };
            embed_missing(&mut local, encoded, &model, params, &mut store, &bar)
        }
        Executor::Ray => {
            let mut ray = Ray::new(params, model.path, store_dir);
            let result = embed_missing(&mut ray, encoded, &model, params, &mut store, &bar);
            summary.device = ray.device();
            summary.notes.append(&mut ray.notes);
            result
        }
    };
    // Cleared before an error is printed, too.
    bar.finish_and_clear();
    let new = result?;

    let write_started = Instant::now();
    let hidden = write_outputs(encoded, &model, params, &store, out_dir, |hidden| {
        provenance
            .clone()
            .with("hidden_size", hidden.to_string())
            .with("pooling", params.pooling.name())
            .with("device", summary.device.clone())
    })?;
    summary.notes.push(store_once(&mut store, out_dir));
    let write_seconds = write_started.elapsed().as_secs_f64();
    let used = through_store::StoreUse {
        rows,
        embedded: missing,
        distinct: new.distinct,
        from_store: rows - missing,
        tokens: new.tokens,
        embed_seconds: new.seconds,
        hidden,
        warnings: Vec::new(),
    };
    summary.embed_seconds = used.embed_seconds;
    summary.rows = used.distinct;
    summary.tokens = used.tokens;
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

/// What [`embed_missing`] computed.
struct NewRows {
    distinct: usize,
    tokens: usize,
    seconds: f64,
}

/// Embeds every row of `encoded` whose key the store lacks (a repeated
/// input once), `embed.window_rows` at a time, each finished chunk committed
/// to the store as it comes.
fn embed_missing(
    embedder: &mut dyn Embedder,
    encoded: [&Path; 3],
    model: &ModelGraph,
    params: &EmbedParams,
    store: &mut FeatureStore,
    bar: &ProgressBar,
) -> Result<NewRows> {
    let mut new = NewRows {
        distinct: 0,
        tokens: 0,
        seconds: 0.0,
    };
    let mut hidden = None;
    let mut window = (Vec::new(), Vec::new(), HashSet::new());
    let started = Instant::now();
    let mut flush = |(rows, keys, seen): &mut (Vec<EncodedRow>, Vec<Key>, HashSet<Key>),
                     store: &mut FeatureStore|
     -> Result<()> {
        new.distinct += rows.len();
        new.tokens += rows.iter().map(|r| r.ids.len()).sum::<usize>();
        embedder.embed(rows, keys, bar, &mut |chunk| {
            let h = *hidden.get_or_insert(chunk.hidden);
            ensure!(
                chunk.hidden == h && chunk.features.len() == chunk.keys.len() * h,
                "a chunk of {}-wide vectors among {h}-wide ones",
                chunk.hidden
            );
            store.commit(chunk)
        })?;
        rows.clear();
        keys.clear();
        seen.clear();
        Ok(())
    };
    for path in encoded {
        let (batches, _) = tables::encoded::read_batched(path, READ_ROWS)?;
        for batch in batches {
            for row in batch? {
                let key = store::row_key(model.digest, params.pooling.name(), &row.ids);
                if store.contains(&key) || !window.2.insert(key) {
                    continue;
                }
                window.0.push(row);
                window.1.push(key);
                if window.0.len() >= params.window_rows() {
                    flush(&mut window, store)?;
                }
            }
        }
    }
    if !window.0.is_empty() {
        flush(&mut window, store)?;
    }
    new.seconds = started.elapsed().as_secs_f64();
    Ok(new)
}

/// Writes each split's vectors, read from the store ([`Gathered`]), to
/// `out_dir`, a row group at a time; `provenance(hidden)` is the files'
/// metadata. Returns the vectors' width.
fn write_outputs(
    encoded: [&Path; 3],
    model: &ModelGraph,
    params: &EmbedParams,
    store: &FeatureStore,
    out_dir: &Path,
    provenance: impl Fn(usize) -> tables::Provenance,
) -> Result<usize> {
    let mut hidden = None;
    for (path, name) in encoded.into_iter().zip(OUTPUTS) {
        let mut locs = Vec::new();
        for_each_key(&[path], model.digest, params, |_, key| {
            let loc = store
                .locate(key)
                .context("a row's vector is missing from the feature store")?;
            locs.push(loc);
            Ok(())
        })?;
        let gathered = Gathered::new(store, &locs, out_dir)?;
        drop(locs);
        if gathered.hidden > 0 {
            let h = *hidden.get_or_insert(gathered.hidden);
            ensure!(
                h == gathered.hidden,
                "feature-store chunks of different widths"
            );
        }
        // An empty split: an empty file of the others' width.
        let h = hidden.unwrap_or(0);
        let mut writer = FeatureWriter::create(&out_dir.join(name), h, &provenance(h))?;
        let (batches, _) = tables::encoded::read_batched(path, READ_ROWS)?;
        let mut vectors = gathered.reader()?;
        for batch in batches {
            let batch = batch?;
            let features = vectors.next_rows(batch.len())?;
            let keys: Vec<Key> = batch
                .iter()
                .map(|r| store::row_key(model.digest, params.pooling.name(), &r.ids))
                .collect();
            let table = FeatureTable {
                row_ids: batch.iter().map(|r| r.row_id).collect(),
                labels: batch.iter().map(|r| r.label).collect(),
                hidden: h,
                features,
            };
            writer.write(table, &keys)?;
        }
        writer.finish()?;
    }
    Ok(hidden.unwrap_or(0))
}

/// Takes the finished outputs in `out_dir` as the store's chunks and
/// removes the chunks they make redundant, so that the vectors are on disk
/// once; the note that says what happened. Where the outputs cannot be
/// linked (a file system without hard links), the store is left as it was
/// and the note says the vectors are kept twice.
fn store_once(store: &mut FeatureStore, out_dir: &Path) -> String {
    let mut adopted = Vec::new();
    for name in OUTPUTS {
        match store.adopt(&out_dir.join(name)) {
            Ok(id) => adopted.extend(id),
            Err(e) => {
                return format!(
                    "feature store: the vectors are kept twice, in its chunks and in embed/ \
                     ({e:#})"
                );
            }
        }
    }
    match store.drop_shadowed(&adopted) {
        Ok((chunks, rows)) => format!(
            "feature store: the outputs are its chunks (the vectors on disk once); {chunks} \
             chunks ({rows} rows) they hold again removed"
        ),
        Err(e) => {
            format!("feature store: could not remove the chunks the outputs hold again ({e:#})")
        }
    }
}

/// Calls `f(row, key)` for every row of the encoded splits in order,
/// reading them a batch at a time.
pub fn for_each_key(
    encoded: &[&Path],
    model_digest: &str,
    params: &EmbedParams,
    mut f: impl FnMut(&EncodedRow, &Key) -> Result<()>,
) -> Result<()> {
    for path in encoded {
        let (batches, _) = tables::encoded::read_batched(path, READ_ROWS)?;
        for batch in batches {
            for row in batch? {
                f(
                    &row,
                    &store::row_key(model_digest, params.pooling.name(), &row.ids),
                )?;
            }
        }
    }
    Ok(())
}

/// How many of the encoded splits' rows the feature store in `store_dir`
/// lacks, and how many rows there are: what a run would embed. Reads only.
pub fn rows_to_embed(
    params: &EmbedParams,
    encoded: [&Path; 3],
    model_digest: &str,
    store_dir: &Path,
) -> Result<(usize, usize)> {
    let store = FeatureStore::peek(store_dir)?;
    let (mut new, mut rows) = (0, 0);
    for_each_key(&encoded, model_digest, params, |_, key| {
        rows += 1;
        new += usize::from(!store.contains(key));
        Ok(())
    })?;
    Ok((new, rows))
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
