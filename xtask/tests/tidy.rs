//! Tidy: the structural rules ARCHITECTURE.md states, checked against the
//! source tree (as rust-analyzer's tidy test does). Each rule is one test;
//! a failure lists every place that breaks it and says what the rule is for.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Crates that do one stage's work (and `tables`, their shared schemas):
/// they know how, never whether, so they must not see the runner.
const STAGE_CRATES: [&str; 9] = [
    "ingest", "model", "encode", "embed", "head", "audit", "report", "export", "tables",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// (package name, every dependency it names in any section) of each
/// workspace member.
fn members() -> Vec<(String, BTreeSet<String>)> {
    let root = root();
    let mut dirs: Vec<PathBuf> = fs::read_dir(root.join("crates"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    dirs.extend([root.join("xtask"), root.join("tests")]);
    dirs.sort();
    dirs.iter()
        .filter(|d| d.join("Cargo.toml").is_file())
        .map(|dir| {
            let text = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
            let manifest: toml::Table = text.parse().unwrap();
            let name = manifest["package"]["name"].as_str().unwrap().to_string();
            (name, dependencies(&manifest))
        })
        .collect()
}

fn dependencies(manifest: &toml::Table) -> BTreeSet<String> {
    let sections = ["dependencies", "dev-dependencies", "build-dependencies"];
    let mut tables: Vec<&toml::Table> = sections
        .iter()
        .filter_map(|s| manifest.get(*s)?.as_table())
        .collect();
    if let Some(targets) = manifest.get("target").and_then(|t| t.as_table()) {
        for target in targets.values().filter_map(|t| t.as_table()) {
            tables.extend(sections.iter().filter_map(|s| target.get(*s)?.as_table()));
        }
    }
    tables.iter().flat_map(|t| t.keys().cloned()).collect()
}

/// Every Rust source file of the workspace, relative to its root.
fn rust_files() -> Vec<PathBuf> {
    let root = root();
    let mut out = Vec::new();
    let mut todo: Vec<PathBuf> = ["crates", "xtask", "tests"]
        .iter()
        .map(|d| root.join(d))
        .collect();
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() && entry.file_name() != "target" {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path.strip_prefix(&root).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// Files (other than `allowed`, and this one, which names the needles)
/// whose code, comments aside, contains `needle`.
fn code_containing(needle: &str, allowed: &[&str]) -> Vec<String> {
    rust_files()
        .into_iter()
        .filter(|f| f != Path::new(file!()))
        .filter(|f| !allowed.iter().any(|a| f == Path::new(a)))
        .filter(|f| {
            fs::read_to_string(root().join(f))
                .unwrap()
                .lines()
                .map(|l| l.split("//").next().unwrap())
                .any(|code| code.contains(needle))
        })
        .map(|f| f.display().to_string())
        .collect()
}

/// What breaks "`needle` only in `files`, `dependency` only of `crates`".
fn confined(needle: &str, files: &[&str], crates: &[&str], dependency: &str) -> Vec<String> {
    let mut broken = code_containing(needle, files);
    broken.extend(
        members()
            .into_iter()
            .filter(|(name, deps)| !crates.contains(&name.as_str()) && deps.contains(dependency))
            .map(|(name, _)| format!("crate {name} depends on {dependency}")),
    );
    broken
}

#[track_caller]
fn assert_none(broken: Vec<String>, rule: &str) {
    assert!(
        broken.is_empty(),
        "{rule}\nbroken by:\n  {}",
        broken.join("\n  ")
    );
}

#[test]
fn stage_crates_do_not_depend_on_the_runner() {
    let broken = members()
        .into_iter()
        .filter(|(name, deps)| STAGE_CRATES.contains(&name.as_str()) && deps.contains("runner"))
        .map(|(name, _)| format!("crate {name} depends on runner"))
        .collect();
    assert_none(
        broken,
        "stage crates know how to do their job, never whether: only `pipeline` wires them to the runner",
    );
}

#[test]
fn only_tables_depends_on_arrow_or_parquet() {
    let broken = members()
        .into_iter()
        .filter(|(name, _)| name != "tables")
        .flat_map(|(name, deps)| {
            ["arrow", "parquet"]
                .into_iter()
                .filter(move |d| deps.contains(*d))
                .map(move |d| format!("crate {name} depends on {d}"))
        })
        .collect();
    assert_none(
        broken,
        "every Parquet schema and every read or write of one lives in `tables`",
    );
}

#[test]
fn only_ortlib_initialises_onnx_runtime() {
    let broken = confined(
        "ort::init",
        &["crates/embed/src/ortlib.rs"],
        &["embed"],
        "ort",
    );
    assert_none(
        broken,
        "ONNX Runtime is found, installed and initialised in one place: `embed::ortlib`",
    );
}

#[test]
fn only_the_runner_and_the_feature_store_hash() {
    let broken = confined(
        "blake3",
        &["crates/runner/src/digest.rs", "crates/embed/src/store.rs"],
        &["runner", "embed"],
        "blake3",
    );
    assert_none(
        broken,
        "artifact digests are computed (and memoised) only by `runner::digest`, so a digest means \
         one thing; the embed stage's feature store keys rows and names chunks in `embed::store`",
    );
}

#[test]
fn every_source_file_opens_with_a_module_doc() {
    let broken = rust_files()
        .into_iter()
        .filter(|f| {
            let text = fs::read_to_string(root().join(f)).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert_none(
        broken,
        "every module says what it is for in its first lines (`//!`)",
    );
}

#[test]
fn only_model_pypi_checks_downloads() {
    let broken = confined("sha2", &["crates/model/src/pypi.rs"], &["model"], "sha2");
    assert_none(
        broken,
        "downloads are checked against their wheel's RECORD (sha256) in one place: `model::pypi`",
    );
}

/// `println!` and `print!` panic when the reader of stdout has gone
/// (`cargo xtask gc | head -1`); every command writes with `writeln!` (in
/// `xtask`: `outln!`) and hands the error back, which `exit_code` takes as
/// success. Sources of the programs only: tests may print.
#[test]
fn no_command_prints_with_a_macro_that_panics_on_a_closed_pipe() {
    let is_macro_at = |code: &str, at: usize| {
        at == 0 || {
            let before = code.as_bytes()[at - 1];
            !(before.is_ascii_alphanumeric() || before == b'_')
        }
    };
    let broken: Vec<String> = rust_files()
        .into_iter()
        .filter(|f| f.components().any(|c| c.as_os_str() == "src"))
        .filter(|f| {
            fs::read_to_string(root().join(f))
                .unwrap()
                .lines()
                .map(|l| l.split("//").next().unwrap())
                .any(|code| {
                    ["println!", "print!"].iter().any(|needle| {
                        code.match_indices(needle)
                            .any(|(at, _)| is_macro_at(code, at))
                    })
                })
        })
        .map(|f| f.display().to_string())
        .collect();
    assert_none(
        broken,
        "println!/print! panic on a closed pipe: write with writeln! (xtask: outln!) and return the error",
    );
}
