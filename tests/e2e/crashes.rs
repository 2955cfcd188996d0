//! SIGKILL at random moments inside runs that commit **new** keys, then
//! run again: the rerun recomputes exactly what the kill interrupted (a
//! stage whose result was not committed runs; one committed but not yet
//! current is restored; one already current stays cached), everything it
//! keeps verifies, and the final outputs equal those of a run that was never
//! interrupted.
//!
//! Two kinds of run commit new keys: a cold run into an empty artifacts
//! folder (each stage targeted in turn: its upstream results are made
//! first, then the run of just that stage is killed), and a parameter
//! change (`--set ingest.seed=7`, every stage but `model` gets a new key;
//! after each attempt the default results are made current again and `gc`
//! deletes the new keys, so the next attempt commits them anew).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Project, Run, untimed_digests};
use runner::manifest::LockFile;

const STAGES: [&str; 8] = [
    "ingest", "model", "encode", "embed", "head", "audit", "report", "export",
];
/// What each stage reads from (the runs that prepare a targeted kill).
const UPSTREAM: [(&str, &[&str]); 8] = [
    ("ingest", &[]),
    ("model", &[]),
    ("encode", &["ingest", "model"]),
    ("embed", &["encode"]),
    ("head", &["embed"]),
    ("audit", &["embed"]),
    ("report", &["head", "audit"]),
    ("export", &["report"]),
];
/// Cold-run kills that must land inside each stage (its scratch exists).
const KILLS_PER_STAGE: usize = 3;
const MAX_ATTEMPTS_PER_STAGE: usize = 60;
const PARAMETER_ATTEMPTS: usize = 12;
const CHANGED: &str = "ingest.seed=7";

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

/// The CLI on `p` with `--artifacts dir` and `args`.
fn cli(p: &Project, dir: &Path, args: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend(["--artifacts", dir.to_str().unwrap()]);
    p.cli(&all)
}

/// [`common::run_and_kill`] on the artifacts folder `dir`.
fn run_and_kill(p: &Project, dir: &Path, args: &[&str], delay: Duration) -> bool {
    let args = [args, &["--artifacts", dir.to_str().unwrap()]].concat();
    common::run_and_kill(p, &args, delay)
}

/// Seconds `args` takes, start to exit.
fn time(p: &Project, dir: &Path, args: &[&str]) -> f64 {
    let started = Instant::now();
    cli(p, dir, args).ok();
    started.elapsed().as_secs_f64()
}

fn lock(dir: &Path) -> LockFile {
    LockFile::load(&dir.join("pipeline.lock")).unwrap()
}

/// Stage -> key of every current result.
fn keys(dir: &Path) -> BTreeMap<String, String> {
    lock(dir)
        .stages
        .into_iter()
        .map(|(stage, m)| (stage, m.key))
        .collect()
}

/// Scratch (or a replaced entry being moved aside) of `stage` left behind.
fn inside(dir: &Path, stage: &str) -> bool {
    fs::read_dir(dir.join(".tmp"))
        .map(|rd| {
            rd.flatten().any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{stage}-"))
            })
        })
        .unwrap_or(false)
}

/// Per stage: the key `pipeline.lock` names, and the entries in the store.
type Snapshot = BTreeMap<String, (Option<String>, BTreeSet<String>)>;

fn snapshot(dir: &Path) -> Snapshot {
    let current = if dir.join("pipeline.lock").exists() {
        keys(dir)
    } else {
        BTreeMap::new()
    };
    STAGES
        .iter()
        .map(|stage| {
            let entries = fs::read_dir(dir.join(".store").join(stage))
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            (stage.to_string(), (current.get(*stage).cloned(), entries))
        })
        .collect()
}

/// What the rerun must report for each stage, from the store and the lock
/// before and after the kill. A result the killed run committed is reused
/// (cached if it also became current, else restored); a stage it did not
/// commit runs if its key is new (`changed`, or no result before), and is
/// cached otherwise. Keys are not taken from a reference run: the report's
/// depends on the head's timed history.
fn expected_outcomes(
    before: &Snapshot,
    after: &Snapshot,
    changed: &[&str],
) -> BTreeMap<String, String> {
    STAGES
        .iter()
        .map(|stage| {
            let (was_current, old_entries) = &before[*stage];
            let (now_current, entries) = &after[*stage];
            let committed: Vec<&String> = entries.difference(old_entries).collect();
            assert!(committed.len() <= 1, "{stage}: {committed:?}");
            let outcome = match committed.first() {
                Some(key) if now_current.as_ref() == Some(*key) => "cached",
                Some(_) => "restored",
                None if was_current.is_none() || changed.contains(stage) => "ran",
                None => "cached",
            };
            (stage.to_string(), outcome.to_string())
        })
        .collect()
}

/// What a kill interrupted: the stage whose scratch it left, or a stage
/// committed but not yet current (killed around the link and lock switch).
#[derive(Default, Debug)]
struct Landings {
    inside: BTreeMap<String, usize>,
    before_switch: BTreeMap<String, usize>,
}

impl Landings {
    fn record(&mut self, dir: &Path, expected: &BTreeMap<String, String>) {
        for stage in STAGES {
            if inside(dir, stage) {
                *self.inside.entry(stage.into()).or_default() += 1;
            }
            if expected[stage] == "restored" {
                *self.before_switch.entry(stage.into()).or_default() += 1;
            }
        }
    }
}

/// Losses and accuracies per epoch: the history without its timings.
fn history_without_seconds(dir: &Path) -> Vec<(usize, f64, f64, f64)> {
    let (rows, _) = tables::training::read_history(&dir.join("head/history.parquet")).unwrap();
    rows.iter()
        .map(|r| (r.epoch, r.train_loss, r.val_loss, r.val_accuracy))
        .collect()
}

/// What an uninterrupted run made: untimed output digests, and the
/// history without its seconds.
struct Reference {
    keys: BTreeMap<String, String>,
    digests: BTreeMap<String, String>,
    history: Vec<(usize, f64, f64, f64)>,
}

/// After a kill: the rerun reports exactly `expected`, verifies, and its
/// results equal the uninterrupted run's.
fn rerun_and_check(
    p: &Project,
    dir: &Path,
    sets: &[&str],
    expected: &BTreeMap<String, String>,
    want: &Reference,
    what: &str,
) {
    let rerun = cli(p, dir, &[&["run-pipeline"], sets].concat());
    rerun.ok();
    for stage in STAGES {
        assert_eq!(
            rerun.outcome(stage),
            expected[stage],
            "{what}: {stage} after the kill\n{}",
            rerun.stdout
        );
    }
    let status = cli(p, dir, &[&["status", "--verify", "--json"], sets].concat());
    let status: serde_json::Value = serde_json::from_str(&status.ok().stdout).unwrap();
    for s in status.as_array().unwrap() {
        assert_eq!(s["outcome"], "cached", "{what}: failed --verify: {s}");
    }
    assert_eq!(
        untimed_digests(dir),
        want.digests,
        "{what}: results differ from the uninterrupted run"
    );
    assert_eq!(
        history_without_seconds(dir),
        want.history,
        "{what}: history"
    );
    assert!(
        !dir.join(".tmp").read_dir().unwrap().any(|_| true),
        "{what}: the rerun cleaned the killed run's scratch"
    );
}

fn set_args(set: Option<&str>) -> Vec<&str> {
    set.map(|s| vec!["--set", s]).unwrap_or_default()
}

/// What an uninterrupted run with `set` makes, after a run with the
/// defaults in the same folder: as in the project it is compared with, the
/// feature store then holds the default run's vectors (a vector from the
/// store is bit for bit the one first computed, which may differ in the
/// last bits from one computed in another batch).
fn reference(p: &Project, set: Option<&str>) -> Reference {
    let dir = p.path(&format!("reference-{}", set.unwrap_or("default")));
    if set.is_some() {
        cli(p, &dir, &["run-pipeline"]).ok();
    }
    cli(p, &dir, &[&["run-pipeline"], &set_args(set)[..]].concat()).ok();
    Reference {
        keys: keys(&dir),
        digests: untimed_digests(&dir),
        history: history_without_seconds(&dir),
    }
}

#[test]
fn sigkill_while_new_keys_are_committed_then_rerun_recomputes_what_was_interrupted() {
    let p = Project::uci_tiny_on_cpu();
    let want = reference(&p, None);
    let mut delays = Delays(0x9E37_79B9_7F4A_7C15);
    let mut landings = Landings::default();
    let mut attempts = 0;
    let fresh = |n: usize| -> PathBuf { p.path(&format!("cold-{n}")) };

    // Cold runs, each stage targeted: its upstream made first, then the run
    // of just this stage, which commits a key the folder has never held.
    for (stage, upstream) in UPSTREAM {
        let timing = fresh(attempts + 1000);
        for up in upstream {
            cli(&p, &timing, &["run-pipeline", "--until", up]).ok();
        }
        let span = time(&p, &timing, &["run-pipeline", "--until", stage]);
        let mut hits = 0;
        for _ in 0..MAX_ATTEMPTS_PER_STAGE {
            if hits == KILLS_PER_STAGE {
                break;
            }
            attempts += 1;
            let dir = fresh(attempts);
            for up in upstream {
                cli(&p, &dir, &["run-pipeline", "--until", up]).ok();
            }
            let delay = Duration::from_secs_f64(span * delays.next_fraction());
            let before = snapshot(&dir);
            let killed = run_and_kill(&p, &dir, &["run-pipeline", "--until", stage], delay);
            hits += usize::from(killed && inside(&dir, stage));
            let expected = expected_outcomes(&before, &snapshot(&dir), &[]);
            landings.record(&dir, &expected);
            let what = format!("cold run killed in {stage} after {delay:?}");
            rerun_and_check(&p, &dir, &[], &expected, &want, &what);
            fs::remove_dir_all(&dir).unwrap();
        }
        assert_eq!(
            hits, KILLS_PER_STAGE,
            "only {hits} kills landed inside {stage} in {MAX_ATTEMPTS_PER_STAGE} attempts"
        );
    }

    // A parameter change on a project that holds the default results.
    let changed_ref = reference(&p, Some(CHANGED));
    let changed_keys = &changed_ref.keys;
    assert_eq!(changed_keys["model"], want.keys["model"]);
    assert!(
        STAGES
            .iter()
            .filter(|s| **s != "model")
            .all(|s| changed_keys[*s] != want.keys[*s]),
        "{CHANGED} gives every stage but model a new key"
    );
    let dir = p.path("changed");
    cli(&p, &dir, &["run-pipeline"]).ok();
    let set = ["--set", CHANGED];
    let span = time(
        &p,
        &p.path("changed-timing"),
        &["run-pipeline", "--set", CHANGED],
    );
    let mut changed_landings = Landings::default();
    for _ in 0..PARAMETER_ATTEMPTS {
        attempts += 1;
        let delay = Duration::from_secs_f64(span * delays.next_fraction());
        let before = snapshot(&dir);
        run_and_kill(&p, &dir, &["run-pipeline", "--set", CHANGED], delay);
        let changed = [
            "ingest", "encode", "embed", "head", "audit", "report", "export",
        ];
        let expected = expected_outcomes(&before, &snapshot(&dir), &changed);
        changed_landings.record(&dir, &expected);
        let what = format!("--set {CHANGED} killed after {delay:?}");
        rerun_and_check(&p, &dir, &set, &expected, &changed_ref, &what);
        // Back to the defaults, and the new keys deleted: the next attempt
        // commits them anew.
        cli(&p, &dir, &["run-pipeline"]).ok();
        cli(&p, &dir, &["gc"]).ok();
        for (stage, key) in changed_keys {
            let kept = dir.join(".store").join(stage).join(key).exists();
            assert_eq!(kept, stage == "model", "{stage} after gc");
        }
    }
    println!("{attempts} attempts; cold runs: {landings:?}; --set {CHANGED}: {changed_landings:?}");
    assert!(
        changed_landings.inside.values().sum::<usize>() >= 3,
        "kills of the changed run landed inside a stage: {changed_landings:?}"
    );
}
