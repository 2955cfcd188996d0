//! `cargo xtask test [cargo test args]`: the README's test command.
//!
//! Tests compare against scikit-learn and read artifacts with pyarrow and
//! duckdb. Those live in a virtual environment cached outside the checkout
//! (pinned versions, from PyPI), created on first use.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

/// Pinned Python test oracles.
const PY_REQUIREMENTS: &[&str] = &[
    "scikit-learn==1.9.1",
    "pyarrow==26.0.1",
    "duckdb==2.0.0",
    "numpy==2.4.6",
    "tokenizers==0.23.3",
    "safetensors==0.8.0",
];

pub fn run_tests(extra: &[String]) -> Result<ExitCode> {
    let python = ensure_venv()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["test", "--workspace"])
        .args(extra)
        .env("PIPELINE_TEST_PYTHON", &python)
        .status()
        .context("cannot start cargo test")?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn ensure_venv() -> Result<PathBuf> {
    let venv = model::pypi::cache_dir().join("test-venv");
    let python = venv.join("bin").join("python");
    let stamp = venv.join("requirements.txt");
    let wanted = PY_REQUIREMENTS.join("\n");
    if python.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str())
    {
        return Ok(python);
    }
    eprintln!(
        "setting up the Python test oracles in {} ...",
        venv.display()
    );
    run(Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv))?;
    run(Command::new(&python)
        .args(["-m", "pip", "install", "--quiet"])
        .args(PY_REQUIREMENTS))?;
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
