//! The split files open in pyarrow and duckdb with the documented schema.

mod common;

use common::{Project, run_python, shared_data};

#[test]
fn pyarrow_and_duckdb_read_the_splits() {
    let p = Project::empty();
    p.write_config(&format!("[ingest]\ncsv = {:?}\n", shared_data("uci_amazon_yelp.csv").display().to_string()));
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
        assert_eq!(s["schema"], serde_json::json!(["row_id:int64", "sentence:string", "label:int64"]), "{split}");
        assert_eq!(s["rows"], rows, "{split}");
        assert_eq!(s["duckdb_rows"], rows, "{split}");
        assert_eq!(s["labels"], 2);
        assert_eq!(s["classes"], serde_json::json!(["0", "1"]));
        assert_eq!(s["has_key"], true);
        assert_eq!(s["params_seed"], 2021);
    }
}
