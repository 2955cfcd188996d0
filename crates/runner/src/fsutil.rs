//! Small filesystem primitives with crash-safe semantics.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// Writes `bytes` to `path` so that readers see either the old or the new
/// content, never a torn file: write a sibling temp file, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("path has no parent directory")?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tmp = tempfile_in(dir, path)?;
    tmp.1.write_all(bytes)?;
    tmp.1.sync_all()?;
    fs::rename(&tmp.0, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

fn tempfile_in(dir: &Path, target: &Path) -> Result<(std::path::PathBuf, fs::File)> {
    let stem = target
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or("file");
    for attempt in 0..100u32 {
        let candidate = dir.join(format!(".{stem}.tmp-{}-{attempt}", std::process::id()));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&candidate)
        {
            Ok(file) => return Ok((candidate, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create {}", candidate.display()));
            }
        }
    }
    anyhow::bail!("cannot create a temporary file in {}", dir.display())
}

/// Points the symlink `link` at `target`, replacing any previous symlink
/// atomically (a new link is made beside it and renamed over it).
pub fn replace_symlink(target: &Path, link: &Path) -> Result<()> {
    if let Ok(meta) = fs::symlink_metadata(link) {
        if !meta.file_type().is_symlink() {
            anyhow::bail!(
                "{} is a real {} but the runner manages it as a link to the current result; \
                 move it away and run again",
                link.display(),
                if meta.is_dir() { "directory" } else { "file" }
            );
        }
    }
    let name = link
        .file_name()
        .and_then(|s| s.to_str())
        .context("bad link name")?;
    let tmp = link.with_file_name(format!(".{name}.link-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .with_context(|| format!("cannot create link {}", tmp.display()))?;
    fs::rename(&tmp, link).with_context(|| format!("cannot replace link {}", link.display()))?;
    Ok(())
}

/// Total size in bytes of the files under `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}
