//! `embed-chunk` (a hidden command): one Ray task's work on a worker. Token
//! ids in (an Arrow IPC stream on stdin), pooled vectors out (on stdout),
//! in the same order; see `tables::task_wire`. Batched and pooled exactly
//! as the local executor does ([`crate::local::embed_rows`]).

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use tables::encoded::EncodedRow;
use tables::task_wire::{self, TaskFeatures};

use crate::encoder::{Device, Encoder, Pooling};
use crate::params::EmbedParams;

/// What a task is told besides its model and rows (`--spec`, JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub pooling: Pooling,
    pub device: Device,
    pub batch_tokens: Option<usize>,
    pub max_batch_rows: Option<usize>,
    /// ONNX Runtime's threads: the CPUs the task reserved.
    pub threads: usize,
}

/// Reads a chunk from `input`, embeds it with the graph at `model`,
/// writes its vectors to `output`.
pub fn run(model: &Path, spec: &TaskSpec, input: impl Read, output: impl Write) -> Result<()> {
    let mut input = input;
    let mut bytes = Vec::new();
    input
        .read_to_end(&mut bytes)
        .context("cannot read the chunk")?;
    let rows: Vec<EncodedRow> = task_wire::read_token_rows(&bytes)?
        .into_iter()
        .enumerate()
        .map(|(i, ids)| EncodedRow {
            row_id: i as i64,
            label: 0,
            n_tokens: ids.len(),
            ids,
        })
        .collect();
    let (mut encoder, warnings) =
        Encoder::open(model, spec.pooling, spec.device, spec.threads.max(1))?;
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    let params = EmbedParams {
        pooling: spec.pooling,
        device: spec.device,
        batch_tokens: spec.batch_tokens,
        max_batch_rows: spec.max_batch_rows,
        ..EmbedParams::default()
    };
    params.check()?;
    let features = crate::local::embed_rows(&mut encoder, &rows, &params, &ProgressBar::hidden())?;
    let out = task_wire::write_features(TaskFeatures {
        hidden: encoder.hidden_size(),
        features,
        device: encoder.device.to_string(),
    })?;
    let mut output = output;
    output.write_all(&out)?;
    output.flush()?;
    Ok(())
}
