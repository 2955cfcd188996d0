//! The embed stage: encoded splits -> feature Parquet files.

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tables::encoded::EncodedRow;
use tables::features::FeatureTable;

use crate::batching::plan;
use crate::encoder::{Device, Encoder, Pooling};
use crate::store::FeatureStore;
use crate::through_store;

/// `[embed]` in pipeline.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedParams {
    #[serde(default = "default_pooling")]
    pub pooling: Pooling,
    #[serde(default = "default_device")]
    pub device: Device,
    /// Most padded tokens per batch (rows are sorted by length first);
    /// unset: the device's default (see [`EmbedParams::batch_limits`]).
    #[serde(default)]
    pub batch_tokens: Option<usize>,
    /// Most rows per batch; unset: the device's default.
    #[serde(default)]
    pub max_batch_rows: Option<usize>,
}

impl Default for EmbedParams {
    fn default() -> Self {
        EmbedParams {
            pooling: default_pooling(),
            device: default_device(),
            batch_tokens: None,
            max_batch_rows: None,
        }
    }
}

impl EmbedParams {
    /// (most padded tokens, most rows) per batch on `device` ("cpu" or
    /// "cuda", what the session runs on). Measured (BENCHMARKS.md): a CPU
    /// does well with 4096 tokens and 256 rows; on an H200 a row limit
    /// only adds batches (311 instead of 112 for SST-2, warm pass 1.12 s
    /// instead of 0.93 s), and of 8192, 16384, 32768 and 65536 tokens the
    /// smallest gave the fastest first pass (1.19, 1.36, 1.47, 1.56 s).
    pub fn batch_limits(&self, device: &str) -> (usize, usize) {
        let (tokens, rows) = if device == "cuda" {
            (8192, 8192)
        } else {
            (4096, 256)
        };
        (
            self.batch_tokens.unwrap_or(tokens),
            self.max_batch_rows.unwrap_or(rows),
        )
    }
}

fn default_pooling() -> Pooling {
    Pooling::Pooler
}
fn default_device() -> Device {
    Device::Auto
}

/// Parameters that change only speed, never a row's features.
pub const SPEED_ONLY_PARAMS: [&str; 2] = ["batch_tokens", "max_batch_rows"];

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
    if params.batch_tokens == Some(0) || params.max_batch_rows == Some(0) {
        bail!("embed.batch_tokens and embed.max_batch_rows must be positive");
    }
    let (rows, split_sizes) = read_splits(encoded)?;
    let keys = through_store::keys(&rows, model.digest, params);
    let (mut store, store_warnings) = FeatureStore::open(store_dir)?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let started = Instant::now();
    let (mut encoder, warnings) =
        Encoder::open(model.path, params.pooling, params.device, threads)?;
    let mut summary = EmbedSummary {
        session_seconds: started.elapsed().as_secs_f64(),
        device: encoder.device.to_string(),
        notes: warnings,
        ..Default::default()
    };
    summary.notes.extend(store_warnings);
    let hidden = encoder.hidden_size();
    let provenance = provenance
        .with("hidden_size", hidden.to_string())
        .with("pooling", params.pooling.name())
        .with("device", encoder.device);

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("embed {bar:30} {pos}/{len} new rows  {per_sec}  ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // One pass over the new rows of the three splits together: fewer,
    // fuller batches (and on a GPU fewer new batch shapes) than three
    // passes. Each full chunk is committed as it fills: a resume point.
    let (mut features, used) =
        through_store::features(&mut encoder, &rows, &keys, params, &mut store, &bar)?;
    bar.finish_and_clear();
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

/// Features of `rows` in their order, computed in length-sorted batches.
pub fn embed_rows(
    encoder: &mut Encoder,
    rows: &[EncodedRow],
    params: &EmbedParams,
    bar: &ProgressBar,
) -> Result<Vec<f32>> {
    embed_rows_with(encoder, rows, params, bar, &mut |_, _| Ok(()))
}

/// Called after each batch with its row indices and their vectors.
pub type OnBatch<'a> = dyn FnMut(&[usize], &[f32]) -> Result<()> + 'a;

/// [`embed_rows`], calling `on_batch(rows, features)` after each batch with
/// the batch's row indices and their vectors ([rows × hidden]).
pub fn embed_rows_with(
    encoder: &mut Encoder,
    rows: &[EncodedRow],
    params: &EmbedParams,
    bar: &ProgressBar,
    on_batch: &mut OnBatch,
) -> Result<Vec<f32>> {
    let hidden = encoder.hidden_size();
    let lengths: Vec<usize> = rows.iter().map(|r| r.ids.len()).collect();
    let mut features = vec![0f32; rows.len() * hidden];
    let (tokens, max_rows) = params.batch_limits(encoder.device);
    let batches = plan(&lengths, tokens, max_rows);
    // Host work overlaps the model: a second thread pads the next batches
    // while this one runs the current one (two batches ahead at most).
    std::thread::scope(|scope| {
        let (send, receive) = std::sync::mpsc::sync_channel::<PaddedBatch>(2);
        scope.spawn(move || {
            // Longest rows first: the first batch needs the most working
            // memory, so ONNX Runtime's arena grows once, not at every
            // longer batch (on a GPU each growth is a device allocation).
            for batch in batches.into_iter().rev() {
                if send.send(pad_batch(rows, batch)).is_err() {
                    break; // the model side stopped on an error
                }
            }
        });
        for padded in receive {
            let out = encoder.embed(padded.ids, padded.mask, padded.rows.len(), padded.seq)?;
            for (k, &i) in padded.rows.iter().enumerate() {
                features[i * hidden..(i + 1) * hidden]
                    .copy_from_slice(&out[k * hidden..(k + 1) * hidden]);
            }
            on_batch(&padded.rows, &out)?;
            bar.inc(padded.rows.len() as u64);
        }
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(features)
}

/// One batch's model inputs, padded to its longest row.
struct PaddedBatch {
    rows: Vec<usize>,
    ids: Vec<i64>,
    mask: Vec<i64>,
    seq: usize,
}

fn pad_batch(rows: &[EncodedRow], batch: Vec<usize>) -> PaddedBatch {
    let seq = batch
        .iter()
        .map(|&i| rows[i].ids.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let mut ids = Vec::with_capacity(batch.len() * seq);
    let mut mask = Vec::with_capacity(batch.len() * seq);
    for &i in &batch {
        let row = &rows[i].ids;
        ids.extend(row.iter().map(|&t| t as i64));
        ids.extend(std::iter::repeat_n(0i64, seq - row.len()));
        mask.extend(std::iter::repeat_n(1i64, row.len()));
        mask.extend(std::iter::repeat_n(0i64, seq - row.len()));
    }
    PaddedBatch {
        rows: batch,
        ids,
        mask,
        seq,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_limits_follow_the_device_unless_set() {
        let unset = EmbedParams::default();
        assert_eq!(unset.batch_limits("cpu"), (4096, 256));
        assert_eq!(unset.batch_limits("cuda"), (8192, 8192));
        let set = EmbedParams {
            batch_tokens: Some(64),
            ..EmbedParams::default()
        };
        assert_eq!(set.batch_limits("cpu"), (64, 256));
        assert_eq!(set.batch_limits("cuda"), (64, 8192));
    }
}
