//! The report's files: every output written, the images well-formed SVG
//! showing the right numbers, the page showing everything, escaped.

use report::{AuditFindings, OUTPUTS, OverlapSummary, ReportInputs};
use tables::audit::{Approximate, FeatureSearch, LabelIssueRow, OverlapRow};
use tables::encoded::LengthHistogram;
use tables::training::EpochRow;

struct Written {
    dir: tempfile::TempDir,
}

impl Written {
    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap()
    }

    /// The text content of every `<text>` element of an SVG output.
    fn svg_texts(&self, name: &str) -> Vec<String> {
        let svg = self.read(name);
        let doc = roxmltree::Document::parse(&svg)
            .unwrap_or_else(|e| panic!("{name} is not well-formed XML: {e}"));
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        doc.descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| n.text().unwrap_or("").trim().to_string())
            .collect()
    }
}

fn history() -> Vec<EpochRow> {
    [(0.9, 0.8), (0.5, 0.6), (0.3, 0.65)]
        .iter()
        .enumerate()
        .map(|(i, &(train, val))| EpochRow {
            epoch: i + 1,
            train_loss: train,
            val_loss: val,
            val_accuracy: 0.5 + 0.1 * i as f64,
            seconds: 1.25,
        })
        .collect()
}

fn write_three_class_report() -> Written {
    let dir = tempfile::tempdir().unwrap();
    let classes: Vec<String> = ["neg <bad>", "neutral", "pos & good"]
        .map(String::from)
        .to_vec();
    // true 0: 3 right, 1 as class 2; true 1: never predicted; true 2: 2 right.
    let labels = [0, 0, 0, 0, 1, 1, 2, 2];
    let preds = [0, 0, 0, 2, 0, 2, 2, 2];
    let lengths = LengthHistogram {
        counts: vec![(3, 5), (8, 40), (17, 9), (18, 3), (30, 1)],
        max_len: 17,
        max_len_rule: "fixed".into(),
    };
    let params = vec![
        ("head.learning_rate".to_string(), "0.001".to_string()),
        ("ingest.csv".to_string(), "data/a&b.csv".to_string()),
    ];
    // Test rows 100..108; rows 100 (right) and 103 (wrong) overlap training,
    // row 105 only overlaps val: 6 held-out rows, 4 of them right.
    let overlap = [
        overlap_row("test", 100, "train", "exact"),
        overlap_row("test", 103, "train", "inside"),
        overlap_row("test", 105, "val", "contains"),
        overlap_row("val", 7, "train", "near_duplicate"),
    ];
    let issues = [LabelIssueRow {
        row_id: 42,
        sentence: "a <b>rotten</b> film".into(),
        given: 2,
        suggested: 0,
        self_confidence: 0.0125,
    }];
    let test_row_ids: Vec<i64> = (100..108).collect();
    let summary = report::run(
        &ReportInputs {
            test_row_ids: &test_row_ids,
            labels: &labels,
            preds: &preds,
            classes: &classes,
            history: &history(),
            best_epoch: 2,
            lengths: &lengths,
            params: &params,
            audit: &AuditFindings {
                overlap: &OverlapSummary::of(&overlap),
                split_rows: [30, 9, 8],
                label_issues: &issues,
                label_issue_count: issues.len(),
                out_of_fold_accuracy: 0.75,
                feature_search: &searches(),
            },
        },
        dir.path(),
    )
    .unwrap();
    assert_eq!(summary.held_out.rows, 6);
    assert_eq!(summary.held_out.accuracy, Some(4.0 / 6.0));
    let written = Written { dir };
    assert_eq!(written.read("classification_report.txt"), summary.text);
    written
}

fn searches() -> Vec<FeatureSearch> {
    let pair = |split: &str, against: &str, approximate| FeatureSearch {
        split: split.into(),
        against: against.into(),
        approximate,
    };
    vec![
        pair("val", "train", None),
        pair(
            "test",
            "train",
            Some(Approximate {
                clusters: 12,
                probes: 3,
                tuning_sampled: 8,
                tuning_found: 8,
                sampled: 8,
                found: 7,
                near_duplicates: 2,
                near_duplicates_found: 2,
            }),
        ),
        pair("test", "val", None),
    ]
}

fn overlap_row(split: &str, row_id: i64, against: &str, kind: &str) -> OverlapRow {
    OverlapRow {
        split: split.into(),
        row_id,
        sentence: format!("sentence {row_id} & more"),
        against: against.into(),
        kind: kind.into(),
        match_row_id: row_id + 1000,
        match_sentence: "its match".into(),
        cosine: 0.5,
    }
}

#[test]
fn page_and_metrics_show_the_held_out_accuracy_overlaps_and_label_issues() {
    let w = write_three_class_report();
    let html = w.read("report.html");
    assert!(
        html.contains("on the 6 test rows that share nothing with training 0.6667"),
        "headline held-out accuracy"
    );
    // The per-pair counts: test/train 2 overlapping of 8 (1 exact, 1 inside).
    assert!(
        html.contains("<tr><td>test</td><td>train</td><td class=\"n\">8</td><td class=\"n\">2</td>\
         <td class=\"n\">1</td><td class=\"n\">1</td><td class=\"n\">0</td><td class=\"n\">0</td></tr>"),
        "test/train counts"
    );
    assert!(
        html.contains("sentence 100 &amp; more"),
        "a top overlap, escaped"
    );
    assert!(
        !html.contains("sentence 105"),
        "test/val overlaps are not test/train leaks"
    );
    assert!(
        html.contains("a &lt;b&gt;rotten&lt;/b&gt; film"),
        "a label issue, escaped"
    );
    assert!(
        html.contains("<td>pos &amp; good</td><td>neg &lt;bad&gt;</td>"),
        "given and suggested by name"
    );
    assert!(
        html.contains(
            "exactly (every pair of rows): val in train, test in val; approximately: test in train: \
             12 clusters, 3 searched per row (chosen on 8 other rows: found for 8); of 8 rows also \
             searched exactly, the most similar row found for 7 (<b>recall 0.875</b>), 2 of 2 near-duplicates found."
        ),
        "how near-duplicates were searched, with the recall"
    );
    let metrics: serde_json::Value = serde_json::from_str(&w.read("metrics.json")).unwrap();
    assert_eq!(metrics["test_without_train_overlap"]["rows"], 6);
    assert_eq!(metrics["accuracy"], 0.625);
}

#[test]
fn every_output_is_written() {
    let w = write_three_class_report();
    for name in OUTPUTS {
        let bytes = std::fs::metadata(w.dir.path().join(name)).unwrap().len();
        assert!(bytes > 0, "{name} is empty");
    }
}

#[test]
fn confusion_matrix_image_shows_every_cell_and_class() {
    let w = write_three_class_report();
    let texts = w.svg_texts("confusion_matrix.svg");
    // Row by row: [3, 0, 1], [1, 0, 1], [0, 0, 2].
    let mut counts: Vec<u32> = texts.iter().filter_map(|t| t.parse().ok()).collect();
    counts.sort();
    assert_eq!(counts, [0, 0, 0, 0, 1, 1, 1, 2, 3], "cells: {texts:?}");
    for class in ["neg &lt;bad&gt;", "neutral", "pos &amp; good"] {
        let raw = w.read("confusion_matrix.svg");
        assert!(raw.contains(class), "class label {class} missing");
    }
}

#[test]
fn length_histogram_marks_max_len_and_counts_truncated_rows() {
    let w = write_three_class_report();
    let texts = w.svg_texts("token_lengths.svg");
    assert!(
        texts
            .iter()
            .any(|t| t.contains("4 of 58 longer than max_len")),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t == "max_len = 17 (fixed)"),
        "{texts:?}"
    );
    // One bar per token count, bars past max_len in the truncation colour.
    let svg = w.read("token_lengths.svg");
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let bars: Vec<_> = doc
        .descendants()
        .filter(|n| {
            n.has_tag_name("rect") && matches!(n.attribute("fill"), Some("#1F77B4" | "#D62728"))
        })
        .collect();
    assert_eq!(bars.len(), 5, "one bar per length");
    let cut = bars
        .iter()
        .filter(|b| b.attribute("fill") == Some("#D62728"))
        .count();
    assert_eq!(cut, 2, "lengths 18 and 30 exceed max_len 17");
}

#[test]
fn loss_plot_draws_both_curves_and_the_kept_epoch() {
    let w = write_three_class_report();
    let texts = w.svg_texts("loss.svg");
    for label in ["train", "validation", "kept: epoch 2"] {
        assert!(
            texts.iter().any(|t| t == label),
            "{label} missing: {texts:?}"
        );
    }
    let svg = w.read("loss.svg");
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let lines = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .count();
    assert!(lines >= 2, "two loss curves, got {lines} polylines");
}

#[test]
fn page_shows_report_plots_history_and_parameters_escaped() {
    let w = write_three_class_report();
    let html = w.read("report.html");
    let report = w.read("classification_report.txt");
    let escaped = html_escape(&report);
    assert!(html.contains(&escaped), "the report text, escaped");
    assert_eq!(html.matches("<svg").count(), 3, "three inlined images");
    assert!(
        html.contains("<td>2 (kept)</td>"),
        "the kept epoch is marked"
    );
    assert!(html.contains("<td>head.learning_rate</td><td><code>0.001</code></td>"));
    assert!(html.contains("<code>data/a&amp;b.csv</code>"));
    assert!(!html.contains("<bad>"), "class names are escaped");
    // accuracy 5/8
    assert!(html.contains("accuracy 0.6250"), "headline accuracy");
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[test]
fn fewer_than_two_classes_is_an_error_not_a_broken_image() {
    let err = report::plots::confusion_matrix(&[vec![3]], &["only".to_string()]).unwrap_err();
    assert!(err.to_string().contains("at least two classes"), "{err}");
}
