//! The split files open in pyarrow and duckdb with the documented schema;
//! every Parquet artifact opens in pyarrow, duckdb and polars alike.

mod common;

use common::{Project, run_python, shared_data};

#[test]
fn pyarrow_and_duckdb_read_the_splits() {
    let p = Project::empty();
    p.write_config(&format!(
        "[ingest]\ncsv = {:?}\n",
        shared_data("uci_amazon_yelp.csv").display().to_string()
    ));
    p.cli(&["run-pipeline"]).ok();
    let dir = p.path("artifacts/ingest");
    let out = run_python(&[
        "-c",
        r#"
import json, sys, duckdb, pyarrow.parquet as pq
d = sys.argv[1]
res = {}
for s in ["train", "val", "test"]:
    t = pq.read_table(f"{d}/{s}.parquet")
    meta = {k.decode(): v.decode() for k, v in t.schema.metadata.items()}
    n, labels = duckdb.sql(f"select count(*), count(distinct label) from '{d}/{s}.parquet'").fetchall()[0]
    kv = dict((k.decode(), v.decode()) for k, v in duckdb.sql(f"select key, value from parquet_kv_metadata('{d}/{s}.parquet')").fetchall())
    res[s] = {"schema": [f"{f.name}:{f.type}" for f in t.schema], "rows": t.num_rows, "duckdb_rows": n,
              "labels": labels, "classes": json.loads(meta["classes"]), "has_key": len(meta["stage_key"]) == 64 and kv["stage_key"] == meta["stage_key"],
              "params_seed": json.loads(meta["params"])["seed"]}
print(json.dumps(res))
"#,
        dir.to_str().unwrap(),
    ]);
    let res: serde_json::Value = serde_json::from_str(&out).unwrap();
    for (split, rows) in [("train", 1400), ("val", 300), ("test", 300)] {
        let s = &res[split];
        assert_eq!(
            s["schema"],
            serde_json::json!(["row_id:int64", "sentence:string", "label:int64"]),
            "{split}"
        );
        assert_eq!(s["rows"], rows, "{split}");
        assert_eq!(s["duckdb_rows"], rows, "{split}");
        assert_eq!(s["labels"], 2);
        assert_eq!(s["classes"], serde_json::json!(["0", "1"]));
        assert_eq!(s["has_key"], true);
        assert_eq!(s["params_seed"], 2021);
    }
}

/// Every Parquet file a run leaves (each stage's outputs, the feature
/// store's chunks) reads the same in pyarrow, duckdb and polars: the rows,
/// and the columns' names.
#[test]
fn pyarrow_duckdb_and_polars_read_every_parquet_artifact() {
    let p = Project::empty();
    p.write_config(&format!(
        "[ingest]\ncsv = {:?}\n{}",
        shared_data("uci_amazon_yelp.csv").display().to_string(),
        common::tiny_model()
    ));
    p.cli(&["run-pipeline"]).ok();
    let out = run_python(&[
        "-c",
        r#"
import glob, json, sys, duckdb, polars as pl, pyarrow.parquet as pq
a = sys.argv[1]
res = {}
for path in sorted(glob.glob(f"{a}/*/*.parquet") + glob.glob(f"{a}/.cache/embed/chunks/*.parquet")):
    t = pq.read_table(path)
    df = pl.read_parquet(path)
    n = duckdb.sql(f"select count(*) from '{path}'").fetchall()[0][0]
    res[path[len(a) + 1:]] = [t.num_rows, df.height, n, t.schema.names == df.columns]
print(json.dumps(res))
"#,
        p.path("artifacts").to_str().unwrap(),
    ]);
    let res: std::collections::BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&out).unwrap();
    for stage in ["ingest", "encode", "embed"] {
        for split in ["train", "val", "test"] {
            let name = format!("{stage}/{split}.parquet");
            assert!(res.contains_key(&name), "{name} missing: {res:?}");
        }
    }
    let chunks = res.keys().filter(|k| k.starts_with(".cache/")).count();
    assert_eq!(chunks, 3, "{res:?}");
    assert!(res.len() > 12, "the head's and audit's tables too: {res:?}");
    for (path, r) in &res {
        let rows = &r[0];
        assert!(rows.as_u64().unwrap() > 0, "{path}: {r}");
        assert_eq!(
            (&r[1], &r[2], &r[3]),
            (rows, rows, &serde_json::json!(true)),
            "{path}"
        );
    }
}

/// encode's token ids equal the Python `tokenizers` package's for the same
/// tokenizer.json (truncated to max_len the same way), and the feature files
/// open in pyarrow and duckdb with H float32 per row.
#[test]
fn token_ids_match_python_tokenizers_and_features_are_readable() {
    for (csv, max_len) in [
        ("uci_amazon_yelp.csv", "17"),
        ("uci_amazon_yelp.csv", "\"auto\""),
        ("sst2_train.csv", "17"),
    ] {
        let p = Project::empty();
        p.write_config(&format!(
            "[ingest]\ncsv = {:?}\n{}\n[encode]\nmax_len = {max_len}\n",
            shared_data(csv).display().to_string(),
            common::tiny_model()
        ));
        p.cli(&["run-pipeline"]).ok();
        let out = run_python(&[
            "-c",
            r#"
import json, sys, duckdb, pyarrow.parquet as pq
from tokenizers import Tokenizer
a = sys.argv[1]
tok = Tokenizer.from_file(f"{a}/model/tokenizer.json")
tok.no_padding()
res = {"mismatches": 0, "checked": 0}
for s in ["train", "val", "test"]:
    enc = pq.read_table(f"{a}/encode/{s}.parquet")
    max_len = int(enc.schema.metadata[b"max_len"])
    tok.enable_truncation(max_len)
    text = {r["row_id"]: r["sentence"] for r in pq.read_table(f"{a}/ingest/{s}.parquet").to_pylist()}
    rows = enc.to_pylist()
    step = max(1, len(rows) // 2000)
    for r in rows[::step]:
        want = tok.encode(text[r["row_id"]]).ids
        got = r["input_ids"]
        res["checked"] += 1
        res["mismatches"] += int(want != got or len(got) > max_len)
    res[f"{s}_encode_schema"] = [f"{x.name}:{x.type}" for x in enc.schema]
    f = pq.read_table(f"{a}/embed/{s}.parquet")
    n = duckdb.sql(f"select count(*), min(len(features)), max(len(features)) from '{a}/embed/{s}.parquet'").fetchall()[0]
    res[s] = {"schema": [f"{x.name}:{x.type}" for x in f.schema], "rows": f.num_rows, "duckdb": list(n),
              "same_order": f.column("row_id").to_pylist() == enc.column("row_id").to_pylist()}
print(json.dumps(res))
"#,
            p.path("artifacts").to_str().unwrap(),
        ]);
        let res: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(res["mismatches"], 0, "{csv} max_len={max_len}: {res}");
        assert!(res["checked"].as_u64().unwrap() > 500, "{res}");
        for split in ["train", "val", "test"] {
            assert_eq!(
                res[format!("{split}_encode_schema")],
                serde_json::json!([
                    "row_id:int64",
                    "label:int64",
                    "input_ids:list<item: int32 not null>",
                    "n_tokens:int32"
                ]),
                "{res}"
            );
            let s = &res[split];
            assert_eq!(
                s["schema"],
                serde_json::json!([
                    "row_id:int64",
                    "label:int64",
                    "features:fixed_size_list<item: float not null>[64]",
                    "key:fixed_size_binary[32]"
                ]),
                "{res}"
            );
            assert_eq!(s["duckdb"][0], s["rows"]);
            assert_eq!(s["duckdb"][1], 64);
            assert_eq!(s["same_order"], true);
        }
    }
}

/// The pipeline's report file is scikit-learn's classification_report of
/// its own test predictions, byte for byte; history and predictions open in
/// pyarrow with the documented shape.
#[test]
fn report_equals_sklearn_on_the_pipelines_predictions() {
    let p = Project::empty();
    p.write_config(&format!(
        "[ingest]\ncsv = {:?}\n{}\n[head]\nlearning_rate = 0.001\nepochs = 3\n",
        shared_data("uci_amazon_yelp.csv").display().to_string(),
        common::tiny_model()
    ));
    p.cli(&["run-pipeline"]).ok();
    let out = run_python(&[
        "-c",
        r#"
import json, sys, warnings, pyarrow.parquet as pq
from sklearn.metrics import classification_report
warnings.simplefilter("ignore")
a = sys.argv[1]
pred = pq.read_table(f"{a}/head/test_predictions.parquet").to_pydict()
classes = json.loads(pq.read_table(f"{a}/ingest/train.parquet").schema.metadata[b"classes"])
want = classification_report(pred["label"], pred["pred"], labels=list(range(len(classes))), target_names=classes)
got = open(f"{a}/report/classification_report.txt").read()
hist = pq.read_table(f"{a}/head/history.parquet")
probs_ok = all(abs(sum(p) - 1) < 1e-4 and max(range(len(p)), key=p.__getitem__) == q for p, q in zip(pred["probabilities"], pred["pred"]))
print(json.dumps({"equal": want == got, "want": want, "got": got, "epochs": hist.num_rows,
                  "columns": hist.column_names, "rows": len(pred["row_id"]), "probs_ok": probs_ok}))
"#,
        p.path("artifacts").to_str().unwrap(),
    ]);
    let res: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        res["equal"],
        true,
        "{}\nvs\n{}",
        res["got"].as_str().unwrap(),
        res["want"].as_str().unwrap()
    );
    assert_eq!(res["epochs"], 3);
    assert_eq!(
        res["columns"],
        serde_json::json!(["epoch", "train_loss", "val_loss", "val_accuracy", "seconds"])
    );
    assert_eq!(res["rows"], 300);
    assert_eq!(res["probs_ok"], true);
}

/// `predict` refuses before a run, and after one it classifies the test
/// split's sentences exactly as the head stage did.
#[test]
fn predict_agrees_with_the_pipelines_own_test_predictions() {
    let p = Project::empty();
    p.write_config(&format!(
        "[ingest]\ncsv = {:?}\n{}\n[head]\nlearning_rate = 0.001\nepochs = 3\n",
        shared_data("uci_amazon_yelp.csv").display().to_string(),
        common::tiny_model()
    ));
    let early = p.cli(&["predict", "--text", "great"]);
    assert_ne!(early.code, 0);
    assert!(
        early
            .stderr
            .contains("run `cargo xtask run-pipeline` first"),
        "{}",
        early.stderr
    );

    p.cli(&["run-pipeline"]).ok();
    let csv = p.path("test_sentences.csv");
    let expected = run_python(&[
        "-c",
        r#"
import csv, json, sys, pyarrow.parquet as pq
a, out = sys.argv[1], sys.argv[2]
test = pq.read_table(f"{a}/ingest/test.parquet").to_pylist()
pred = pq.read_table(f"{a}/head/test_predictions.parquet").to_pylist()
with open(out, "w", newline="") as f:
    w = csv.writer(f); w.writerow(["sentence"]); [w.writerow([r["sentence"]]) for r in test]
print(json.dumps([str(r["pred"]) for r in pred]))
"#,
        p.path("artifacts").to_str().unwrap(),
        csv.to_str().unwrap(),
    ]);
    let expected: Vec<String> = serde_json::from_str(&expected).unwrap();
    let run = p.cli(&["predict", "--csv", csv.to_str().unwrap()]);
    let got: Vec<String> = run
        .ok()
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect();
    assert_eq!(got.len(), 300);
    let agree = got.iter().zip(&expected).filter(|(a, b)| a == b).count();
    assert_eq!(
        agree,
        300,
        "predict and the head stage disagree on {} of 300 test rows",
        300 - agree
    );
    // The same file gzip-compressed (the bytes tell, not the name).
    let gz = p.path("sentences-compressed.csv");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut enc, &std::fs::read(&csv).unwrap()).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let compressed = p.cli(&["predict", "--csv", gz.to_str().unwrap()]);
    assert_eq!(compressed.ok().stdout, run.stdout);
}

/// After a partial run moves an upstream result on (`--until encode` with
/// another `max_len`), `predict` and `evaluate` refuse instead of mixing the
/// new settings with the old head; a full run makes them work again.
#[test]
fn predict_refuses_results_that_did_not_train_the_head() {
    let p = Project::uci_tiny_on_cpu();
    p.cli(&["run-pipeline"]).ok();
    p.cli(&["predict", "--text", "great"]).ok();
    p.cli(&[
        "run-pipeline",
        "--until",
        "encode",
        "--set",
        "encode.max_len=8",
    ])
    .ok();
    let uci = shared_data("uci_amazon_yelp.csv");
    for args in [
        vec!["predict", "--text", "great"],
        vec!["evaluate", "--csv", uci.to_str().unwrap()],
    ] {
        let refused = p.cli(&args);
        assert_ne!(refused.code, 0, "{args:?} used a broken chain");
        for part in [
            "the embed result",
            "earlier encode result",
            "Run `cargo xtask run-pipeline` to bring embed",
        ] {
            assert!(refused.stderr.contains(part), "{part}: {}", refused.stderr);
        }
    }
    p.cli(&["run-pipeline", "--set", "encode.max_len=8"]).ok();
    p.cli(&["predict", "--text", "great"]).ok();

    // `predict ... | head -1`: the reader leaves after one line; predict
    // exits 0 and says nothing (its 2,000 lines overflow the pipe buffer,
    // so it does write into a closed pipe).
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pipeline-cli"))
        .args(["predict", "--csv", uci.to_str().unwrap(), "--config"])
        .arg(p.path("pipeline.toml"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first, "label\tprobability\tsentence\n");
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
