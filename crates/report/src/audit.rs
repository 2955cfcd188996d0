//! What the audit stage found, as the report shows it: the accuracy on the
//! test rows that share nothing with training (the only truly held-out
//! ones), overlap counts per split pair, the top overlaps and the top
//! suspected label errors.
//!
//! The overlap table can hold a row for nearly every held-out row (a model
//! whose features are all alike makes every row a near-duplicate), so the
//! report reads it a row group at a time into an [`OverlapSummary`]: counts,
//! the ids of the test rows that overlap training (8 bytes each) and the top
//! rows shown; never the table whole.

use std::cmp::Ordering;
use std::fmt::Write;

use html_escape::encode_text as esc;
use serde::Serialize;
use tables::audit::{FeatureSearch, LabelIssueRow, OverlapRow};

/// Rows shown in each "top" table of the page.
pub const TOP_ROWS: usize = 10;

const KINDS: [&str; 4] = ["exact", "inside", "contains", "near_duplicate"];
const PAIRS: [(&str, &str); 3] = [("val", "train"), ("test", "train"), ("test", "val")];

/// The audit stage's outputs, read.
pub struct AuditFindings<'a> {
    pub overlap: &'a OverlapSummary,
    /// Rows of train, val and test.
    pub split_rows: [usize; 3],
    /// The first (least self-confident) of the flagged rows; at least
    /// [`TOP_ROWS`] of them where there are as many.
    pub label_issues: &'a [LabelIssueRow],
    /// How many rows are flagged in all.
    pub label_issue_count: usize,
    pub out_of_fold_accuracy: f64,
    /// How each split pair's features were searched for near-duplicates.
    pub feature_search: &'a [FeatureSearch],
}

/// What the report shows of `overlap.parquet`, gathered from its rows as
/// they are read ([`OverlapSummary::add`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OverlapSummary {
    /// Rows per split pair ([`PAIRS`]) and kind ([`KINDS`]).
    counts: [[usize; KINDS.len()]; PAIRS.len()],
    /// The test rows that overlap training: their row ids, ascending once
    /// [`OverlapSummary::finish`]ed.
    test_in_train: Vec<i64>,
    /// The strongest overlaps of test with training, at most [`TOP_ROWS`],
    /// best first: by kind, then cosine, then table order.
    top: Vec<(usize, OverlapRow)>,
    /// Rows added so far (the next row's place in the table).
    seen: usize,
}

impl OverlapSummary {
    /// The summary of rows all in memory.
    pub fn of(rows: &[OverlapRow]) -> OverlapSummary {
        let mut summary = OverlapSummary::default();
        summary.add(rows.iter().cloned());
        summary.finish()
    }

    /// Takes in the table's next rows.
    pub fn add(&mut self, rows: impl IntoIterator<Item = OverlapRow>) {
        for row in rows {
            let at = self.seen;
            self.seen += 1;
            let pair = PAIRS
                .iter()
                .position(|&(split, against)| row.split == split && row.against == against);
            let Some(pair) = pair else { continue };
            if let Some(kind) = KINDS.iter().position(|k| *k == row.kind) {
                self.counts[pair][kind] += 1;
            }
            if PAIRS[pair] != ("test", "train") {
                continue;
            }
            self.test_in_train.push(row.row_id);
            let place = self
                .top
                .partition_point(|(i, r)| ranked(r, *i, &row, at) == Ordering::Less);
            if place < TOP_ROWS {
                self.top.insert(place, (at, row));
                self.top.truncate(TOP_ROWS);
            }
        }
    }

    pub fn finish(mut self) -> OverlapSummary {
        self.test_in_train.sort_unstable();
        self.test_in_train.dedup();
        self.test_in_train.shrink_to_fit();
        self
    }

    fn pair_count(&self, pair: usize) -> usize {
        self.counts[pair].iter().sum()
    }
}

/// The order of the top overlaps: stronger kinds first, then higher
/// cosines, then earlier in the table.
fn ranked(a: &OverlapRow, a_at: usize, b: &OverlapRow, b_at: usize) -> Ordering {
    let rank = |kind: &str| KINDS.iter().position(|k| *k == kind).unwrap_or(KINDS.len());
    rank(&a.kind)
        .cmp(&rank(&b.kind))
        .then(b.cosine.total_cmp(&a.cosine))
        .then(a_at.cmp(&b_at))
}

/// Accuracy on the test rows with no overlap of any kind with training.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldOut {
    pub rows: usize,
    /// `None` when every test row overlaps training.
    pub accuracy: Option<f64>,
}

pub fn held_out(
    test_row_ids: &[i64],
    labels: &[i64],
    preds: &[i64],
    overlap: &OverlapSummary,
) -> HeldOut {
    let leaked = &overlap.test_in_train;
    let (mut rows, mut correct) = (0, 0);
    for i in 0..test_row_ids.len() {
        if leaked.binary_search(&test_row_ids[i]).is_err() {
            rows += 1;
            correct += usize::from(labels[i] == preds[i]);
        }
    }
    HeldOut {
        rows,
        accuracy: (rows > 0).then(|| correct as f64 / rows as f64),
    }
}

/// `on the 188 test rows that share nothing with training 0.7979`.
pub fn held_out_phrase(held: &HeldOut) -> String {
    match held.accuracy {
        Some(a) => format!(
            "on the {} test rows that share nothing with training {a:.4}",
            held.rows
        ),
        None => "every test row overlaps training: no held-out accuracy".to_string(),
    }
}

/// How near-duplicates were searched, and the recall of the approximate
/// searches on their exactly searched samples.
fn search_paragraph(searches: &[FeatureSearch]) -> String {
    let mut exact = Vec::new();
    let mut approximate = Vec::new();
    for s in searches {
        let pair = format!("{} in {}", s.split, s.against);
        match &s.approximate {
            None => exact.push(pair),
            Some(a) => approximate.push(format!(
                "{pair}: {} clusters, {} searched per row{}; of {} rows also searched exactly, the \
                 most similar row found for {} (<b>recall {:.3}</b>), {} of {} near-duplicates found",
                a.clusters,
                a.probes,
                if a.tuning_sampled > 0 {
                    format!(
                        " (chosen on {} other rows: found for {})",
                        a.tuning_sampled, a.tuning_found
                    )
                } else {
                    String::new()
                },
                a.sampled,
                a.found,
                a.recall(),
                a.near_duplicates_found,
                a.near_duplicates
            )),
        }
    }
    let mut html = String::from("<p>Near-duplicates searched ");
    if !exact.is_empty() {
        let _ = write!(html, "exactly (every pair of rows): {}", exact.join(", "));
    }
    if !approximate.is_empty() {
        if !exact.is_empty() {
            html.push_str("; ");
        }
        let _ = write!(html, "approximately: {}", approximate.join("; "));
    }
    html.push_str(".</p>\n");
    html
}

/// The page's audit section.
pub fn section(findings: &AuditFindings, classes: &[String]) -> String {
    let mut html = String::from(
        "<h2>What the test score means</h2>\n<h3>Overlap between splits</h3>\n\
         <p>A row overlaps an earlier split when its normalised text equals a sentence there \
         (<code>exact</code>), occurs inside one (<code>inside</code>), contains one \
         (<code>contains</code>), or its features are nearly the same (<code>near_duplicate</code>). \
         Test rows that overlap training are not held out.</p>\n\
         <table>\n<tr><th>rows of</th><th>overlap</th><th>rows</th><th>overlapping</th>",
    );
    for kind in KINDS {
        let _ = write!(html, "<th>{kind}</th>");
    }
    html.push_str("</tr>\n");
    let rows_of = |split: &str| match split {
        "train" => findings.split_rows[0],
        "val" => findings.split_rows[1],
        _ => findings.split_rows[2],
    };
    for (pair, (split, against)) in PAIRS.into_iter().enumerate() {
        let _ = write!(
            html,
            "<tr><td>{split}</td><td>{against}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
            rows_of(split),
            findings.overlap.pair_count(pair)
        );
        for n in findings.overlap.counts[pair] {
            let _ = write!(html, "<td class=\"n\">{n}</td>");
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n");
    html.push_str(&search_paragraph(findings.feature_search));

    let _ = writeln!(
        html,
        "<h3>Top overlaps of test with training</h3>\n<table>\n<tr><th>test row</th><th>sentence</th>\
         <th>kind</th><th>training row</th><th>training sentence</th><th>cosine</th></tr>"
    );
    for (_, r) in &findings.overlap.top {
        let _ = writeln!(
            html,
            "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{:.3}</td></tr>",
            r.row_id,
            esc(&r.sentence),
            r.kind,
            r.match_row_id,
            esc(&r.match_sentence),
            r.cosine
        );
    }
    html.push_str("</table>\n");

    let name = |id: i64| classes.get(id as usize).map(String::as_str).unwrap_or("?");
    let _ = writeln!(
        html,
        "<h3>Suspected label errors</h3>\n<p>{} of {} training rows, flagged by confident learning over \
         out-of-fold probabilities (out-of-fold accuracy {:.4}); the least self-confident first. \
         All of them are in <code>audit/label_issues.parquet</code>.</p>\n<table>\n<tr><th>row</th>\
         <th>sentence</th><th>given</th><th>suggested</th><th>self-confidence</th></tr>",
        findings.label_issue_count, findings.split_rows[0], findings.out_of_fold_accuracy
    );
    for r in findings.label_issues.iter().take(TOP_ROWS) {
        let _ = writeln!(
            html,
            "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{:.3}</td></tr>",
            r.row_id,
            esc(&r.sentence),
            esc(name(r.given)),
            esc(name(r.suggested)),
            r.self_confidence
        );
    }
    html.push_str("</table>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: usize) -> OverlapRow {
        let (split, against) = PAIRS[i % 3];
        OverlapRow {
            split: split.into(),
            row_id: (i * 7 % 200) as i64,
            sentence: format!("s{i}"),
            against: against.into(),
            kind: KINDS[i * 5 % 4].into(),
            match_row_id: i as i64,
            match_sentence: format!("m{i}"),
            // Few distinct cosines, so that ties are ordered by the table.
            cosine: (i * 13 % 4) as f32 / 4.0,
        }
    }

    #[test]
    fn a_summary_read_in_pieces_equals_one_of_the_whole_table() {
        let rows: Vec<OverlapRow> = (0..300).map(row).collect();
        let mut pieces = OverlapSummary::default();
        for piece in rows.chunks(17) {
            pieces.add(piece.to_vec());
        }
        let pieces = pieces.finish();
        assert_eq!(pieces, OverlapSummary::of(&rows));

        // The top rows as a stable sort of the whole table ranks them.
        let rank = |kind: &str| KINDS.iter().position(|k| *k == kind).unwrap();
        let mut sorted: Vec<&OverlapRow> = rows
            .iter()
            .filter(|r| r.split == "test" && r.against == "train")
            .collect();
        sorted.sort_by(|a, b| {
            rank(&a.kind)
                .cmp(&rank(&b.kind))
                .then(b.cosine.total_cmp(&a.cosine))
        });
        let top: Vec<&OverlapRow> = pieces.top.iter().map(|(_, r)| r).collect();
        assert_eq!(top, sorted[..TOP_ROWS]);
        for (pair, (split, against)) in PAIRS.into_iter().enumerate() {
            for (k, kind) in KINDS.into_iter().enumerate() {
                let n = rows
                    .iter()
                    .filter(|r| r.split == split && r.against == against && r.kind == kind)
                    .count();
                assert_eq!(pieces.counts[pair][k], n, "{split}/{against} {kind}");
            }
        }

        // Held out: the test rows no test/train row names.
        let ids: Vec<i64> = (0..200).collect();
        let labels = vec![1; 200];
        let preds: Vec<i64> = (0..200).map(|i| i % 2).collect();
        let leaked: std::collections::HashSet<i64> = sorted.iter().map(|r| r.row_id).collect();
        let clean: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|i| !leaked.contains(i))
            .collect();
        let held = held_out(&ids, &labels, &preds, &pieces);
        assert!(!clean.is_empty() && clean.len() < 200);
        assert_eq!(held.rows, clean.len());
        let right = clean.iter().filter(|&&i| preds[i as usize] == 1).count();
        assert_eq!(held.accuracy, Some(right as f64 / clean.len() as f64));
    }
}
