//! What the audit stage found, as the report shows it: the accuracy on the
//! test rows that share nothing with training (the only truly held-out
//! ones), overlap counts per split pair, the top overlaps and the top
//! suspected label errors.

use std::collections::HashSet;
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
    pub overlap: &'a [OverlapRow],
    /// Rows of train, val and test.
    pub split_rows: [usize; 3],
    /// Least self-confident first.
    pub label_issues: &'a [LabelIssueRow],
    pub out_of_fold_accuracy: f64,
    /// How each split pair's features were searched for near-duplicates.
    pub feature_search: &'a [FeatureSearch],
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
    overlap: &[OverlapRow],
) -> HeldOut {
    let leaked: HashSet<i64> = overlap
        .iter()
        .filter(|r| r.split == "test" && r.against == "train")
        .map(|r| r.row_id)
        .collect();
    let clean: Vec<usize> = (0..test_row_ids.len())
        .filter(|&i| !leaked.contains(&test_row_ids[i]))
        .collect();
    let correct = clean.iter().filter(|&&i| labels[i] == preds[i]).count();
    HeldOut {
        rows: clean.len(),
        accuracy: (!clean.is_empty()).then(|| correct as f64 / clean.len() as f64),
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
                "{pair}: {} clusters, {} searched per row; of {} rows also searched exactly, the most \
                 similar row found for {} (<b>recall {:.3}</b>), {} of {} near-duplicates found",
                a.clusters,
                a.probes,
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
    for (split, against) in PAIRS {
        let pair: Vec<&OverlapRow> = findings
            .overlap
            .iter()
            .filter(|r| r.split == split && r.against == against)
            .collect();
        let _ = write!(
            html,
            "<tr><td>{split}</td><td>{against}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
            rows_of(split),
            pair.len()
        );
        for kind in KINDS {
            let n = pair.iter().filter(|r| r.kind == kind).count();
            let _ = write!(html, "<td class=\"n\">{n}</td>");
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n");
    html.push_str(&search_paragraph(findings.feature_search));

    let mut top: Vec<&OverlapRow> = findings
        .overlap
        .iter()
        .filter(|r| r.split == "test" && r.against == "train")
        .collect();
    let rank = |kind: &str| KINDS.iter().position(|k| *k == kind).unwrap_or(KINDS.len());
    top.sort_by(|a, b| {
        rank(&a.kind)
            .cmp(&rank(&b.kind))
            .then(b.cosine.total_cmp(&a.cosine))
    });
    let _ = writeln!(
        html,
        "<h3>Top overlaps of test with training</h3>\n<table>\n<tr><th>test row</th><th>sentence</th>\
         <th>kind</th><th>training row</th><th>training sentence</th><th>cosine</th></tr>"
    );
    for r in top.iter().take(TOP_ROWS) {
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
        findings.label_issues.len(),
        findings.split_rows[0],
        findings.out_of_fold_accuracy
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
