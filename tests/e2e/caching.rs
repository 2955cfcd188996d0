//! The runner's promises, through the real command on real data.

mod common;

use std::fs;

use common::{Background, Project, shared_data};

const STAGES: [&str; 8] = [
    "ingest", "model", "encode", "embed", "head", "audit", "report", "export",
];

fn uci_project() -> Project {
    let p = Project::empty();
    p.write_config(&format!(
        "[ingest]\ncsv = {:?}\nseed = 2021\n",
        shared_data("uci_amazon_yelp.csv").display().to_string()
    ));
    p
}

#[test]
fn first_run_runs_all_second_none_change_reruns_revert_restores() {
    let p = uci_project();
    let first = p.cli(&["run-pipeline"]);
    first.ok();
    for stage in STAGES {
        assert_eq!(first.outcome(stage), "ran", "{stage} on the first run");
    }
    // On a machine without a GPU, device "auto" warns once, not twice.
    let said = format!("{}{}", first.stdout, first.stderr);
    assert!(said.matches("found no NVIDIA GPU").count() <= 1, "{said}");
    // The run ends with the report and points at the page, whose images exist.
    assert!(first.stdout.contains("weighted avg"), "{}", first.stdout);
    let page = p.path("artifacts/report/report.html");
    assert!(
        first
            .stdout
            .contains(&format!("open {} for the report page", page.display())),
        "{}",
        first.stdout
    );
    let html = fs::read_to_string(&page).unwrap();
    assert_eq!(html.matches("<svg").count(), 3, "page inlines three images");
    for image in ["loss.svg", "token_lengths.svg", "confusion_matrix.svg"] {
        assert!(
            p.path(&format!("artifacts/report/{image}")).is_file(),
            "{image}"
        );
    }

    let second = p.cli(&["run-pipeline"]);
    second.ok();
    for stage in STAGES {
        assert_eq!(second.outcome(stage), "cached", "{stage} on the second run");
    }
    assert!(second.stdout.contains("0 ran"), "{}", second.stdout);

    let status = p.cli(&["status", "--set", "ingest.seed=7"]);
    status.ok();
    assert!(
        status
            .stdout
            .contains("parameter ingest.seed changed: 2021 -> 7"),
        "{}",
        status.stdout
    );

    let changed = p.cli(&["run-pipeline", "--set", "ingest.seed=7"]);
    changed.ok();
    for stage in STAGES {
        let expected = if stage == "model" { "cached" } else { "ran" };
        assert_eq!(
            changed.outcome(stage),
            expected,
            "{stage} after an ingest change"
        );
    }
    assert!(
        changed.stdout.contains("ingest.seed changed: 2021 -> 7"),
        "{}",
        changed.stdout
    );

    let reverted = p.cli(&["run-pipeline"]);
    reverted.ok();
    for stage in [
        "ingest", "encode", "embed", "head", "audit", "report", "export",
    ] {
        assert_eq!(
            reverted.outcome(stage),
            "restored",
            "{stage}: reverting must be served from the store"
        );
    }
    let lock = fs::read_to_string(p.path("artifacts/pipeline.lock")).unwrap();
    assert!(lock.contains("seed = 2021"), "{lock}");
}

#[test]
fn status_json_and_dag_describe_the_pipeline() {
    let p = uci_project();
    let status: serde_json::Value =
        serde_json::from_str(&p.cli(&["status", "--json"]).ok().stdout).unwrap();
    assert_eq!(status[0]["stage"], "ingest");
    assert_eq!(status[0]["outcome"], "would-run");
    assert_eq!(status[0]["reasons"][0], "no previous result");
    p.cli(&["run-pipeline"]).ok();
    let status: serde_json::Value =
        serde_json::from_str(&p.cli(&["status", "--json"]).ok().stdout).unwrap();
    assert_eq!(status[0]["outcome"], "cached");

    let dag = p.cli(&["dag"]);
    assert!(
        dag.ok().stdout.contains("ingest (v1)") && dag.stdout.contains("-> ingest/train.parquet"),
        "{}",
        dag.stdout
    );
}

#[test]
fn artifacts_flag_and_gc() {
    let p = uci_project();
    let other = p.path("elsewhere");
    p.cli(&["run-pipeline", "--artifacts", other.to_str().unwrap()])
        .ok();
    assert!(other.join("ingest/train.parquet").is_file());
    assert!(
        !p.path("artifacts/pipeline.lock").exists(),
        "--artifacts must not touch the default directory"
    );

    p.cli(&["run-pipeline"]).ok();
    p.cli(&["run-pipeline", "--set", "ingest.seed=1"]).ok();
    let dry = p.cli(&["gc", "--dry-run"]);
    assert!(dry.ok().stdout.contains("would remove"), "{}", dry.stdout);
    let entries_before = p.artifact_entries();
    p.cli(&["gc"]).ok();
    let entries_after = p.artifact_entries();
    // The seed=2021 results of ingest, encode, embed, head, audit, report,
    // export; model is shared.
    assert_eq!(
        entries_before.len(),
        entries_after.len() + 7,
        "{entries_before:?} -> {entries_after:?}"
    );
    assert_eq!(
        p.cli(&["run-pipeline", "--set", "ingest.seed=1"])
            .ok()
            .outcome("ingest"),
        "cached"
    );
}

#[test]
fn force_until_and_dry_run() {
    let p = uci_project();
    let dry = p.cli(&["run-pipeline", "--dry-run"]);
    assert_eq!(dry.ok().outcome("ingest"), "would run");
    assert!(
        p.artifact_entries()
            .iter()
            .all(|e| !e.starts_with(".store/")),
        "{:?}",
        p.artifact_entries()
    );

    p.cli(&["run-pipeline", "--until", "ingest"]).ok();
    let forced = p.cli(&["run-pipeline", "--force"]);
    assert_eq!(forced.ok().outcome("ingest"), "ran");
    assert!(forced.stdout.contains("forced"));
    let forced = p.cli(&["run-pipeline", "--force", "ingest"]);
    assert_eq!(forced.ok().outcome("ingest"), "ran");

    let bad = p.cli(&["run-pipeline", "--until", "trian"]);
    assert_ne!(bad.code, 0);
    assert!(
        bad.stderr.contains("--until") && bad.stderr.contains("unknown stage \"trian\""),
        "{}",
        bad.stderr
    );
    let bad = p.cli(&["run-pipeline", "--force", "nope"]);
    assert_ne!(bad.code, 0);
    assert!(
        bad.stderr.contains("--force") && bad.stderr.contains("ingest"),
        "{}",
        bad.stderr
    );
}

#[test]
fn a_second_concurrent_run_waits_or_says_why_it_cannot() {
    let p = uci_project();
    // Stand in for a running pipeline: hold its lock.
    let holder = run_lock_file(&p);
    holder.lock().unwrap();

    let refused = p.cli(&["run-pipeline", "--no-wait"]);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("another pipeline run"),
        "{}",
        refused.stderr
    );

    let mut waiting = Background::start(&p, &["run-pipeline"]);
    // Synchronised on what the run says, however long it takes to get there
    // (resolving the model, a busy machine).
    waiting.wait_for_stderr("waiting: another pipeline run");
    assert!(
        !p.path("artifacts/pipeline.lock").exists(),
        "the waiting run must not have started"
    );
    holder.unlock().unwrap();
    let out = waiting.finish();
    out.ok();
    assert!(p.path("artifacts/ingest/train.parquet").is_file());
}

#[test]
fn each_parameter_reruns_exactly_its_downstream() {
    let p = uci_project();
    p.cli(&["run-pipeline"]).ok();
    let cases: [(&str, &[&str]); 7] = [
        (
            "encode.max_len=12",
            &["encode", "embed", "head", "audit", "report", "export"],
        ),
        (
            "embed.pooling=\"mean\"",
            &["embed", "head", "audit", "report", "export"],
        ),
        (
            "model.ops=\"standard\"",
            &["model", "embed", "head", "audit", "report", "export"],
        ),
        // The linear probe does not read [head]: the audit stays cached.
        ("head.epochs=2", &["head", "report", "export"]),
        // The model card does not show the audit: the export stays cached.
        ("audit.folds=3", &["audit", "report"]),
        (
            "ingest.dedup=\"exact\"",
            &[
                "ingest", "encode", "embed", "head", "audit", "report", "export",
            ],
        ),
        // With the head as the probe, [head] keys the audit.
        ("audit.probe=\"head\"", &["audit", "report"]),
    ];
    for (set, rerun) in cases {
        p.cli(&["run-pipeline"]).ok(); // back to the baseline
        let run = p.cli(&["run-pipeline", "--set", set]);
        run.ok();
        for stage in STAGES {
            let expected = if rerun.contains(&stage) {
                "ran"
            } else {
                "cached"
            };
            assert_eq!(
                run.outcome(stage),
                expected,
                "{stage} after --set {set}:\n{}",
                run.stdout
            );
        }
    }
    // model.ops changes model.onnx but not tokenizer.json/model.json: encode
    // stays cached (early cutoff on its unchanged inputs).
    p.cli(&["run-pipeline"]).ok();
    let speed_only = p.cli(&["run-pipeline", "--set", "embed.batch_tokens=64"]);
    assert_eq!(
        speed_only.ok().outcome("embed"),
        "cached",
        "batch size never changes features"
    );
}

/// Two real runs on the same artifacts/ that certainly overlap: both are
/// started while the test holds the lock, and released together once both
/// have said they wait. One runs; the other waits again and then finds every
/// result made (all cached); the store verifies afterwards.
#[test]
fn two_real_runs_at_once_leave_a_consistent_store() {
    let p = uci_project();
    let holder = run_lock_file(&p);
    for (round, set) in ["head.epochs=2", "head.epochs=3", "ingest.seed=7"]
        .iter()
        .enumerate()
    {
        holder.lock().unwrap();
        let mut runs = [
            Background::start(&p, &["run-pipeline", "--set", set]),
            Background::start(&p, &["run-pipeline", "--set", set]),
        ];
        for run in &mut runs {
            run.wait_for_stderr("waiting: another pipeline run");
        }
        holder.unlock().unwrap();
        let [a, b] = runs.map(|r| r.finish());
        let mut ran = Vec::new();
        for (name, out) in [("first", &a), ("second", &b)] {
            assert_eq!(
                out.code, 0,
                "round {round}: {name} run failed: {}",
                out.stderr
            );
            let outcomes: Vec<String> = STAGES.iter().map(|s| out.outcome(s)).collect();
            ran.push(outcomes.iter().any(|o| o == "ran"));
        }
        // Exactly one made the new results; had both run at once, both
        // would have run stages (or one would have failed).
        assert_eq!(
            ran.iter().filter(|r| **r).count(),
            1,
            "round {round}: first:\n{}\nsecond:\n{}",
            a.stdout,
            b.stdout
        );
        let later = if ran[0] { &b } else { &a };
        for stage in STAGES {
            assert_eq!(
                later.outcome(stage),
                "cached",
                "round {round}:\n{}",
                later.stdout
            );
        }
        assert_all_verify(&p, set, round);
    }
    // With --no-wait the loser says why instead of waiting.
    holder.lock().unwrap();
    let refused = p.cli(&["run-pipeline", "--force", "embed", "--no-wait"]);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("another pipeline run"),
        "{}",
        refused.stderr
    );
    holder.unlock().unwrap();
    assert_all_verify(&p, "ingest.seed=7", 3);
}

/// The file a run locks (`artifacts/.lock`), opened as a run opens it:
/// locking it stands in for a run in progress.
fn run_lock_file(p: &Project) -> fs::File {
    fs::create_dir_all(p.path("artifacts")).unwrap();
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(p.path("artifacts/.lock"))
        .unwrap()
}

/// `status --verify` re-hashes every stored file: all must be cached.
fn assert_all_verify(p: &Project, set: &str, round: usize) {
    let status: serde_json::Value = serde_json::from_str(
        &p.cli(&["status", "--verify", "--json", "--set", set])
            .ok()
            .stdout,
    )
    .unwrap();
    let outcomes = status.as_array().unwrap();
    assert_eq!(outcomes.len(), STAGES.len());
    for s in outcomes {
        assert_eq!(s["outcome"], "cached", "round {round}: {s}");
    }
}

/// `embed-bench` (the GPU check's tool) times passes over the current
/// encode results with the stage's batching, and writes nothing.
#[test]
fn embed_bench_times_passes_over_the_current_results_and_writes_nothing() {
    let p = Project::uci_tiny_on_cpu();
    let early = p.cli(&["embed-bench"]);
    assert_ne!(early.code, 0);
    assert!(
        early.stderr.contains("run-pipeline --until encode"),
        "{}",
        early.stderr
    );
    p.cli(&["run-pipeline", "--until", "encode"]).ok();
    let before = p.artifact_entries();
    let run = p.cli(&["embed-bench", "--passes", "2", "--batch-tokens", "512"]);
    run.ok();
    assert!(
        run.stdout.contains("session on cpu created in"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("batches of <= 512 tokens, <= 256 rows"),
        "the CPU's row limit applies where only tokens are given:\n{}",
        run.stdout
    );
    for pass in ["pass 1 (cold): 2000 rows", "pass 2 (warm): 2000 rows"] {
        assert!(run.stdout.contains(pass), "{pass} in:\n{}", run.stdout);
    }
    assert_eq!(
        p.artifact_entries(),
        before,
        "embed-bench wrote into artifacts/"
    );
    let bad = p.cli(&["embed-bench", "--attention", "fastest"]);
    assert_ne!(bad.code, 0);
    assert!(
        bad.stderr
            .contains("use auto, math, trt, cudnn, efficient or flash"),
        "{}",
        bad.stderr
    );
}

/// encode streams its splits a window of sentences at a time: a window of
/// 7 rows writes the same bytes as the default window, so a forced rerun
/// with it leaves everything downstream cached (early cutoff).
#[test]
fn encode_writes_the_same_bytes_in_any_window() {
    let p = Project::uci_tiny_on_cpu();
    p.cli(&["run-pipeline"]).ok();
    let before = p.untimed_output_digests();
    let small = p.cli(&[
        "run-pipeline",
        "--force",
        "encode",
        "--set",
        "encode.batch_rows=7",
    ]);
    assert_eq!(small.ok().outcome("encode"), "ran", "{}", small.stdout);
    assert_eq!(small.outcome("embed"), "cached", "{}", small.stdout);
    assert_eq!(p.untimed_output_digests(), before);
}

/// embed streams too: with the feature store emptied, a window of 7 new
/// rows at a time (chunks of 5) embeds every row again and writes the same
/// bytes as the default window, so everything downstream stays cached.
#[test]
fn embed_writes_the_same_bytes_in_any_window() {
    let p = Project::uci_tiny_on_cpu();
    p.cli(&["run-pipeline"]).ok();
    let before = p.untimed_output_digests();
    std::fs::remove_dir_all(p.path("artifacts/.cache/embed")).unwrap();
    let small = p.cli(&[
        "run-pipeline",
        "--force",
        "embed",
        "--set",
        "embed.window_rows=7",
        "--set",
        "embed.chunk_rows=5",
    ]);
    assert!(
        small.ok().stdout.contains("2000 embedded now"),
        "{}",
        small.stdout
    );
    assert_eq!(small.outcome("head"), "cached", "{}", small.stdout);
    assert_eq!(p.untimed_output_digests(), before);
}
