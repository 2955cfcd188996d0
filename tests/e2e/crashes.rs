//! SIGKILL at random moments inside every stage, then run again: the rerun
//! completes, everything it reuses still matches its recorded digest, and the
//! final outputs equal those of a run that was never interrupted.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Project;

const STAGES: [&str; 6] = ["ingest", "model", "encode", "embed", "head", "report"];
/// Kills that must land inside each stage (its scratch directory exists).
const KILLS_PER_STAGE: usize = 4;
const MAX_ATTEMPTS_PER_STAGE: usize = 120;

/// Losses and accuracies per epoch: the history without its timings.
fn history_without_seconds(p: &Project) -> Vec<(usize, f64, f64, f64)> {
    let (rows, _) =
        tables::training::read_history(&p.path("artifacts/head/history.parquet")).unwrap();
    rows.iter()
        .map(|r| (r.epoch, r.train_loss, r.val_loss, r.val_accuracy))
        .collect()
}

/// xorshift64*: reproducible delays without a dependency.
struct Delays(u64);

impl Delays {
    fn next_fraction(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Runs `args` and SIGKILLs it after `delay` (if it is still running).
/// Returns whether it was killed.
fn run_and_kill(p: &Project, args: &[&str], delay: Duration) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pipeline-cli"))
        .args(args)
        .arg("--config")
        .arg(p.path("pipeline.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let killed = matches!(child.try_wait(), Ok(None));
    child.kill().ok(); // SIGKILL on Unix
    child.wait().unwrap();
    killed
}

/// Scratch (or a replaced entry being moved aside) of `stage` left behind.
fn inside(p: &Project, stage: &str) -> bool {
    fs::read_dir(p.path("artifacts/.tmp"))
        .map(|rd| {
            rd.flatten().any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{stage}-"))
            })
        })
        .unwrap_or(false)
}

#[test]
fn sigkill_inside_every_stage_then_rerun_gives_the_uninterrupted_result() {
    let reference = Project::uci_tiny_on_cpu();
    reference.cli(&["run-pipeline"]).ok();
    let want = reference.untimed_output_digests();
    let want_history = history_without_seconds(&reference);

    let p = Project::uci_tiny_on_cpu();
    p.cli(&["run-pipeline"]).ok();
    let mut delays = Delays(0x9E37_79B9_7F4A_7C15);
    let mut inside_kills = BTreeMap::new();
    let mut attempts = 0;
    for stage in STAGES {
        // How long a forced run of just this stage takes, start to exit.
        let started = Instant::now();
        p.cli(&["run-pipeline", "--force", stage, "--until", stage])
            .ok();
        let span = started.elapsed().as_secs_f64();
        let mut hits = 0;
        for _ in 0..MAX_ATTEMPTS_PER_STAGE {
            if hits == KILLS_PER_STAGE {
                break;
            }
            attempts += 1;
            let delay = Duration::from_secs_f64(span * delays.next_fraction());
            let killed = run_and_kill(
                &p,
                &["run-pipeline", "--force", stage, "--until", stage],
                delay,
            );
            if killed && inside(&p, stage) {
                hits += 1;
            }
            // The rerun completes and everything it keeps verifies.
            let rerun = p.cli(&["run-pipeline"]);
            rerun.ok();
            for s in p.status(true) {
                assert_eq!(
                    s.1, "cached",
                    "after a kill in {stage}, a stored result failed --verify: {s:?}"
                );
            }
            let got = p.untimed_output_digests();
            for (file, digest) in &want {
                assert_eq!(
                    got.get(file),
                    Some(digest),
                    "after a kill in {stage}: {file} differs from the uninterrupted run"
                );
            }
            assert_eq!(history_without_seconds(&p), want_history);
        }
        inside_kills.insert(stage, hits);
    }
    let total: usize = inside_kills.values().sum();
    println!("{attempts} attempts, {total} kills inside a stage: {inside_kills:?}");
    for stage in STAGES {
        assert!(
            inside_kills[stage] >= KILLS_PER_STAGE,
            "only {} kills landed inside {stage} in {MAX_ATTEMPTS_PER_STAGE} attempts: {inside_kills:?}",
            inside_kills[stage]
        );
    }
    assert!(total >= 20);
    assert!(
        !p.path("artifacts/.tmp").read_dir().unwrap().any(|_| true),
        "the last rerun cleaned every killed run's scratch"
    );
}
