//! `embed-bench` (hidden): the GPU device check's embedding figures. Opens
//! a session on the current pipeline's model (artifacts/model) and times
//! passes over all three encoded splits (artifacts/encode) with the embed
//! stage's own batching: session creation, the first (cold) pass and warm
//! passes, under the run lock. Writes nothing.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};

/// Flags of `embed-bench`; `None` takes the pipeline's `[embed]` value.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub passes: usize,
    pub batch_tokens: Option<usize>,
    pub max_batch_rows: Option<usize>,
    pub attention: embed::CudaAttention,
}

pub fn run(artifacts: &Path, params: &embed::EmbedParams, options: &BenchOptions) -> Result<()> {
    // The model and the encode results are read through the links: under
    // the run lock, so no run moves one of them on between the two reads.
    let _lock = runner::RunLock::acquire(artifacts, true)?;
    let model = artifacts.join("model/model.onnx");
    if !model.is_file() {
        bail!(
            "{} is missing: run `run-pipeline --until encode` first",
            model.display()
        );
    }
    let encoded = ["train", "val", "test"].map(|s| artifacts.join(format!("encode/{s}.parquet")));
    let (rows, _) = embed::stage::read_splits(encoded.each_ref().map(|p| p.as_path()))?;
    let params = embed::EmbedParams {
        batch_tokens: options.batch_tokens.or(params.batch_tokens),
        max_batch_rows: options.max_batch_rows.or(params.max_batch_rows),
        ..params.clone()
    };
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let started = Instant::now();
    let (mut encoder, warnings) = embed::Encoder::open_with(
        &model,
        params.pooling,
        params.device,
        threads,
        options.attention,
    )?;
    warnings.iter().for_each(|w| eprintln!("{w}"));
    let (tokens, rows_per_batch) = params.batch_limits(encoder.device);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "session on {} created in {:.2}s (attention kernels {:?}; batches of <= {tokens} tokens, <= {rows_per_batch} rows)",
        encoder.device,
        started.elapsed().as_secs_f64(),
        options.attention,
    )?;
    let timings = embed::bench::time_passes(&mut encoder, &rows, &params, options.passes)?;
    for (i, t) in timings.iter().enumerate() {
        writeln!(
            out,
            "pass {} ({}): {} rows, {} tokens ({:.1}% padding) in {} batches of {} shapes: {:.3}s, {:.0} rows/s, {:.0} tokens/s",
            i + 1,
            if i == 0 { "cold" } else { "warm" },
            t.rows,
            t.tokens,
            100.0 * (t.padded_tokens - t.tokens) as f64 / t.padded_tokens.max(1) as f64,
            t.batches,
            t.shapes,
            t.seconds,
            t.rows as f64 / t.seconds,
            t.tokens as f64 / t.seconds
        )?;
    }
    Ok(())
}
