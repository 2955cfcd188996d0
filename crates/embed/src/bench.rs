//! Timing passes of the embed stage's own batching over encoded rows, for
//! the GPU device check (`pipeline-cli embed-bench`): the first pass meets
//! every batch shape for the first time, later passes are warm.

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::Result;
use tables::encoded::EncodedRow;

use crate::batching::plan;
use crate::encoder::Encoder;
use crate::local::embed_rows;
use crate::params::EmbedParams;

/// What one pass did and how long it took.
#[derive(Debug, Clone)]
pub struct PassTiming {
    pub seconds: f64,
    pub rows: usize,
    /// Real tokens (before padding).
    pub tokens: usize,
    /// Tokens the model ran on, padding included.
    pub padded_tokens: usize,
    pub batches: usize,
    /// Distinct (rows, sequence) batch shapes.
    pub shapes: usize,
}

/// Runs `passes` passes of [`embed_rows`] over `rows`; returns each pass's
/// timing.
pub fn time_passes(
    encoder: &mut Encoder,
    rows: &[EncodedRow],
    params: &EmbedParams,
    passes: usize,
) -> Result<Vec<PassTiming>> {
    let lengths: Vec<usize> = rows.iter().map(|r| r.ids.len()).collect();
    let (tokens, max_rows) = params.batch_limits(encoder.device);
    let batches = plan(&lengths, tokens, max_rows);
    let longest = |b: &Vec<usize>| b.iter().map(|&i| lengths[i]).max().unwrap_or(1).max(1);
    let shapes: BTreeSet<(usize, usize)> = batches.iter().map(|b| (b.len(), longest(b))).collect();
    let padded_tokens = batches.iter().map(|b| b.len() * longest(b)).sum();
    let bar = indicatif::ProgressBar::hidden();
    let mut timings = Vec::new();
    for _ in 0..passes.max(1) {
        let started = Instant::now();
        embed_rows(encoder, rows, params, &bar)?;
        timings.push(PassTiming {
            seconds: started.elapsed().as_secs_f64(),
            rows: rows.len(),
            tokens: lengths.iter().sum(),
            padded_tokens,
            batches: batches.len(),
            shapes: shapes.len(),
        });
    }
    Ok(timings)
}
