//! Data safety across processes: nothing outside `artifacts/` is touched
//! (a link at any level of the store or the feature store is refused by
//! every command, and what it points to survives `gc`), reads happen under
//! the run lock (`predict` scores the chain it checked, `status` writes
//! nothing while a run holds the store, a sweep's figures are its own
//! variant's), and a reader that closes the pipe at once is no error.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Background, Project, shared_data};

/// The UCI reviews through the tiny model on the CPU, a head that predicts
/// both classes (so a wrong head shows in the probabilities).
fn trained() -> Project {
    let p = Project::uci_tiny_two_classes();
    p.cli(&["run-pipeline"]).ok();
    p
}

/// The file a run locks, opened as a run opens it: locking it stands in for
/// a run in progress.
fn run_lock(p: &Project) -> fs::File {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p.path("artifacts/.lock"))
        .unwrap()
}

/// Every file and link under `dir` with its bytes (a link: its target).
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_symlink() {
                let target = fs::read_link(&path).unwrap();
                out.push((path, target.into_os_string().into_encoded_bytes()));
            } else if meta.is_dir() {
                out.push((path.clone(), Vec::new()));
                stack.push(path);
            } else {
                out.push((path.clone(), fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// The CLI with its stdout a pipe whose reader is gone before the command
/// writes a byte (`cargo xtask gc | head -0`).
fn with_closed_stdout(p: &Project, args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pipeline-cli"))
        .args(args)
        .arg("--config")
        .arg(p.path("pipeline.toml"))
        .current_dir(p.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_command_takes_a_closed_pipe_as_success() {
    let p = trained();
    let uci = shared_data("uci_amazon_yelp.csv");
    let embed = p.path("artifacts/embed");
    let (uci, embed) = (uci.to_str().unwrap(), embed.to_str().unwrap());
    // `serve` writes nothing on stdout (its address goes to stderr), and
    // `embed-chunk` is a worker's task fed on stdin: neither is here.
    let commands: &[&[&str]] = &[
        &["run-pipeline"],
        &["run-pipeline", "--dry-run"],
        &["status"],
        &["status", "--json"],
        &["dag"],
        &["predict", "--text", "a fine film"],
        &["evaluate", "--csv", uci],
        &["compare-features", embed, embed],
        &["embed-bench", "--passes", "1"],
        &["sweep", "--set", "head.epochs=1,2"],
        &["runs"],
        &["runs", "--json"],
        &["diff", "current", "current"],
        &["gc", "--dry-run"],
        &["gc"],
    ];
    let mut failures = Vec::new();
    for args in commands {
        let (code, stderr) = with_closed_stdout(&p, args);
        if code != Some(0) || stderr.contains("panicked") {
            failures.push(format!("{args:?}: exit {code:?}, stderr:\n{stderr}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// What a user does to move a big cache to another disk: the real folder
/// (or file) moved out of the artifacts folder, a link left in its place,
/// with files of the user's beside the moved data.
fn move_out_and_link(at: &Path, outside: &Path) {
    let moved = outside.join("moved");
    fs::rename(at, &moved).unwrap();
    let mine = if moved.is_dir() {
        moved.clone()
    } else {
        outside.to_path_buf()
    };
    fs::write(mine.join("important"), "the user's").unwrap();
    fs::create_dir_all(mine.join(".tmp")).unwrap();
    fs::write(mine.join(".tmp/also-mine"), "the user's").unwrap();
    fs::write(mine.join("notes.parquet"), "not a chunk").unwrap();
    std::os::unix::fs::symlink(&moved, at).unwrap();
}

#[test]
fn a_link_anywhere_in_the_store_is_refused_and_what_it_points_to_survives() {
    let p = trained();
    // Something for gc to delete at every level: an unreferenced result of
    // every stage after ingest, and a vector only predict asked for.
    p.cli(&["run-pipeline", "--set", "ingest.seed=7"]).ok();
    p.cli(&["run-pipeline"]).ok();
    p.cli(&["predict", "--text", "a sentence only predict has seen"])
        .ok();
    let chunk = fs::read_dir(p.path("artifacts/.cache/embed/chunks"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let head_key = fs::read_dir(p.path("artifacts/.store/head"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let levels: Vec<PathBuf> = vec![
        ".store".into(),
        ".store/head".into(),
        Path::new(".store/head").join(&head_key),
        ".cache".into(),
        ".cache/embed".into(),
        ".cache/embed/chunks".into(),
        Path::new(".cache/embed/chunks").join(&chunk),
    ];
    for level in levels {
        let at = p.path("artifacts").join(&level);
        let outside = tempfile::tempdir().unwrap();
        move_out_and_link(&at, outside.path());
        let before = tree(outside.path());
        for args in [
            &["gc"][..],
            &["gc", "--dry-run"],
            &["status"],
            &["run-pipeline"],
            &["run-pipeline", "--force", "embed"],
            &["predict", "--text", "another new sentence"],
        ] {
            let run = p.cli(args);
            assert_ne!(run.code, 0, "{level:?} {args:?} succeeded:\n{}", run.stdout);
            assert!(
                run.stderr
                    .contains(&format!("{} is a symbolic link", at.display())),
                "{level:?} {args:?}: {}",
                run.stderr
            );
        }
        assert_eq!(tree(outside.path()), before, "{level:?}: outside changed");
        // The user puts the data back: everything works again.
        fs::remove_file(&at).unwrap();
        fs::rename(outside.path().join("moved"), &at).unwrap();
        for leftover in ["important", "notes.parquet", ".tmp"] {
            let path = if at.is_dir() {
                at.join(leftover)
            } else {
                outside.path().join(leftover)
            };
            if path.is_dir() {
                fs::remove_dir_all(path).unwrap();
            } else {
                let _ = fs::remove_file(path);
            }
        }
        p.cli(&["run-pipeline"]).ok();
    }
    // A sweep writes its table into artifacts/sweeps/: a link there is
    // refused before any variant runs.
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("sweep.parquet"), "the user's").unwrap();
    std::os::unix::fs::symlink(outside.path(), p.path("artifacts/sweeps")).unwrap();
    let sweep = p.cli(&["sweep", "--set", "head.epochs=1,2"]);
    assert_ne!(sweep.code, 0, "{}", sweep.stdout);
    assert!(
        sweep.stderr.contains("is a symbolic link"),
        "{}",
        sweep.stderr
    );
    assert_eq!(
        fs::read_to_string(outside.path().join("sweep.parquet")).unwrap(),
        "the user's"
    );
    fs::remove_file(p.path("artifacts/sweeps")).unwrap();
    // The whole artifacts folder may live elsewhere behind one link.
    let elsewhere = tempfile::tempdir().unwrap();
    let real = elsewhere.path().join("artifacts");
    fs::rename(p.path("artifacts"), &real).unwrap();
    std::os::unix::fs::symlink(&real, p.path("artifacts")).unwrap();
    let run = p.cli(&["run-pipeline"]);
    assert!(
        ["ingest", "head", "export"]
            .iter()
            .all(|s| run.ok().outcome(s) == "cached"),
        "{}",
        run.stdout
    );
    p.cli(&["gc"]).ok();
}

/// Points `artifacts/<stage>` of `p` where `links` says and writes
/// `lock`: what a run that restores those results does, under the lock.
fn make_current(p: &Project, links: &[(String, PathBuf)], lock: &[u8]) {
    for (stage, target) in links {
        let link = p.path("artifacts").join(stage);
        let tmp = p.path("artifacts").join(format!(".{stage}.test-link"));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(target, &tmp).unwrap();
        fs::rename(&tmp, &link).unwrap();
    }
    let tmp = p.path("artifacts/.pipeline.lock.test");
    fs::write(&tmp, lock).unwrap();
    fs::rename(&tmp, p.path("artifacts/pipeline.lock")).unwrap();
}

fn current(p: &Project) -> (Vec<(String, PathBuf)>, Vec<u8>) {
    let links = [
        "ingest", "model", "encode", "embed", "head", "audit", "report", "export",
    ]
    .iter()
    .map(|s| {
        (
            s.to_string(),
            fs::read_link(p.path("artifacts").join(s)).unwrap(),
        )
    })
    .collect();
    (links, fs::read(p.path("artifacts/pipeline.lock")).unwrap())
}

/// `predict` takes the run lock before it checks the chain: a run that
/// makes another configuration current while predict waits is the chain
/// predict then checks and scores, never half of each.
#[test]
fn predict_scores_the_chain_it_checked() {
    let p = trained();
    p.cli(&["run-pipeline", "--set", "embed.pooling=\"cls\""])
        .ok();
    let (cls_links, cls_lock) = current(&p);
    p.cli(&["run-pipeline"]).ok(); // mean pooling current again
    let texts = ["--text", "a warm, funny film", "--text", "a waste of time"];
    let mut args = vec!["predict"];
    args.extend(texts);

    let holder = run_lock(&p);
    holder.lock().unwrap();
    let mut waiting = Background::start(&p, &args);
    waiting.wait_for_stderr("waiting: another pipeline run");
    // The stand-in run: the cls results become current.
    make_current(&p, &cls_links, &cls_lock);
    holder.unlock().unwrap();
    let scored = waiting.finish();
    scored.ok();

    let alone = p.cli(&args);
    assert_eq!(scored.stdout, alone.ok().stdout, "predict mixed two chains");
    let mean = {
        p.cli(&["run-pipeline"]).ok();
        p.cli(&args).ok().stdout.clone()
    };
    assert_ne!(
        mean, alone.stdout,
        "the two configurations must score apart"
    );
}

/// `status` takes no lock and writes nothing: while a run holds the store
/// it answers at once, and the artifacts folder is byte for byte the same
/// afterwards, though the CSV changed (a digest to remember) and scratch
/// and cache folders are missing (folders to create).
#[test]
fn status_answers_beside_a_run_and_writes_nothing() {
    let p = Project::with_csv(&fs::read(shared_data("uci_amazon_yelp.csv")).unwrap());
    let csv = p.path("data/input.csv");
    p.cli(&["run-pipeline"]).ok();
    let mut text = fs::read_to_string(&csv).unwrap();
    text.push_str("one more review of the film,1\n");
    fs::write(&csv, text).unwrap();
    fs::remove_dir_all(p.path("artifacts/.tmp")).unwrap();
    let before = tree(&p.path("artifacts"));

    let holder = run_lock(&p);
    holder.lock().unwrap();
    let status = p.cli(&["status"]);
    assert!(
        status.ok().stdout.starts_with("ingest   would run"),
        "{}",
        status.stdout
    );
    p.cli(&["run-pipeline", "--dry-run"]).ok();
    holder.unlock().unwrap();
    assert_eq!(tree(&p.path("artifacts")), before, "status wrote");
}

/// `status` on an artifacts folder mounted read-only (a private mount
/// namespace, `unshare -m`): it answers, though the CSV changed since the
/// run (a digest it must compute and not save).
#[test]
fn status_answers_on_a_read_only_artifacts_folder() {
    if !Command::new("unshare")
        .args(["-m", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("this machine cannot make a mount namespace (unshare -m): not tested here");
        return;
    }
    let p = Project::with_csv(&fs::read(shared_data("uci_amazon_yelp.csv")).unwrap());
    p.cli(&["run-pipeline"]).ok();
    let csv = p.path("data/input.csv");
    let mut text = fs::read_to_string(&csv).unwrap();
    text.push_str("one more review of the film,1\n");
    fs::write(&csv, text).unwrap();
    let artifacts = p.path("artifacts");
    let script = format!(
        "mount --bind -o ro {a} {a} && touch {a}/probe 2>/dev/null && echo writable; exec {cli} status --config {config}",
        a = artifacts.display(),
        cli = env!("CARGO_BIN_EXE_pipeline-cli"),
        config = p.path("pipeline.toml").display()
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .current_dir(p.dir.path())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!stdout.contains("writable"), "the mount is not read-only");
    assert!(
        out.status.success(),
        "status failed on a read-only folder: {stderr}"
    );
    assert!(stdout.starts_with("ingest   would run"), "{stdout}");
}

/// A sweep measures each variant inside the run lock its run held, from
/// the variant's own stage keys: runs of another configuration in between
/// (here: back to back, as fast as they can) never lend it their figures.
#[test]
fn a_sweep_reports_its_own_variants_figures_beside_other_runs() {
    let p = trained();
    let other = ["run-pipeline", "--set", "head.epochs=3"];
    p.cli(&other).ok();
    let expected_key = |epochs: &str| -> String {
        let set = format!("head.epochs={epochs}");
        let json: serde_json::Value =
            serde_json::from_str(&p.cli(&["status", "--json", "--set", &set]).ok().stdout).unwrap();
        json.as_array()
            .unwrap()
            .iter()
            .find(|r| r["stage"] == "head")
            .unwrap()["key"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rival = {
        let (stop, config) = (stop.clone(), p.path("pipeline.toml"));
        std::thread::spawn(move || {
            let mut runs = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let status = Command::new(env!("CARGO_BIN_EXE_pipeline-cli"))
                    .args(other)
                    .arg("--config")
                    .arg(&config)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .unwrap();
                assert!(status.success());
                runs += 1;
            }
            runs
        })
    };
    let sweep = p.cli(&["sweep", "--set", "head.epochs=1,2,4,5"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(rival.join().unwrap() > 0);
    sweep.ok();
    let table = p.path("artifacts/sweeps/sweep.parquet");
    let out = common::run_python(&[
        "-c",
        "import sys, pyarrow.parquet as pq\n\
         for r in pq.read_table(sys.argv[1]).to_pylist():\n\
         \x20   print(r['head.epochs'], r['head_key'], r['val_loss'], r['best_epoch'])",
        table.to_str().unwrap(),
    ]);
    for line in out.lines() {
        let cells: Vec<&str> = line.split_whitespace().collect();
        let key = expected_key(cells[0]);
        assert_eq!(cells[1], key, "variant head.epochs={}: {line}", cells[0]);
        let history = p.path(&format!("artifacts/.store/head/{key}/history.parquet"));
        let own = common::run_python(&[
            "-c",
            "import sys, pyarrow.parquet as pq\n\
             t = pq.read_table(sys.argv[1]); best = int(t.schema.metadata[b'best_epoch'])\n\
             r = [r for r in t.to_pylist() if r['epoch'] == best][0]\n\
             print(r['val_loss'], best)",
            history.to_str().unwrap(),
        ]);
        let own: Vec<&str> = own.split_whitespace().collect();
        assert_eq!(&cells[2..], &own[..], "variant head.epochs={}", cells[0]);
    }
}
