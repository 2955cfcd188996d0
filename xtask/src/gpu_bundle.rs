//! `cargo xtask gpu-bundle`: everything issue #5's device check needs that
//! the GPU machine lacks (it has no cargo and no network), packed into
//! `.gpubin/` for the `run` tool's `carry`: a stripped release build of the
//! CLI with burn-wgpu, the SST-2 CSV and the default model's tokenizer
//! (bert-base-uncased's vocabulary). `gpu/bench.sh` runs it there.

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
    println!(
        "building the release CLI with burn-wgpu into {}",
        target.display()
    );
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
    println!(
        "{}: {:.1} MiB; .gpu/ holds ../shared/gpu. Then:\n  \
         run 1: carry [\".gpu\"], command `source .gpu/unpack.sh .gpu`\n  \
         run 2: carry [\".gpubin\"], command `bash gpu/bench.sh`",
        out.display(),
        size as f64 / (1 << 20) as f64
    );
    Ok(())
}
