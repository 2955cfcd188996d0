//! An exported folder opened for scoring: text in, class probabilities out,
//! from the folder's files alone (`classifier.onnx`, `tokenizer.json`,
//! `labels.json`). What the export stage's parity check and the HTTP
//! server both run, so the check proves what is served.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use embed::masked_graph::MaskedGraph;
use tokenizers::Tokenizer;

/// Padded tokens per ONNX Runtime call and rows per call when scoring many
/// texts (the embed stage's CPU defaults: `embed::batching`).
pub const BATCH_TOKENS: usize = 4096;
pub const MAX_BATCH_ROWS: usize = 256;

pub struct Classifier {
    graph: MaskedGraph,
    tokenizer: Tokenizer,
    pub labels: Vec<String>,
}

/// One text's token ids as the exported tokenizer makes them (truncated to
/// the pipeline's `max_len`, special tokens included, unpadded).
pub type Ids = Vec<i64>;

impl Classifier {
    /// Opens `dir` (an export stage's output) with `threads` ONNX Runtime threads.
    pub fn open(dir: &Path, threads: usize) -> Result<Classifier> {
        let tokenizer = Tokenizer::from_file(dir.join(crate::TOKENIZER))
            .map_err(|e| anyhow!("{}: {e}", dir.join(crate::TOKENIZER).display()))?;
        let path = dir.join(crate::LABELS);
        let labels: crate::Labels = serde_json::from_slice(
            &std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?,
        )
        .with_context(|| format!("{} is not a labels file", path.display()))?;
        let labels = labels
            .into_names()
            .with_context(|| format!("{}", path.display()))?;
        let graph = MaskedGraph::open(
            &dir.join(crate::CLASSIFIER),
            model::convert::classifier::OUTPUT,
            threads,
        )?;
        Ok(Classifier {
            graph,
            tokenizer,
            labels,
        })
    }

    /// Token ids of each text (the tokenizer's own truncation; no padding).
    pub fn tokenize(&self, texts: &[String]) -> Result<Vec<Ids>> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| anyhow!("tokenizer: {e}"))?;
        Ok(encodings
            .iter()
            .map(|e| {
                // The saved padding setting pads a batch to its longest text;
                // batches are formed here instead, so only real tokens count.
                let real = e.get_attention_mask().iter().filter(|&&m| m != 0).count();
                e.get_ids()[..real].iter().map(|&i| i as i64).collect()
            })
            .collect())
    }

    /// Probabilities [rows × classes] for the rows of `ids`, run together as
    /// one padded batch.
    fn score_batch(&mut self, ids: &[&Ids]) -> Result<Vec<f32>> {
        let rows = ids.len();
        if rows == 0 {
            return Ok(Vec::new());
        }
        let (input, mask, seq) = pad(ids, self.pad_id());
        let probabilities = self.graph.run(input, mask, rows, seq)?;
        if probabilities.len() != rows * self.labels.len() {
            bail!(
                "the classifier gave {} probabilities for {rows} rows of {} classes",
                probabilities.len(),
                self.labels.len()
            );
        }
        Ok(probabilities)
    }

    /// Probabilities [rows × classes] of many texts, in their order: sorted
    /// by length into batches of at most [`BATCH_TOKENS`] padded tokens.
    pub fn score(&mut self, texts: &[String]) -> Result<Vec<f32>> {
        let ids = self.tokenize(texts)?;
        Ok(self.score_ids(&ids, BATCH_TOKENS)?.0)
    }

    /// Probabilities [rows × classes] of tokenized rows, in their order, in
    /// batches of at most `batch_tokens` padded tokens; and how many ONNX
    /// Runtime calls that took.
    pub fn score_ids(&mut self, ids: &[Ids], batch_tokens: usize) -> Result<(Vec<f32>, usize)> {
        let k = self.labels.len();
        score_in_batches(ids, k, batch_tokens, |rows| self.score_batch(rows))
    }

    /// The id padding fills with (the tokenizer's own).
    pub fn pad_id(&self) -> i64 {
        self.tokenizer.get_padding().map_or(0, |p| p.pad_id as i64)
    }
}

/// `score_batch` ([batch × k] for padded-together rows) over every row of
/// `ids`, sorted by length into batches of at most `batch_tokens` padded
/// tokens ([`plan`]); the results in the rows' order, and the batch count.
/// What the export's parity check and the server batch with, so a row is
/// scored in the same company by each.
pub fn score_in_batches(
    ids: &[Ids],
    k: usize,
    batch_tokens: usize,
    mut score_batch: impl FnMut(&[&Ids]) -> Result<Vec<f32>>,
) -> Result<(Vec<f32>, usize)> {
    let lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
    let batches = plan(&lengths, batch_tokens);
    let mut out = vec![0f32; ids.len() * k];
    for batch in &batches {
        let rows: Vec<&Ids> = batch.iter().map(|&i| &ids[i]).collect();
        let probabilities = score_batch(&rows)?;
        for (j, &i) in batch.iter().enumerate() {
            out[i * k..(i + 1) * k].copy_from_slice(&probabilities[j * k..(j + 1) * k]);
        }
    }
    Ok((out, batches.len()))
}

/// `rows` padded with `pad_id` to the longest: (ids, mask, sequence length),
/// row-major [rows × sequence].
pub fn pad(rows: &[&Ids], pad_id: i64) -> (Vec<i64>, Vec<i64>, usize) {
    let seq = rows.iter().map(|r| r.len()).max().unwrap_or(0).max(1);
    let mut input = vec![pad_id; rows.len() * seq];
    let mut mask = vec![0i64; rows.len() * seq];
    for (r, row) in rows.iter().enumerate() {
        input[r * seq..r * seq + row.len()].copy_from_slice(row);
        mask[r * seq..r * seq + row.len()].fill(1);
    }
    (input, mask, seq)
}

/// Row indices by length into batches of at most `batch_tokens` padded
/// tokens and [`MAX_BATCH_ROWS`] rows (the embed stage's batching).
fn plan(lengths: &[usize], batch_tokens: usize) -> Vec<Vec<usize>> {
    embed::batching::plan(lengths, batch_tokens, MAX_BATCH_ROWS)
}

/// The most probable class of each row of `probabilities` [rows × k].
pub fn argmax(probabilities: &[f32], k: usize) -> Vec<usize> {
    probabilities
        .chunks(k)
        .map(|p| (0..k).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap_or(0))
        .collect()
}
