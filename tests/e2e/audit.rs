//! The audit stage and the ingest options that act on what it finds:
//! planted leaks and flipped labels found, the overlap equal to a
//! brute-force Python recomputation, the label-issue ranking equal to
//! cleanlab's on the same out-of-fold probabilities, and `ingest.dedup` /
//! `ingest.group_column` doing what they say.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use common::{Project, py_script, run_python, shared_data};

/// The UCI reviews with every 25th label flipped, and planted copies: the
/// same text re-cased and re-spaced (exact), a 4-word fragment (inside), and
/// the sentence inside a longer one (contains). Returns the CSV and the
/// row ids of the flipped rows.
fn planted_csv() -> (String, BTreeSet<i64>) {
    let mut reader = csv::Reader::from_path(shared_data("uci_amazon_yelp.csv")).unwrap();
    let rows: Vec<(String, i64)> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_string(), r[1].trim().parse().unwrap())
        })
        .collect();
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(["sentence", "label"]).unwrap();
    let mut flipped = BTreeSet::new();
    for (i, (sentence, label)) in rows.iter().enumerate() {
        let label = if i % 25 == 7 {
            flipped.insert(i as i64);
            1 - label
        } else {
            *label
        };
        out.write_record([sentence.as_str(), &label.to_string()])
            .unwrap();
    }
    for (i, (sentence, label)) in rows.iter().enumerate().step_by(13).take(150) {
        let words: Vec<&str> = sentence.split_whitespace().collect();
        let planted = match i % 3 {
            0 => format!("  {}  ", sentence.to_uppercase().replace(',', " , ")),
            1 if words.len() > 6 => words[1..5].join(" "),
            _ => format!("Honestly, {sentence} That is all."),
        };
        out.write_record([planted.as_str(), &label.to_string()])
            .unwrap();
    }
    (
        String::from_utf8(out.into_inner().unwrap()).unwrap(),
        flipped,
    )
}

#[test]
fn audit_finds_leaks_and_flipped_labels_as_the_oracles_do() {
    let (csv_text, flipped) = planted_csv();
    let p = Project::empty();
    p.write_csv(csv_text.as_bytes());
    p.write_config("[ingest]\ncsv = \"data/input.csv\"\n[embed]\ndevice = \"cpu\"\n");
    let run = p.cli(&["run-pipeline", "--until", "report"]);
    run.ok();
    let artifacts = p.path("artifacts");

    // The overlap, row for row, as a brute-force recomputation finds it.
    let oracle: serde_json::Value = serde_json::from_str(&run_python(&[
        &py_script("audit_oracle.py"),
        "overlap",
        artifacts.to_str().unwrap(),
        "3",
        "0.95",
    ]))
    .unwrap();
    let ours = tables::audit::read_overlap(&artifacts.join("audit/overlap.parquet")).unwrap();
    let key =
        |split: &str, row_id: i64, against: &str| (split.to_string(), row_id, against.to_string());
    let mut expected: BTreeMap<_, (String, f64)> = BTreeMap::new();
    for row in oracle["rows"].as_array().unwrap() {
        let r = row.as_array().unwrap();
        expected.insert(
            key(
                r[0].as_str().unwrap(),
                r[1].as_i64().unwrap(),
                r[2].as_str().unwrap(),
            ),
            (r[3].as_str().unwrap().to_string(), r[4].as_f64().unwrap()),
        );
    }
    let found: BTreeMap<_, _> = ours
        .iter()
        .map(|r| {
            (
                key(&r.split, r.row_id, &r.against),
                (r.kind.clone(), f64::from(r.cosine)),
            )
        })
        .collect();
    assert_eq!(
        found.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "which rows overlap"
    );
    for (k, (kind, cosine)) in &found {
        assert_eq!(kind, &expected[k].0, "{k:?}");
        assert!(
            (cosine - expected[k].1).abs() < 1e-4,
            "{k:?}: cosine {cosine} vs {}",
            expected[k].1
        );
    }
    // Every planted kind leaked into the test split at least once.
    for kind in ["exact", "inside", "contains"] {
        assert!(
            ours.iter()
                .any(|r| r.split == "test" && r.against == "train" && r.kind == kind),
            "no {kind} overlap of test with train found"
        );
    }

    // The report: the accuracy on the test rows that share nothing with training.
    let metrics: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(artifacts.join("report/metrics.json")).unwrap(),
    )
    .unwrap();
    let test_rows = metrics["support"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum::<u64>();
    let leaked = ours
        .iter()
        .filter(|r| r.split == "test" && r.against == "train")
        .count() as u64;
    let held = &metrics["test_without_train_overlap"];
    assert_eq!(held["rows"].as_u64().unwrap(), test_rows - leaked);
    let phrase = format!(
        "on the {} test rows that share nothing with training {:.4}",
        test_rows - leaked,
        held["accuracy"].as_f64().unwrap()
    );
    assert!(
        run.stdout.contains(&phrase),
        "{phrase} not in:\n{}",
        run.stdout
    );
    let html = std::fs::read_to_string(artifacts.join("report/report.html")).unwrap();
    assert!(html.contains(&phrase) && html.contains("Suspected label errors"));

    // The label-issue ranking is cleanlab's on the same probabilities
    // (rows of equal self-confidence may come in either order).
    let issues =
        tables::audit::read_label_issues(&artifacts.join("audit/label_issues.parquet")).unwrap();
    let cleanlab: serde_json::Value = serde_json::from_str(&run_python(&[
        &py_script("audit_oracle.py"),
        "cleanlab",
        artifacts.join("audit").to_str().unwrap(),
    ]))
    .unwrap();
    let theirs: Vec<i64> = cleanlab["row_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let their_confidence: Vec<f64> = cleanlab["self_confidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let ids: Vec<i64> = issues.iter().map(|r| r.row_id).collect();
    assert!(!ids.is_empty());
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>(),
        theirs.iter().collect::<BTreeSet<_>>(),
        "the flagged rows"
    );
    let confidence: Vec<f64> = issues
        .iter()
        .map(|r| f64::from(r.self_confidence))
        .collect();
    assert_eq!(confidence.len(), their_confidence.len());
    for (i, (a, b)) in confidence.iter().zip(&their_confidence).enumerate() {
        assert!(
            (a - b).abs() < 1e-7,
            "rank {i}: self-confidence {a} vs cleanlab's {b}"
        );
    }

    // And it finds what was planted: most flipped training rows are flagged,
    // with their original label suggested.
    let train = tables::splits::read(&artifacts.join("ingest/train.parquet")).unwrap();
    let flipped_in_train: Vec<i64> = train
        .iter()
        .map(|r| r.row_id)
        .filter(|id| flipped.contains(id))
        .collect();
    let suggested: HashMap<i64, i64> = issues.iter().map(|r| (r.row_id, r.suggested)).collect();
    let caught = flipped_in_train
        .iter()
        .filter(|id| {
            suggested
                .get(id)
                .is_some_and(|&s| s != train.iter().find(|r| r.row_id == **id).unwrap().label)
        })
        .count();
    assert!(
        caught * 2 > flipped_in_train.len(),
        "{caught} of {} flipped training rows flagged",
        flipped_in_train.len()
    );
    let searches =
        tables::audit::read_feature_search(&artifacts.join("audit/overlap.parquet")).unwrap();
    assert!(
        searches.len() == 3 && searches.iter().all(|s| s.approximate.is_none()),
        "below audit.exact_search_rows every search is exact: {searches:?}"
    );

    // Past the in-memory sizes (forced low here): the approximate search
    // finds the same text overlaps and what its recall says of the cosines,
    // and the streamed probe still catches the flipped labels.
    let oof_accuracy = |dir: &std::path::Path| -> f64 {
        tables::metadata_value(
            &dir.join("audit/label_issues.parquet"),
            "out_of_fold_accuracy",
        )
        .unwrap()
        .parse()
        .unwrap()
    };
    let in_memory_accuracy = oof_accuracy(&artifacts);
    let scaled = p.cli(&[
        "run-pipeline",
        "--until",
        "report",
        "--set",
        "audit.exact_search_rows=0",
        "--set",
        "audit.search_cluster_rows=64",
        "--set",
        "audit.search_probes=4",
        "--set",
        // Of val's 322 rows: 150 state the recall, 150 tune the probes.
        "audit.recall_sample=150",
        "--set",
        "audit.probe_in_memory_rows=0",
    ]);
    scaled.ok();
    let searches =
        tables::audit::read_feature_search(&artifacts.join("audit/overlap.parquet")).unwrap();
    for s in &searches {
        let a = s.approximate.expect("approximate past exact_search_rows");
        // From 4 up, the fewest that found 0.97 of the tuning rows (the
        // default audit.search_recall), or every cluster.
        assert!(a.probes >= 4 && a.tuning_sampled > 0, "{s:?}");
        assert!(
            a.tuning_found as f64 >= 0.97 * a.tuning_sampled as f64 || a.probes == a.clusters,
            "{s:?}"
        );
        assert!(a.clusters > 4 && a.sampled > 0, "{s:?}");
        assert!(a.recall() >= 0.8, "{s:?}");
    }
    assert!(
        scaled.stdout.contains("linear, streamed minibatches"),
        "{}",
        scaled.stdout
    );
    let html = std::fs::read_to_string(artifacts.join("report/report.html")).unwrap();
    assert!(
        html.contains("approximately: val in train: "),
        "the report says how it searched"
    );
    let approximate =
        tables::audit::read_overlap(&artifacts.join("audit/overlap.parquet")).unwrap();
    let text_kinds =
        |rows: &[tables::audit::OverlapRow]| -> BTreeSet<(String, i64, String, String)> {
            rows.iter()
                .filter(|r| r.kind != "near_duplicate")
                .map(|r| (r.split.clone(), r.row_id, r.against.clone(), r.kind.clone()))
                .collect()
        };
    assert_eq!(
        text_kinds(&approximate),
        text_kinds(&ours),
        "text overlap does not change"
    );
    for r in &approximate {
        let exact = found[&key(&r.split, r.row_id, &r.against)].1;
        assert!(
            f64::from(r.cosine) <= exact + 1e-4,
            "no cosine above the exact one: {r:?}"
        );
    }
    let streamed_accuracy = oof_accuracy(&artifacts);
    assert!(
        (streamed_accuracy - in_memory_accuracy).abs() < 0.05,
        "out-of-fold accuracy streamed {streamed_accuracy} vs in memory {in_memory_accuracy}"
    );
    let issues =
        tables::audit::read_label_issues(&artifacts.join("audit/label_issues.parquet")).unwrap();
    let flagged: BTreeSet<i64> = issues.iter().map(|r| r.row_id).collect();
    let caught = flipped_in_train
        .iter()
        .filter(|id| flagged.contains(id))
        .count();
    assert!(
        caught * 2 > flipped_in_train.len(),
        "streamed: {caught} of {} flipped training rows flagged",
        flipped_in_train.len()
    );
}

/// 80 reviews of 2 to 5 phrases each, a review's phrases sharing its label;
/// every 10th review repeats its first phrase (re-cased) as its last.
fn grouped_csv() -> String {
    let mut s = String::from("sentence,label,review\n");
    for review in 0..80 {
        let label = review % 2;
        let mood = if label == 1 { "lovely" } else { "dreadful" };
        for phrase in 0..(review % 4 + 2) {
            s.push_str(&format!(
                "the {mood} part {phrase} of review {review},{label},r{review}\n"
            ));
        }
        if review % 10 == 0 {
            s.push_str(&format!(
                "The {mood}  PART 0 of review {review},{label},r{review}\n"
            ));
        }
    }
    s
}

#[test]
fn dedup_and_group_split_are_keyed_and_do_what_they_say() {
    let csv_text = grouped_csv();
    let p = Project::with_csv(csv_text.as_bytes());
    p.cli(&["run-pipeline", "--until", "ingest"]).ok();
    let set = [
        "--set",
        "ingest.group_column=\"review\"",
        "--set",
        "ingest.dedup=\"exact\"",
    ];
    let mut args = vec!["status"];
    args.extend(set);
    let status = p.cli(&args);
    assert!(
        status
            .ok()
            .stdout
            .contains("parameter ingest.group_column added: \"review\"")
            && status
                .stdout
                .contains("parameter ingest.dedup added: \"exact\""),
        "{}",
        status.stdout
    );
    let mut args = vec!["run-pipeline", "--until", "audit"];
    args.extend(set);
    let run = p.cli(&args);
    run.ok();
    assert!(
        run.stdout
            .contains("8 rows repeating an earlier row's text dropped"),
        "{}",
        run.stdout
    );

    let group_of: HashMap<i64, String> = csv_text
        .lines()
        .skip(1)
        .enumerate()
        .map(|(i, line)| (i as i64, line.rsplit(',').next().unwrap().to_string()))
        .collect();
    let mut split_of_group: HashMap<String, &str> = HashMap::new();
    let mut texts = BTreeSet::new();
    let mut rows = 0;
    for split in ["train", "val", "test"] {
        let read =
            tables::splits::read(&p.path(&format!("artifacts/ingest/{split}.parquet"))).unwrap();
        assert!(!read.is_empty(), "{split} is empty");
        for row in read {
            rows += 1;
            let group = &group_of[&row.row_id];
            let first = *split_of_group.entry(group.clone()).or_insert(split);
            assert_eq!(
                first, split,
                "group {group} is split between {first} and {split}"
            );
            let normal = row
                .sentence
                .to_lowercase()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            assert!(texts.insert(normal), "{:?} kept twice", row.sentence);
        }
    }
    assert_eq!(rows, csv_text.lines().count() - 1 - 8);
    // No text is shared, and no review: the audit finds no exact overlap.
    let overlap = tables::audit::read_overlap(&p.path("artifacts/audit/overlap.parquet")).unwrap();
    assert!(overlap.iter().all(|r| r.kind != "exact"), "{overlap:?}");
}
