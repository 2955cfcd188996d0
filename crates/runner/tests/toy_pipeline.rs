//! The runner's contract, checked on two toy stages:
//! `shout` (external text file -> upper-cased copy, plus a suffix parameter)
//! and `count` (shout's output -> its byte count).

use std::cell::Cell;
use std::fs;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::Result;
use runner::{Force, Input, Outcome, Pipeline, RunContext, RunOptions, Stage, StageReport};
use serde_json::{Value, json};

struct Shout {
    source: PathBuf,
    suffix: String,
    /// Does not change the output: lets us test early cutoff.
    comment: String,
    fail: bool,
    runs: Rc<Cell<u32>>,
}

impl Stage for Shout {
    fn name(&self) -> &str {
        "shout"
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self) -> Value {
        json!({"suffix": self.suffix, "comment": self.comment})
    }
    fn inputs(&self) -> Vec<Input> {
        vec![Input::file("text", &self.source)]
    }
    fn outputs(&self) -> Vec<String> {
        vec!["loud.txt".into()]
    }
    fn run(&self, ctx: &mut RunContext) -> Result<()> {
        self.runs.set(self.runs.get() + 1);
        let text = fs::read_to_string(ctx.input("text"))?;
        fs::write(
            ctx.output("loud.txt"),
            format!("{}{}", text.to_uppercase(), self.suffix),
        )?;
        if self.fail {
            anyhow::bail!("told to fail");
        }
        ctx.note("shouted");
        Ok(())
    }
}

struct Count {
    runs: Rc<Cell<u32>>,
}

impl Stage for Count {
    fn name(&self) -> &str {
        "count"
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self) -> Value {
        json!({})
    }
    fn inputs(&self) -> Vec<Input> {
        vec![Input::stage("shout", "loud.txt")]
    }
    fn outputs(&self) -> Vec<String> {
        vec!["count.txt".into()]
    }
    fn run(&self, ctx: &mut RunContext) -> Result<()> {
        self.runs.set(self.runs.get() + 1);
        let n = fs::read(ctx.input("shout/loud.txt"))?.len();
        fs::write(ctx.output("count.txt"), n.to_string())?;
        Ok(())
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    shout_runs: Rc<Cell<u32>>,
    count_runs: Rc<Cell<u32>>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("in.txt"), "hello").unwrap();
        Fixture {
            dir,
            shout_runs: Rc::default(),
            count_runs: Rc::default(),
        }
    }
    fn artifacts(&self) -> PathBuf {
        self.dir.path().join("artifacts")
    }
    fn pipeline(&self, suffix: &str, comment: &str, fail: bool) -> Pipeline {
        // Declared downstream-first on purpose: the runner orders them.
        Pipeline::new(vec![
            Box::new(Count {
                runs: self.count_runs.clone(),
            }),
            Box::new(Shout {
                source: self.dir.path().join("in.txt"),
                suffix: suffix.into(),
                comment: comment.into(),
                fail,
                runs: self.shout_runs.clone(),
            }),
        ])
        .unwrap()
    }
    fn run(&self, suffix: &str, options: &RunOptions) -> Vec<StageReport> {
        self.pipeline(suffix, "", false)
            .run(&self.artifacts(), options, &mut |_| {})
            .unwrap()
    }
    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.artifacts().join(rel)).unwrap()
    }
}

fn outcomes(reports: &[StageReport]) -> Vec<(&str, Outcome)> {
    reports
        .iter()
        .map(|r| (r.stage.as_str(), r.outcome))
        .collect()
}

fn opts() -> RunOptions {
    RunOptions {
        wait_for_lock: true,
        ..RunOptions::default()
    }
}

#[test]
fn first_run_runs_everything_second_runs_nothing() {
    let f = Fixture::new();
    let first = f.run("!", &opts());
    assert_eq!(
        outcomes(&first),
        [("shout", Outcome::Ran), ("count", Outcome::Ran)]
    );
    assert_eq!(first[0].notes, ["shouted"]);
    assert_eq!(f.read("shout/loud.txt"), "HELLO!");
    assert_eq!(f.read("count/count.txt"), "6");
    let second = f.run("!", &opts());
    assert_eq!(
        outcomes(&second),
        [("shout", Outcome::Cached), ("count", Outcome::Cached)]
    );
    assert_eq!((f.shout_runs.get(), f.count_runs.get()), (1, 1));
    let lock = f.read("pipeline.lock");
    assert!(
        lock.contains("[shout]") && lock.contains("[count]"),
        "{lock}"
    );
}

#[test]
fn parameter_change_reruns_downstream_and_revert_is_restored() {
    let f = Fixture::new();
    f.run("!", &opts());
    let changed = f.run("?!", &opts());
    assert_eq!(
        outcomes(&changed),
        [("shout", Outcome::Ran), ("count", Outcome::Ran)]
    );
    assert_eq!(
        changed[0].reasons,
        ["parameter shout.suffix changed: \"!\" -> \"?!\""]
    );
    assert_eq!(changed[1].reasons, ["input shout/loud.txt changed"]);
    assert_eq!(f.read("count/count.txt"), "7");

    let reverted = f.run("!", &opts());
    assert_eq!(
        outcomes(&reverted),
        [("shout", Outcome::Restored), ("count", Outcome::Restored)]
    );
    assert_eq!(f.read("count/count.txt"), "6");
    assert_eq!(
        (f.shout_runs.get(), f.count_runs.get()),
        (2, 2),
        "revert must not recompute"
    );
}

#[test]
fn early_cutoff_when_output_bytes_do_not_change() {
    let f = Fixture::new();
    f.run("!", &opts());
    let reports = f
        .pipeline("!", "a comment", false)
        .run(&f.artifacts(), &opts(), &mut |_| {})
        .unwrap();
    assert_eq!(
        outcomes(&reports),
        [("shout", Outcome::Ran), ("count", Outcome::Cached)]
    );

    let forced = f.run(
        "!",
        &RunOptions {
            force: Force::Stages(vec!["shout".into()]),
            ..opts()
        },
    );
    assert_eq!(
        outcomes(&forced),
        [("shout", Outcome::Ran), ("count", Outcome::Cached)]
    );
    assert_eq!(forced[0].reasons[0], "forced");
    assert_eq!(f.count_runs.get(), 1);
}

#[test]
fn input_content_change_is_detected_and_touch_is_not() {
    let f = Fixture::new();
    f.run("!", &opts());
    let input = f.dir.path().join("in.txt");
    // Same content rewritten: new mtime, same digest -> cached.
    fs::write(&input, "hello").unwrap();
    assert_eq!(
        outcomes(&f.run("!", &opts())),
        [("shout", Outcome::Cached), ("count", Outcome::Cached)]
    );
    fs::write(&input, "bye").unwrap();
    let reports = f.run("!", &opts());
    assert_eq!(reports[0].reasons, ["input text changed"]);
    assert_eq!(f.read("count/count.txt"), "4");
}

#[test]
fn failed_stage_leaves_nothing_and_keeps_previous_result() {
    let f = Fixture::new();
    f.run("!", &opts());
    let lock_before = f.read("pipeline.lock");
    let err = f
        .pipeline("#", "", true)
        .run(&f.artifacts(), &opts(), &mut |_| {})
        .unwrap_err();
    assert!(format!("{err:#}").contains("told to fail"), "{err:#}");
    assert_eq!(f.read("pipeline.lock"), lock_before);
    assert_eq!(f.read("shout/loud.txt"), "HELLO!");
    assert_eq!(
        fs::read_dir(f.artifacts().join(".tmp")).unwrap().count(),
        0,
        "scratch must be removed"
    );
    assert_eq!(
        fs::read_dir(f.artifacts().join(".store/shout"))
            .unwrap()
            .count(),
        1,
        "no entry for the failed key"
    );
}

#[test]
fn damaged_store_entry_is_recomputed() {
    let f = Fixture::new();
    f.run("!", &opts());
    let target = f.artifacts().join("shout/loud.txt");
    fs::write(&target, "HELLO?").unwrap(); // same size, new bytes
    let reports = f.run("!", &opts());
    assert_eq!(reports[0].outcome, Outcome::Ran);
    assert!(
        reports[0].reasons[0].contains("no longer matches its digest"),
        "{:?}",
        reports[0].reasons
    );
    assert_eq!(f.read("shout/loud.txt"), "HELLO!");

    fs::remove_file(&target).unwrap();
    let reports = f.run("!", &opts());
    assert!(
        reports[0].reasons[0].contains("missing"),
        "{:?}",
        reports[0].reasons
    );
    assert_eq!(f.read("shout/loud.txt"), "HELLO!");
}

#[test]
fn verify_catches_a_flip_that_keeps_size_and_mtime() {
    let f = Fixture::new();
    f.run("!", &opts());
    let target = f.artifacts().join("shout/loud.txt");
    let mtime = fs::metadata(&target).unwrap().modified().unwrap();
    let file = fs::OpenOptions::new().write(true).open(&target).unwrap();
    std::os::unix::fs::FileExt::write_at(&file, b"J", 0).unwrap();
    file.set_modified(mtime).unwrap();
    drop(file);
    let reports = f.run(
        "!",
        &RunOptions {
            verify: true,
            ..opts()
        },
    );
    assert_eq!(reports[0].outcome, Outcome::Ran);
    assert_eq!(f.read("shout/loud.txt"), "HELLO!");
}

#[test]
fn dry_run_and_until_change_nothing_outside_their_scope() {
    let f = Fixture::new();
    let dry = f.run(
        "!",
        &RunOptions {
            dry_run: true,
            ..opts()
        },
    );
    assert_eq!(
        outcomes(&dry),
        [("shout", Outcome::WouldRun), ("count", Outcome::WouldRun)]
    );
    assert_eq!(dry[1].reasons, ["upstream shout would run first"]);
    assert!(!f.artifacts().join("pipeline.lock").exists());

    let until = f.run(
        "!",
        &RunOptions {
            until: Some("shout".into()),
            ..opts()
        },
    );
    assert_eq!(outcomes(&until), [("shout", Outcome::Ran)]);
    assert_eq!(f.count_runs.get(), 0);

    let bad = f.pipeline("!", "", false).run(
        &f.artifacts(),
        &RunOptions {
            until: Some("nope".into()),
            ..opts()
        },
        &mut |_| {},
    );
    let msg = format!("{:#}", bad.unwrap_err());
    assert!(
        msg.contains("unknown stage \"nope\"") && msg.contains("shout, count")
            || msg.contains("count, shout"),
        "{msg}"
    );
}

#[test]
fn gc_removes_only_unreferenced_entries() {
    let f = Fixture::new();
    f.run("!", &opts());
    f.run("?", &opts());
    let p = f.pipeline("?", "", false);
    let would = p.gc(&f.artifacts(), true).unwrap();
    assert_eq!(would.len(), 2, "old shout and old count entries: {would:?}");
    assert!(
        would.iter().all(|(path, _)| path.exists()),
        "dry run removes nothing"
    );
    p.gc(&f.artifacts(), false).unwrap();
    assert!(would.iter().all(|(path, _)| !path.exists()));
    assert_eq!(
        outcomes(&f.run("?", &opts())),
        [("shout", Outcome::Cached), ("count", Outcome::Cached)]
    );
}

#[test]
fn killed_run_scratch_is_ignored_and_cleaned() {
    let f = Fixture::new();
    f.run("!", &opts());
    // What a SIGKILL in the middle of a stage leaves: a half-written scratch dir.
    let scratch = f.artifacts().join(".tmp/shout-999-0");
    fs::create_dir_all(&scratch).unwrap();
    fs::write(scratch.join("loud.txt"), "HAL").unwrap();
    assert_eq!(
        outcomes(&f.run("!", &opts())),
        [("shout", Outcome::Cached), ("count", Outcome::Cached)]
    );
    assert!(!scratch.exists());
}

#[test]
fn human_path_is_a_link_into_the_store() {
    let f = Fixture::new();
    let reports = f.run("!", &opts());
    let link = fs::read_link(f.artifacts().join("shout")).unwrap();
    assert_eq!(
        link,
        Path::new(".store/shout").join(reports[0].key.as_ref().unwrap())
    );
}
