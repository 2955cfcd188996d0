//! Finding libonnxruntime: `ORT_DYLIB_PATH` if set, else a copy cached
//! earlier, else one installed into the cache from the PyPI wheel (the
//! library inside `onnxruntime/capi/`). The `ort` crate is built against the
//! 1.31 API (feature `api-31`); older libraries are refused by it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use model::pypi;

/// PyPI wheel providing the CPU library.
pub const CPU_WHEEL: (&str, &str) = ("onnxruntime", "1.32.0");
/// PyPI wheel providing the CUDA 13 library and provider.
pub const GPU_WHEEL: (&str, &str) = ("onnxruntime-gpu", "1.31.1");

/// Path of a usable libonnxruntime, installing it if needed.
pub fn library_path(gpu: bool) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!(
                "ORT_DYLIB_PATH={} does not name a file; unset it to let the pipeline install ONNX Runtime",
                p.display()
            );
        }
        return Ok(p);
    }
    let (package, version) = if gpu { GPU_WHEEL } else { CPU_WHEEL };
    let dir = install_dir(gpu);
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

/// Where the wheel's libraries are installed in the cache.
fn install_dir(gpu: bool) -> PathBuf {
    let (package, version) = if gpu { GPU_WHEEL } else { CPU_WHEEL };
    pypi::cache_dir().join(format!("{package}-{version}"))
}

/// [`library_path`], but an installed copy is first checked byte for byte
/// against the digests recorded when it was installed (and installed anew
/// if damaged): for set-up steps such as `cargo xtask test`, not every run.
pub fn verified_library_path(gpu: bool) -> Result<PathBuf> {
    if std::env::var_os("ORT_DYLIB_PATH").is_none() {
        pypi::ensure_intact(&install_dir(gpu), || library_path(gpu).map(drop))?;
    }
    library_path(gpu)
}

/// Unpacks the shared libraries of `onnxruntime/capi/` from the PyPI wheel.
fn install_from_wheel(package: &str, version: &str, dir: &Path) -> Result<()> {
    eprintln!(
        "installing ONNX Runtime {version} ({package} from PyPI) into {}",
        dir.display()
    );
    pypi::install_atomically(dir, |dest| {
        let downloads = tempfile::tempdir_in(dest)?;
        let wheel = pypi::download_wheel(&format!("{package}=={version}"), downloads.path())?;
        let n = pypi::extract(&wheel, dest, |name| {
            let file = name.strip_prefix("onnxruntime/capi/")?;
            (file.starts_with("libonnxruntime") && file.contains(".so") && !file.contains('/'))
                .then(|| PathBuf::from(file))
        })?;
        if n == 0 || !dest.join(format!("libonnxruntime.so.{version}")).is_file() {
            bail!(
                "{} has no onnxruntime/capi/libonnxruntime.so.{version}",
                wheel.display()
            );
        }
        Ok(())
    })
}

static ENVIRONMENT: OnceLock<std::result::Result<ort::environment::Environment, String>> =
    OnceLock::new();

/// The process-wide ONNX Runtime environment (loads the library once).
pub fn environment(gpu: bool) -> Result<&'static ort::environment::Environment> {
    let env = ENVIRONMENT.get_or_init(|| {
        let load = || -> Result<ort::environment::Environment> {
            let path = library_path(gpu)?;
            let builder = ort::init_from(&path).map_err(|e| {
                anyhow::anyhow!("cannot load ONNX Runtime from {}: {e}", path.display())
            })?;
            builder
                .with_name("bert-sentiment")
                .build()
                .map_err(|e| anyhow::anyhow!("ONNX Runtime: {e}"))
        };
        load().map_err(|e| format!("{e:#}"))
    });
    env.as_ref().map_err(|e| anyhow::anyhow!("{e}"))
}
