//! export: the trained classifier as one folder that is enough to serve.
//!
//! - `classifier.onnx`: the model stage's encoder graph, pooling, the
//!   trained MLP and a softmax (`model::convert::classifier`); inputs
//!   `input_ids`, `attention_mask`, output `probabilities`.
//! - `tokenizer.json`: the model's tokenizer with truncation to the
//!   pipeline's `max_len` and batch padding set inside it.
//! - `labels.json`: class id → name.
//! - `model_card.md`: data, split, every stage's parameters, test metrics,
//!   the keys of the results it was built from.
//!
//! Before anything is kept, the test split is scored again from these files
//! alone (tokenized from its text, [`folder::Classifier`]) and must give the
//! head stage's predictions: every argmax equal, every probability within
//! [`TOLERANCE`], or the stage fails naming the rows.

mod card;
pub mod folder;
mod parity;
mod tokenizer;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use serde::{Deserialize, Serialize};

pub use card::CardFacts;
pub use folder::Classifier;
pub use model::convert::classifier::Pool;
pub use parity::{PARITY_ROWS, Parity, stratified_sample};

pub const CLASSIFIER: &str = "classifier.onnx";
pub const TOKENIZER: &str = "tokenizer.json";
pub const LABELS: &str = "labels.json";
pub const CARD: &str = "model_card.md";
pub const OUTPUTS: [&str; 4] = [CLASSIFIER, TOKENIZER, LABELS, CARD];

/// Largest difference allowed between a probability scored from the
/// exported files and the head stage's. The two paths differ only in float
/// summation order (pooling in the graph against in Rust, the MLP in ONNX
/// Runtime against burn): measured differences are ~1e-7.
pub const TOLERANCE: f32 = 1e-4;

/// `labels.json`: class id → name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Labels(pub BTreeMap<usize, String>);

impl Labels {
    pub fn new(names: &[String]) -> Labels {
        Labels(names.iter().cloned().enumerate().collect())
    }

    /// Names by class id; fails unless the ids are exactly 0..K-1.
    pub fn into_names(self) -> Result<Vec<String>> {
        ensure!(
            !self.0.is_empty() && self.0.keys().copied().eq(0..self.0.len()),
            "class ids are not 0..K-1: {:?}",
            self.0.keys().collect::<Vec<_>>()
        );
        Ok(self.0.into_values().collect())
    }
}

/// `[export]` in pipeline.toml.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// Test rows the parity check scores: a stratified sample, or every
    /// row when the test split has no more.
    #[serde(default = "default_parity_rows")]
    pub parity_rows: usize,
}

fn default_parity_rows() -> usize {
    PARITY_ROWS
}

impl Default for ExportParams {
    fn default() -> Self {
        ExportParams {
            parity_rows: PARITY_ROWS,
        }
    }
}

impl ExportParams {
    pub fn check(&self) -> Result<()> {
        if self.parity_rows == 0 {
            anyhow::bail!(
                "parity_rows = 0; the export checks at least one test row (default {PARITY_ROWS})"
            );
        }
        Ok(())
    }
}

/// What the export is made from (paths of the upstream results).
pub struct ExportInputs<'a> {
    pub model: &'a Path,
    pub tokenizer: &'a Path,
    /// Tokens per sentence the pipeline trained with (encode's metadata).
    pub max_len: usize,
    pub pool: Pool,
    /// The model stage's precision (how the parity check is made).
    pub precision: model::Precision,
    pub head: &'a Path,
    pub classes: &'a [String],
    /// ingest/test.parquet: the test split's text.
    pub test_split: &'a Path,
    /// head/test_predictions.parquet: what the exported files must reproduce.
    pub test_predictions: &'a Path,
    /// Test rows the parity check scores (a stratified sample; all of them
    /// below this): `export.parity_rows`.
    pub parity_rows: usize,
    pub card: CardFacts<'a>,
}

/// The export stage: writes [`OUTPUTS`] into `out_dir`, then checks them.
/// Returns notes for the lock file.
pub fn run(inputs: &ExportInputs, out_dir: &Path) -> Result<Vec<String>> {
    let weights = head::HeadWeights::read(inputs.head)?;
    ensure!(
        weights.shape.classes == inputs.classes.len(),
        "the head has {} classes, the data {}: rerun the pipeline",
        weights.shape.classes,
        inputs.classes.len()
    );
    let shape = weights.shape;
    let mlp = model::convert::classifier::Mlp {
        input: weights.shape.input,
        hidden: weights.shape.hidden,
        classes: weights.shape.classes,
        fc1_weight: weights.fc1_weight,
        fc1_bias: weights.fc1_bias,
        fc2_weight: weights.fc2_weight,
        fc2_bias: weights.fc2_bias,
    };
    let encoder = std::fs::read(inputs.model)
        .with_context(|| format!("cannot read {}", inputs.model.display()))?;
    let metadata = vec![
        ("labels".to_string(), serde_json::to_string(inputs.classes)?),
        ("max_len".to_string(), inputs.max_len.to_string()),
        (
            "pooling".to_string(),
            format!("{:?}", inputs.pool).to_lowercase(),
        ),
    ];
    let graph = model::convert::classifier::classifier(&encoder, inputs.pool, &mlp, metadata)
        .with_context(|| format!("exporting {}", inputs.model.display()))?;
    std::fs::write(out_dir.join(CLASSIFIER), &graph)?;
    tokenizer::write(inputs.tokenizer, inputs.max_len, &out_dir.join(TOKENIZER))?;
    let labels = Labels::new(inputs.classes);
    std::fs::write(out_dir.join(LABELS), serde_json::to_vec_pretty(&labels)?)?;

    let checked = parity::check(inputs, out_dir)?;
    std::fs::write(
        out_dir.join(CARD),
        card::render(&inputs.card, inputs, shape, &checked),
    )?;
    let mut notes = vec![format!(
        "{CLASSIFIER}: {:.1} MB; {}",
        graph.len() as f64 / 1e6,
        checked.summary()
    )];
    notes.extend(checked.against_head.clone());
    Ok(notes)
}
