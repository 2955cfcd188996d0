//! `[audit]` in pipeline.toml.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Folds of the out-of-fold probabilities (stratified by class).
    #[serde(default = "d_folds")]
    pub folds: usize,
    /// What is trained on each fold's other rows.
    #[serde(default)]
    pub probe: Probe,
    /// The linear probe's L2 penalty (on the summed log-loss, as
    /// scikit-learn's `1 / C`).
    #[serde(default = "d_l2")]
    pub l2: f64,
    /// The linear probe's L-BFGS iterations. Measured on SST-2 (37,715 rows
    /// per fit): 20 iterations 5.6 s, held-out fold accuracy 0.8393; 50
    /// iterations 12.5 s, 0.8390.
    #[serde(default = "d_iterations")]
    pub linear_iterations: u64,
    /// The linear probe fits in memory (linfa's L-BFGS, each fold's
    /// training rows as one f64 matrix: 1.2 GB at 200,000 rows, H = 384)
    /// while the training split has at most this many rows; past it, by
    /// minibatches of the features read from disk (`streamed_probe`).
    #[serde(default = "d_probe_rows")]
    pub probe_in_memory_rows: usize,
    /// A held-out row whose features have at least this cosine similarity
    /// with a row of an earlier split is a near-duplicate of it.
    #[serde(default = "d_cosine")]
    pub near_duplicate_cosine: f64,
    /// A held-out row that contains an earlier split's sentence of at least
    /// this many words overlaps it (`contains`); shorter phrases are common
    /// words, not leaks.
    #[serde(default = "d_words")]
    pub min_contained_words: usize,
    /// Near-duplicates are searched exactly (every pair) while the earlier
    /// split has at most this many rows; past it, approximately (clusters,
    /// `search_*`). At 100,000 rows an exact search costs each held-out row
    /// 100,000 dot products, three times what the clusters cost it at the
    /// defaults, and the held split's time grows with the earlier's rows.
    #[serde(default = "d_exact_rows")]
    pub exact_search_rows: usize,
    /// Past `exact_search_rows`: earlier rows per cluster (one cluster per
    /// this many rows).
    #[serde(default = "d_cluster_rows")]
    pub search_cluster_rows: usize,
    /// Past `exact_search_rows`: clusters each held-out row is compared
    /// with, nearest first. More find more of the exact nearest rows and
    /// cost proportionally more.
    #[serde(default = "d_probes")]
    pub search_probes: usize,
    /// Past `exact_search_rows`: the recall the number of clusters searched
    /// is chosen for. From `search_probes` up (half again each step, at most
    /// `search_max_probes`), the fewest whose search finds the exact most
    /// similar row of this fraction of `recall_sample` tuning rows. With the
    /// clusters' size fixed, more clusters (more rows) have more borders a
    /// row's neighbour lies across: 16 probes found 0.98 at 86 clusters and
    /// 0.96 at 1,368 (BENCHMARKS.md). 0 keeps `search_probes`.
    #[serde(default = "d_search_recall")]
    pub search_recall: f64,
    /// Past `exact_search_rows`: at most this many clusters searched per
    /// held-out row, whatever `search_recall` asks (the search's cost grows
    /// with it).
    #[serde(default = "d_max_probes")]
    pub search_max_probes: usize,
    /// Past `exact_search_rows`: held-out rows (seeded) also searched
    /// exactly, to measure the approximate search's recall; as many other
    /// ones to choose the clusters searched (`search_recall`).
    #[serde(default = "d_recall_sample")]
    pub recall_sample: usize,
    /// Seeds the fold assignment, the clusters and the recall sample.
    #[serde(default = "d_seed")]
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    /// Multinomial logistic regression on the features: seconds on SST-2.
    #[default]
    Linear,
    /// The `[head]` MLP with its parameters, once per fold: the pipeline's
    /// own classifier, `folds` times its training cost.
    Head,
}

/// More folds only repeat the probe's training (each fold is one fit on
/// the other rows): past this the audit costs more than the head.
pub const MAX_FOLDS: usize = 100;

fn d_folds() -> usize {
    5
}
fn d_l2() -> f64 {
    1.0
}
fn d_iterations() -> u64 {
    20
}
fn d_cosine() -> f64 {
    0.95
}
fn d_words() -> usize {
    3
}
fn d_probe_rows() -> usize {
    200_000
}
fn d_exact_rows() -> usize {
    100_000
}
fn d_cluster_rows() -> usize {
    2048
}
fn d_probes() -> usize {
    16
}
fn d_search_recall() -> f64 {
    0.97
}
fn d_max_probes() -> usize {
    128
}
fn d_recall_sample() -> usize {
    1000
}
fn d_seed() -> u64 {
    2021
}

impl Default for AuditParams {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}

impl AuditParams {
    /// Refuses values that cannot work, naming the parameter.
    pub fn check(&self) -> anyhow::Result<()> {
        if !(2..=MAX_FOLDS).contains(&self.folds) {
            anyhow::bail!(
                "audit.folds = {}; must be in [2, {MAX_FOLDS}] (out-of-fold probabilities need \
                 at least 2 folds; each fold trains one probe)",
                self.folds
            );
        }
        if !(self.l2 >= 0.0 && self.l2.is_finite()) {
            anyhow::bail!("audit.l2 = {}; must be a finite number >= 0", self.l2);
        }
        if self.linear_iterations == 0 {
            anyhow::bail!("audit.linear_iterations = 0; must be at least 1");
        }
        if !(self.near_duplicate_cosine > 0.0 && self.near_duplicate_cosine <= 1.0) {
            anyhow::bail!(
                "audit.near_duplicate_cosine = {}; must be in (0, 1] (1 = identical features only)",
                self.near_duplicate_cosine
            );
        }
        if self.min_contained_words == 0 {
            anyhow::bail!("audit.min_contained_words = 0; must be at least 1");
        }
        if self.search_cluster_rows == 0 || self.search_probes == 0 {
            anyhow::bail!(
                "audit.search_cluster_rows = {}, audit.search_probes = {}; both must be at least 1",
                self.search_cluster_rows,
                self.search_probes
            );
        }
        if !(0.0..=1.0).contains(&self.search_recall) {
            anyhow::bail!(
                "audit.search_recall = {}; must be in [0, 1] (0 keeps audit.search_probes)",
                self.search_recall
            );
        }
        if self.search_max_probes < self.search_probes {
            anyhow::bail!(
                "audit.search_max_probes = {} is under audit.search_probes = {}; raise it",
                self.search_max_probes,
                self.search_probes
            );
        }
        Ok(())
    }
}
