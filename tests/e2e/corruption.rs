//! Stored artifacts deleted, truncated, or with one byte flipped (size and
//! mtime kept, so only re-hashing can tell): each is detected, named, and its
//! stage recomputes the same result. Nothing wrong is ever served.

mod common;

use std::fs;
use std::path::Path;

use common::Project;

/// One stored file of every stage.
const FILES: [&str; 6] = [
    "ingest/train.parquet",
    "model/model.onnx",
    "encode/val.parquet",
    "embed/train.parquet",
    "head/head.safetensors",
    "report/metrics.json",
];

#[derive(Debug, Clone, Copy)]
enum Damage {
    Delete,
    Truncate,
    /// One byte changed in place; size and mtime restored.
    QuietFlip,
}

fn damage(path: &Path, how: Damage) {
    match how {
        Damage::Delete => fs::remove_file(path).unwrap(),
        Damage::Truncate => {
            let bytes = fs::read(path).unwrap();
            fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
        }
        Damage::QuietFlip => {
            let mtime = fs::metadata(path).unwrap().modified().unwrap();
            let mut bytes = fs::read(path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x20;
            let file = fs::OpenOptions::new().write(true).open(path).unwrap();
            std::os::unix::fs::FileExt::write_at(&file, &bytes[middle..=middle], middle as u64)
                .unwrap();
            file.set_modified(mtime).unwrap();
        }
    }
}

#[test]
fn every_damaged_artifact_is_detected_and_recomputed() {
    let p = Project::uci_tiny_on_cpu();
    p.cli(&["run-pipeline"]).ok();
    let want = p.untimed_output_digests();
    let mut detected = 0;
    let mut cases = 0;
    for file in FILES {
        let (stage, name) = file.split_once('/').unwrap();
        for how in [Damage::Delete, Damage::Truncate, Damage::QuietFlip] {
            cases += 1;
            let what = format!("{file} ({how:?})");
            damage(&p.path(&format!("artifacts/{file}")), how);
            let verify = matches!(how, Damage::QuietFlip);
            if verify {
                // Size and mtime unchanged: the digest memo alone vouches
                // for it, which is why --verify exists.
                assert!(
                    p.status(false).iter().all(|(_, o, _)| o == "cached"),
                    "{what}"
                );
            }
            let seen = p.status(verify);
            let (_, outcome, reasons) = seen.iter().find(|(s, _, _)| s == stage).unwrap();
            assert_eq!(outcome, "would-run", "{what}: {seen:?}");
            assert!(reasons.contains(name), "{what}: reasons {reasons}");
            detected += 1;

            let args: &[&str] = if verify {
                &["run-pipeline", "--verify"]
            } else {
                &["run-pipeline"]
            };
            let run = p.cli(args);
            run.ok();
            assert_eq!(run.outcome(stage), "ran", "{what}:\n{}", run.stdout);
            assert_eq!(
                p.untimed_output_digests(),
                want,
                "{what}: recomputed result differs"
            );
            assert!(
                p.status(true).iter().all(|(_, o, _)| o == "cached"),
                "{what}: store not clean after the repair"
            );
        }
    }
    println!("{cases} corruptions, {detected} detected and recomputed");
    assert_eq!(detected, cases);
}

#[test]
fn a_corrupt_input_is_recomputed_before_a_downstream_stage_reads_it() {
    let p = Project::uci_tiny_on_cpu();
    p.cli(&["run-pipeline"]).ok();
    let want = p.untimed_output_digests();
    // A quiet flip in the features, then a head change: head must not train
    // on the corrupt features even though no --verify was asked for.
    damage(&p.path("artifacts/embed/train.parquet"), Damage::QuietFlip);
    let run = p.cli(&["run-pipeline", "--set", "head.epochs=3"]);
    run.ok();
    assert_eq!(run.outcome("embed"), "ran", "{}", run.stdout);
    assert!(
        run.stdout
            .contains("stored output train.parquet no longer matches its digest"),
        "{}",
        run.stdout
    );
    let back = p.cli(&["run-pipeline"]);
    back.ok();
    assert_eq!(p.untimed_output_digests(), want);
}
