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
//! and knows nothing of how either was made. It reads them a batch at a
//! time and keeps no split's texts or features whole (below
//! `exact_search_rows` and `probe_in_memory_rows`, the earlier split's
//! features and the training split's are held for the exact search and the
//! in-memory probe): row ids and labels, the text hashes, the out-of-fold
//! probabilities, and the overlapping and flagged rows as indices. Their
//! sentences go through scratch files (`sentences`) into the tables, which
//! are written a row group at a time.

mod confident;
mod folds;
mod ivf;
mod near_duplicate;
mod params;
mod probe;
mod sentences;
mod streamed_probe;
mod text_overlap;

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use tables::Provenance;
use tables::audit::{
    FeatureSearch, LabelIssueRow, LabelIssueWriter, OutOfFold, OverlapRow, OverlapWriter,
    ROWS_PER_GROUP,
};

pub use params::{AuditParams, Probe};
use sentences::Sentences;
use text_overlap::Kind;

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
    for i in 0..3 {
        let ids = SplitIds::read(inputs.splits[i])?;
        same_rows(&ids.row_ids, inputs.splits[i], inputs.features[i])?;
        splits.push(ids);
    }
    let classes = inputs.classes.len();
    let provenance = provenance.with("classes", serde_json::to_string(inputs.classes)?);
    let mut notes = Vec::new();

    let (found, searches, mut seconds) = overlap(params, inputs, &splits, out_dir)?;
    notes.extend(overlap_notes(&found, &splits));
    notes.extend(searches.iter().map(search_note));
    let split_rows = serde_json::json!({
        "train": splits[0].row_ids.len(), "val": splits[1].row_ids.len(), "test": splits[2].row_ids.len()
    });
    let started = Instant::now();
    write_overlap(
        &found,
        inputs,
        &splits,
        out_dir,
        &provenance
            .clone()
            .with("split_rows", split_rows.to_string())
            .with("feature_search", serde_json::to_string(&searches)?),
    )?;
    drop(found);
    seconds[0] += started.elapsed().as_secs_f64();
    notes.push(format!(
        "overlap found in {:.1}s (text {:.1}s, feature cosines {:.1}s)",
        seconds[0] + seconds[1],
        seconds[0],
        seconds[1]
    ));

    let started = Instant::now();
    let labels = std::mem::take(&mut splits[0].labels);
    if labels.len() < params.folds {
        bail!(
            "the training split has {} rows, fewer than audit.folds = {}; lower audit.folds",
            labels.len(),
            params.folds
        );
    }
    let fold_of = folds::assign(&labels, classes, params.folds, params.seed);
    let streamed = params.probe == Probe::Linear && labels.len() > params.probe_in_memory_rows;
    let probabilities = match params.probe {
        Probe::Linear if streamed => {
            streamed_probe::out_of_fold(params, inputs.features[0], &labels, &fold_of, classes)?
        }
        Probe::Linear => {
            let train = tables::features::read(inputs.features[0])?;
            probe::linear_out_of_fold(params, &train, &fold_of, classes)?
        }
        // The head trains from scratch copies read by row, as the head
        // stage does: what it holds is labels and the folds' indices.
        Probe::Head => {
            let train = head::ScratchRows::copy(inputs.features[0], out_dir)?;
            let val = head::ScratchRows::copy(inputs.features[1], out_dir)?;
            probe::head_out_of_fold(params, inputs.head, &train, &val, &fold_of, classes)?
        }
    };
    let correct = (0..labels.len())
        .filter(|&i| {
            let row = &probabilities[i * classes..(i + 1) * classes];
            confident::first_argmax(row.iter().map(|&p| f64::from(p))) == labels[i] as usize
        })
        .count();
    let accuracy = correct as f64 / labels.len() as f64;
    let issues = confident::label_issues(&labels, &probabilities, classes);
    notes.push(format!(
        "label issues: {} of {} training rows flagged by confident learning over {}-fold out-of-fold probabilities \
         ({} probe, out-of-fold accuracy {accuracy:.4}) in {:.1}s",
        issues.len(),
        labels.len(),
        params.folds,
        match (params.probe, streamed) {
            (Probe::Linear, false) => "linear",
            (Probe::Linear, true) => "linear, streamed minibatches",
            (Probe::Head, _) => "head",
        },
        started.elapsed().as_secs_f64()
    ));
    let with_accuracy = provenance
        .clone()
        .with("out_of_fold_accuracy", format!("{accuracy:.6}"));
    write_label_issues(
        &issues,
        inputs.splits[0],
        &splits[0].row_ids,
        out_dir,
        &with_accuracy,
    )?;
    drop(issues);
    tables::audit::write_out_of_fold(
        &out_dir.join(OUTPUTS[2]),
        OutOfFold {
            row_ids: std::mem::take(&mut splits[0].row_ids),
            labels,
            folds: fold_of.iter().map(|&f| f as i32).collect(),
            probabilities,
            classes,
        },
        &with_accuracy,
    )
    .context("writing the out-of-fold probabilities")?;
    Ok(notes)
}

/// `label_issues.parquet`: a row per issue, in its order, written a row
/// group at a time into `out_dir` (the stage's output folder); the
/// sentences read from the training split (`train`, whose row ids are
/// `row_ids`) once, into a nameless scratch file there.
fn write_label_issues(
    issues: &[confident::Issue],
    train: &Path,
    row_ids: &[i64],
    out_dir: &Path,
    provenance: &Provenance,
) -> Result<()> {
    let rows = issues.iter().map(|i| i.row as u32).collect();
    let sentences = Sentences::collect(train, rows, out_dir)?;
    let mut writer = LabelIssueWriter::label_issues(&out_dir.join(OUTPUTS[1]), provenance)?;
    for piece in issues.chunks(ROWS_PER_GROUP) {
        let rows = piece
            .iter()
            .map(|issue| {
                Ok(LabelIssueRow {
                    row_id: row_ids[issue.row],
                    sentence: sentences.get(issue.row)?,
                    given: issue.given as i64,
                    suggested: issue.suggested as i64,
                    self_confidence: issue.self_confidence,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        writer.write(&rows)?;
    }
    writer.finish()
}

/// Refuses a features file whose row ids are not the split's, in order
/// (its row ids only are read, not its vectors).
fn same_rows(rows: &[i64], split: &Path, features: &Path) -> Result<()> {
    if tables::features::read_row_ids(features)? != rows {
        bail!(
            "{} and {} do not hold the same rows in the same order; they come from different runs (rerun the pipeline)",
            split.display(),
            features.display()
        );
    }
    Ok(())
}

/// A split's row ids and labels, read without its texts.
struct SplitIds {
    row_ids: Vec<i64>,
    labels: Vec<i64>,
}

impl SplitIds {
    fn read(path: &Path) -> Result<SplitIds> {
        let (row_ids, labels) = tables::splits::read_ids_and_labels(path)?;
        Ok(SplitIds { row_ids, labels })
    }
}

/// A held-out row that overlaps an earlier split (16 bytes: the table's
/// row as indices; its ids and sentences are looked up as it is written).
#[derive(Debug, Clone, Copy)]
struct Found {
    /// The held-out split and the earlier one, by index into [`SPLITS`].
    held: u8,
    earlier: u8,
    kind: Kind,
    /// The row, and the earlier row that shows the overlap (indices).
    row: u32,
    at: u32,
    /// The highest feature cosine with any earlier row.
    cosine: f32,
}

/// Every held-out row that overlaps an earlier split, pairs in [`PAIRS`]
/// order, rows in split order; how each pair's features were searched; and
/// the seconds spent on text and on feature cosines.
fn overlap(
    params: &AuditParams,
    inputs: &AuditInputs,
    splits: &[SplitIds],
    scratch_dir: &Path,
) -> Result<(Vec<Found>, Vec<FeatureSearch>, [f64; 2])> {
    if let Some(i) = (0..3).find(|&i| splits[i].row_ids.len() > u32::MAX as usize) {
        bail!(
            "{} has {} rows; the audit takes at most {} a split",
            inputs.splits[i].display(),
            splits[i].row_ids.len(),
            u32::MAX
        );
    }
    let mut seconds = [0.0; 2];
    let mut found_all = Vec::new();
    let mut searches = Vec::new();
    // Pairs of one earlier split share its search index (train's is the
    // costliest part of the audit to build).
    for group in PAIRS.chunk_by(|a, b| a.1 == b.1) {
        let earlier = group[0].1;
        let started = Instant::now();
        let held_features: Vec<&Path> = group
            .iter()
            .map(|&(held, _)| inputs.features[held])
            .collect();
        let similar = near_duplicate::most_similar(
            params,
            &held_features,
            inputs.features[earlier],
            splits[earlier].row_ids.len(),
            scratch_dir,
        )
        .with_context(|| {
            format!(
                "searching {} for near-duplicates of {}",
                SPLITS[earlier],
                group
                    .iter()
                    .map(|&(h, _)| SPLITS[h])
                    .collect::<Vec<_>>()
                    .join(" and ")
            )
        })?;
        seconds[1] += started.elapsed().as_secs_f64();
        for (&(held, _), (similar, approximate)) in group.iter().zip(similar) {
            let started = Instant::now();
            let text = text_overlap::find(
                inputs.splits[held],
                inputs.splits[earlier],
                params.min_contained_words,
            )?;
            seconds[0] += started.elapsed().as_secs_f64();
            searches.push(FeatureSearch {
                split: SPLITS[held].to_string(),
                against: SPLITS[earlier].to_string(),
                approximate,
            });
            for (row, (found, nearest)) in text.into_iter().zip(similar).enumerate() {
                let found = found.or_else(|| {
                    (f64::from(nearest.cosine) >= params.near_duplicate_cosine)
                        .then_some((Kind::NearDuplicate, nearest.row))
                });
                if let Some((kind, at)) = found {
                    found_all.push(Found {
                        held: held as u8,
                        earlier: earlier as u8,
                        kind,
                        row: row as u32,
                        at: at as u32,
                        cosine: nearest.cosine,
                    });
                }
            }
        }
    }
    found_all.shrink_to_fit();
    Ok((found_all, searches, seconds))
}

/// `overlap.parquet`: a row per [`Found`], in its order, written a row
/// group at a time into `out_dir` (the stage's output folder); the
/// sentences read from each split once, into nameless scratch files there.
fn write_overlap(
    found: &[Found],
    inputs: &AuditInputs,
    splits: &[SplitIds],
    out_dir: &Path,
    provenance: &Provenance,
) -> Result<()> {
    let mut sentences = Vec::new();
    for split in 0..3u8 {
        let rows = found
            .iter()
            .flat_map(|f| {
                [
                    (f.held == split).then_some(f.row),
                    (f.earlier == split).then_some(f.at),
                ]
            })
            .flatten()
            .collect();
        sentences.push(Sentences::collect(
            inputs.splits[split as usize],
            rows,
            out_dir,
        )?);
    }
    let mut writer = OverlapWriter::overlap(&out_dir.join(OUTPUTS[0]), provenance)?;
    for piece in found.chunks(ROWS_PER_GROUP) {
        let rows = piece
            .iter()
            .map(|f| {
                let (held, earlier) = (f.held as usize, f.earlier as usize);
                Ok(OverlapRow {
                    split: SPLITS[held].to_string(),
                    row_id: splits[held].row_ids[f.row as usize],
                    sentence: sentences[held].get(f.row as usize)?,
                    against: SPLITS[earlier].to_string(),
                    kind: f.kind.name().to_string(),
                    match_row_id: splits[earlier].row_ids[f.at as usize],
                    match_sentence: sentences[earlier].get(f.at as usize)?,
                    cosine: f.cosine,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        writer.write(&rows)?;
    }
    writer.finish()
}

/// `near-duplicates of test in train: approximate (…), recall 0.9870 …`.
fn search_note(search: &FeatureSearch) -> String {
    let head = format!("near-duplicates of {} in {}", search.split, search.against);
    match &search.approximate {
        None => format!("{head}: exact search (every pair of rows)"),
        Some(a) => format!(
            "{head}: approximate search ({} clusters, {} searched per row{}); on {} rows also \
             searched exactly it found the most similar row of {} (recall {:.4}) and {} of {} \
             near-duplicates{}",
            a.clusters,
            a.probes,
            if a.tuning_sampled > 0 {
                format!(
                    ", chosen on {} other rows searched exactly: found {}",
                    a.tuning_sampled, a.tuning_found
                )
            } else {
                String::new()
            },
            a.sampled,
            a.found,
            a.recall(),
            a.near_duplicates_found,
            a.near_duplicates,
            if a.recall() < 0.95 {
                "; recall under 0.95: raise audit.search_recall or audit.search_max_probes"
            } else {
                ""
            }
        ),
    }
}

fn overlap_notes(found: &[Found], splits: &[SplitIds]) -> Vec<String> {
    PAIRS
        .iter()
        .map(|&(held, earlier)| {
            let rows: Vec<&Found> = found
                .iter()
                .filter(|f| f.held as usize == held && f.earlier as usize == earlier)
                .collect();
            let by_kind: Vec<String> = [
                Kind::Exact,
                Kind::Inside,
                Kind::Contains,
                Kind::NearDuplicate,
            ]
            .iter()
            .map(|&k| {
                format!(
                    "{} {}",
                    k.name(),
                    rows.iter().filter(|f| f.kind == k).count()
                )
            })
            .collect();
            format!(
                "{}: {} of {} rows overlap {} ({})",
                SPLITS[held],
                rows.len(),
                splits[held].row_ids.len(),
                SPLITS[earlier],
                by_kind.join(", ")
            )
        })
        .collect()
}
