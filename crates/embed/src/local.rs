//! The local executor: rows the feature store lacks, embedded in this
//! process in length-sorted batches, handed over a chunk at a time.

use anyhow::Result;
use indicatif::ProgressBar;
use tables::encoded::EncodedRow;
use tables::feature_chunks::{Chunk, Key};

use crate::batching::plan;
use crate::encoder::Encoder;
use crate::params::EmbedParams;
use crate::through_store::{ChunkDone, Embedder};

/// [`Embedder`] on an ONNX Runtime session of this process.
pub struct Local<'a> {
    pub encoder: &'a mut Encoder,
    pub params: &'a EmbedParams,
}

impl Embedder for Local<'_> {
    fn embed(
        &mut self,
        rows: &[EncodedRow],
        keys: &[Key],
        bar: &ProgressBar,
        done: &mut ChunkDone,
    ) -> Result<()> {
        let hidden = self.encoder.hidden_size();
        let empty = || Chunk {
            keys: Vec::new(),
            hidden,
            features: Vec::new(),
        };
        let mut pending = empty();
        let chunk_rows = self.params.chunk_rows();
        embed_rows_with(self.encoder, rows, self.params, bar, &mut |batch, out| {
            for (k, &i) in batch.iter().enumerate() {
                pending.keys.push(keys[i]);
                pending
                    .features
                    .extend_from_slice(&out[k * hidden..(k + 1) * hidden]);
            }
            if pending.keys.len() >= chunk_rows {
                done(std::mem::replace(&mut pending, empty()))?;
            }
            Ok(())
        })?;
        if !pending.keys.is_empty() {
            done(pending)?;
        }
        Ok(())
    }
}

/// Features of `rows` in their order, computed in length-sorted batches.
pub fn embed_rows(
    encoder: &mut Encoder,
    rows: &[EncodedRow],
    params: &EmbedParams,
    bar: &ProgressBar,
) -> Result<Vec<f32>> {
    let hidden = encoder.hidden_size();
    let mut features = vec![0f32; rows.len() * hidden];
    embed_rows_with(encoder, rows, params, bar, &mut |batch, out| {
        for (k, &i) in batch.iter().enumerate() {
            features[i * hidden..(i + 1) * hidden]
                .copy_from_slice(&out[k * hidden..(k + 1) * hidden]);
        }
        Ok(())
    })?;
    Ok(features)
}

/// Called after each batch with its row indices and their vectors.
pub type OnBatch<'a> = dyn FnMut(&[usize], &[f32]) -> Result<()> + 'a;

/// Embeds `rows` in length-sorted batches, calling `on_batch(rows,
/// features)` after each batch with the batch's row indices and their
/// vectors ([rows × hidden]).
pub fn embed_rows_with(
    encoder: &mut Encoder,
    rows: &[EncodedRow],
    params: &EmbedParams,
    bar: &ProgressBar,
    on_batch: &mut OnBatch,
) -> Result<()> {
    let lengths: Vec<usize> = rows.iter().map(|r| r.ids.len()).collect();
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
            on_batch(&padded.rows, &out)?;
            bar.inc(padded.rows.len() as u64);
        }
        Ok::<(), anyhow::Error>(())
    })
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
