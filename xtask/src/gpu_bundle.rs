//! `cargo xtask gpu-bundle`: the GPU benchmark, packed for a GPU machine
//! that has neither cargo nor a network. Two folders beside the checkout,
//! both git-ignored and each small enough to copy over in one go:
//! - `.gpubin/`: a stripped release build of the CLI with burn-wgpu
//!   (`pipeline-cli.xz`), the SST-2 CSV (`sst2_train.csv.xz`) and the default
//!   model's tokenizer (bert-base-uncased's vocabulary);
//! - `.gpu/`: `../shared/gpu` (ONNX Runtime with its CUDA provider, the
//!   Vulkan loader packages, the PyTorch anchor and `unpack.sh`).
//!
//! On the GPU machine, with both folders in the checkout:
//! `source .gpu/unpack.sh .gpu` unpacks ONNX Runtime and sets its paths,
//! then `bash gpu/bench.sh [full|confirm|stage]` unpacks the CLI and prints
//! every figure (see `../shared/gpu/README.md` for machines that can take
//! only one folder per command: copy `.gpu/` first, then `.gpubin/`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

pub fn run_bundle() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()?;
    let out = root.join(".gpubin");
    std::fs::create_dir_all(&out)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("gpu-release");
    outln!(
        "building the release CLI with burn-wgpu into {}",
        target.display()
    )?;
    run(Command::new(env!("CARGO"))
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "-p",
            "integration-tests",
            "--bin",
            "pipeline-cli",
        ])
        .args(["--features", "wgpu", "--target-dir"])
        .arg(&target))?;
    let binary = out.join("pipeline-cli");
    std::fs::copy(target.join("release/pipeline-cli"), &binary)?;
    run(Command::new("strip").arg(&binary))?;

    let csv = root.join("../shared/data/sst2_train.csv");
    std::fs::copy(&csv, out.join("sst2_train.csv"))
        .with_context(|| format!("cannot copy {}", csv.display()))?;
    let source: model::ModelSource = pipeline::config::default_model_source().parse()?;
    let files = source.resolve(&root)?;
    std::fs::copy(&files.tokenizer, out.join("tokenizer.json"))?;
    for f in ["pipeline-cli", "sst2_train.csv"] {
        run(Command::new("xz").args(["-f", "-T2"]).arg(out.join(f)))?;
    }
    // Call 1's payload: ONNX Runtime with CUDA, the PyTorch anchor and the
    // Vulkan loader packages (59 MiB, under the 64 MiB a call carries).
    let shared_gpu = root.join("../shared/gpu");
    std::fs::create_dir_all(root.join(".gpu"))?;
    run(Command::new("cp")
        .arg("-r")
        .arg(shared_gpu.join("."))
        .arg(root.join(".gpu")))?;
    // .gitignore lists /.gpu/ and /.gpubin/: carried, never committed.
    let size: u64 = std::fs::read_dir(&out)?
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    outln!(
        "{}: {:.1} MiB; .gpu/ holds ../shared/gpu. On the GPU machine:\n  \
         1. `source .gpu/unpack.sh .gpu` (with .gpu/ copied there)\n  \
         2. `bash gpu/bench.sh` (with .gpubin/ copied there)",
        out.display(),
        size as f64 / (1 << 20) as f64
    )?;
    Ok(())
}
