//! Looking back over the store: every report result is one run (it is keyed
//! by every stage's parameters), with its parameters, its test and
//! validation figures, and how it differs from the current configuration
//! (`runs`) or from another run (`diff`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use runner::manifest::{LockFile, Manifest};
use serde::Serialize;
use serde_json::Value;
use tables::training::EpochRow;

/// One stored report result and what produced it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// The report result's key.
    pub key: String,
    /// When the report was made (RFC 3339, UTC).
    pub finished: String,
    /// Whether it is the current report.
    pub current: bool,
    /// `stage.key` → value, as the report was keyed.
    pub params: BTreeMap<String, Value>,
    pub metrics: RunMetrics,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunMetrics {
    pub test_accuracy: Option<f64>,
    pub test_macro_f1: Option<f64>,
    /// On the test rows that share nothing with training (the audit).
    pub held_out_rows: Option<u64>,
    pub held_out_accuracy: Option<f64>,
    /// The head's kept epoch.
    pub best_epoch: Option<usize>,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub head_key: Option<String>,
}

/// Every report result in `artifacts`' store, newest first.
pub fn runs(artifacts: &Path) -> Result<Vec<RunRecord>> {
    // Refuses a link in the store, as every command does.
    runner::store::Store::open_read_only(artifacts)?;
    let store = artifacts.join(".store");
    let current = LockFile::load(&artifacts.join("pipeline.lock"))
        .ok()
        .and_then(|lock| lock.stages.get("report").map(|m| m.key.clone()));
    let heads = manifests(&store.join("head"))?;
    let mut out = Vec::new();
    for report in manifests(&store.join("report"))? {
        let dir = store.join("report").join(&report.key);
        let mut metrics = RunMetrics::default();
        if let Ok(test) = test_figures(&dir) {
            metrics.test_accuracy = test.accuracy;
            metrics.test_macro_f1 = test.macro_f1;
            metrics.held_out_rows = test.held_out_rows;
            metrics.held_out_accuracy = test.held_out_accuracy;
        }
        // The head result whose history this report was made from.
        let history = report.inputs.get("head/history.parquet").map(|i| &i.digest);
        let head = heads.iter().find(|h| {
            h.outputs.get("history.parquet").map(|o| &o.digest) == history && history.is_some()
        });
        if let Some(head) = head {
            let path = store.join("head").join(&head.key).join("history.parquet");
            if let Ok((_, kept)) = kept_epoch(&path) {
                metrics.best_epoch = Some(kept.epoch);
                metrics.val_loss = Some(kept.val_loss);
                metrics.val_accuracy = Some(kept.val_accuracy);
            }
            metrics.head_key = Some(head.key.clone());
        }
        out.push(RunRecord {
            current: current.as_deref() == Some(report.key.as_str()),
            params: crate::stages::flat_values(&report.params),
            finished: report.finished.clone(),
            key: report.key,
            metrics,
        });
    }
    out.sort_by(|a, b| b.finished.cmp(&a.finished).then(a.key.cmp(&b.key)));
    Ok(out)
}

/// A report result's test figures, from its `metrics.json`.
#[derive(Debug, Clone, Default)]
pub struct TestFigures {
    pub accuracy: Option<f64>,
    pub macro_f1: Option<f64>,
    /// On the test rows that share nothing with training (the audit).
    pub held_out_rows: Option<u64>,
    pub held_out_accuracy: Option<f64>,
}

/// The test figures of the report result in `report_dir`.
pub fn test_figures(report_dir: &Path) -> Result<TestFigures> {
    let path = report_dir.join("metrics.json");
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let m: Value =
        serde_json::from_slice(&bytes).with_context(|| format!("{}: not JSON", path.display()))?;
    Ok(TestFigures {
        accuracy: m["accuracy"].as_f64(),
        macro_f1: m["macro_f1"].as_f64(),
        held_out_rows: m["test_without_train_overlap"]["rows"].as_u64(),
        held_out_accuracy: m["test_without_train_overlap"]["accuracy"].as_f64(),
    })
}

/// A head result's history (`history.parquet`) and the epoch it kept.
pub fn kept_epoch(history: &Path) -> Result<(Vec<EpochRow>, EpochRow)> {
    let (rows, best) = tables::training::read_history(history)?;
    let kept = rows
        .iter()
        .find(|e| e.epoch == best)
        .cloned()
        .with_context(|| format!("{}: no epoch {best}", history.display()))?;
    Ok((rows, kept))
}

/// The manifests of a stage's stored results (unreadable entries skipped:
/// `status` and the runner deal with damage).
fn manifests(stage_dir: &Path) -> Result<Vec<Manifest>> {
    let Ok(entries) = std::fs::read_dir(stage_dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", stage_dir.display()))?;
        if let Some(m) = Manifest::read(&entry.path()) {
            out.push(m);
        }
    }
    Ok(out)
}

/// The run named by `which`: `current`, or a unique prefix (4+ characters)
/// of a report key.
pub fn find<'a>(runs: &'a [RunRecord], which: &str) -> Result<&'a RunRecord> {
    if which == "current" {
        return runs
            .iter()
            .find(|r| r.current)
            .context("no current report result; run `cargo xtask run-pipeline` first");
    }
    if which.len() < 4 {
        bail!(
            "run {which:?}: give `current` or at least 4 characters of a key (`cargo xtask runs` lists them)"
        );
    }
    let matching: Vec<&RunRecord> = runs.iter().filter(|r| r.key.starts_with(which)).collect();
    match matching.as_slice() {
        [one] => Ok(one),
        [] => {
            bail!("no stored run has a key starting with {which:?}; `cargo xtask runs` lists them")
        }
        many => bail!(
            "{} stored runs have keys starting with {which:?}; give more characters",
            many.len()
        ),
    }
}

/// The parameters that differ between `a` and `b` (absent on one side: `None`).
pub fn param_diff<'a>(
    a: &'a BTreeMap<String, Value>,
    b: &'a BTreeMap<String, Value>,
) -> Vec<(&'a str, Option<&'a Value>, Option<&'a Value>)> {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| (k.as_str(), a.get(k), b.get(k)))
        .collect()
}

/// `value`, or `-` when absent.
pub fn shown(value: Option<&Value>) -> String {
    match value {
        None => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The metrics of a run, as (name, value) pairs for printing.
pub fn metric_pairs(m: &RunMetrics) -> Vec<(&'static str, String)> {
    let f = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
    vec![
        ("val loss", f(m.val_loss)),
        ("val accuracy", f(m.val_accuracy)),
        ("test accuracy", f(m.test_accuracy)),
        ("test macro-F1", f(m.test_macro_f1)),
        (
            "held-out accuracy",
            match (m.held_out_accuracy, m.held_out_rows) {
                (Some(a), Some(n)) => format!("{a:.4} ({n} rows)"),
                _ => "-".into(),
            },
        ),
    ]
}
