//! Bad input, data-driven: every case must exit non-zero with one message
//! naming the file, the line or key, and the problem; leave no artifact; and
//! leave the store usable by the next good run.

mod common;

use std::fs;

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
    /// Builds a (broken) model inside the project; returns its [model] section.
    /// None: the tiny test model.
    model: Option<fn(&Project) -> String>,
    /// Stages before the failing one, whose (correct) results may stay.
    done_before: &'static [&'static str],
}

impl Default for Case {
    fn default() -> Case {
        Case {
            name: "",
            csv: csv(format!("sentence,label\n{}", rows(10, 2))),
            config: "",
            args: &[],
            expect: &[],
            model: None,
            done_before: &[],
        }
    }
}

/// `bytes` as one gzip member (what `gzip` writes).
fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
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
            model: None,
            done_before: &[],
        },
        Case {
            name: "empty file",
            csv: Some(Vec::new()),
            config: "",
            args: &[],
            expect: &["input.csv", "empty"],
            model: None,
            done_before: &[],
        },
        Case {
            name: "header only",
            csv: csv("sentence,label\n".into()),
            config: "",
            args: &[],
            expect: &["input.csv", "no data rows"],
            model: None,
            done_before: &[],
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
            model: None,
            done_before: &[],
        },
        Case {
            name: "renamed label column",
            csv: csv(format!("sentence,score\n{good}")),
            config: "",
            args: &[],
            expect: &["input.csv:1", "\"label\"", "label_column"],
            model: None,
            done_before: &[],
        },
        Case {
            name: "label outside known classes",
            csv: csv(format!("sentence,label\n{good}odd one,2\n")),
            config: "num_classes = 2\n",
            args: &[],
            expect: &["input.csv:22", "label 2", "outside"],
            model: None,
            done_before: &[],
        },
        Case {
            name: "unknown string label",
            csv: csv("sentence,label\nok,pos\nbad,neg\nmeh,neutral\n".into()),
            config: "[ingest.labels]\nneg = 0\npos = 1\n",
            args: &[],
            expect: &["input.csv:4", "\"neutral\"", "ingest.labels"],
            model: None,
            done_before: &[],
        },
        Case {
            name: "float label",
            csv: csv(format!("sentence,label\n{good}x,1.0\n")),
            config: "",
            args: &[],
            expect: &["input.csv:22", "\"1.0\"", "not a class id"],
            model: None,
            done_before: &[],
        },
        Case {
            name: "negative label",
            csv: csv(format!("sentence,label\nfirst,-1\n{good}")),
            config: "",
            args: &[],
            expect: &["input.csv:2", "label -1", "outside"],
            model: None,
            done_before: &[],
        },
        Case {
            name: "empty sentence",
            csv: csv(format!("sentence,label\n{good}\"   \",1\n")),
            config: "",
            args: &[],
            expect: &["input.csv:22", "empty sentence", "empty_sentences"],
            model: None,
            done_before: &[],
        },
        Case {
            name: "class too small to stratify",
            csv: csv(format!("sentence,label\n{}lonely,1\n", rows(10, 1))),
            config: "",
            args: &[],
            expect: &["input.csv", "class 1", "too few rows"],
            model: None,
            done_before: &[],
        },
        Case {
            name: "single class",
            csv: csv(format!("sentence,label\n{}", rows(10, 1))),
            config: "",
            args: &[],
            expect: &["input.csv", "at least 2 classes"],
            model: None,
            done_before: &[],
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
            model: None,
            done_before: &[],
        },
        Case {
            name: "group column not in the header",
            config: "group_column = \"review\"\n",
            expect: &["input.csv:1", "\"review\"", "group_column"],
            ..Case::default()
        },
        Case {
            name: "row without a group",
            csv: csv(format!(
                "sentence,label,review\n{}no group here,1,\n",
                rows(10, 2).replace('\n', ",r1\n")
            )),
            config: "group_column = \"review\"\n",
            expect: &["input.csv:22", "empty group", "group_column"],
            ..Case::default()
        },
        Case {
            name: "too few groups for three stratified splits",
            csv: csv(format!(
                "sentence,label,review\n{}",
                rows(10, 2)
                    .lines()
                    .map(|l| format!("{l},r{}\n", &l[l.len() - 1..]))
                    .collect::<String>()
            )),
            config: "group_column = \"review\"\n",
            expect: &[
                "input.csv",
                "2 groups",
                "cannot give every split every class",
            ],
            ..Case::default()
        },
        Case {
            name: "unknown dedup mode",
            args: &["--set", "ingest.dedup=\"fuzzy\""],
            expect: &["dedup", "fuzzy", "none", "exact"],
            ..Case::default()
        },
        Case {
            name: "audit with one fold",
            args: &["--set", "audit.folds=1"],
            expect: &["[audit]", "audit.folds = 1", "at least 2 folds"],
            ..Case::default()
        },
        Case {
            name: "audit near-duplicate threshold above 1",
            args: &["--set", "audit.near_duplicate_cosine=1.5"],
            expect: &["[audit]", "near_duplicate_cosine = 1.5", "(0, 1]"],
            ..Case::default()
        },
        Case {
            name: "fractions do not sum to 1",
            csv: csv(format!("sentence,label\n{good}")),
            config: "",
            args: &["--set", "ingest.train_fraction=0.8"],
            expect: &["ingest.train_fraction", "sum to 1"],
            model: None,
            done_before: &[],
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
            model: None,
            done_before: &[],
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
            model: None,
            done_before: &[],
        },
        Case {
            name: "a Parquet file as the CSV",
            csv: Some(b"PAR1\x15\x04\x15\x10\x15\x14L\x15\x02\x15\x00".to_vec()),
            expect: &["input.csv", "a Parquet file, not a CSV", "export it as CSV"],
            ..Case::default()
        },
        Case {
            name: "binary data with no known format",
            csv: Some(b"\x89\x00\x13\x07\x00binary\x00\x00\nmore".to_vec()),
            expect: &[
                "input.csv",
                "binary data, not a text CSV",
                "NUL byte at byte 1",
            ],
            ..Case::default()
        },
        Case {
            name: "a truncated gzip file",
            csv: Some({
                let bytes = gzip(format!("sentence,label\n{}", rows(2000, 2)).as_bytes());
                bytes[..bytes.len() / 2].to_vec()
            }),
            expect: &["input.csv", "gzip data is damaged or truncated", "gzip -t"],
            ..Case::default()
        },
        Case {
            name: "wrong field count",
            csv: csv(format!("sentence,label\n{good}one, two,1\n")),
            config: "",
            args: &[],
            expect: &["input.csv", "line 22", "3 fields"],
            model: None,
            done_before: &[],
        },
        Case {
            name: "a quote opened and never closed",
            csv: csv(format!("sentence,label\n{good}\"never closed,1\n{good}")),
            expect: &["input.csv:22", "never closed"],
            ..Case::default()
        },
        Case {
            name: "an unclosed quote swallowing rows up to the next quote",
            csv: csv(format!(
                "sentence,label\n{good}\"never closed,1\ngood row,0\n\"quoted row\",1\n"
            )),
            expect: &["input.csv:22", "runs to line 24", "would merge rows"],
            ..Case::default()
        },
        Case {
            name: "text after a closing quote",
            csv: csv(format!("sentence,label\n{good}\"a \"5\" screen\",1\n")),
            expect: &["input.csv:22", "followed by '5'", "double every quote"],
            ..Case::default()
        },
        Case {
            name: "a column named twice",
            csv: csv(format!(
                "sentence,sentence,label\n{}",
                rows(10, 2).replace(",", ",x,")
            )),
            expect: &["input.csv:1", "\"sentence\" twice", "columns 1 and 2"],
            ..Case::default()
        },
        Case {
            name: "error line counts quoted newlines",
            csv: csv(format!("sentence,label\n\"two\nlines\",0\n{good}\"\",1\n")),
            config: "",
            args: &[],
            expect: &["input.csv:24", "empty sentence"],
            model: None,
            done_before: &[],
        },
        Case {
            name: "unknown config key",
            csv: csv(format!("sentence,label\n{good}")),
            config: "sed = 3\n",
            args: &[],
            expect: &["pipeline.toml:3:1", "unknown field `sed`"],
            model: None,
            done_before: &[],
        },
        Case {
            name: "wrong config type",
            csv: csv(format!("sentence,label\n{good}")),
            config: "seed = \"x\"\n",
            args: &[],
            expect: &["pipeline.toml:3:8", "seed", "expected u32"],
            model: None,
            done_before: &[],
        },
        Case {
            name: "unknown stage in --until",
            csv: csv(format!("sentence,label\n{good}")),
            config: "",
            args: &["--until", "ingset"],
            expect: &["--until", "unknown stage \"ingset\""],
            model: None,
            done_before: &[],
        },
        Case {
            name: "unknown stage in --force",
            args: &["--force", "hed"],
            expect: &["--force", "unknown stage \"hed\""],
            ..Case::default()
        },
        Case {
            name: "a 1 MB sentence",
            csv: csv(format!(
                "sentence,label\n{good}\"{}\",1\n",
                "so good ".repeat(131_072)
            )),
            expect: &["input.csv:22", "1048576 characters", "max_sentence_chars"],
            ..Case::default()
        },
        Case {
            name: "negative split fraction",
            args: &[
                "--set",
                "ingest.train_fraction=1.2",
                "--set",
                "ingest.val_fraction=-0.1",
                "--set",
                "ingest.test_fraction=-0.1",
            ],
            expect: &["ingest.train_fraction = 1.2", "between 0 and 1"],
            ..Case::default()
        },
        // Every parameter's range, checked before any stage runs.
        Case {
            name: "negative learning rate",
            args: &["--set", "head.learning_rate=-1"],
            expect: &["[head]", "head.learning_rate = -1", "> 0"],
            ..Case::default()
        },
        Case {
            name: "learning rate not a number",
            args: &["--set", "head.learning_rate=nan"],
            expect: &["[head]", "head.learning_rate = NaN", "finite"],
            ..Case::default()
        },
        Case {
            name: "dropout above 1",
            args: &["--set", "head.dropout=1.5"],
            expect: &["[head]", "head.dropout = 1.5", "[0, 1)"],
            ..Case::default()
        },
        Case {
            name: "zero epochs",
            args: &["--set", "head.epochs=0"],
            expect: &["[head]", "head.epochs = 0", "at least 1"],
            ..Case::default()
        },
        Case {
            name: "zero batch size",
            args: &["--set", "head.batch_size=0"],
            expect: &["[head]", "head.batch_size = 0", "at least 1"],
            ..Case::default()
        },
        Case {
            name: "zero hidden units",
            args: &["--set", "head.hidden=0"],
            expect: &["[head]", "head.hidden = 0", "at least 1"],
            ..Case::default()
        },
        Case {
            name: "negative weight decay",
            args: &["--set", "head.weight_decay=-0.1"],
            expect: &["[head]", "head.weight_decay = -0.1", ">= 0"],
            ..Case::default()
        },
        Case {
            name: "zero gradient clipping norm",
            args: &["--set", "head.clip_grad_norm=0"],
            expect: &["[head]", "head.clip_grad_norm = 0", "> 0"],
            ..Case::default()
        },
        Case {
            name: "max_len beyond the model's positions",
            args: &["--set", "encode.max_len=100000"],
            expect: &["[encode]", "encode.max_len = 100000", "512 positions"],
            ..Case::default()
        },
        Case {
            name: "max_len too short for the special tokens",
            args: &["--set", "encode.max_len=1"],
            expect: &["[encode]", "encode.max_len = 1", "at least 2"],
            ..Case::default()
        },
        Case {
            name: "auto percentile of 0",
            args: &["--set", "encode.auto_percentile=0"],
            expect: &["[encode]", "encode.auto_percentile = 0", "(0, 100]"],
            ..Case::default()
        },
        Case {
            name: "far too many audit folds",
            args: &["--set", "audit.folds=100000"],
            expect: &["[audit]", "audit.folds = 100000", "[2, 100]"],
            ..Case::default()
        },
        Case {
            name: "zero sentence length limit",
            args: &["--set", "ingest.max_sentence_chars=0"],
            expect: &["[ingest]", "ingest.max_sentence_chars = 0", "at least 1"],
            ..Case::default()
        },
        Case {
            name: "one column for text and label",
            args: &["--set", "ingest.label_column=\"sentence\""],
            expect: &["[ingest]", "text_column", "label_column", "two columns"],
            ..Case::default()
        },
        Case {
            name: "a single class",
            args: &["--set", "ingest.num_classes=1"],
            expect: &["[ingest]", "ingest.num_classes = 1", "at least 2 classes"],
            ..Case::default()
        },
        Case {
            name: "unknown key in --set",
            args: &["--set", "head.lr=0.1"],
            expect: &["head.lr", "unknown field `lr`"],
            ..Case::default()
        },
        Case {
            name: "model directory without tokenizer.json",
            model: Some(|p| {
                broken_model(p, |dir| {
                    fs::remove_file(dir.join("tokenizer.json")).unwrap()
                })
            }),
            expect: &["tokenizer.json", "missing"],
            done_before: &["ingest"],
            ..Case::default()
        },
        Case {
            name: "model directory without weights",
            model: Some(|p| {
                broken_model(p, |dir| {
                    fs::remove_file(dir.join("model.safetensors")).unwrap()
                })
            }),
            expect: &["model.safetensors", "missing"],
            done_before: &["ingest"],
            ..Case::default()
        },
        Case {
            name: "truncated weights file",
            model: Some(|p| {
                broken_model(p, |dir| {
                    let w = dir.join("model.safetensors");
                    let bytes = fs::read(&w).unwrap();
                    fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
                })
            }),
            expect: &["model.safetensors", "not a safetensors file"],
            done_before: &["ingest"],
            ..Case::default()
        },
        Case {
            name: "wrong hidden size in config.json",
            model: Some(|p| {
                broken_model(p, |dir| {
                    let c = dir.join("config.json");
                    let text = fs::read_to_string(&c).unwrap();
                    fs::write(
                        &c,
                        text.replace("\"hidden_size\": 64", "\"hidden_size\": 128"),
                    )
                    .unwrap();
                })
            }),
            expect: &["model.safetensors", "config.json implies"],
            done_before: &["ingest"],
            ..Case::default()
        },
        Case {
            name: "tokenizer vocabulary larger than the model's",
            model: Some(|p| {
                broken_model(p, |dir| {
                    let t = dir.join("tokenizer.json");
                    let mut tok: serde_json::Value =
                        serde_json::from_slice(&fs::read(&t).unwrap()).unwrap();
                    let vocab = tok["model"]["vocab"].as_object_mut().unwrap();
                    let n = vocab.len();
                    for i in 0..100 {
                        vocab.insert(format!("extra{i}"), serde_json::json!(n + i));
                    }
                    fs::write(&t, serde_json::to_vec(&tok).unwrap()).unwrap();
                })
            }),
            expect: &["tokenizer.json", "30622 tokens", "30522 token embeddings"],
            done_before: &["ingest"],
            ..Case::default()
        },
        Case {
            name: "ONNX model without the requested pooler_output",
            model: Some(onnx_without_pooler),
            config: "",
            args: &[
                "--set",
                "embed.pooling=\"pooler\"",
                "--set",
                "embed.device=\"cpu\"",
            ],
            expect: &["no pooler_output", "\"cls\" or \"mean\""],
            done_before: &["ingest", "model", "encode"],
            ..Case::default()
        },
        Case {
            name: "ONNX file that is not ONNX",
            model: Some(|p| {
                let dir = p.path("garbage-onnx");
                fs::create_dir_all(&dir).unwrap();
                fs::write(dir.join("model.onnx"), b"this is not protobuf at all").unwrap();
                fs::copy(
                    tiny_dir().join("tokenizer.json"),
                    dir.join("tokenizer.json"),
                )
                .unwrap();
                format!("\n[model]\nsource = \"onnx:{}\"\n", dir.display())
            }),
            expect: &["model.onnx", "not an ONNX model"],
            done_before: &["ingest"],
            ..Case::default()
        },
    ]
}

fn tiny_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/models/bert-tiny-random")
        .canonicalize()
        .unwrap()
}

/// A copy of the tiny model with `damage` done to it, as a `dir:` source.
fn broken_model(p: &Project, damage: fn(&std::path::Path)) -> String {
    let dir = p.path("broken-model");
    fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        fs::copy(tiny_dir().join(f), dir.join(f)).unwrap();
    }
    damage(&dir);
    format!("\n[model]\nsource = \"dir:{}\"\n", dir.display())
}

/// The tiny model converted without its pooler weights, as an `onnx:` source.
fn onnx_without_pooler(p: &Project) -> String {
    let bytes = fs::read(tiny_dir().join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<_> = st
        .tensors()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("pooler."))
        .collect();
    let dir = p.path("no-pooler");
    fs::create_dir_all(&dir).unwrap();
    let weights = dir.join("weights.safetensors");
    safetensors::serialize_to_file(kept, None, &weights).unwrap();
    let (onnx, info) =
        model::convert(&tiny_dir().join("config.json"), &weights, model::Ops::Fused).unwrap();
    assert!(!info.has_pooler);
    fs::write(dir.join("model.onnx"), onnx).unwrap();
    fs::copy(
        tiny_dir().join("tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    format!("\n[model]\nsource = \"onnx:{}\"\n", dir.display())
}

fn config_for(case: &Case, p: &Project) -> String {
    let model = match case.model {
        Some(build) => build(p),
        None => common::tiny_model(),
    };
    // Tables in `case.config` must come after the plain keys.
    format!("[ingest]\ncsv = \"data/input.csv\"\n{}{model}", case.config)
}

#[test]
fn every_bad_input_fails_clearly_and_leaves_no_artifact() {
    let mut failures = Vec::new();
    for case in cases() {
        let p = Project::empty();
        if let Some(bytes) = &case.csv {
            p.write_csv(bytes);
        }
        p.write_config(&config_for(&case, &p));
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
        // Nothing of the failing stage or after it; the results of stages
        // that finished before it (and the lock recording them) may stay.
        let allowed = |entry: &str| {
            !case.done_before.is_empty() && entry == "pipeline.lock"
                || case
                    .done_before
                    .iter()
                    .any(|stage| entry == *stage || entry.starts_with(&format!(".store/{stage}/")))
        };
        let left: Vec<String> = p
            .artifact_entries()
            .into_iter()
            .filter(|e| !allowed(e))
            .collect();
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

#[test]
fn long_reviews_and_literal_quotes_in_unquoted_fields_are_accepted() {
    // A real review can exceed 20,000 characters (the old limit); a quote
    // inside an unquoted field is a literal character (as in Python, pandas).
    let review = "a long and careful review. ".repeat(1000);
    let body = format!(
        "sentence,label\n{}a 5\" screen,1\n\"{review}\",0\n",
        rows(10, 2)
    );
    let p = Project::with_csv(body.as_bytes());
    p.write_config(&format!(
        "[ingest]\ncsv = \"data/input.csv\"\n{}",
        common::tiny_model()
    ));
    let run = p.cli(&["run-pipeline", "--until", "ingest"]);
    run.ok();
    assert!(run.stdout.contains("22 rows -> "), "{}", run.stdout);
    let out = common::run_python(&[
        "-c",
        "import sys,pyarrow.parquet as pq\n\
         t = sum((pq.read_table(sys.argv[1]+f'/{s}.parquet').to_pylist() for s in ['train','val','test']), [])\n\
         by_id = {x['row_id']: x['sentence'] for x in t}\n\
         print(repr(by_id[20]), len(by_id[21]))",
        p.path("artifacts/ingest").to_str().unwrap(),
    ]);
    assert_eq!(out.trim(), format!("'a 5\" screen' {}", review.len()));
}

/// One review of a million characters that repeats itself (within the
/// default limit) beside 120 short ones: every stage finishes. The audit's
/// automaton is built linearly in the text; the automatic choice was a DFA,
/// whose construction is quadratic in a periodic pattern (about an hour
/// here). The test's own timeout is the bound, not a timing assertion.
#[test]
fn a_review_of_a_million_characters_runs_through_every_stage() {
    let long = "a long and careful review. ".repeat(37_000);
    assert!(long.len() <= 1_000_000);
    let body = format!("sentence,label\n{}\"{long}\",1\n", rows(60, 2));
    let p = Project::with_csv(body.as_bytes());
    let run = p.cli(&["run-pipeline"]);
    run.ok();
    assert!(run.stdout.contains("121 rows -> "), "{}", run.stdout);
    assert_eq!(run.outcome("audit"), "ran", "{}", run.stdout);
}

/// Large CSVs arrive compressed: a gzip and a zstd copy of the UCI reviews
/// (whatever their names) give the same splits, row for row, as the plain
/// file, and so the same features.
#[test]
fn compressed_csvs_are_read_as_the_plain_file() {
    let plain = fs::read(common::shared_data("uci_amazon_yelp.csv")).unwrap();
    let read = |bytes: &[u8]| -> (Project, String) {
        let p = Project::with_csv(bytes);
        let run = p.cli(&["run-pipeline", "--until", "embed"]);
        run.ok();
        let rows = common::run_python(&[
            "-c",
            "import sys, pyarrow.parquet as pq\n\
             for s in ['train', 'val', 'test']:\n\
             \x20   print(pq.read_table(f'{sys.argv[1]}/{s}.parquet').to_pylist())",
            p.path("artifacts/ingest").to_str().unwrap(),
        ]);
        (p, rows)
    };
    let (reference, rows) = read(&plain);
    for (name, bytes) in [
        ("gzip", gzip(&plain)),
        ("zstd", zstd::encode_all(plain.as_slice(), 3).unwrap()),
    ] {
        let (p, compressed) = read(&bytes);
        assert!(
            compressed == rows,
            "{name}: the splits differ from the plain file's"
        );
        assert_eq!(
            common::largest_difference(&p, &reference),
            0.0,
            "{name}: features differ"
        );
    }
}
