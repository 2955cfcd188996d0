//! Bad input, data-driven: every case must exit non-zero with one message
//! naming the file, the line or key, and the problem; leave no artifact; and
//! leave the store usable by the next good run.

mod common;

use common::Project;

/// `n` valid rows per class for `classes` classes, starting at line 2.
fn rows(n: usize, classes: usize) -> String {
    let mut s = String::new();
    for i in 0..n * classes {
        s.push_str(&format!("sentence number {i} is fine,{}\n", i % classes));
    }
    s
}

struct Case {
    name: &'static str,
    /// None: the CSV file does not exist.
    csv: Option<Vec<u8>>,
    /// Extra lines for [ingest] in pipeline.toml.
    config: &'static str,
    args: &'static [&'static str],
    expect: &'static [&'static str],
}

fn csv(text: String) -> Option<Vec<u8>> {
    Some(text.into_bytes())
}

fn cases() -> Vec<Case> {
    let good = rows(10, 2);
    vec![
        Case {
            name: "missing file",
            csv: None,
            config: "",
            args: &[],
            expect: &["input.csv", "not found"],
        },
        Case {
            name: "empty file",
            csv: Some(Vec::new()),
            config: "",
            args: &[],
            expect: &["input.csv", "empty"],
        },
        Case {
            name: "header only",
            csv: csv("sentence,label\n".into()),
            config: "",
            args: &[],
            expect: &["input.csv", "no data rows"],
        },
        Case {
            name: "missing text column",
            csv: csv(format!("text,label\n{good}")),
            config: "",
            args: &[],
            expect: &[
                "input.csv:1",
                "no column named \"sentence\"",
                "\"text\"",
                "text_column",
            ],
        },
        Case {
            name: "renamed label column",
            csv: csv(format!("sentence,score\n{good}")),
            config: "",
            args: &[],
            expect: &["input.csv:1", "\"label\"", "label_column"],
        },
        Case {
            name: "label outside known classes",
            csv: csv(format!("sentence,label\n{good}odd one,2\n")),
            config: "num_classes = 2\n",
            args: &[],
            expect: &["input.csv:22", "label 2", "outside"],
        },
        Case {
            name: "unknown string label",
            csv: csv("sentence,label\nok,pos\nbad,neg\nmeh,neutral\n".into()),
            config: "[ingest.labels]\nneg = 0\npos = 1\n",
            args: &[],
            expect: &["input.csv:4", "\"neutral\"", "ingest.labels"],
        },
        Case {
            name: "float label",
            csv: csv(format!("sentence,label\n{good}x,1.0\n")),
            config: "",
            args: &[],
            expect: &["input.csv:22", "\"1.0\"", "not a class id"],
        },
        Case {
            name: "negative label",
            csv: csv(format!("sentence,label\nfirst,-1\n{good}")),
            config: "",
            args: &[],
            expect: &["input.csv:2", "label -1", "outside"],
        },
        Case {
            name: "empty sentence",
            csv: csv(format!("sentence,label\n{good}\"   \",1\n")),
            config: "",
            args: &[],
            expect: &["input.csv:22", "empty sentence", "empty_sentences"],
        },
        Case {
            name: "class too small to stratify",
            csv: csv(format!("sentence,label\n{}lonely,1\n", rows(10, 1))),
            config: "",
            args: &[],
            expect: &["input.csv", "class 1", "too few rows"],
        },
        Case {
            name: "single class",
            csv: csv(format!("sentence,label\n{}", rows(10, 1))),
            config: "",
            args: &[],
            expect: &["input.csv", "at least 2 classes"],
        },
        Case {
            name: "class with no rows",
            csv: csv(format!(
                "sentence,label\n{}{}",
                rows(5, 1),
                rows(5, 1).replace(",0", ",2")
            )),
            config: "",
            args: &[],
            expect: &["input.csv", "class 1", "no rows"],
        },
        Case {
            name: "fractions do not sum to 1",
            csv: csv(format!("sentence,label\n{good}")),
            config: "",
            args: &["--set", "ingest.train_fraction=0.8"],
            expect: &["ingest.train_fraction", "sum to 1"],
        },
        Case {
            name: "invalid utf-8",
            csv: Some(
                [
                    b"sentence,label\nfine,0\nbad \xff\xfe bytes,1\n".as_slice(),
                    good.as_bytes(),
                ]
                .concat(),
            ),
            config: "",
            args: &[],
            expect: &["input.csv:3", "UTF-8"],
        },
        Case {
            name: "NUL byte",
            csv: Some(
                [
                    b"sentence,label\nfine,0\nnul \x00 here,1\n".as_slice(),
                    good.as_bytes(),
                ]
                .concat(),
            ),
            config: "",
            args: &[],
            expect: &["input.csv:3", "NUL"],
        },
        Case {
            name: "wrong field count",
            csv: csv(format!("sentence,label\n{good}one, two,1\n")),
            config: "",
            args: &[],
            expect: &["input.csv", "line 22", "3 fields"],
        },
        Case {
            name: "error line counts quoted newlines",
            csv: csv(format!("sentence,label\n\"two\nlines\",0\n{good}\"\",1\n")),
            config: "",
            args: &[],
            expect: &["input.csv:24", "empty sentence"],
        },
        Case {
            name: "unknown config key",
            csv: csv(format!("sentence,label\n{good}")),
            config: "sed = 3\n",
            args: &[],
            expect: &["pipeline.toml:3:1", "unknown field `sed`"],
        },
        Case {
            name: "wrong config type",
            csv: csv(format!("sentence,label\n{good}")),
            config: "seed = \"x\"\n",
            args: &[],
            expect: &["pipeline.toml:3:8", "seed", "expected u32"],
        },
        Case {
            name: "unknown stage in --until",
            csv: csv(format!("sentence,label\n{good}")),
            config: "",
            args: &["--until", "ingset"],
            expect: &["--until", "unknown stage \"ingset\""],
        },
    ]
}

fn config_for(case: &Case) -> String {
    // Tables in `case.config` must come after the plain keys.
    format!(
        "[ingest]\ncsv = \"data/input.csv\"\n{}{}",
        case.config,
        common::tiny_model()
    )
}

#[test]
fn every_bad_input_fails_clearly_and_leaves_no_artifact() {
    let mut failures = Vec::new();
    for case in cases() {
        let p = Project::empty();
        if let Some(bytes) = &case.csv {
            p.write_csv(bytes);
        }
        p.write_config(&config_for(&case));
        let mut args = vec!["run-pipeline"];
        args.extend_from_slice(case.args);
        let run = p.cli(&args);
        let message = run.stderr.trim();
        if run.code == 0 {
            failures.push(format!("{}: succeeded", case.name));
            continue;
        }
        for fragment in case.expect {
            if !message.contains(fragment) {
                failures.push(format!(
                    "{}: message lacks {fragment:?}: {message}",
                    case.name
                ));
            }
        }
        if message.lines().count() != 1 || message.contains("panicked") {
            failures.push(format!("{}: not one clean line: {message}", case.name));
        }
        let left = p.artifact_entries();
        if !left.is_empty() {
            failures.push(format!("{}: left artifacts {left:?}", case.name));
        }
        // The store stays usable: fix the input, run again.
        p.write_csv(format!("sentence,label\n{}", rows(10, 2)).as_bytes());
        p.write_config(&format!(
            "[ingest]\ncsv = \"data/input.csv\"\n{}",
            common::tiny_model()
        ));
        let good = p.cli(&["run-pipeline"]);
        if good.code != 0 {
            failures.push(format!(
                "{}: the following good run failed: {}",
                case.name, good.stderr
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn a_failed_run_keeps_the_previous_result() {
    let p = Project::with_csv(format!("sentence,label\n{}", rows(10, 2)).as_bytes());
    p.cli(&["run-pipeline"]).ok();
    let before = p.artifact_entries();
    let lock = std::fs::read(p.path("artifacts/pipeline.lock")).unwrap();
    p.write_csv(format!("sentence,label\n{}\"\",1\n", rows(10, 2)).as_bytes());
    assert_ne!(p.cli(&["run-pipeline"]).code, 0);
    assert_eq!(p.artifact_entries(), before);
    assert_eq!(
        std::fs::read(p.path("artifacts/pipeline.lock")).unwrap(),
        lock
    );
}

#[test]
fn tolerated_inputs_are_read_correctly() {
    // BOM, CRLF, quoted commas/quotes/newlines, and dropped empty sentences.
    let body = format!(
        "\u{feff}sentence,label\r\n\"a, \"\"quoted\"\"\nline\",1\r\n \t ,0\r\n{}",
        rows(10, 2).replace('\n', "\r\n")
    );
    let p = Project::with_csv(body.as_bytes());
    p.write_config(&format!(
        "[ingest]\ncsv = \"data/input.csv\"\nempty_sentences = \"drop\"\n{}",
        common::tiny_model()
    ));
    let run = p.cli(&["run-pipeline"]);
    run.ok();
    assert!(
        run.stdout.contains("1 rows with empty sentences dropped"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("21 rows -> train 14, val 3, test 4"),
        "{}",
        run.stdout
    );
    let out = common::run_python(&[
        "-c",
        "import sys,pyarrow.parquet as pq\n\
         t = pq.read_table(sys.argv[1]+'/train.parquet').to_pylist()+pq.read_table(sys.argv[1]+'/val.parquet').to_pylist()+pq.read_table(sys.argv[1]+'/test.parquet').to_pylist()\n\
         r = [x for x in t if x['row_id'] == 0][0]\n\
         print(repr(r['sentence']), r['label'], sorted(x['row_id'] for x in t)[:3])",
        p.path("artifacts/ingest").to_str().unwrap(),
    ]);
    assert_eq!(out.trim(), "'a, \"quoted\"\\nline' 1 [0, 2, 3]");
}
