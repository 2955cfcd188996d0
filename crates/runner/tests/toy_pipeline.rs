//! The runner's contract, checked on two toy stages:
//! `shout` (external text file -> upper-cased copy, plus a suffix parameter)
//! and `count` (shout's output -> its byte count).

use std::cell::Cell;
use std::fs;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::Result;
use runner::{
    ChainBreak, Force, Input, Outcome, Pipeline, RunContext, RunOptions, Stage, StageReport,
};
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
    flip_first_byte_quietly(&f.artifacts().join("shout/loud.txt"));
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
        msg.contains("unknown stage \"nope\"")
            && (msg.contains("shout, count") || msg.contains("count, shout")),
        "{msg}"
    );
}

#[test]
fn gc_removes_only_unreferenced_entries() {
    let f = Fixture::new();
    f.run("!", &opts());
    f.run("?", &opts());
    let would = gc(&f, true).removed;
    assert_eq!(would.len(), 2, "old shout and old count entries: {would:?}");
    assert!(
        would.iter().all(|(path, _)| path.exists()),
        "dry run removes nothing"
    );
    gc(&f, false);
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

/// Flips the first byte of `path` keeping its size and mtime, so the digest
/// memo (size, mtime, inode) cannot notice.
fn flip_first_byte_quietly(path: &Path) {
    let mtime = fs::metadata(path).unwrap().modified().unwrap();
    let mut bytes = fs::read(path).unwrap();
    bytes[0] ^= 0x01;
    let file = fs::OpenOptions::new().write(true).open(path).unwrap();
    std::os::unix::fs::FileExt::write_at(&file, &bytes[..1], 0).unwrap();
    file.set_modified(mtime).unwrap();
}

#[test]
fn corrupt_input_is_caught_before_reuse_and_its_stage_recomputes() {
    let f = Fixture::new();
    f.run("!", &opts());
    flip_first_byte_quietly(&f.artifacts().join("shout/loud.txt"));
    // count must run (forced) and read shout's output: without --verify the
    // memo would vouch for it, but the runner re-hashes inputs before use.
    let reports = f.run(
        "!",
        &RunOptions {
            force: Force::Stages(vec!["count".into()]),
            ..opts()
        },
    );
    assert_eq!(
        outcomes(&reports),
        [("shout", Outcome::Ran), ("count", Outcome::Ran)]
    );
    assert!(
        reports[0]
            .reasons
            .iter()
            .any(|r| r.contains("loud.txt no longer matches its digest")),
        "{:?}",
        reports[0].reasons
    );
    assert_eq!(f.read("shout/loud.txt"), "HELLO!");
    assert_eq!(f.shout_runs.get(), 2);
}

/// A directory outside the artifacts folder with one file in it, to point
/// planted symlinks at; `untouched` checks nothing there changed.
struct Outside {
    dir: tempfile::TempDir,
}

impl Outside {
    fn new() -> Outside {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("precious.txt"), "keep me").unwrap();
        Outside { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn assert_untouched(&self) {
        let names: Vec<_> = fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            ["precious.txt"],
            "something was written outside artifacts/"
        );
        assert_eq!(
            fs::read_to_string(self.path().join("precious.txt")).unwrap(),
            "keep me"
        );
    }
}

fn plant_symlink(target: &Path, at: &Path) {
    if fs::symlink_metadata(at).is_ok() {
        if fs::symlink_metadata(at).unwrap().is_dir() {
            fs::remove_dir_all(at).unwrap();
        } else {
            fs::remove_file(at).unwrap();
        }
    }
    std::os::unix::fs::symlink(target, at).unwrap();
}

fn gc(f: &Fixture, dry_run: bool) -> runner::store::Collected {
    try_gc(f, dry_run).unwrap()
}

fn try_gc(f: &Fixture, dry_run: bool) -> Result<runner::store::Collected> {
    let lock = runner::RunLock::acquire(&f.artifacts(), true)?;
    runner::store::gc(&lock, &f.artifacts(), dry_run)
}

/// A link where the store keeps its own folders is refused by every
/// command (a run, a dry run, gc and its dry run), naming the link; what it
/// points to is neither followed, written, nor deleted.
#[test]
fn a_link_at_any_level_of_the_store_is_refused_by_every_command() {
    for level in [
        ".store",
        ".tmp",
        ".cache",
        ".store/shout",
        ".store/shout/<key>",
    ] {
        let f = Fixture::new();
        f.run("!", &opts());
        f.run("?", &opts()); // the "!" entries are now unreferenced: gc's to delete
        let key = fs::read_link(f.artifacts().join("shout"))
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let at = f.artifacts().join(level.replace("<key>", &key));
        // What a user does to move a big cache to another disk: the real
        // folder moved out, a link left in its place.
        let outside = tempfile::tempdir().unwrap();
        let moved = outside.path().join("moved");
        fs::rename(&at, &moved).unwrap();
        fs::write(moved.join("important"), "user data").unwrap();
        std::os::unix::fs::symlink(&moved, &at).unwrap();
        let before = tree(outside.path());

        let refused = |what: &str, result: Result<()>| {
            let msg = format!("{:#}", result.expect_err(what));
            assert!(
                msg.contains(&at.display().to_string()) && msg.contains("symbolic link"),
                "{level}, {what}: {msg}"
            );
        };
        refused("gc", try_gc(&f, false).map(|_| ()));
        refused("gc --dry-run", try_gc(&f, true).map(|_| ()));
        for (what, dry_run) in [("a run", false), ("a dry run", true)] {
            let options = RunOptions {
                dry_run,
                force: Force::All,
                ..opts()
            };
            let result = f
                .pipeline("?", "", false)
                .run(&f.artifacts(), &options, &mut |_| {});
            refused(what, result.map(|_| ()));
        }
        assert_eq!(tree(outside.path()), before, "{level}: outside changed");
        assert!(fs::symlink_metadata(&at).unwrap().is_symlink(), "{level}");
    }
}

/// The run lock's file is written (the holder's pid): a link there would
/// truncate a file outside the artifacts folder.
#[test]
fn a_link_as_the_run_lock_file_is_refused() {
    let f = Fixture::new();
    f.run("!", &opts());
    let outside = Outside::new();
    let lock = f.artifacts().join(".lock");
    fs::remove_file(&lock).unwrap();
    std::os::unix::fs::symlink(outside.path().join("precious.txt"), &lock).unwrap();
    let result = f
        .pipeline("!", "", false)
        .run(&f.artifacts(), &opts(), &mut |_| {});
    let msg = format!("{:#}", result.unwrap_err());
    assert!(
        msg.contains(".lock") && msg.contains("symbolic link"),
        "{msg}"
    );
    outside.assert_untouched();
}

/// Every file under `dir` with its content.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                stack.push(path);
            } else {
                let bytes = fs::read(&path).unwrap_or_default();
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

/// What is under `.store/<stage>/` without a manifest naming it is no store
/// entry: gc leaves it and says so.
#[test]
fn gc_leaves_what_is_not_a_store_entry() {
    let f = Fixture::new();
    f.run("!", &opts());
    let foreign = f.artifacts().join(".store/shout/notes");
    fs::create_dir_all(&foreign).unwrap();
    fs::write(foreign.join("mine.txt"), "not the store's").unwrap();
    let collected = gc(&f, false);
    assert!(collected.removed.is_empty(), "{:?}", collected.removed);
    assert_eq!(collected.left, std::slice::from_ref(&foreign));
    assert_eq!(
        fs::read_to_string(foreign.join("mine.txt")).unwrap(),
        "not the store's"
    );
}

/// `status` and `--dry-run` look only: with the folders gone, a changed
/// input (a digest to remember) and results to restore, the artifacts
/// folder is byte for byte what it was, and a folder that does not exist
/// is not created.
#[test]
fn a_dry_run_writes_nothing() {
    let dry = RunOptions {
        dry_run: true,
        ..opts()
    };
    let f = Fixture::new();
    f.run("!", &dry);
    assert!(
        !f.artifacts().exists(),
        "a dry run created the artifacts folder"
    );

    f.run("!", &opts());
    f.run("?", &opts());
    fs::remove_dir_all(f.artifacts().join(".tmp")).unwrap();
    fs::write(f.dir.path().join("in.txt"), "hello again").unwrap();
    let before = tree(&f.artifacts());
    let reports = f.run("!", &dry);
    assert_eq!(reports[0].outcome, Outcome::WouldRun);
    assert_eq!(tree(&f.artifacts()), before);
    assert!(!f.artifacts().join(".tmp").exists(), "a dry run made .tmp");
}

#[test]
fn planted_output_symlink_is_damage_and_is_not_written_through() {
    let f = Fixture::new();
    f.run("!", &opts());
    let outside = Outside::new();
    // Same content, so only the link itself makes it untrustworthy.
    fs::write(outside.path().join("precious.txt"), "HELLO!").unwrap();
    let entry = fs::canonicalize(f.artifacts().join("shout")).unwrap();
    plant_symlink(
        &outside.path().join("precious.txt"),
        &entry.join("loud.txt"),
    );
    let reports = f.run("!", &opts());
    assert_eq!(reports[0].outcome, Outcome::Ran);
    assert!(
        reports[0].reasons[0].contains("missing"),
        "{:?}",
        reports[0].reasons
    );
    assert_eq!(
        fs::read_to_string(outside.path().join("precious.txt")).unwrap(),
        "HELLO!"
    );
    let now = f.artifacts().join("shout/loud.txt");
    assert!(!fs::symlink_metadata(&now).unwrap().is_symlink());
}

#[test]
fn manifest_naming_a_file_outside_its_entry_is_not_trusted() {
    let f = Fixture::new();
    f.run("!", &opts());
    let outside = Outside::new();
    let entry = fs::canonicalize(f.artifacts().join("shout")).unwrap();
    let manifest_path = entry.join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&fs::read(&manifest_path).unwrap()).unwrap();
    let record = manifest["outputs"]["loud.txt"].clone();
    let escape = format!(
        "../../../../{}",
        outside.path().join("precious.txt").display()
    );
    manifest["outputs"] = json!({ escape: record });
    fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let reports = f.run("!", &opts());
    assert_eq!(reports[0].outcome, Outcome::Ran);
    outside.assert_untouched();
    assert_eq!(f.read("shout/loud.txt"), "HELLO!");
}

#[test]
fn chain_break_finds_a_result_made_from_an_earlier_upstream_result() {
    let f = Fixture::new();
    let pipeline = f.pipeline("!", "", false);
    let lock_of =
        || runner::manifest::LockFile::load(&f.artifacts().join("pipeline.lock")).unwrap();
    assert_eq!(
        pipeline
            .chain_break(&f.artifacts(), &lock_of(), "count")
            .unwrap(),
        Some(ChainBreak::Missing {
            stage: "shout".into()
        })
    );
    f.run("!", &opts());
    assert_eq!(
        pipeline
            .chain_break(&f.artifacts(), &lock_of(), "count")
            .unwrap(),
        None
    );
    // shout moves on alone: count's recorded input is no longer shout's output.
    f.run(
        "?",
        &RunOptions {
            until: Some("shout".into()),
            ..opts()
        },
    );
    let stale = ChainBreak::Stale {
        stage: "count".into(),
        upstream: "shout".into(),
    };
    assert_eq!(
        pipeline
            .chain_break(&f.artifacts(), &lock_of(), "count")
            .unwrap(),
        Some(stale)
    );
    assert_eq!(
        pipeline
            .chain_break(&f.artifacts(), &lock_of(), "shout")
            .unwrap(),
        None
    );
    // A link that no longer names the locked result.
    f.run("?", &opts());
    fs::remove_file(f.artifacts().join("count")).unwrap();
    assert!(matches!(
        pipeline.chain_break(&f.artifacts(), &lock_of(), "count").unwrap(),
        Some(ChainBreak::Unlinked { stage, .. }) if stage == "count"
    ));
}

/// A stage whose external input is not on this machine yet.
struct Remote;

impl Stage for Remote {
    fn name(&self) -> &str {
        "remote"
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self) -> Value {
        json!({})
    }
    fn inputs(&self) -> Vec<Input> {
        vec![Input::not_fetched("weights.bin", "hub:org/model")]
    }
    fn outputs(&self) -> Vec<String> {
        vec!["out.txt".into()]
    }
    fn run(&self, _: &mut RunContext) -> Result<()> {
        panic!("a stage with an unfetched input must never run")
    }
}

#[test]
fn an_input_not_fetched_is_reported_by_a_dry_run_and_refused_by_a_real_one() {
    let dir = tempfile::tempdir().unwrap();
    let artifacts = dir.path().join("artifacts");
    let p = Pipeline::new(vec![Box::new(Remote)]).unwrap();
    let dry = RunOptions {
        dry_run: true,
        ..opts()
    };
    let reports = p.run(&artifacts, &dry, &mut |_| {}).unwrap();
    assert_eq!(outcomes(&reports), [("remote", Outcome::WouldRun)]);
    assert_eq!(
        reports[0].reasons,
        ["input weights.bin is not fetched yet (a run fetches it from hub:org/model)"]
    );
    let err = p.run(&artifacts, &opts(), &mut |_| {}).unwrap_err();
    assert!(
        format!("{err:#}").contains("remote: input weights.bin is not fetched yet"),
        "{err:#}"
    );
    assert!(
        p.dag_text()
            .contains("<- weights.bin: not fetched yet (from hub:org/model)")
    );
}
