//! Content digests of files, memoised by file identity.
//!
//! Hashing a multi-gigabyte feature file on every no-op run would make the
//! runner useless, so (as DVC does) a digest is remembered together with the
//! file's path, size, mtime and inode and trusted while all four are unchanged.
//! `--verify` bypasses the memo.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::fsutil::write_atomic;

/// Hex blake3 of a file's bytes.
pub fn hash_file(path: &Path) -> Result<String> {
    let mut file =
        fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// Hex blake3 of bytes (stage keys).
pub fn hash_bytes(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Identity {
    size: u64,
    mtime_ns: i64,
    inode: u64,
    device: u64,
}

impl Identity {
    fn of(meta: &fs::Metadata) -> Identity {
        Identity {
            size: meta.len(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            inode: meta.ino(),
            device: meta.dev(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Memo {
    #[serde(flatten)]
    identity: Identity,
    digest: String,
}

/// Digest memo persisted as JSON next to the store.
#[derive(Debug)]
pub struct DigestCache {
    path: PathBuf,
    entries: BTreeMap<PathBuf, Memo>,
    /// When true every lookup re-hashes (the `--verify` mode).
    verify: bool,
    dirty: bool,
    /// Number of files actually hashed (for tests and the run summary).
    pub hashed_files: usize,
}

impl DigestCache {
    /// Loads the memo; a missing or unreadable memo just means "hash again".
    pub fn load(path: PathBuf, verify: bool) -> DigestCache {
        let entries = fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        DigestCache {
            path,
            entries,
            verify,
            dirty: false,
            hashed_files: 0,
        }
    }

    /// Digest of `path`, from the memo when the file's identity is unchanged.
    pub fn digest(&mut self, path: &Path) -> Result<String> {
        let abs = absolute(path)?;
        let meta = fs::metadata(&abs).with_context(|| format!("cannot read {}", abs.display()))?;
        let identity = Identity::of(&meta);
        if !self.verify {
            if let Some(memo) = self.entries.get(&abs) {
                if memo.identity == identity {
                    return Ok(memo.digest.clone());
                }
            }
        }
        let digest = hash_file(&abs)?;
        self.hashed_files += 1;
        // Re-stat after hashing: a file modified while we read it must not be
        // remembered under its new identity with the old content's digest.
        let after = Identity::of(&fs::metadata(&abs)?);
        if after == identity {
            self.entries.insert(
                abs,
                Memo {
                    identity,
                    digest: digest.clone(),
                },
            );
            self.dirty = true;
        }
        Ok(digest)
    }

    /// Records a digest computed elsewhere (e.g. just after a stage wrote the file).
    pub fn remember(&mut self, path: &Path, digest: &str) -> Result<()> {
        let abs = absolute(path)?;
        let identity = Identity::of(&fs::metadata(&abs)?);
        self.entries.insert(
            abs,
            Memo {
                identity,
                digest: digest.to_string(),
            },
        );
        self.dirty = true;
        Ok(())
    }

    /// Drops memo entries of files that no longer exist.
    pub fn prune(&mut self) {
        let before = self.entries.len();
        self.entries.retain(|path, _| path.exists());
        self.dirty |= before != self.entries.len();
    }

    pub fn save(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let bytes = serde_json::to_vec_pretty(&self.entries)?;
        write_atomic(&self.path, &bytes)?;
        self.dirty = false;
        Ok(())
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memo_is_used_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.txt");
        fs::write(&file, b"hello").unwrap();
        let mut cache = DigestCache::load(dir.path().join("memo.json"), false);
        let first = cache.digest(&file).unwrap();
        assert_eq!(first, hash_bytes(b"hello"));
        assert_eq!(cache.digest(&file).unwrap(), first);
        assert_eq!(
            cache.hashed_files, 1,
            "second lookup must come from the memo"
        );
        cache.save().unwrap();

        // Survives a reload.
        let mut reloaded = DigestCache::load(dir.path().join("memo.json"), false);
        assert_eq!(reloaded.digest(&file).unwrap(), first);
        assert_eq!(reloaded.hashed_files, 0);

        // A content change changes size here, so the memo is bypassed.
        fs::write(&file, b"hello world").unwrap();
        assert_eq!(reloaded.digest(&file).unwrap(), hash_bytes(b"hello world"));
        assert_eq!(reloaded.hashed_files, 1);
    }

    #[test]
    fn verify_mode_always_rehashes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.txt");
        fs::write(&file, b"x").unwrap();
        let mut cache = DigestCache::load(dir.path().join("memo.json"), true);
        cache.digest(&file).unwrap();
        cache.digest(&file).unwrap();
        assert_eq!(cache.hashed_files, 2);
    }
}
