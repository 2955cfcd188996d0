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

/// Refuses a symbolic link where the store keeps its own folders. The store
/// never follows one: `gc` deletes what it finds there, so a followed link
/// would delete files outside the artifacts folder. (The artifacts folder
/// itself may be a link: that is how the whole store moves to another disk.)
pub fn refuse_link(path: &Path) -> Result<()> {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_symlink() {
        return Ok(());
    }
    let target = fs::read_link(path).unwrap_or_default();
    bail!(
        "{} is a symbolic link (to {}); the store never follows links inside the artifacts \
         folder, since gc would then delete files outside it. To keep the store on another \
         disk, move the whole artifacts folder there and pass --artifacts DIR (or link the \
         artifacts folder itself); to keep what the link points to here, replace the link by \
         that directory (rm the link, then mv the directory into its place)",
        path.display(),
        target.display()
    )
}

/// Makes `dir` a real directory (created if missing); a symlink or a file
/// in its place is refused, never followed or removed.
fn ensure_real_dir(dir: &Path) -> Result<()> {
    refuse_link(dir)?;
    if let Ok(meta) = fs::symlink_metadata(dir)
        && !meta.is_dir()
    {
        bail!(
            "{} is a file, but the store needs a directory there; move it away and run again",
            dir.display()
        );
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// Refuses a link at any level the store manages: `.store`, `.tmp`,
/// `.cache`, `.store/<stage>`, `.store/<stage>/<key>`, and anything under
/// `.cache` (the stages' own caches: the feature store's chunks). A link
/// inside an entry is not refused here: it is damage (that output counts
/// as missing and its stage runs again).
fn refuse_links(root: &Path) -> Result<()> {
    for sub in [".store", ".tmp", ".cache"] {
        refuse_link(&root.join(sub))?;
    }
    refuse_links_below(&root.join(".store"), 2)?;
    refuse_links_below(&root.join(".cache"), usize::MAX)
}

/// Refuses a link among the entries of `dir` and of its real
/// subdirectories, down to `depth` levels (a missing `dir` has none).
fn refuse_links_below(dir: &Path, depth: usize) -> Result<()> {
    if depth == 0 {
        return Ok(());
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    for entry in entries.flatten() {
        match entry.file_type() {
            Ok(kind) if kind.is_symlink() => refuse_link(&entry.path())?,
            Ok(kind) if kind.is_dir() => refuse_links_below(&entry.path(), depth - 1)?,
            _ => {}
        }
    }
    Ok(())
}

impl Store {
    /// Opens the store to write (under the run lock): its folders are
    /// created where missing; a link at any level is refused.
    pub fn open(root: &Path) -> Result<Store> {
        fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
        refuse_links(root)?;
        for sub in [".store", ".tmp", ".cache"] {
            ensure_real_dir(&root.join(sub))?;
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    /// Opens the store to look only (`status`, `--dry-run`): creates,
    /// removes and rewrites nothing, so it answers on a read-only folder
    /// or one that does not exist yet. Links are refused as [`Store::open`]
    /// refuses them, so every command agrees on what the store is.
    pub fn open_read_only(root: &Path) -> Result<Store> {
        refuse_links(root)?;
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

    /// Names of everything under `.store/<stage>/`, per stage: committed
    /// entries and anything else found there ([`Store::manifest`] tells
    /// them apart). Only real directories are walked, never a link.
    pub fn entries(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let Ok(stages) = fs::read_dir(self.root.join(".store")) else {
            return out;
        };
        for stage in stages.flatten() {
            if !stage.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
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

/// What [`gc`] removed (or, in a dry run, would remove), and what it found
/// in the store but left alone.
#[derive(Debug, Default)]
pub struct Collected {
    /// Store entries no current result references, and scratch of killed
    /// runs, with their sizes in bytes.
    pub removed: Vec<(PathBuf, u64)>,
    /// What is under `.store/<stage>/` but is no store entry (no manifest
    /// naming it): not the store's to delete.
    pub left: Vec<PathBuf>,
}

/// Removes the store entries that `pipeline.lock` does not reference, and
/// scratch left by killed runs; the caller holds the run lock. Needs no
/// pipeline: `pipeline.lock` says what is current. A dry run changes nothing.
///
/// What it deletes, and nothing else: a directory `.store/<stage>/<key>`
/// whose own `manifest.json` names it (a committed entry), and what is in
/// `.tmp/` (only runs write there); each only when its real path is inside
/// the store's real root. A link anywhere the store manages is refused
/// before anything is removed ([`refuse_link`]).
pub fn gc(_lock: &RunLock, artifacts: &Path, dry_run: bool) -> Result<Collected> {
    let store = if dry_run {
        Store::open_read_only(artifacts)?
    } else {
        Store::open(artifacts)?
    };
    let lock = LockFile::load(&store.lock_file_path())?;
    let mut collected = Collected::default();
    let mut doomed = Vec::new();
    for (stage, key) in store.entries() {
        if lock.stages.get(&stage).is_some_and(|m| m.key == key) {
            continue;
        }
        match store.manifest(&stage, &key) {
            Some(_) => doomed.push(store.entry_dir(&stage, &key)),
            None => collected.left.push(store.entry_dir(&stage, &key)),
        }
    }
    doomed.extend(store.scratch_leftovers());
    let real_root = fs::canonicalize(artifacts)
        .with_context(|| format!("cannot resolve {}", artifacts.display()))?;
    for path in doomed {
        // Belt and braces: the links were refused above, so every real
        // parent is inside the root; checked again where it matters.
        let parent = path.parent().and_then(|p| fs::canonicalize(p).ok());
        if !parent.is_some_and(|p| p.starts_with(&real_root)) {
            bail!(
                "gc: {} does not lie inside {}; nothing more removed",
                path.display(),
                real_root.display()
            );
        }
        let size = crate::fsutil::dir_size(&path);
        if !dry_run {
            // remove_dir_all removes a link itself, never what it points to.
            let meta = fs::symlink_metadata(&path)?;
            if meta.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            }
            .with_context(|| format!("cannot remove {}", path.display()))?;
        }
        collected.removed.push((path, size));
    }
    Ok(collected)
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
