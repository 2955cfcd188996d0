//! `cargo xtask bench`: wall-clock figures on the real SST-2 training set.
//! Prints numbers; asserts nothing (speed is measured, not tested).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

pub fn run(args: &[String]) -> Result<()> {
    let csv = match args.first() {
        Some(p) => PathBuf::from(p),
        None => default_csv()?,
    };
    let work = tempfile::tempdir()?;
    let config = work.path().join("pipeline.toml");
    std::fs::write(
        &config,
        format!(
            "[ingest]\ncsv = {:?}\n",
            std::path::absolute(&csv)?.display().to_string()
        ),
    )?;
    let rows = std::fs::read_to_string(&csv)?
        .lines()
        .count()
        .saturating_sub(1);
    println!("benchmark input: {} ({rows} data rows)", csv.display());

    let cold = time_cli(&config, &["run-pipeline"])?;
    println!("cold run (every stage):   {cold:>8.3} s");
    let runs = 10;
    let mut noop = Vec::new();
    for _ in 0..runs {
        noop.push(time_cli(&config, &["run-pipeline"])?);
    }
    noop.sort_by(f64::total_cmp);
    println!(
        "no-op rerun, median of {runs}: {:>8.3} s (min {:.3}, max {:.3})",
        noop[runs / 2],
        noop[0],
        noop[runs - 1]
    );
    let forced = time_cli(&config, &["run-pipeline", "--force", "ingest"])?;
    println!("ingest forced rerun:      {forced:>8.3} s");
    let verify = time_cli(&config, &["run-pipeline", "--verify"])?;
    println!("no-op with --verify:      {verify:>8.3} s (re-hashes everything)");
    Ok(())
}

fn default_csv() -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let csv = root.join("../shared/data/sst2_train.csv");
    if !csv.is_file() {
        bail!(
            "{} not found; pass a CSV: cargo xtask bench FILE",
            csv.display()
        );
    }
    Ok(csv)
}

fn time_cli(config: &Path, args: &[&str]) -> Result<f64> {
    let exe = std::env::current_exe()?;
    let started = Instant::now();
    let out = Command::new(exe)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .context("cannot run the pipeline")?;
    let seconds = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(seconds)
}
