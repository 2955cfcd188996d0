//! The export stage end to end: the exported folder, scored by a Python
//! client that knows nothing of the pipeline (onnxruntime + tokenizers),
//! classifies sentences exactly as `predict` does.

mod common;

use common::{Project, py_script, run_python};

#[test]
fn a_python_client_of_the_exported_folder_agrees_with_predict() {
    let p = Project::uci_tiny_two_classes();
    let run = p.cli(&["run-pipeline"]);
    run.ok();
    assert_eq!(run.outcome("export"), "ran");
    assert!(
        run.stdout
            .contains("parity with the head stage's predictions on all 300 test rows"),
        "{}",
        run.stdout
    );
    let folder = p.path("artifacts/export");
    for name in [
        "classifier.onnx",
        "tokenizer.json",
        "labels.json",
        "model_card.md",
    ] {
        assert!(folder.join(name).is_file(), "{name} missing");
    }
    let card = std::fs::read_to_string(folder.join("model_card.md")).unwrap();
    assert!(
        card.contains("head.learning_rate") && card.contains("accuracy"),
        "{card}"
    );

    // The test split's sentences and new ones: one far longer than max_len
    // (truncation must come from the exported tokenizer), one of one word.
    let test = run_python(&[
        "-c",
        "import json, sys, pyarrow.parquet as pq; print(json.dumps([r['sentence'] for r in pq.read_table(sys.argv[1]).to_pylist()]))",
        p.path("artifacts/ingest/test.parquet").to_str().unwrap(),
    ]);
    let mut sentences: Vec<String> = serde_json::from_str(&test).unwrap();
    sentences.push("great ".repeat(300).trim_end().to_string());
    sentences.push("awful".to_string());
    let csv = p.path("sentences.csv");
    let mut w = csv::Writer::from_path(&csv).unwrap();
    w.write_record(["sentence"]).unwrap();
    for s in &sentences {
        w.write_record([s]).unwrap();
    }
    w.flush().unwrap();

    let client = run_python(&[
        &py_script("export_client.py"),
        folder.to_str().unwrap(),
        csv.to_str().unwrap(),
    ]);
    let client: Vec<serde_json::Value> = client
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let predicted = p.cli(&["predict", "--csv", csv.to_str().unwrap()]);
    let predicted: Vec<(String, f64)> = predicted
        .ok()
        .stdout
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = l.split('\t');
            (
                f.next().unwrap().to_string(),
                f.next().unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(client.len(), sentences.len());
    assert_eq!(predicted.len(), sentences.len());
    let mut classes_seen = std::collections::BTreeSet::new();
    for (i, (c, (label, top))) in client.iter().zip(&predicted).enumerate() {
        assert_eq!(
            c["label"].as_str().unwrap(),
            label,
            "sentence {i}: {:?}",
            sentences[i]
        );
        let best = c["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .fold(0f64, f64::max);
        // predict prints 4 decimals.
        assert!((best - top).abs() < 1e-4, "sentence {i}: {best} vs {top}");
        classes_seen.insert(label.clone());
    }
    assert_eq!(
        classes_seen.len(),
        2,
        "a head predicting one class proves little"
    );
}

/// Without a run there is nothing to export; a run with `--until head`
/// leaves no export either, and a later full run makes it.
#[test]
fn export_runs_last_and_only_on_a_trained_head() {
    let p = Project::uci_tiny_on_cpu();
    p.cli(&["run-pipeline", "--until", "head"]).ok();
    assert!(!p.path("artifacts/export").exists());
    let run = p.cli(&["run-pipeline"]);
    run.ok();
    assert_eq!(run.outcome("head"), "cached");
    assert_eq!(run.outcome("export"), "ran");
    let again = p.cli(&["run-pipeline"]);
    assert_eq!(again.ok().outcome("export"), "cached");
}
