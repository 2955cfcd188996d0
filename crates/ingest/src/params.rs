//! `[ingest]` in pipeline.toml.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestParams {
    /// The labelled CSV (relative paths are relative to the pipeline file).
    pub csv: PathBuf,
    #[serde(default = "default_text_column")]
    pub text_column: String,
    #[serde(default = "default_label_column")]
    pub label_column: String,
    /// String label -> class id. Empty: labels are integers 0..K-1.
    #[serde(default)]
    pub labels: BTreeMap<String, i64>,
    /// K for integer labels; absent: one more than the largest label seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_classes: Option<i64>,
    #[serde(default = "default_train")]
    pub train_fraction: f64,
    #[serde(default = "default_val_test")]
    pub val_fraction: f64,
    #[serde(default = "default_val_test")]
    pub test_fraction: f64,
    #[serde(default = "default_seed")]
    pub seed: u32,
    #[serde(default)]
    pub empty_sentences: EmptySentences,
    /// Longer sentences are refused, to bound memory (broken quoting is
    /// caught by the quoting check, not by length).
    #[serde(default = "default_max_sentence_chars")]
    pub max_sentence_chars: usize,
    /// Rows whose text repeats an earlier row's (under `ingest::text`'s
    /// normalisation): kept ("none") or dropped before splitting ("exact").
    /// Left out of the key when "none", so results from before it existed
    /// stay valid.
    #[serde(default, skip_serializing_if = "Dedup::is_none")]
    pub dedup: Dedup,
    /// A column naming each row's group (e.g. the review a phrase came
    /// from): every row of a group lands in one split, and the split is
    /// stratified by class over groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_column: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dedup {
    /// Keep every row.
    #[default]
    None,
    /// Keep the first row of each normalised text; drop the rest.
    Exact,
}

impl Dedup {
    fn is_none(&self) -> bool {
        *self == Dedup::None
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmptySentences {
    /// Refuse the file, naming the first empty sentence's line.
    #[default]
    Error,
    /// Leave such rows out and say how many.
    Drop,
}

fn default_text_column() -> String {
    "sentence".into()
}
fn default_label_column() -> String {
    "label".into()
}
fn default_train() -> f64 {
    0.70
}
fn default_val_test() -> f64 {
    0.15
}
fn default_max_sentence_chars() -> usize {
    1_000_000
}
fn default_seed() -> u32 {
    2021
}

impl IngestParams {
    /// Refuses values that cannot work, naming the key, the value and what
    /// is allowed (before any stage runs).
    pub fn check(&self) -> anyhow::Result<()> {
        crate::check_fractions(self)?;
        if self.max_sentence_chars == 0 {
            anyhow::bail!("ingest.max_sentence_chars = 0; must be at least 1");
        }
        if let Some(k) = self.num_classes
            && k < 2
        {
            anyhow::bail!("ingest.num_classes = {k}; a classifier needs at least 2 classes");
        }
        if self.text_column == self.label_column {
            anyhow::bail!(
                "ingest.text_column and ingest.label_column are both {:?}; they must name two columns",
                self.text_column
            );
        }
        if let Some((name, &id)) = self.labels.iter().find(|(_, id)| **id < 0) {
            anyhow::bail!("ingest.labels.{name} = {id}; class ids must be >= 0");
        }
        Ok(())
    }
}
