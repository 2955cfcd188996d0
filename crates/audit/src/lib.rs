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
//! probabilities, and the overlapping rows' sentences.

mod confident;
mod folds;
mod ivf;
mod near_duplicate;
mod params;
mod probe;
mod streamed_probe;
mod text_overlap;

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use tables::Provenance;
use tables::audit::{FeatureSearch, LabelIssueRow, OutOfFold, OverlapRow};
use tables::splits::LabelledRow;

pub use params::{AuditParams, Probe};
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

    let (overlap, searches, seconds) = overlap(params, inputs, &splits, out_dir)?;
    notes.extend(overlap_notes(&overlap, &splits));
    notes.extend(searches.iter().map(search_note));
    notes.push(format!(
        "overlap found in {:.1}s (text {:.1}s, feature cosines {:.1}s)",
        seconds[0] + seconds[1],
        seconds[0],
        seconds[1]
    ));
    let split_rows = serde_json::json!({
        "train": splits[0].row_ids.len(), "val": splits[1].row_ids.len(), "test": splits[2].row_ids.len()
    });
    tables::audit::write_overlap(
        &out_dir.join(OUTPUTS[0]),
        &overlap,
        &provenance
            .clone()
            .with("split_rows", split_rows.to_string())
            .with("feature_search", serde_json::to_string(&searches)?),
    )?;

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
    let probabilities = if streamed {
        streamed_probe::out_of_fold(params, inputs.features[0], &labels, &fold_of, classes)?
    } else {
        let train = tables::features::read(inputs.features[0])?;
        let val = match params.probe {
            Probe::Head => tables::features::read(inputs.features[1])?,
            // The linear probe reads no validation rows.
            Probe::Linear => tables::features::FeatureTable {
                row_ids: Vec::new(),
                labels: Vec::new(),
                hidden: train.hidden,
                features: Vec::new(),
            },
        };
        probe::out_of_fold(params, inputs.head, &train, &val, &fold_of, classes)?
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
    let mut sentences = sentences_of(inputs.splits[0], issues.iter().map(|i| i.row))?;
    let issue_rows: Vec<LabelIssueRow> = issues
        .iter()
        .map(|issue| LabelIssueRow {
            row_id: splits[0].row_ids[issue.row],
            sentence: sentences.remove(&issue.row).unwrap_or_default(),
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

/// The sentences of the rows (indices) `wanted` of the split at `path`,
/// read a batch at a time.
fn sentences_of(
    path: &Path,
    wanted: impl Iterator<Item = usize>,
) -> Result<HashMap<usize, String>> {
    let mut wanted: Vec<usize> = wanted.collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut out = HashMap::with_capacity(wanted.len());
    let (mut first, mut next) = (0, 0);
    for batch in tables::splits::read_batched(path, 16_384)? {
        let batch = batch?;
        let end = first + batch.len();
        let mut rows: Vec<Option<LabelledRow>> = batch.into_iter().map(Some).collect();
        while next < wanted.len() && wanted[next] < end {
            let row = rows[wanted[next] - first].take().expect("wanted once");
            out.insert(wanted[next], row.sentence);
            next += 1;
        }
        first = end;
    }
    Ok(out)
}

/// One row per held-out row that overlaps an earlier split, pairs in
/// [`PAIRS`] order, rows in split order; how each pair's features were
/// searched; and the seconds spent on text and on feature cosines.
fn overlap(
    params: &AuditParams,
    inputs: &AuditInputs,
    splits: &[SplitIds],
    scratch_dir: &Path,
) -> Result<(Vec<OverlapRow>, Vec<FeatureSearch>, [f64; 2])> {
    let mut seconds = [0.0; 2];
    // (held split, row, kind, earlier split, its row, cosine)
    let mut found_all: Vec<(usize, usize, Kind, usize, usize, f32)> = Vec::new();
    let mut searches = Vec::new();
    for (held, earlier) in PAIRS {
        let started = Instant::now();
        let text = text_overlap::find(
            inputs.splits[held],
            inputs.splits[earlier],
            params.min_contained_words,
        )?;
        seconds[0] += started.elapsed().as_secs_f64();
        let started = Instant::now();
        let (similar, approximate) = near_duplicate::most_similar(
            params,
            inputs.features[held],
            inputs.features[earlier],
            splits[earlier].row_ids.len(),
            scratch_dir,
        )
        .with_context(|| {
            format!(
                "searching {} for near-duplicates of {}",
                SPLITS[earlier], SPLITS[held]
            )
        })?;
        seconds[1] += started.elapsed().as_secs_f64();
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
                found_all.push((held, row, kind, earlier, at, nearest.cosine));
            }
        }
    }
    let started = Instant::now();
    let mut sentences: Vec<HashMap<usize, String>> = Vec::new();
    for split in 0..3 {
        let rows = found_all.iter().flat_map(|f| {
            [(f.0 == split).then_some(f.1), (f.3 == split).then_some(f.4)]
                .into_iter()
                .flatten()
        });
        sentences.push(sentences_of(inputs.splits[split], rows)?);
    }
    seconds[0] += started.elapsed().as_secs_f64();
    let out = found_all
        .into_iter()
        .map(|(held, row, kind, earlier, at, cosine)| OverlapRow {
            split: SPLITS[held].to_string(),
            row_id: splits[held].row_ids[row],
            sentence: sentences[held][&row].clone(),
            against: SPLITS[earlier].to_string(),
            kind: kind.name().to_string(),
            match_row_id: splits[earlier].row_ids[at],
            match_sentence: sentences[earlier][&at].clone(),
            cosine,
        })
        .collect();
    Ok((out, searches, seconds))
}

/// `near-duplicates of test in train: approximate (…), recall 0.9870 …`.
fn search_note(search: &FeatureSearch) -> String {
    let head = format!("near-duplicates of {} in {}", search.split, search.against);
    match &search.approximate {
        None => format!("{head}: exact search (every pair of rows)"),
        Some(a) => format!(
            "{head}: approximate search ({} clusters, {} searched per row); on {} rows also searched \
             exactly it found the most similar row of {} (recall {:.4}) and {} of {} near-duplicates{}",
            a.clusters,
            a.probes,
            a.sampled,
            a.found,
            a.recall(),
            a.near_duplicates_found,
            a.near_duplicates,
            if a.recall() < 0.95 {
                "; recall under 0.95: raise audit.search_probes"
            } else {
                ""
            }
        ),
    }
}

fn overlap_notes(overlap: &[OverlapRow], splits: &[SplitIds]) -> Vec<String> {
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
                splits[held].row_ids.len(),
                SPLITS[earlier],
                by_kind.join(", ")
            )
        })
        .collect()
}
