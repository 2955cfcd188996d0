//! The figures the README reports, recomputed independently
//! (`tests/py/figures.py`: NumPy, scikit-learn, pyarrow, safetensors) from
//! the artifacts of a real run: scikit-learn's balanced class weights, the
//! best-validation checkpoint, `metrics.json`, `evaluate`, and
//! `compare-features`.

mod common;

use std::fs;

use common::{Project, py_script, run_python, shared_data};
use serde_json::Value;

const EPOCHS: usize = 8;

fn figures(args: &[&str]) -> Value {
    let script = py_script("figures.py");
    let all: Vec<&str> = [&[script.as_str()][..], args].concat();
    serde_json::from_str(&run_python(&all)).unwrap()
}

fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance * b.abs().max(1e-12)
}

/// UCI with a third of its negatives: classes 1:3 apart, so the balanced
/// weights are far from 1, and a learning rate at which validation loss
/// turns up before the last epoch, so the choice of epoch matters.
fn skewed_project() -> Project {
    let p = Project::empty();
    figures(&[
        "skew",
        shared_data("uci_amazon_yelp.csv").to_str().unwrap(),
        p.path("data/skewed.csv").to_str().unwrap(),
        "333",
    ]);
    p.write_config(&format!(
        "[ingest]\ncsv = \"data/skewed.csv\"\n[embed]\ndevice = \"cpu\"\n\
         [head]\nepochs = {EPOCHS}\nlearning_rate = 0.01\nbatch_size = 16\n{}",
        common::tiny_model()
    ));
    p.cli(&["run-pipeline"]).ok();
    p
}

#[test]
fn head_uses_balanced_weights_and_keeps_the_best_validation_epoch() {
    let p = skewed_project();
    let artifacts = p.path("artifacts");
    let got = figures(&["head", artifacts.to_str().unwrap()]);

    let weights: Vec<f64> = serde_json::from_value(got["balanced_weights"].clone()).unwrap();
    assert!(
        weights[0] > 1.4 && weights[1] < 0.8,
        "the data is skewed: {weights:?}"
    );
    let best = got["best_epoch_by_val_loss"].as_u64().unwrap() as usize;
    assert!(
        best < EPOCHS,
        "the setup must make validation loss turn up (best {best} of {EPOCHS}): {}",
        got["val_losses"]
    );
    assert_eq!(got["best_epoch_recorded"].as_u64().unwrap() as usize, best);
    // The saved head's validation loss, recomputed with scikit-learn's
    // balanced weights, is the recorded loss of the best epoch: the weights
    // are scikit-learn's and the checkpoint is that epoch's.
    let recorded = got["val_losses"][best - 1].as_f64().unwrap();
    let recomputed = got["val_loss_of_saved_head"].as_f64().unwrap();
    assert!(
        close(recomputed, recorded, 1e-5),
        "saved head's weighted val loss {recomputed} vs best epoch's {recorded}"
    );
    let max_diff = got["test_probability_max_diff"].as_f64().unwrap();
    assert!(max_diff < 1e-5, "test probabilities differ by {max_diff}");
    assert_eq!(got["test_preds_are_argmax"], true);
}

#[test]
fn metrics_json_and_evaluate_match_scikit_learn() {
    let p = skewed_project();
    let artifacts = p.path("artifacts");
    let want = figures(&[
        "metrics",
        artifacts
            .join("head/test_predictions.parquet")
            .to_str()
            .unwrap(),
    ]);
    let stored: Value =
        serde_json::from_slice(&fs::read(artifacts.join("report/metrics.json")).unwrap()).unwrap();
    assert_same_metrics(&stored, &want, "report/metrics.json");

    // The test split as a labelled CSV, through `evaluate`: the same figures
    // (predict re-embeds each sentence; features do not depend on batching).
    let csv = p.path("data/test_split.csv");
    figures(&[
        "split_csv",
        artifacts.join("ingest/test.parquet").to_str().unwrap(),
        csv.to_str().unwrap(),
    ]);
    let out = p.path("evaluated");
    let run = p.cli(&[
        "evaluate",
        "--csv",
        csv.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    run.ok();
    let evaluated: Value =
        serde_json::from_slice(&fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_same_metrics(&evaluated, &want, "evaluate --out metrics.json");
    assert_eq!(
        fs::read_to_string(out.join("classification_report.txt")).unwrap(),
        fs::read_to_string(artifacts.join("report/classification_report.txt")).unwrap()
    );
    assert!(run.stdout.contains(&format!(
        "accuracy {:.4}",
        want["accuracy"].as_f64().unwrap()
    )));
}

fn assert_same_metrics(got: &Value, want: &Value, what: &str) {
    for key in [
        "accuracy",
        "macro_precision",
        "macro_recall",
        "macro_f1",
        "weighted_precision",
        "weighted_recall",
        "weighted_f1",
    ] {
        let (g, w) = (got[key].as_f64().unwrap(), want[key].as_f64().unwrap());
        assert!(close(g, w, 1e-12), "{what}: {key} {g} vs scikit-learn {w}");
    }
    for key in ["precision", "recall", "f1"] {
        let g: Vec<f64> = serde_json::from_value(got[key].clone()).unwrap();
        let w: Vec<f64> = serde_json::from_value(want[key].clone()).unwrap();
        assert_eq!(g.len(), w.len(), "{what}: {key}");
        for (a, b) in g.iter().zip(&w) {
            assert!(
                close(*a, *b, 1e-12),
                "{what}: {key} {g:?} vs scikit-learn {w:?}"
            );
        }
    }
    assert_eq!(got["support"], want["support"], "{what}: support");
    assert_eq!(got["confusion"], want["confusion"], "{what}: confusion");
}

#[test]
fn compare_features_matches_numpy() {
    let p = Project::uci_tiny_on_cpu();
    p.cli(&["run-pipeline", "--until", "embed"]).ok();
    let other = p.path("other");
    p.cli(&[
        "run-pipeline",
        "--until",
        "embed",
        "--set",
        "embed.pooling=\"mean\"",
        "--artifacts",
        other.to_str().unwrap(),
    ])
    .ok();
    let (a, b) = (other.join("embed"), p.path("artifacts/embed"));
    let want = figures(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]);
    let run = p.cli(&["compare-features", a.to_str().unwrap(), b.to_str().unwrap()]);
    let lines: Vec<&str> = run.ok().stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    for line in lines {
        // "<split> <rows> rows: relative error <e> (worst row <e>)"
        let words: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
            .filter(|w| !w.is_empty())
            .collect();
        let split = &want[words[0]];
        assert_eq!(
            words[1].parse::<u64>().unwrap(),
            split["rows"].as_u64().unwrap()
        );
        let relative: f64 = words[5].parse().unwrap();
        let worst: f64 = words[8].parse().unwrap();
        let (w_rel, w_worst) = (
            split["relative_error"].as_f64().unwrap(),
            split["worst_row_relative_error"].as_f64().unwrap(),
        );
        assert!(
            w_rel > 0.01,
            "mean against first-token pooling differs: {w_rel}"
        );
        // Printed with three significant digits.
        assert!(close(relative, w_rel, 5e-3), "{line}: numpy {w_rel}");
        assert!(close(worst, w_worst, 5e-3), "{line}: numpy {w_worst}");
    }
}
