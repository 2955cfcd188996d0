//! `sweep`: the cartesian product of `--set KEY=V1,V2,...` lists, each
//! variant run through the normal runner (shared upstream results cached or
//! restored, a variant already in the store restored), then one table sorted
//! by a **validation** figure, written to `artifacts/sweeps/<name>.parquet`
//! and `<name>.html`.
//!
//! Variants run up to the report (the export's parity check is a deployment
//! step, not an experiment's). Afterwards the base configuration (the fixed
//! `--set`s only) is current again, or with `--select best` the best variant,
//! run whole, export included.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use runner::{Outcome, RunOptions, StageReport};
use tables::sweep::SweepRow;

use crate::{ModelFetch, config};

/// How variants are ranked: both on the validation split, never on test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RankBy {
    /// The kept epoch's validation loss, lowest first (what the head keeps by).
    ValLoss,
    /// The kept epoch's validation accuracy, highest first (ties: lower loss).
    ValAccuracy,
}

pub struct SweepOptions {
    /// A TOML file whose `[sweep]` table maps parameters to value lists.
    pub file: Option<PathBuf>,
    pub name: String,
    pub by: RankBy,
    pub select_best: bool,
}

/// One `--set` split into its key and its comma-separated values.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub key: String,
    pub values: Vec<String>,
}

/// The overrides that vary (axes: more than one value) and those that do not.
pub fn axes(overrides: &[String]) -> Result<(Vec<Axis>, Vec<String>)> {
    let (mut axes, mut fixed) = (Vec::new(), Vec::new());
    for assignment in overrides {
        let Some((key, values)) = assignment.split_once('=') else {
            bail!("--set {assignment}: expected STAGE.KEY=VALUE or STAGE.KEY=V1,V2,...");
        };
        let values = split_top_level(values);
        if values.iter().any(|v| v.trim().is_empty()) {
            bail!("--set {assignment}: an empty value in the list");
        }
        if values.len() == 1 {
            fixed.push(assignment.clone());
        } else {
            axes.push(Axis {
                key: key.trim().to_string(),
                values,
            });
        }
    }
    Ok((axes, fixed))
}

/// The `[sweep]` table of `path` as axes: `"head.learning_rate" = [1e-4, 1e-3]`
/// (each value as a `--set` would write it).
pub fn file_axes(path: &Path) -> Result<Vec<Axis>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the sweep file {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
    let Some(toml::Value::Table(sweep)) = table.get("sweep") else {
        bail!(
            "{}: no [sweep] table; write e.g. [sweep] followed by \"head.learning_rate\" = [1e-4, 1e-3]",
            path.display()
        );
    };
    let mut axes = Vec::new();
    for (key, values) in sweep {
        let toml::Value::Array(values) = values else {
            bail!(
                "{}: [sweep] {key:?} must be a list of values, e.g. [1e-4, 1e-3]",
                path.display()
            );
        };
        if values.is_empty() {
            bail!("{}: [sweep] {key:?} is an empty list", path.display());
        }
        axes.push(Axis {
            key: key.clone(),
            values: values.iter().map(|v| v.to_string()).collect(),
        });
    }
    Ok(axes)
}

/// Splits at commas outside quotes and brackets: `1e-4,1e-3` is two values,
/// `[1, 2]` and `"a,b"` are one.
fn split_top_level(text: &str) -> Vec<String> {
    let (mut parts, mut current) = (Vec::new(), String::new());
    let (mut depth, mut quote) = (0i32, None::<char>);
    for c in text.chars() {
        match (quote, c) {
            (Some(q), _) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(std::mem::take(&mut current).trim().to_string());
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current.trim().to_string());
    parts
}

/// Every combination of the axes' values, as `KEY=VALUE` lists (the first
/// axis varies slowest).
pub fn variants(axes: &[Axis]) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new()];
    for axis in axes {
        out = out
            .into_iter()
            .flat_map(|prefix: Vec<String>| {
                axis.values.iter().map(move |v| {
                    let mut next = prefix.clone();
                    next.push(format!("{}={v}", axis.key));
                    next
                })
            })
            .collect();
    }
    out
}

/// What a sweep did.
pub struct Sweep {
    /// The swept parameters, in axis order.
    pub keys: Vec<String>,
    /// The `--set`s every variant shared.
    pub fixed: Vec<String>,
    /// Best first.
    pub rows: Vec<SweepRow>,
    /// `artifacts/sweeps/<name>.parquet` and `.html`.
    pub table: PathBuf,
    pub page: PathBuf,
}

/// Runs the sweep.
pub fn run(
    config_path: &Path,
    overrides: &[String],
    artifacts: &Path,
    options: &SweepOptions,
) -> Result<Sweep> {
    check_name(&options.name)?;
    // Its files are written there at the end: a link would lead outside
    // the artifacts folder, so it is refused before any variant runs.
    runner::store::refuse_link(&artifacts.join("sweeps"))?;
    let (mut axes, fixed) = axes(overrides)?;
    if let Some(file) = &options.file {
        axes.extend(file_axes(file)?);
    }
    if axes.is_empty() {
        bail!(
            "sweep: no parameter to vary; give at least one --set STAGE.KEY=V1,V2 (comma-separated values) or --file with a [sweep] table"
        );
    }
    let variants = variants(&axes);
    eprintln!(
        "sweep {}: {} variants of {}",
        options.name,
        variants.len(),
        axes.iter()
            .map(|a| a.key.as_str())
            .collect::<Vec<_>>()
            .join(" × ")
    );
    let mut rows = Vec::new();
    for (i, sets) in variants.iter().enumerate() {
        let started = Instant::now();
        let mut all = fixed.clone();
        all.extend(sets.iter().cloned());
        let row = run_and_measure(config_path, &all, artifacts, i, sets)
            .unwrap_or_else(|e| SweepRow::failed(i, sets.clone(), format!("{e:#}")));
        eprintln!(
            "variant {}/{} {}: {} in {:.2}s",
            i + 1,
            variants.len(),
            sets.join(" "),
            row.status,
            started.elapsed().as_secs_f64()
        );
        rows.push(row);
    }
    rank(&mut rows, options.by);

    // Each written to a temporary name and renamed: a killed sweep leaves
    // the previous file or the new one, never half of one.
    let dir = artifacts.join("sweeps");
    let keys: Vec<String> = axes.iter().map(|a| a.key.clone()).collect();
    let table = dir.join(format!("{}.parquet", options.name));
    runner::write_atomic(&table, &tables::sweep::encode(&keys, &rows)?)?;
    let histories: Vec<(String, Vec<tables::training::EpochRow>)> = rows
        .iter()
        .filter_map(|r| Some((format!("#{}", r.variant + 1), r.history.clone()?)))
        .collect();
    let page = dir.join(format!("{}.html", options.name));
    let html = report::sweep_page(&options.name, &keys, &rows, &histories)?;
    runner::write_atomic(&page, html.as_bytes())?;

    // What is current afterwards: the best variant (whole: export too), or
    // the base configuration again.
    let best = rows.iter().find(|r| r.failure.is_none());
    match (options.select_best, best) {
        (true, Some(best)) => {
            let mut all = fixed.clone();
            all.extend(best.sets.iter().cloned());
            run_variant(config_path, &all, artifacts, None)
                .context("selecting the best variant")?;
        }
        (true, None) => bail!(
            "sweep {}: every variant failed; nothing to select",
            options.name
        ),
        (false, _) => {
            // Quiet when the base is in the store; it runs what it must otherwise.
            if let Err(e) = run_variant(config_path, &fixed, artifacts, Some("report")) {
                eprintln!("warning: the base configuration could not be made current again: {e:#}");
            }
        }
    }
    Ok(Sweep {
        keys,
        fixed,
        rows,
        table,
        page,
    })
}

/// Names become file names: plain ones only.
fn check_name(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if !plain {
        bail!(
            "sweep --name {name:?}: use letters, digits, '-', '_' and '.' (it names files in artifacts/sweeps/)"
        );
    }
    Ok(())
}

fn run_variant(
    config_path: &Path,
    overrides: &[String],
    artifacts: &Path,
    until: Option<&str>,
) -> Result<Vec<StageReport>> {
    let (pipeline, options) = variant_pipeline(config_path, overrides, until)?;
    pipeline.run(artifacts, &options, &mut |_| {})
}

fn variant_pipeline(
    config_path: &Path,
    overrides: &[String],
    until: Option<&str>,
) -> Result<(runner::Pipeline, RunOptions)> {
    let loaded = config::load(config_path, overrides)?;
    let pipeline = crate::build_pipeline(&loaded, ModelFetch::Allowed)?;
    let options = RunOptions {
        until: until.map(String::from),
        wait_for_lock: true,
        ..RunOptions::default()
    };
    pipeline.check_options(&options)?;
    Ok((pipeline, options))
}

/// Runs one variant up to the report and measures it before the run lock
/// is let go: a run started meanwhile (another configuration) waits, so
/// the figures are those of the variant's own results.
fn run_and_measure(
    config_path: &Path,
    overrides: &[String],
    artifacts: &Path,
    variant: usize,
    sets: &[String],
) -> Result<SweepRow> {
    let (pipeline, options) = variant_pipeline(config_path, overrides, Some("report"))?;
    let lock = runner::RunLock::acquire(artifacts, true)?;
    let reports = pipeline.run_holding(&lock, artifacts, &options, &mut |_| {})?;
    measure(artifacts, variant, sets, &reports)
}

/// The figures of exactly the results a variant's run produced (their
/// stage keys, read from the store), never whatever is current.
fn measure(
    artifacts: &Path,
    variant: usize,
    sets: &[String],
    reports: &[StageReport],
) -> Result<SweepRow> {
    let store = runner::store::Store::open_read_only(artifacts)?;
    let entry = |stage: &str| -> Result<PathBuf> {
        let key = reports
            .iter()
            .find(|r| r.stage == stage)
            .and_then(|r| r.key.as_deref())
            .with_context(|| format!("the variant's run has no {stage} result"))?;
        Ok(store.entry_dir(stage, key))
    };
    let head_dir = entry("head")?;
    let (history, kept) = crate::runs::kept_epoch(&head_dir.join("history.parquet"))?;
    let val_macro_f1 = val_macro_f1(&entry("ingest")?, &entry("embed")?, &head_dir)?;
    let test = crate::runs::test_figures(&entry("report")?)?;
    let head_report = reports
        .iter()
        .find(|r| r.stage == "head")
        .context("the variant's run has no head result")?;
    let head_key = head_report.key.clone().unwrap_or_default();
    let head = store
        .manifest("head", &head_key)
        .with_context(|| format!("the head result {head_key} is not in the store"))?;
    let head_outcome = head_report.outcome.label();
    // Stages other than the head (and the report, which follows it) that
    // ran: the variant's cost beyond the head.
    let ran: Vec<&str> = reports
        .iter()
        .filter(|r| r.outcome == Outcome::Ran && r.stage != "head" && r.stage != "report")
        .map(|r| r.stage.as_str())
        .collect();
    Ok(SweepRow {
        variant,
        sets: sets.to_vec(),
        rank: 0,
        status: if ran.is_empty() {
            format!("head {head_outcome}")
        } else {
            format!("head {head_outcome}; also ran {}", ran.join(", "))
        },
        failure: None,
        best_epoch: Some(kept.epoch),
        val_loss: Some(kept.val_loss),
        val_accuracy: Some(kept.val_accuracy),
        val_macro_f1: Some(val_macro_f1),
        test_accuracy: test.accuracy,
        test_macro_f1: test.macro_f1,
        held_out_accuracy: test.held_out_accuracy,
        head_seconds: Some(head.duration_s),
        head_key: Some(head.key.clone()),
        history: Some(history),
    })
}

/// Macro-F1 of a head (its store entry) on the validation features it was
/// trained beside (the head's history keeps only loss and accuracy).
fn val_macro_f1(ingest: &Path, embed: &Path, head: &Path) -> Result<f64> {
    let classes = crate::stages::split_classes(&ingest.join("train.parquet"))?;
    let val = tables::features::read(&embed.join("val.parquet"))?;
    let device = head::Device::flex();
    let (head, shape) = head::Head::load(&head.join("head.safetensors"), &device)?;
    let probabilities = head.probabilities(val.features, val.labels.len(), shape.input, &device)?;
    // The head stage's convention for its test predictions.
    let preds: Vec<i64> = export::folder::argmax(&probabilities, shape.classes)
        .into_iter()
        .map(|c| c as i64)
        .collect();
    Ok(report::metrics(&val.labels, &preds, &classes).macro_f1)
}

/// Best first by `by`; failed variants last; `rank` 1.. set.
fn rank(rows: &mut [SweepRow], by: RankBy) {
    let score = |r: &SweepRow| -> (bool, f64, f64) {
        match (r.val_loss, r.val_accuracy) {
            (Some(loss), Some(acc)) => match by {
                RankBy::ValLoss => (false, loss, -acc),
                RankBy::ValAccuracy => (false, -acc, loss),
            },
            _ => (true, 0.0, 0.0),
        }
    };
    rows.sort_by(|a, b| {
        let (sa, sb) = (score(a), score(b));
        sa.0.cmp(&sb.0)
            .then(sa.1.total_cmp(&sb.1))
            .then(sa.2.total_cmp(&sb.2))
            .then(a.variant.cmp(&b.variant))
    });
    for (i, r) in rows.iter_mut().enumerate() {
        r.rank = i + 1;
    }
}

/// The sweep's table as text, best first.
pub fn table_text(keys: &[String], rows: &[SweepRow]) -> String {
    let mut out = String::new();
    let mut header = vec!["rank".to_string()];
    header.extend(keys.iter().cloned());
    header.extend(tables::sweep::FIGURES.map(String::from));
    header.extend(["head s", "status"].map(String::from));
    let mut lines = vec![header];
    for r in rows {
        let mut line = vec![r.rank.to_string()];
        line.extend(
            keys.iter()
                .map(|k| r.value_of(k).unwrap_or("-").to_string()),
        );
        line.extend(r.figures());
        line.push(r.head_time());
        line.push(match &r.failure {
            Some(e) => format!("failed: {e}"),
            None => r.status.clone(),
        });
        lines.push(line);
    }
    let columns = lines[0].len();
    let widths: Vec<usize> = (0..columns - 1)
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for line in &lines {
        for (c, cell) in line.iter().enumerate() {
            if c + 1 < columns {
                out.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_split_at_top_level_commas_only() {
        assert_eq!(split_top_level("1e-5, 1e-4,1e-3"), ["1e-5", "1e-4", "1e-3"]);
        assert_eq!(split_top_level("[1, 2]"), ["[1, 2]"]);
        assert_eq!(split_top_level("\"a,b\",\"c\""), ["\"a,b\"", "\"c\""]);
        let (axes, fixed) = axes(&[
            "head.learning_rate=1e-4,1e-3".into(),
            "ingest.seed=7".into(),
            "head.epochs=2,3,4".into(),
        ])
        .unwrap();
        assert_eq!(fixed, ["ingest.seed=7"]);
        let v = variants(&axes);
        assert_eq!(v.len(), 6);
        assert_eq!(v[0], ["head.learning_rate=1e-4", "head.epochs=2"]);
        assert_eq!(v[5], ["head.learning_rate=1e-3", "head.epochs=4"]);
    }

    #[test]
    fn a_sweep_table_gives_axes_written_as_set_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sweep.toml");
        std::fs::write(
            &path,
            "[sweep]\n\"head.learning_rate\" = [1e-4, 0.001]\n\"embed.pooling\" = [\"mean\", \"cls\"]\n",
        )
        .unwrap();
        let axes = file_axes(&path).unwrap();
        let pooling = axes.iter().find(|a| a.key == "embed.pooling").unwrap();
        assert_eq!(pooling.values, ["\"mean\"", "\"cls\""]);
        let lr = axes.iter().find(|a| a.key == "head.learning_rate").unwrap();
        assert_eq!(lr.values, ["0.0001", "0.001"]);
        std::fs::write(&path, "[sweep]\n\"head.epochs\" = 3\n").unwrap();
        let err = file_axes(&path).unwrap_err().to_string();
        assert!(err.contains("must be a list"), "{err}");
    }

    #[test]
    fn the_text_table_has_a_header_for_every_column() {
        let row = SweepRow {
            val_loss: Some(0.25),
            val_accuracy: Some(0.9),
            val_macro_f1: Some(0.89),
            test_accuracy: Some(0.8),
            test_macro_f1: Some(0.79),
            held_out_accuracy: Some(0.7),
            head_seconds: Some(12.5),
            failure: None,
            status: "head-ran".into(),
            rank: 1,
            ..SweepRow::failed(0, vec!["head.epochs=3".into()], String::new())
        };
        let text = table_text(&["head.epochs".to_string()], &[row]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("val macro-F1") && lines[0].contains("held-out acc"));
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            [
                "1", "3", "0.2500", "0.9000", "0.8900", "0.8000", "0.7900", "0.7000", "12.50",
                "head-ran"
            ]
        );
        // Every cell starts under its header.
        let starts = |line: &str| -> Vec<usize> {
            let b = line.as_bytes();
            (0..b.len())
                .filter(|&i| b[i] != b' ' && (i == 0 || b[i - 1] == b' '))
                .collect()
        };
        let header: Vec<usize> = starts(
            &lines[0]
                .replace("val loss", "val_loss")
                .replace("val acc", "val_acc")
                .replace("val macro-F1", "val_macro-F1")
                .replace("test acc", "test_acc")
                .replace("test macro-F1", "test_macro-F1")
                .replace("held-out acc", "held-out_acc")
                .replace("head s", "head_s"),
        );
        assert_eq!(header, starts(lines[1]));
    }

    #[test]
    fn ranking_is_by_validation_with_failures_last() {
        let row = |variant, loss: Option<f64>, acc: Option<f64>, test: f64| SweepRow {
            val_loss: loss,
            val_accuracy: acc,
            test_accuracy: Some(test),
            ..SweepRow::failed(variant, vec![], String::new())
        };
        let mut rows = vec![
            row(0, Some(0.5), Some(0.8), 0.99),
            SweepRow::failed(1, vec![], "bad".into()),
            row(2, Some(0.4), Some(0.7), 0.1),
            row(3, Some(0.6), Some(0.8), 0.5),
        ];
        rank(&mut rows, RankBy::ValLoss);
        assert_eq!(
            rows.iter().map(|r| r.variant).collect::<Vec<_>>(),
            [2, 0, 3, 1]
        );
        rank(&mut rows, RankBy::ValAccuracy);
        assert_eq!(
            rows.iter().map(|r| r.variant).collect::<Vec<_>>(),
            [0, 3, 2, 1]
        );
        assert_eq!(
            rows.iter().map(|r| r.rank).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
    }
}
