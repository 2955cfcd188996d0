//! Model sources end to end: `hf:` against a local server that speaks the
//! hub's protocol (HF_ENDPOINT), its offline cache (HF_HUB_OFFLINE), and
//! `dir:` / `onnx:` giving the same converted model.

mod common;

use std::fs;
use std::path::Path;
use std::process::Child;

use common::{Project, py_script, shared_data};

struct FakeHub {
    child: Child,
    url: String,
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves `root/<org>/<repo>/<files>` in the hub's URL layout.
fn fake_hub(root: &Path) -> FakeHub {
    let port_file = root.join("port");
    let child = common::python()
        .arg(py_script("fake_hub.py"))
        .arg(root)
        .arg(&port_file)
        .spawn()
        .expect("start fake hub");
    for _ in 0..100 {
        if let Ok(port) = fs::read_to_string(&port_file) {
            return FakeHub {
                child,
                url: format!("http://127.0.0.1:{port}"),
            };
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the fake hub did not start");
}

/// A fake hub serving the tiny BERT as `test-org/tiny-bert` (and the
/// folder it serves from, removed when dropped).
fn hub_serving_tiny_bert() -> (tempfile::TempDir, FakeHub) {
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("test-org/tiny-bert");
    fs::create_dir_all(&repo).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        fs::copy(tiny_dir().join(f), repo.join(f)).unwrap();
    }
    let hub = fake_hub(root.path());
    (root, hub)
}

fn tiny_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/models/bert-tiny-random")
        .canonicalize()
        .unwrap()
}

fn project(source: &str) -> Project {
    let p = Project::empty();
    p.write_config(&format!(
        "[ingest]\ncsv = {:?}\n\n[model]\nsource = {source:?}\n",
        shared_data("uci_amazon_yelp.csv").display().to_string()
    ));
    p
}

fn model_onnx(p: &Project) -> Vec<u8> {
    fs::read(p.path("artifacts/model/model.onnx")).unwrap()
}

#[test]
fn hub_source_downloads_converts_and_works_offline() {
    let (_hub_root, hub) = hub_serving_tiny_bert();
    let hf_home = tempfile::tempdir().unwrap();
    let home = hf_home.path().to_str().unwrap();

    let p = project("hf:test-org/tiny-bert");
    let run = p.cli_env(
        &["run-pipeline", "--until", "model"],
        &[("HF_ENDPOINT", &hub.url), ("HF_HOME", home)],
    );
    assert_eq!(run.ok().outcome("model"), "ran");

    // Same weights through dir: give the same graph, byte for byte.
    let local = project(&format!("dir:{}", tiny_dir().display()));
    local.cli(&["run-pipeline", "--until", "model"]).ok();
    assert_eq!(model_onnx(&p), model_onnx(&local));

    // Offline: served from HF_HOME's cache with the hub gone.
    drop(hub);
    let offline = project("hf:test-org/tiny-bert");
    let run = offline.cli_env(
        &["run-pipeline", "--until", "model"],
        &[("HF_HUB_OFFLINE", "1"), ("HF_HOME", home)],
    );
    assert_eq!(run.ok().outcome("model"), "ran");
    assert_eq!(model_onnx(&offline), model_onnx(&local));

    let missing = project("hf:test-org/no-such-model");
    let run = missing.cli_env(
        &["run-pipeline"],
        &[("HF_HUB_OFFLINE", "1"), ("HF_HOME", home)],
    );
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("hf:test-org/no-such-model") && run.stderr.contains("HF_HUB_OFFLINE"),
        "{}",
        run.stderr
    );
}

/// Only run-pipeline fetches a model: the commands that look (status, dag,
/// gc) or read stored results (predict, evaluate) never download one, even
/// where the hub would serve it.
#[test]
fn only_run_pipeline_downloads_a_model() {
    let (_hub_root, hub) = hub_serving_tiny_bert();
    let hf_home = tempfile::tempdir().unwrap();
    let home = hf_home.path().to_str().unwrap();
    let env = [("HF_ENDPOINT", hub.url.as_str()), ("HF_HOME", home)];
    let downloaded = || walkdir_files(hf_home.path());

    let p = project("hf:test-org/tiny-bert");
    let status = p.cli_env(&["status"], &env);
    status.ok();
    assert!(
        status.stdout.contains(
            "model    would run: inputs config.json, tokenizer.json, model.safetensors \
             are not fetched yet (a run fetches them from hf:test-org/tiny-bert)"
        ) && status.stdout.contains("upstream model would run first"),
        "{}",
        status.stdout
    );
    let dag = p.cli_env(&["dag"], &env);
    assert!(
        dag.ok()
            .stdout
            .contains("<- model.safetensors: not fetched yet (from hf:test-org/tiny-bert)"),
        "{}",
        dag.stdout
    );
    p.cli_env(&["gc"], &env).ok();
    let predict = p.cli_env(&["predict", "--text", "fine"], &env);
    assert_ne!(predict.code, 0, "nothing is trained yet");
    let evaluate = p.cli_env(&["evaluate", "--csv", "data/none.csv"], &env);
    assert_ne!(evaluate.code, 0);
    assert_eq!(
        downloaded(),
        Vec::<String>::new(),
        "nothing fetched by looking"
    );

    // The hub did serve it: run-pipeline fetches, and status then sees it.
    assert_eq!(
        p.cli_env(&["run-pipeline", "--until", "model"], &env)
            .ok()
            .outcome("model"),
        "ran"
    );
    assert!(!downloaded().is_empty());
    assert!(
        p.cli_env(&["status"], &env)
            .ok()
            .stdout
            .contains("model    up to date")
    );
}

/// Files under `dir`, recursively, relative to it.
fn walkdir_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// The model stage is keyed on the files' content, not on where they are:
/// the same files under another path are the same model.
#[test]
fn a_moved_model_directory_is_the_same_model() {
    let copy = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        fs::copy(tiny_dir().join(f), copy.path().join(f)).unwrap();
    }
    let p = project(&format!("dir:{}", tiny_dir().display()));
    let first = p.cli(&["run-pipeline", "--until", "model"]);
    assert_eq!(first.ok().outcome("model"), "ran");
    let config = fs::read_to_string(p.path("pipeline.toml")).unwrap();
    let moved = config.replace(
        &tiny_dir().display().to_string(),
        &copy.path().display().to_string(),
    );
    assert_ne!(config, moved);
    p.write_config(&moved);
    let again = p.cli(&["run-pipeline", "--until", "model"]);
    assert_eq!(again.ok().outcome("model"), "cached", "{}", again.stdout);
}

#[test]
fn onnx_source_uses_a_ready_graph() {
    // The PyTorch export of the tiny model, used as given.
    let p = project(&format!("onnx:{}", tiny_dir().display()));
    p.cli(&["run-pipeline"]).ok();
    assert_eq!(
        model_onnx(&p),
        fs::read(tiny_dir().join("model.onnx")).unwrap()
    );
    let info: serde_json::Value =
        serde_json::from_slice(&fs::read(p.path("artifacts/model/model.json")).unwrap()).unwrap();
    assert_eq!(info["hidden_size"], 64);
    assert_eq!(info["has_pooler"], true);
    assert!(p.path("artifacts/embed/train.parquet").is_file());
}

#[test]
fn bad_model_sources_are_clear_errors() {
    let cases = [
        ("bert-base-uncased", "expected hf:<repo>"),
        ("dir:/nonexistent/model", "config.json is missing"),
        ("onnx:/nonexistent/model", "model.onnx is missing"),
    ];
    for (source, expect) in cases {
        let p = project(source);
        let run = p.cli(&["run-pipeline"]);
        assert_ne!(run.code, 0, "{source}");
        assert!(run.stderr.contains(expect), "{source}: {}", run.stderr);
        assert!(
            p.artifact_entries().is_empty(),
            "{source}: {:?}",
            p.artifact_entries()
        );
    }
}

/// `device = "cuda"` where CUDA cannot run is an error that says so, not a
/// silent fall-back to the CPU; `auto` falls back with a visible warning.
#[test]
fn cuda_device_fails_clearly_without_cuda() {
    let p = Project::with_csv(shared_data_text("uci_amazon_yelp.csv").as_bytes());
    p.cli(&["run-pipeline", "--set", "embed.device=\"cpu\""])
        .ok();
    // The CPU build of ONNX Runtime the first run installed: its CUDA
    // provider cannot register on any machine.
    let lib = model::pypi::cache_dir().join("onnxruntime-1.32.0/libonnxruntime.so.1.32.0");
    let lib = std::env::var("ORT_DYLIB_PATH").unwrap_or_else(|_| lib.display().to_string());
    let run = p.cli_env(
        &["run-pipeline", "--set", "embed.device=\"cuda\""],
        &[("ORT_DYLIB_PATH", &lib)],
    );
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("CUDA execution provider could not be used"),
        "{}",
        run.stderr
    );
    assert_eq!(
        fs::read_dir(p.path("artifacts/.store/embed"))
            .unwrap()
            .count(),
        1,
        "no new embed result"
    );
}

fn shared_data_text(name: &str) -> String {
    fs::read_to_string(shared_data(name)).unwrap()
}
