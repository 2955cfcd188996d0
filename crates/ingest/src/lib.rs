//! ingest: a labelled CSV -> stratified train / val / test Parquet splits.
//!
//! The split is the reference tutorial's two steps: `1 - train_fraction` is
//! split off stratified, then halved (in the val:test ratio) stratified, each
//! exactly as scikit-learn's `train_test_split(..., random_state=seed,
//! stratify=labels)` does it, so rows and order equal the tutorial's. With
//! `ingest.group_column`, whole groups are split instead (`group_split`);
//! with `ingest.dedup = "exact"`, repeated texts (`text`) are dropped first.
//! The CSV is read once as a stream (`read::scan`); the split needs only the
//! labels (and groups), so the texts wait in a scratch file (`Kept`), and
//! repeated texts are found from their hashes on disk (`repeats`).

mod group_split;
pub mod input;
mod numpy_rng;
mod params;
mod quoting;
mod read;
mod repeats;
pub mod split;
pub mod text;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use tables::Provenance;
use tables::splits::LabelledRow;

pub use params::{Dedup, EmptySentences, IngestParams};
pub use read::{RowRef, Scanned, scan};

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
/// Nothing is written unless every check passes. The texts stream through
/// a scratch file (`Kept`); memory holds ~28 bytes a row and a bit, never
/// the texts.
pub fn run(
    params: &IngestParams,
    csv: &Path,
    out_dir: &Path,
    provenance: Provenance,
) -> Result<IngestSummary> {
    check_fractions(params)?;
    let ReadRows {
        mut kept,
        repeats,
        groups,
        scanned,
    } = read_rows(params, csv, out_dir)?;
    let classes = &scanned.classes;
    let k = classes.len();
    let mut per_class = vec![0usize; k];
    for &l in &kept.labels {
        per_class[l as usize] += 1;
    }
    if let Some(empty) = per_class.iter().position(|&n| n == 0) {
        bail!(
            "{}: class {} ({:?}) has no rows; every class 0..{} needs examples (or fix ingest.labels / ingest.num_classes)",
            csv.display(),
            empty,
            classes[empty],
            k - 1
        );
    }
    let positions = match &params.group_column {
        Some(column) => split_by_groups(params, &kept.labels, &groups, column, csv, classes)?,
        None => sklearn_split(params, &kept.labels, csv, classes)?,
    };
    drop(groups);

    let provenance = provenance.with("classes", serde_json::to_string(classes)?);
    let mut class_counts: [Vec<usize>; 3] = Default::default();
    for (i, rows) in positions.iter().enumerate() {
        kept.write_split(&out_dir.join(OUTPUTS[i]), rows, &provenance)?;
        class_counts[i] = vec![0; k];
        for &row in rows {
            class_counts[i][kept.labels[row] as usize] += 1;
        }
    }
    Ok(IngestSummary {
        notes: notes(params, &repeats, &scanned, &class_counts),
        class_counts,
    })
}

/// What [`read_rows`] gathered of the CSV.
struct ReadRows {
    kept: Kept,
    repeats: repeats::Repeats,
    groups: GroupIds,
    scanned: read::Scanned,
}

/// The CSV's rows into `Kept` with their groups, and which repeat an
/// earlier row's text (under `ingest.dedup = "exact"` compared normalised,
/// and those later rows dropped once the CSV is read).
fn read_rows(params: &IngestParams, csv: &Path, out_dir: &Path) -> Result<ReadRows> {
    let mut kept = Kept::create(out_dir)?;
    let mut index = repeats::RepeatIndex::create(out_dir)?;
    let mut groups = GroupIds::default();
    let scanned = read::scan(csv, params, |row| {
        match params.dedup {
            Dedup::Exact => index.note(&text::normalized(row.sentence), row.label)?,
            Dedup::None => index.note(row.sentence, row.label)?,
        }
        if let Some(group) = row.group {
            groups.push(group);
        }
        kept.push(&row)
    })?;
    let repeats = index.finish()?;
    if params.dedup == Dedup::Exact {
        kept.drop_marked(&repeats.later);
        retain_unmarked(&mut groups.ids, &repeats.later);
    }
    Ok(ReadRows {
        kept,
        repeats,
        groups,
        scanned,
    })
}

/// Removes the items whose bit is set (`marked` as long as `items`).
fn retain_unmarked<T>(items: &mut Vec<T>, marked: &bitvec::slice::BitSlice) {
    if items.is_empty() {
        return;
    }
    let mut i = 0;
    items.retain(|_| {
        i += 1;
        !marked[i - 1]
    });
}

/// The lines for the user: rows per split and class, repeats, drops.
fn notes(
    params: &IngestParams,
    repeats: &repeats::Repeats,
    scanned: &read::Scanned,
    class_counts: &[Vec<usize>; 3],
) -> Vec<String> {
    let classes = &scanned.classes;
    let sizes = class_counts.clone().map(|c| c.iter().sum::<usize>());
    let mut notes = Vec::new();
    if params.dedup == Dedup::Exact {
        notes.push(format!(
            "ingest.dedup = \"exact\": {} rows repeating an earlier row's text dropped \
             ({} of them with another label than the row kept)",
            repeats.repeats, repeats.conflicting
        ));
    }
    notes.push(format!(
        "{} rows -> train {}, val {}, test {} ({} classes: {})",
        sizes.iter().sum::<usize>(),
        sizes[0],
        sizes[1],
        sizes[2],
        classes.len(),
        classes.join(", ")
    ));
    for (counts, name) in class_counts.iter().zip(["train", "val", "test"]) {
        let parts: Vec<String> = counts
            .iter()
            .zip(classes)
            .map(|(n, class)| format!("{class}={n}"))
            .collect();
        notes.push(format!("{name} per class: {}", parts.join(" ")));
    }
    if repeats.repeats > 0 && params.dedup == Dedup::None {
        notes.push(format!(
            "{} rows repeat an earlier sentence ({} with a different label); kept (ingest.dedup = \"exact\" drops them)",
            repeats.repeats, repeats.conflicting
        ));
    }
    if scanned.dropped_empty > 0 {
        notes.push(format!(
            "{} rows with empty sentences dropped (ingest.empty_sentences = \"drop\")",
            scanned.dropped_empty
        ));
    }
    notes
}

/// Whole groups per split (`group_split`): positions into `labels`.
fn split_by_groups(
    params: &IngestParams,
    labels: &[i64],
    groups: &GroupIds,
    column: &str,
    csv: &Path,
    classes: &[String],
) -> Result<[Vec<usize>; 3]> {
    let fractions = [
        params.train_fraction,
        params.val_fraction,
        params.test_fraction,
    ];
    group_split::split(labels, &groups.ids, classes.len(), fractions, params.seed).map_err(|e| {
        anyhow::anyhow!(
            "{}: with ingest.group_column = {column:?}, the {} groups cannot give every split every class \
             ({} has no rows of class {:?}); add groups of that class or change the split fractions",
            csv.display(),
            e.groups,
            ["train", "val", "test"][e.split],
            classes[e.class as usize]
        )
    })
}

/// Each row's group as a dense id, in order of first appearance: 4 bytes
/// a row and one string a group.
#[derive(Default)]
struct GroupIds {
    index: HashMap<String, u32>,
    ids: Vec<u32>,
}

impl GroupIds {
    fn push(&mut self, group: &str) {
        let next = self.index.len() as u32;
        let id = match self.index.get(group) {
            Some(&id) => id,
            None => *self.index.entry(group.to_string()).or_insert(next),
        };
        self.ids.push(id);
    }
}

/// Rows per batch when the splits are written.
const WRITE_ROWS: usize = 16_384;

/// The rows ingest keeps, in CSV order: the texts appended to a scratch
/// file in the output folder (deleted when this is dropped, on any
/// return), the row ids, labels and where each text is in memory.
struct Kept {
    scratch: tempfile::NamedTempFile,
    texts: BufWriter<File>,
    /// Bytes written to the scratch file.
    written: u64,
    /// Each row's text: its first byte in the scratch file, and its length
    /// (not ends alone: a row dropped after the scan leaves a gap).
    starts: Vec<u64>,
    lens: Vec<u32>,
    row_ids: Vec<i64>,
    labels: Vec<i64>,
}

impl Kept {
    fn create(dir: &Path) -> Result<Kept> {
        let scratch = tempfile::Builder::new()
            .prefix(".ingest-texts-")
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a scratch file in {}", dir.display()))?;
        let texts = BufWriter::new(scratch.as_file().try_clone()?);
        Ok(Kept {
            scratch,
            texts,
            written: 0,
            starts: Vec::new(),
            lens: Vec::new(),
            row_ids: Vec::new(),
            labels: Vec::new(),
        })
    }

    fn push(&mut self, row: &read::RowRef) -> Result<()> {
        self.texts
            .write_all(row.sentence.as_bytes())
            .with_context(|| format!("cannot write {}", self.scratch.path().display()))?;
        let len = u32::try_from(row.sentence.len())
            .with_context(|| format!("row {}: a sentence of 4 GB or more", row.row_id))?;
        self.starts.push(self.written);
        self.lens.push(len);
        self.written += u64::from(len);
        self.row_ids.push(row.row_id);
        self.labels.push(row.label);
        Ok(())
    }

    /// Forgets the rows whose bit is set (their texts stay in the file).
    fn drop_marked(&mut self, marked: &bitvec::slice::BitSlice) {
        retain_unmarked(&mut self.starts, marked);
        retain_unmarked(&mut self.lens, marked);
        retain_unmarked(&mut self.row_ids, marked);
        retain_unmarked(&mut self.labels, marked);
    }

    /// Writes the kept rows at `positions`, in that order, to `path`.
    fn write_split(
        &mut self,
        path: &Path,
        positions: &[usize],
        provenance: &Provenance,
    ) -> Result<()> {
        self.texts.flush()?;
        let file = self.scratch.as_file();
        let mut writer = tables::splits::SplitWriter::create(path, provenance)?;
        let mut batch = Vec::with_capacity(WRITE_ROWS.min(positions.len()));
        for part in positions.chunks(WRITE_ROWS) {
            batch.clear();
            for &i in part {
                let mut bytes = vec![0; self.lens[i] as usize];
                file.read_exact_at(&mut bytes, self.starts[i])
                    .with_context(|| format!("cannot read {}", self.scratch.path().display()))?;
                batch.push(LabelledRow {
                    row_id: self.row_ids[i],
                    sentence: String::from_utf8(bytes).context("scratch text not UTF-8")?,
                    label: self.labels[i],
                });
            }
            writer.write(&batch)?;
        }
        writer.finish()
    }
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
