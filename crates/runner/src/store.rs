//! The content-addressed store under an artifacts directory.
//!
//! ```text
//! artifacts/
//!   pipeline.lock            current result of every stage (TOML)
//!   <stage> -> .store/<stage>/<key>    stable human path (a symlink)
//!   .store/<stage>/<key>/    outputs + manifest.json; immutable once renamed in
//!   .tmp/                    stages write here; renamed into .store on success
//!   .cache/digests.json      digest memo
//!   .cache/<stage>/          a stage's own cache (the embed stage's feature store)
//!   .lock                    held by the running process
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::digest::DigestCache;
use crate::fsutil::replace_symlink;
use crate::manifest::{LockFile, MANIFEST_FILE, Manifest};
use crate::runlock::RunLock;

pub struct Store {
    root: PathBuf,
}

/// Why a stored result cannot be trusted.
#[derive(Debug, Clone, PartialEq)]
pub enum Damage {
    Missing(String),
    Modified(String),
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::Missing(name) => write!(f, "stored output {name} is missing"),
            Damage::Modified(name) => {
                write!(f, "stored output {name} no longer matches its digest")
            }
        }
    }
}

/// True when `path` is a directory itself, not a symlink to one.
fn is_real_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// A single normal path component: what every name the runner joins onto
/// a store path must be, so no name read from disk can lead outside it.
pub fn is_plain_name(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!(parts.next(), Some(std::path::Component::Normal(_))) && parts.next().is_none()
}

/// Makes `dir` a real directory: a symlink planted in its place is removed
/// (never followed: writing through it would leave the artifacts folder).
fn ensure_real_dir(dir: &Path) -> Result<()> {
    if let Ok(meta) = fs::symlink_metadata(dir) {
        if meta.file_type().is_symlink() {
            tracing::warn!(
                "{} was a symbolic link; replaced by a directory",
                dir.display()
            );
            fs::remove_file(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        } else if !meta.is_dir() {
            bail!(
                "{} is a file, but the store needs a directory there; move it away and run again",
                dir.display()
            );
        }
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

impl Store {
    pub fn open(root: &Path) -> Result<Store> {
        fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
        for sub in [".store", ".tmp", ".cache"] {
            ensure_real_dir(&root.join(sub))?;
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn lock_file_path(&self) -> PathBuf {
        self.root.join("pipeline.lock")
    }

    pub fn digest_memo_path(&self) -> PathBuf {
        self.root.join(".cache").join("digests.json")
    }

    /// `.cache/<stage>/`, a real directory (see [`RunContext::cache_dir`]).
    ///
    /// [`RunContext::cache_dir`]: crate::RunContext::cache_dir
    pub fn stage_cache_dir(&self, stage: &str) -> Result<PathBuf> {
        let dir = self.stage_cache_path(stage);
        ensure_real_dir(&dir)?;
        Ok(dir)
    }

    /// Where [`Store::stage_cache_dir`] is, without creating it.
    pub fn stage_cache_path(&self, stage: &str) -> PathBuf {
        self.root.join(".cache").join(stage)
    }

    pub fn entry_dir(&self, stage: &str, key: &str) -> PathBuf {
        self.root.join(".store").join(stage).join(key)
    }

    /// The manifest of a committed entry, if there is one. An entry reached
    /// through a symlink, or whose manifest names files outside it, is not
    /// one (it will be recomputed).
    pub fn manifest(&self, stage: &str, key: &str) -> Option<Manifest> {
        let stage_dir = self.root.join(".store").join(stage);
        let entry = stage_dir.join(key);
        if !(is_real_dir(&stage_dir) && is_real_dir(&entry)) {
            return None;
        }
        Manifest::read(&entry).filter(|m| {
            m.key == key && m.stage == stage && m.outputs.keys().all(|name| is_plain_name(name))
        })
    }

    /// Checks each output of an entry against its recorded digest.
    pub fn damage(&self, manifest: &Manifest, digests: &mut DigestCache) -> Vec<Damage> {
        let dir = self.entry_dir(&manifest.stage, &manifest.key);
        let mut damage = Vec::new();
        for (name, record) in &manifest.outputs {
            let path = dir.join(name);
            if fs::symlink_metadata(&path)
                .map(|m| !m.is_file())
                .unwrap_or(true)
            {
                damage.push(Damage::Missing(name.clone()));
                continue;
            }
            match digests.digest(&path) {
                Ok(d) if d == record.digest => {}
                _ => damage.push(Damage::Modified(name.clone())),
            }
        }
        damage
    }

    /// A fresh private directory for a stage to write into.
    pub fn scratch_dir(&self, stage: &str) -> Result<PathBuf> {
        let base = self.root.join(".tmp");
        for n in 0..1000u32 {
            let dir = base.join(format!("{stage}-{}-{n}", std::process::id()));
            match fs::create_dir(&dir) {
                Ok(()) => return Ok(dir),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", dir.display()));
                }
            }
        }
        bail!("cannot create a scratch directory under {}", base.display())
    }

    /// Makes a finished scratch directory the store entry of its key. The
    /// rename is the commit point: before it nothing is trusted, after it
    /// the entry is complete.
    pub fn commit(&self, scratch: &Path, manifest: &Manifest) -> Result<PathBuf> {
        manifest.write(scratch)?;
        sync_dir(scratch);
        let entry = self.entry_dir(&manifest.stage, &manifest.key);
        ensure_real_dir(entry.parent().unwrap())?;
        if fs::symlink_metadata(&entry).is_ok() {
            // A forced rerun or a damaged entry: move the old one aside first
            // so the rename below never lands inside it.
            let trash = self.scratch_dir(&format!("{}-replaced", manifest.stage))?;
            fs::rename(&entry, trash.join("old"))?;
            fs::rename(scratch, &entry)?;
            let _ = fs::remove_dir_all(trash);
        } else {
            fs::rename(scratch, &entry)
                .with_context(|| format!("cannot move {} into the store", scratch.display()))?;
        }
        sync_dir(entry.parent().unwrap());
        Ok(entry)
    }

    /// Points `artifacts/<stage>` at the entry of `key`.
    pub fn point_current(&self, stage: &str, key: &str) -> Result<()> {
        if links_to(&self.root, stage, key) {
            return Ok(());
        }
        replace_symlink(&current_link_target(stage, key), &self.root.join(stage))
    }

    /// Keys of all committed entries, per stage.
    pub fn entries(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let Ok(stages) = fs::read_dir(self.root.join(".store")) else {
            return out;
        };
        for stage in stages.flatten() {
            let Ok(keys) = fs::read_dir(stage.path()) else {
                continue;
            };
            for key in keys.flatten() {
                out.push((
                    stage.file_name().to_string_lossy().into_owned(),
                    key.file_name().to_string_lossy().into_owned(),
                ));
            }
        }
        out.sort();
        out
    }

    /// Leftovers of interrupted runs (only safe while holding the run lock).
    pub fn scratch_leftovers(&self) -> Vec<PathBuf> {
        fs::read_dir(self.root.join(".tmp"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}

/// Removes the store entries that `pipeline.lock` does not reference, and
/// scratch left by killed runs, under the run lock (waiting for a run in
/// progress). Returns what was (or, with `dry_run`, would be) removed and
/// its size in bytes. Needs no pipeline: the lock says what is current.
pub fn gc(artifacts: &Path, dry_run: bool) -> Result<Vec<(PathBuf, u64)>> {
    let _lock = RunLock::acquire(artifacts, true)?;
    let store = Store::open(artifacts)?;
    let lock = LockFile::load(&store.lock_file_path())?;
    let mut doomed = Vec::new();
    for (stage, key) in store.entries() {
        let referenced = lock.stages.get(&stage).is_some_and(|m| m.key == key);
        if !referenced {
            doomed.push(store.entry_dir(&stage, &key));
        }
    }
    doomed.extend(store.scratch_leftovers());
    let mut removed = Vec::new();
    for path in doomed {
        let size = crate::fsutil::dir_size(&path);
        if !dry_run {
            fs::remove_dir_all(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
        removed.push((path, size));
    }
    Ok(removed)
}

/// Where `artifacts/<stage>` points for the entry of `key` (relative, so
/// the artifacts directory can move).
fn current_link_target(stage: &str, key: &str) -> PathBuf {
    Path::new(".store").join(stage).join(key)
}

/// True when `<root>/<stage>` is the link to the entry of `key`.
pub fn links_to(root: &Path, stage: &str, key: &str) -> bool {
    fs::read_link(root.join(stage)).ok() == Some(current_link_target(stage, key))
}

pub fn is_manifest(name: &str) -> bool {
    name == MANIFEST_FILE
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
