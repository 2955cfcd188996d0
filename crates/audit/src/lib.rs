//! audit: what the test score means, from the features already cached.
//!
//! - **Overlap between splits** (`text_overlap`, `near_duplicate`): for each
//!   held-out row (val against train, test against train and val), the
//!   strongest overlap with the earlier split — the same text, inside or
//!   containing one of its sentences, or features at least
//!   `near_duplicate_cosine` alike. A test row that overlaps training is not
//!   held out, whatever the split says.
//! - **Label issues** (`folds`, `probe`, `confident`): out-of-fold class
//!   probabilities for the training split, and confident learning over them.
//!
//! The stage reads the ingest splits (text) and the embed splits (features)
//! and knows nothing of how either was made.

mod confident;
mod folds;
mod near_duplicate;
mod params;
mod probe;
mod text_overlap;

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use tables::Provenance;
use tables::audit::{LabelIssueRow, OutOfFold, OverlapRow};
use tables::features::FeatureTable;
use tables::splits::LabelledRow;

pub use params::{AuditParams, Probe};
use text_overlap::{Kind, Normalised};

pub const OUTPUTS: [&str; 3] = [
    "overlap.parquet",
    "label_issues.parquet",
    "out_of_fold.parquet",
];

const SPLITS: [&str; 3] = ["train", "val", "test"];
/// (held-out split, earlier split) pairs, by index into [`SPLITS`].
const PAIRS: [(usize, usize); 3] = [(1, 0), (2, 0), (2, 1)];

pub struct AuditInputs<'a> {
    /// The ingest splits: train, val, test.
    pub splits: [&'a Path; 3],
    /// The embed splits, rows in the same order.
    pub features: [&'a Path; 3],
    pub classes: &'a [String],
    /// The head's parameters, for `probe = "head"`.
    pub head: Option<&'a head::HeadParams>,
}

/// The audit stage: writes [`OUTPUTS`] into `out_dir`; returns notes.
pub fn run(
    params: &AuditParams,
    inputs: &AuditInputs,
    out_dir: &Path,
    provenance: Provenance,
) -> Result<Vec<String>> {
    params.check()?;
    let mut splits = Vec::new();
    let mut features = Vec::new();
    for i in 0..3 {
        let rows = tables::splits::read(inputs.splits[i])?;
        let table = tables::features::read(inputs.features[i])?;
        let same_rows = rows.len() == table.row_ids.len()
            && rows
                .iter()
                .zip(&table.row_ids)
                .all(|(r, &id)| r.row_id == id);
        if !same_rows {
            bail!(
                "{} and {} do not hold the same rows in the same order; they come from different runs (rerun the pipeline)",
                inputs.splits[i].display(),
                inputs.features[i].display()
            );
        }
        splits.push(rows);
        features.push(table);
    }
    let classes = inputs.classes.len();
    let provenance = provenance.with("classes", serde_json::to_string(inputs.classes)?);
    let mut notes = Vec::new();

    let (overlap, seconds) = overlap(params, &splits, &features)?;
    notes.extend(overlap_notes(&overlap, &splits));
    notes.push(format!(
        "overlap found in {:.1}s (text {:.1}s, feature cosines {:.1}s)",
        seconds[0] + seconds[1],
        seconds[0],
        seconds[1]
    ));
    let split_rows = serde_json::json!({
        "train": splits[0].len(), "val": splits[1].len(), "test": splits[2].len()
    });
    tables::audit::write_overlap(
        &out_dir.join(OUTPUTS[0]),
        &overlap,
        &provenance
            .clone()
            .with("split_rows", split_rows.to_string()),
    )?;

    let started = Instant::now();
    let train = &features[0];
    if train.labels.len() < params.folds {
        bail!(
            "the training split has {} rows, fewer than audit.folds = {}; lower audit.folds",
            train.labels.len(),
            params.folds
        );
    }
    let fold_of = folds::assign(&train.labels, classes, params.folds, params.seed);
    let probabilities =
        probe::out_of_fold(params, inputs.head, train, &features[1], &fold_of, classes)?;
    let correct = (0..train.labels.len())
        .filter(|&i| {
            let row = &probabilities[i * classes..(i + 1) * classes];
            confident::first_argmax(row.iter().map(|&p| f64::from(p))) == train.labels[i] as usize
        })
        .count();
    let accuracy = correct as f64 / train.labels.len() as f64;
    let issues = confident::label_issues(&train.labels, &probabilities, classes);
    notes.push(format!(
        "label issues: {} of {} training rows flagged by confident learning over {}-fold out-of-fold probabilities \
         ({} probe, out-of-fold accuracy {accuracy:.4}) in {:.1}s",
        issues.len(),
        train.labels.len(),
        params.folds,
        match params.probe {
            Probe::Linear => "linear",
            Probe::Head => "head",
        },
        started.elapsed().as_secs_f64()
    ));
    let issue_rows: Vec<LabelIssueRow> = issues
        .iter()
        .map(|issue| LabelIssueRow {
            row_id: splits[0][issue.row].row_id,
            sentence: splits[0][issue.row].sentence.clone(),
            given: issue.given as i64,
            suggested: issue.suggested as i64,
            self_confidence: issue.self_confidence,
        })
        .collect();
    let with_accuracy = provenance
        .clone()
        .with("out_of_fold_accuracy", format!("{accuracy:.6}"));
    tables::audit::write_label_issues(&out_dir.join(OUTPUTS[1]), &issue_rows, &with_accuracy)?;
    tables::audit::write_out_of_fold(
        &out_dir.join(OUTPUTS[2]),
        OutOfFold {
            row_ids: train.row_ids.clone(),
            labels: train.labels.clone(),
            folds: fold_of.iter().map(|&f| f as i32).collect(),
            probabilities,
            classes,
        },
        &with_accuracy,
    )
    .context("writing the out-of-fold probabilities")?;
    Ok(notes)
}

/// One row per held-out row that overlaps an earlier split, pairs in
/// [`PAIRS`] order, rows in split order; and the seconds spent on text and
/// on feature cosines.
fn overlap(
    params: &AuditParams,
    splits: &[Vec<LabelledRow>],
    features: &[FeatureTable],
) -> Result<(Vec<OverlapRow>, [f64; 2])> {
    let mut seconds = [0.0; 2];
    let started = Instant::now();
    let normalised: Vec<Normalised> = splits
        .iter()
        .map(|rows| Normalised::new(rows.iter().map(|r| r.sentence.as_str())))
        .collect();
    seconds[0] += started.elapsed().as_secs_f64();
    let mut out = Vec::new();
    for (held, earlier) in PAIRS {
        let started = Instant::now();
        let text = text_overlap::find(
            &normalised[held],
            &normalised[earlier],
            params.min_contained_words,
        )?;
        seconds[0] += started.elapsed().as_secs_f64();
        let started = Instant::now();
        let similar = near_duplicate::most_similar(&features[held], &features[earlier]);
        seconds[1] += started.elapsed().as_secs_f64();
        for (row, (found, (cosine, nearest))) in text.into_iter().zip(similar).enumerate() {
            let found = found.or_else(|| {
                (f64::from(cosine) >= params.near_duplicate_cosine)
                    .then_some((Kind::NearDuplicate, nearest))
            });
            let Some((kind, at)) = found else { continue };
            let (this, other) = (&splits[held][row], &splits[earlier][at]);
            out.push(OverlapRow {
                split: SPLITS[held].to_string(),
                row_id: this.row_id,
                sentence: this.sentence.clone(),
                against: SPLITS[earlier].to_string(),
                kind: kind.name().to_string(),
                match_row_id: other.row_id,
                match_sentence: other.sentence.clone(),
                cosine,
            });
        }
    }
    Ok((out, seconds))
}

fn overlap_notes(overlap: &[OverlapRow], splits: &[Vec<LabelledRow>]) -> Vec<String> {
    PAIRS
        .iter()
        .map(|&(held, earlier)| {
            let rows: Vec<&OverlapRow> = overlap
                .iter()
                .filter(|r| r.split == SPLITS[held] && r.against == SPLITS[earlier])
                .collect();
            let by_kind: Vec<String> = [
                Kind::Exact,
                Kind::Inside,
                Kind::Contains,
                Kind::NearDuplicate,
            ]
            .iter()
            .map(|k| {
                format!(
                    "{} {}",
                    k.name(),
                    rows.iter().filter(|r| r.kind == k.name()).count()
                )
            })
            .collect();
            format!(
                "{}: {} of {} rows overlap {} ({})",
                SPLITS[held],
                rows.len(),
                splits[held].len(),
                SPLITS[earlier],
                by_kind.join(", ")
            )
        })
        .collect()
}
