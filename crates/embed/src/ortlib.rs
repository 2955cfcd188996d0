//! Finding libonnxruntime: `ORT_DYLIB_PATH` if set, else a copy cached
//! earlier, else one installed into the cache from the PyPI wheel (the
//! library inside `onnxruntime/capi/`). The `ort` crate is built against the
//! 1.31 API (feature `api-31`); older libraries are refused by it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

/// PyPI wheel providing the CPU library.
pub const CPU_WHEEL: (&str, &str) = ("onnxruntime", "1.32.0");
/// PyPI wheel providing the CUDA 13 library and provider.
pub const GPU_WHEEL: (&str, &str) = ("onnxruntime-gpu", "1.31.1");

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

/// Path of a usable libonnxruntime, installing it if needed.
pub fn library_path(gpu: bool) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("ORT_DYLIB_PATH={} does not name a file; unset it to let the pipeline install ONNX Runtime", p.display());
        }
        return Ok(p);
    }
    let (package, version) = if gpu { GPU_WHEEL } else { CPU_WHEEL };
    let dir = cache_dir().join(format!("{package}-{version}"));
    let lib = dir.join(format!("libonnxruntime.so.{version}"));
    if lib.is_file() {
        return Ok(lib);
    }
    install_from_wheel(package, version, &dir).with_context(|| {
        format!(
            "cannot install ONNX Runtime {version} from PyPI ({package}); install it yourself and set \
             ORT_DYLIB_PATH to its libonnxruntime.so"
        )
    })?;
    Ok(lib)
}

/// `pip download` the wheel, then unpack the shared libraries of
/// `onnxruntime/capi/` into `dir` (atomically: a temp dir renamed at the end).
fn install_from_wheel(package: &str, version: &str, dir: &Path) -> Result<()> {
    let parent = dir.parent().context("cache dir has no parent")?;
    fs::create_dir_all(parent)?;
    let staging = tempfile::Builder::new().prefix(".install-").tempdir_in(parent)?;
    eprintln!("installing ONNX Runtime: {package}=={version} from PyPI into {}", dir.display());
    let out = Command::new("python3")
        .args(["-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d"])
        .arg(staging.path())
        .arg(format!("{package}=={version}"))
        .output()
        .context("cannot run python3 -m pip (is Python 3 with pip installed?)")?;
    if !out.status.success() {
        bail!("pip download {package}=={version} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let wheel = fs::read_dir(staging.path())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .context("pip download produced no wheel")?;
    let unpacked = staging.path().join("lib");
    fs::create_dir_all(&unpacked)?;
    let mut archive = zip::ZipArchive::new(fs::File::open(&wheel)?)?;
    let mut found = false;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        let name = entry.name().to_string();
        let Some(file) = name.strip_prefix("onnxruntime/capi/") else { continue };
        if file.starts_with("libonnxruntime") && file.contains(".so") && !file.contains('/') {
            let mut out = fs::File::create(unpacked.join(file))?;
            std::io::copy(&mut entry, &mut out)?;
            found |= file == format!("libonnxruntime.so.{version}");
        }
    }
    if !found {
        bail!("{} has no onnxruntime/capi/libonnxruntime.so.{version}", wheel.display());
    }
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    fs::rename(&unpacked, dir)?;
    Ok(())
}

static ENVIRONMENT: OnceLock<std::result::Result<ort::environment::Environment, String>> = OnceLock::new();

/// The process-wide ONNX Runtime environment (loads the library once).
pub fn environment(gpu: bool) -> Result<&'static ort::environment::Environment> {
    let env = ENVIRONMENT.get_or_init(|| {
        let load = || -> Result<ort::environment::Environment> {
            let path = library_path(gpu)?;
            let builder = ort::init_from(&path)
                .map_err(|e| anyhow::anyhow!("cannot load ONNX Runtime from {}: {e}", path.display()))?;
            builder.with_name("bert-sentiment").build().map_err(|e| anyhow::anyhow!("ONNX Runtime: {e}"))
        };
        load().map_err(|e| format!("{e:#}"))
    });
    env.as_ref().map_err(|e| anyhow::anyhow!("{e}"))
}
