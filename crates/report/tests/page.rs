//! The report's files: every output written, the images well-formed SVG
//! showing the right numbers, the page showing everything, escaped.

use report::{OUTPUTS, ReportInputs};
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
    let text = report::run(
        &ReportInputs {
            labels: &labels,
            preds: &preds,
            classes: &classes,
            history: &history(),
            best_epoch: 2,
            lengths: &lengths,
            params: &params,
        },
        dir.path(),
    )
    .unwrap();
    let written = Written { dir };
    assert_eq!(written.read("classification_report.txt"), text);
    written
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
