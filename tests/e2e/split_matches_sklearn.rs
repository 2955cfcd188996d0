//! ingest's splits against scikit-learn's `train_test_split` itself (the
//! reference tutorial's two calls): same rows, same order, hence the same
//! per-class counts.

mod common;

use std::path::Path;

use common::{Project, py_script, run_python, shared_data};

/// row_ids of each split as written by ingest, and as sklearn makes them.
fn compare(project: &Project, csv: &Path, extra: &[&str], sklearn_args: &[&str]) {
    let mut args = vec!["run-pipeline", "--until", "ingest"];
    args.extend_from_slice(extra);
    project.cli(&args).ok();
    let ours = run_python(&[
        "-c",
        "import json,sys,pyarrow.parquet as pq\n\
         print(json.dumps({s: pq.read_table(f'{sys.argv[1]}/{s}.parquet').column('row_id').to_pylist() for s in ['train','val','test']}))",
        project.path("artifacts/ingest").to_str().unwrap(),
    ]);
    let script = py_script("sklearn_split.py");
    let mut py_args = vec![script.as_str(), csv.to_str().unwrap()];
    py_args.extend_from_slice(sklearn_args);
    let theirs = run_python(&py_args);
    let ours: serde_json::Value = serde_json::from_str(&ours).unwrap();
    let theirs: serde_json::Value = serde_json::from_str(&theirs).unwrap();
    for split in ["train", "val", "test"] {
        assert_eq!(
            ours[split],
            theirs[split],
            "{split} split differs from scikit-learn's for {}",
            csv.display()
        );
    }
}

fn project_for(csv: &Path) -> Project {
    let p = Project::empty();
    p.write_config(&format!(
        "[ingest]\ncsv = {:?}\n",
        csv.display().to_string()
    ));
    p
}

#[test]
fn sst2_split_equals_sklearn() {
    let csv = shared_data("sst2_train.csv");
    compare(&project_for(&csv), &csv, &[], &[]);
}

#[test]
fn uci_split_equals_sklearn_for_several_seeds_and_fractions() {
    let csv = shared_data("uci_amazon_yelp.csv");
    let p = project_for(&csv);
    compare(&p, &csv, &[], &[]);
    compare(&p, &csv, &["--set", "ingest.seed=7"], &["--seed", "7"]);
    compare(
        &p,
        &csv,
        &[
            "--set",
            "ingest.train_fraction=0.6",
            "--set",
            "ingest.val_fraction=0.1",
            "--set",
            "ingest.test_fraction=0.3",
        ],
        &["--test-size", "0.4", "--second-test-size", "0.75"],
    );
}

/// Class sizes where the proportional allocation leaves equal remainders,
/// so scikit-learn breaks ties with its random generator.
#[test]
fn tie_breaking_multiclass_splits_equal_sklearn() {
    let cases: [&[usize]; 4] = [
        &[21, 21, 21],
        &[13, 13, 17, 17],
        &[33, 12, 12, 9],
        &[10, 10, 10, 10, 10],
    ];
    for (case, counts) in cases.iter().enumerate() {
        let p = Project::empty();
        let mut csv = String::from("sentence,label\n");
        let mut n = 0;
        for (class, &count) in counts.iter().enumerate() {
            for _ in 0..count {
                csv.push_str(&format!("sentence number {n},{class}\n"));
                n += 1;
            }
        }
        // Interleave classes so row order is not sorted by label.
        let mut lines: Vec<&str> = csv.lines().skip(1).collect();
        lines.sort_by_key(|l| (l.len() * 31 + l.as_bytes()[l.len() - 1] as usize) % 17);
        let body = format!("sentence,label\n{}\n", lines.join("\n"));
        p.write_csv(body.as_bytes());
        p.write_config(&format!(
            "[ingest]\ncsv = \"data/input.csv\"\n{}",
            common::tiny_model()
        ));
        for seed in ["0", "1", "2021"] {
            compare(
                &p,
                &p.path("data/input.csv"),
                &["--set", &format!("ingest.seed={seed}")],
                &["--seed", seed],
            );
        }
        eprintln!("case {case} ok");
    }
}
