//! ingest: a labelled CSV -> stratified train / val / test Parquet splits.
//!
//! The split is the reference tutorial's two steps: `1 - train_fraction` is
//! split off stratified, then halved (in the val:test ratio) stratified, each
//! exactly as scikit-learn's `train_test_split(..., random_state=seed,
//! stratify=labels)` does it, so rows and order equal the tutorial's. With
//! `ingest.group_column`, whole groups are split instead (`group_split`);
//! with `ingest.dedup = "exact"`, repeated texts (`text`) are dropped first.

mod group_split;
pub mod input;
mod numpy_rng;
mod params;
mod quoting;
mod read;
pub mod split;
pub mod text;

use std::path::Path;

use anyhow::{Result, bail};
use tables::Provenance;
use tables::splits::LabelledRow;

pub use params::{Dedup, EmptySentences, IngestParams};
pub use read::{SourceRow, SourceTable, read_csv};

use crate::split::{SplitError, train_test_split};

pub const OUTPUTS: [&str; 3] = ["train.parquet", "val.parquet", "test.parquet"];

/// What ingest did, in lines for the user.
#[derive(Debug, Default)]
pub struct IngestSummary {
    pub notes: Vec<String>,
    /// Per split (train, val, test), per class id: row counts.
    pub class_counts: [Vec<usize>; 3],
}

/// Reads `csv`, splits it and writes the three split files into `out_dir`.
/// Nothing is written unless every check passes.
pub fn run(
    params: &IngestParams,
    csv: &Path,
    out_dir: &Path,
    provenance: Provenance,
) -> Result<IngestSummary> {
    check_fractions(params)?;
    let mut table = read::read_csv(csv, params)?;
    let mut notes = Vec::new();
    if params.dedup == Dedup::Exact {
        let (dropped, conflicting) = drop_repeats(&mut table.rows);
        notes.push(format!(
            "ingest.dedup = \"exact\": {dropped} rows repeating an earlier row's text dropped \
             ({conflicting} of them with another label than the row kept)"
        ));
    }
    let k = table.classes.len();
    let labels: Vec<i64> = table.rows.iter().map(|r| r.label).collect();
    let mut per_class = vec![0usize; k];
    for &l in &labels {
        per_class[l as usize] += 1;
    }
    if let Some(empty) = per_class.iter().position(|&n| n == 0) {
        bail!(
            "{}: class {} ({:?}) has no rows; every class 0..{} needs examples (or fix ingest.labels / ingest.num_classes)",
            csv.display(),
            empty,
            table.classes[empty],
            k - 1
        );
    }

    let positions = match &params.group_column {
        Some(column) => {
            let groups: Vec<&str> = table
                .rows
                .iter()
                .map(|r| r.group.as_deref().unwrap_or_default())
                .collect();
            let fractions = [
                params.train_fraction,
                params.val_fraction,
                params.test_fraction,
            ];
            group_split::split(&labels, &groups, k, fractions, params.seed).map_err(|e| {
                anyhow::anyhow!(
                    "{}: with ingest.group_column = {column:?}, the {} groups cannot give every split every class \
                     ({} has no rows of class {:?}); add groups of that class or change the split fractions",
                    csv.display(),
                    e.groups,
                    ["train", "val", "test"][e.split],
                    table.classes[e.class as usize]
                )
            })?
        }
        None => sklearn_split(params, &labels, csv, &table.classes)?,
    };
    let splits = positions.map(|rows| {
        rows.iter()
            .map(|&i| {
                let r = &table.rows[i];
                LabelledRow {
                    row_id: r.row_id,
                    sentence: r.sentence.clone(),
                    label: r.label,
                }
            })
            .collect::<Vec<_>>()
    });

    let classes_json = serde_json::to_string(&table.classes)?;
    let provenance = provenance.with("classes", classes_json);
    let mut summary = IngestSummary {
        notes,
        ..IngestSummary::default()
    };
    for (i, rows) in splits.iter().enumerate() {
        tables::splits::write(&out_dir.join(OUTPUTS[i]), rows, &provenance)?;
        let mut counts = vec![0usize; k];
        for r in rows {
            counts[r.label as usize] += 1;
        }
        summary.class_counts[i] = counts;
    }
    summary.notes.push(format!(
        "{} rows -> train {}, val {}, test {} ({} classes: {})",
        table.rows.len(),
        splits[0].len(),
        splits[1].len(),
        splits[2].len(),
        k,
        table.classes.join(", ")
    ));
    for (i, name) in ["train", "val", "test"].iter().enumerate() {
        let parts: Vec<String> = summary.class_counts[i]
            .iter()
            .enumerate()
            .map(|(c, n)| format!("{}={n}", table.classes[c]))
            .collect();
        summary
            .notes
            .push(format!("{name} per class: {}", parts.join(" ")));
    }
    if table.duplicates > 0 && params.dedup == Dedup::None {
        summary.notes.push(format!(
            "{} rows repeat an earlier sentence ({} with a different label); kept (ingest.dedup = \"exact\" drops them)",
            table.duplicates, table.conflicting_duplicates
        ));
    }
    if table.dropped_empty > 0 {
        summary.notes.push(format!(
            "{} rows with empty sentences dropped (ingest.empty_sentences = \"drop\")",
            table.dropped_empty
        ));
    }
    Ok(summary)
}

/// The tutorial's two stratified steps (scikit-learn's `train_test_split`
/// twice): positions into `labels` for train, val and test.
fn sklearn_split(
    params: &IngestParams,
    labels: &[i64],
    csv: &Path,
    classes: &[String],
) -> Result<[Vec<usize>; 3]> {
    let held_out = params.val_fraction + params.test_fraction;
    let first = train_test_split(labels, held_out, params.seed).map_err(|e| {
        explain_split_error(
            e,
            csv,
            classes,
            &format!("splitting off val+test ({:.0}%)", held_out * 100.0),
        )
    })?;
    let temp_labels: Vec<i64> = first.test.iter().map(|&i| labels[i]).collect();
    let second = train_test_split(&temp_labels, params.test_fraction / held_out, params.seed)
        .map_err(|e| explain_split_error(e, csv, classes, "dividing val+test into val and test"))?;
    Ok([
        first.train,
        second.train.iter().map(|&j| first.test[j]).collect(),
        second.test.iter().map(|&j| first.test[j]).collect(),
    ])
}

/// Keeps the first row of each normalised text (`text::normalized`);
/// returns (rows dropped, of which with another label than the row kept).
fn drop_repeats(rows: &mut Vec<read::SourceRow>) -> (usize, usize) {
    let (repeat, conflicting) = read::repeats(rows, |row| text::normalized(&row.sentence));
    let before = rows.len();
    let mut repeat = repeat.into_iter();
    rows.retain(|_| repeat.next() == Some(false));
    (before - rows.len(), conflicting)
}

fn check_fractions(p: &IngestParams) -> Result<()> {
    for (name, value) in [
        ("train_fraction", p.train_fraction),
        ("val_fraction", p.val_fraction),
        ("test_fraction", p.test_fraction),
    ] {
        if !(value > 0.0 && value < 1.0) {
            bail!(
                "ingest.{name} = {value}; each split fraction must be between 0 and 1 (exclusive)"
            );
        }
    }
    let sum = p.train_fraction + p.val_fraction + p.test_fraction;
    if (sum - 1.0).abs() > 1e-9 {
        bail!(
            "ingest.train_fraction + val_fraction + test_fraction = {} + {} + {} = {sum}; they must sum to 1",
            p.train_fraction,
            p.val_fraction,
            p.test_fraction
        );
    }
    Ok(())
}

fn explain_split_error(e: SplitError, csv: &Path, classes: &[String], step: &str) -> anyhow::Error {
    match e {
        SplitError::ClassTooSmall { class, rows } => anyhow::anyhow!(
            "{}: class {class} ({:?}) has too few rows to stratify: {rows} left when {step}, at least 2 needed; add rows of this class or lower the number of classes",
            csv.display(),
            classes[class as usize]
        ),
        SplitError::SideTooSmall {
            side,
            rows,
            classes: k,
        } => anyhow::anyhow!(
            "{}: too few rows to stratify: {step} gives the {side} side {rows} rows for {k} classes; add rows or change the split fractions",
            csv.display()
        ),
    }
}
