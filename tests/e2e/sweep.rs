//! `sweep`: variants through the cache, ranked by validation, written,
//! selectable; failures reported without stopping the others; a killed
//! sweep resumes from what it had finished.

mod common;

use std::collections::BTreeSet;

use common::{Background, Project, run_python};

const LR: &str = "head.learning_rate=0.001,0.003";
const EPOCHS: &str = "head.epochs=2,3";

/// The sweep's Parquet table as JSON rows (pyarrow).
fn table(p: &Project, name: &str) -> Vec<serde_json::Value> {
    let path = p.path(&format!("artifacts/sweeps/{name}.parquet"));
    let json = run_python(&[
        "-c",
        "import json, sys, pyarrow.parquet as pq; print(json.dumps(pq.read_table(sys.argv[1]).to_pylist()))",
        path.to_str().unwrap(),
    ]);
    serde_json::from_str::<serde_json::Value>(&json)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Keys of the stored results of `stage`.
fn stored(p: &Project, stage: &str) -> BTreeSet<String> {
    std::fs::read_dir(p.path(&format!("artifacts/.store/{stage}")))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn current_key(p: &Project, stage: &str) -> String {
    let lock = runner::manifest::LockFile::load(&p.path("artifacts/pipeline.lock")).unwrap();
    lock.stages[stage].key.clone()
}

/// The validation loss of `head_key`'s kept epoch, read from its stored history.
fn stored_val_loss(p: &Project, head_key: &str) -> f64 {
    let history = p.path(&format!("artifacts/.store/head/{head_key}/history.parquet"));
    let (rows, best) = tables::training::read_history(&history).unwrap();
    rows.iter().find(|e| e.epoch == best).unwrap().val_loss
}

#[test]
fn a_two_by_two_sweep_runs_four_heads_on_one_embed_ranks_by_validation_and_restores() {
    let p = Project::uci_tiny_on_cpu();
    let run = p.cli(&["sweep", "--set", LR, "--set", EPOCHS]);
    run.ok();
    assert_eq!(stored(&p, "embed").len(), 1, "one embed for four heads");
    // Four variants, and the base configuration made current again.
    let heads = stored(&p, "head");
    assert_eq!(heads.len(), 5, "{heads:?}");
    let rows = table(&p, "sweep");
    assert_eq!(rows.len(), 4);
    let losses: Vec<f64> = rows
        .iter()
        .map(|r| r["val_loss"].as_f64().unwrap())
        .collect();
    assert!(
        losses.windows(2).all(|w| w[0] <= w[1]),
        "ranked by validation loss: {losses:?}"
    );
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["rank"], i as i64 + 1);
        let key = r["head_key"].as_str().unwrap();
        assert!(heads.contains(key));
        assert_eq!(
            r["val_loss"].as_f64().unwrap(),
            stored_val_loss(&p, key),
            "variant {}",
            r["variant"]
        );
        assert!(r["test_accuracy"].as_f64().is_some());
        let f1 = r["val_macro_f1"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&f1), "val macro-F1 {f1}");
        let set = r["set"].as_str().unwrap();
        assert!(
            set == format!(
                "head.learning_rate={} head.epochs={}",
                r["head.learning_rate"].as_str().unwrap(),
                r["head.epochs"].as_str().unwrap()
            ),
            "{set}"
        );
    }
    let sweep_keys: BTreeSet<&str> = rows
        .iter()
        .map(|r| r["head_key"].as_str().unwrap())
        .collect();
    assert!(
        !sweep_keys.contains(current_key(&p, "head").as_str()),
        "the base configuration is current again"
    );
    let page = std::fs::read_to_string(p.path("artifacts/sweeps/sweep.html")).unwrap();
    assert_eq!(page.matches("<svg").count(), 1, "the overlaid loss curves");
    assert!(
        run.stdout.contains("best by validation: variant"),
        "{}",
        run.stdout
    );

    // Again: every variant restored from the store, nothing trained.
    let again = p.cli(&["sweep", "--set", LR, "--set", EPOCHS]);
    again.ok();
    assert_eq!(
        again.stderr.matches("head restored").count(),
        4,
        "{}",
        again.stderr
    );
    assert_eq!(stored(&p, "head").len(), 5);

    // --select best: the best variant is current, export included.
    let best = p.cli(&["sweep", "--set", LR, "--set", EPOCHS, "--select", "best"]);
    best.ok();
    assert!(best.stdout.contains("now current"), "{}", best.stdout);
    assert_eq!(
        current_key(&p, "head"),
        rows[0]["head_key"].as_str().unwrap()
    );
    assert!(p.path("artifacts/export/classifier.onnx").is_file());
    // predict reads the selected head.
    p.cli(&["predict", "--text", "a fine film"]).ok();

    // Looking back: every stored run, the current one marked; two side by side.
    let runs: serde_json::Value =
        serde_json::from_str(&p.cli(&["runs", "--json"]).ok().stdout).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 5, "four variants and the base configuration");
    let current: Vec<_> = runs.iter().filter(|r| r["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["metrics"]["head_key"], rows[0]["head_key"]);
    assert_eq!(current[0]["metrics"]["val_loss"], rows[0]["val_loss"]);
    let worst = runs
        .iter()
        .find(|r| r["metrics"]["head_key"] == rows[3]["head_key"])
        .unwrap();
    let worst_key = &worst["key"].as_str().unwrap()[..8];
    let diff = p.cli(&["diff", "current", worst_key]);
    diff.ok();
    assert!(
        diff.stdout.contains("val loss") && diff.stdout.contains("head."),
        "{}",
        diff.stdout
    );
    let listed = p.cli(&["runs"]);
    assert!(
        listed.ok().stdout.contains("(current)"),
        "{}",
        listed.stdout
    );
    assert!(
        listed.stdout.contains("(configuration: "),
        "{}",
        listed.stdout
    );
    let refused = p.cli(&["diff", "current", "ab"]);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("at least 4 characters"),
        "{}",
        refused.stderr
    );
}

#[test]
fn a_failing_variant_is_reported_and_a_killed_sweep_resumes() {
    let p = Project::uci_tiny_on_cpu();
    // The list from a [sweep] table in a file, a fixed --set beside it.
    std::fs::write(
        p.path("sweep.toml"),
        "[sweep]\n\"head.batch_size\" = [0, 16]\n",
    )
    .unwrap();
    let file = p.path("sweep.toml");
    let run = p.cli(&[
        "sweep",
        "--name",
        "batch",
        "--file",
        file.to_str().unwrap(),
        "--set",
        "head.epochs=2",
    ]);
    run.ok();
    let rows = table(&p, "batch");
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0]["head.batch_size"], "16",
        "the working variant first"
    );
    assert!(
        rows[1]["status"]
            .as_str()
            .unwrap()
            .contains("head.batch_size"),
        "{:?}",
        rows[1]
    );
    assert!(rows[1]["val_loss"].is_null());

    let args = ["sweep", "--name", "long", "--set", "head.epochs=2,3,4"];
    let mut killed = Background::start(&p, &args);
    killed.wait_for_stderr("variant 1/3");
    let status = std::process::Command::new("kill")
        .args(["-KILL", &killed.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    killed.finish();
    let resumed = p.cli(&args);
    resumed.ok();
    // Variant 1 finished before the kill: taken from the store (restored,
    // or cached when the kill came before variant 2 replaced it).
    assert!(
        resumed
            .stderr
            .contains("variant 1/3 head.epochs=2: head restored")
            || resumed
                .stderr
                .contains("variant 1/3 head.epochs=2: head cached"),
        "{}",
        resumed.stderr
    );
    assert_eq!(table(&p, "long").len(), 3);
}
