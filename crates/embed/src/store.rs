//! The feature store: one vector per distinct model input, kept across runs
//! in the embed stage's cache folder (`artifacts/.cache/embed/`), so that a
//! rerun embeds only rows it has never seen.
//!
//! ```text
//! <dir>/chunks/<blake3 of the file>.parquet   committed chunks (tables::feature_chunks)
//! <dir>/.tmp/                                 a chunk being written
//! ```
//!
//! A row's key is blake3 over the model graph's digest, the pooling and the
//! row's token ids (the exact model input), so a repeated sentence, or a
//! `max_len` that truncates nothing new, finds its vector. A chunk is
//! written to `.tmp/`, synced, and renamed into `chunks/` under its own
//! digest: the rename commits it, and a chunk whose bytes no longer match
//! its name is dropped (with a warning) when it is read, and its rows are
//! embedded again. The runner's lock makes the running stage the only
//! writer.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tables::feature_chunks::{Chunk, Key};

/// Rows per chunk unless `embed.chunk_rows` says otherwise: each chunk is a
/// resume point after a kill.
pub const CHUNK_ROWS: usize = 4096;

/// The key of one model input.
pub fn row_key(model_digest: &str, pooling: &str, ids: &[u32]) -> Key {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"feature-row-v1\0");
    hasher.update(model_digest.as_bytes());
    hasher.update(b"\0");
    hasher.update(pooling.as_bytes());
    hasher.update(b"\0");
    for id in ids {
        hasher.update(&id.to_le_bytes());
    }
    *hasher.finalize().as_bytes()
}

/// Vectors by key.
pub type Vectors = HashMap<Key, Vec<f32>>;

/// Where a stored vector is: its chunk (an index into the store's chunk
/// list) and its row in that chunk. 8 bytes, so the index costs what a
/// chunk id alone did (a key and a `usize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub chunk: u32,
    pub row: u32,
}

pub struct FeatureStore {
    dir: PathBuf,
    /// Key -> where its vector is.
    index: HashMap<Key, Loc>,
    chunks: Vec<PathBuf>,
}

impl FeatureStore {
    /// Opens the store in `dir` (created if missing) and indexes every
    /// chunk's keys. A chunk that cannot be read is removed; each such
    /// event is returned as a warning.
    pub fn open(dir: &Path) -> Result<(FeatureStore, Vec<String>)> {
        let chunk_dir = dir.join("chunks");
        refuse_links(dir)?;
        fs::create_dir_all(&chunk_dir)
            .with_context(|| format!("cannot create {}", chunk_dir.display()))?;
        // Leftovers of a killed run: never trusted (the run lock is held).
        let _ = fs::remove_dir_all(dir.join(".tmp"));
        let mut paths = chunk_paths(&chunk_dir)?;
        paths.retain(|p| p.extension().is_some_and(|e| e == "parquet"));
        let mut store = FeatureStore {
            dir: dir.to_path_buf(),
            index: HashMap::new(),
            chunks: Vec::new(),
        };
        let mut warnings = Vec::new();
        for path in paths {
            match tables::feature_chunks::read_keys(&path) {
                Ok(keys) => store.add_to_index(path, &keys),
                Err(e) => {
                    warnings.push(drop_chunk(&path, &format!("{e:#}")));
                }
            }
        }
        Ok((store, warnings))
    }

    /// The keys `dir` holds, read without changing anything (for a dry
    /// run): a missing folder is an empty store, an unreadable chunk is
    /// skipped.
    pub fn peek(dir: &Path) -> Result<FeatureStore> {
        let mut store = FeatureStore {
            dir: dir.to_path_buf(),
            index: HashMap::new(),
            chunks: Vec::new(),
        };
        refuse_links(dir)?;
        let chunk_dir = dir.join("chunks");
        if !chunk_dir.is_dir() {
            return Ok(store);
        }
        for path in chunk_paths(&chunk_dir)? {
            if let Ok(keys) = tables::feature_chunks::read_keys(&path) {
                store.add_to_index(path, &keys);
            }
        }
        Ok(store)
    }

    fn add_to_index(&mut self, path: PathBuf, keys: &[Key]) {
        let chunk = self.chunks.len() as u32;
        self.chunks.push(path);
        for (row, key) in keys.iter().enumerate() {
            self.index.insert(
                *key,
                Loc {
                    chunk,
                    row: row as u32,
                },
            );
        }
    }

    /// Where `key`'s vector is, if the store holds it.
    pub fn locate(&self, key: &Key) -> Option<Loc> {
        self.index.get(key).copied()
    }

    /// How many chunks the store lists (chunk ids are `0..chunk_count()`).
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Chunk `id`, read and checked against its digest: a chunk that
    /// changed since the run checked it fails the read.
    pub fn read_chunk(&self, id: u32) -> Result<Chunk> {
        let path = &self.chunks[id as usize];
        verified_read(path)
            .with_context(|| format!("{} changed during the run; run again", path.display()))
    }

    /// Distinct vectors held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.index.contains_key(key)
    }

    /// The vectors of `keys` that the store holds intact, by key. Each chunk
    /// read is first checked against its digest (its name); a damaged one
    /// is removed, its keys forgotten (the caller embeds them again), and a
    /// warning returned.
    pub fn fetch(&mut self, keys: &[Key]) -> Result<(Vectors, Vec<String>)> {
        let mut by_chunk: HashMap<usize, Vec<Key>> = HashMap::new();
        for key in keys {
            if let Some(loc) = self.index.get(key) {
                by_chunk.entry(loc.chunk as usize).or_default().push(*key);
            }
        }
        let mut found = HashMap::new();
        let mut warnings = Vec::new();
        let mut ids: Vec<usize> = by_chunk.keys().copied().collect();
        ids.sort();
        for id in ids {
            let path = self.chunks[id].clone();
            let chunk = match verified_read(&path) {
                Ok(chunk) => chunk,
                Err(e) => {
                    warnings.push(drop_chunk(&path, &format!("{e:#}")));
                    self.index.retain(|_, loc| loc.chunk as usize != id);
                    continue;
                }
            };
            let wanted: HashSet<&Key> = by_chunk[&id].iter().collect();
            let h = chunk.hidden;
            for (row, key) in chunk.keys.iter().enumerate() {
                if wanted.contains(key) {
                    found.insert(*key, chunk.features[row * h..(row + 1) * h].to_vec());
                }
            }
        }
        Ok((found, warnings))
    }

    /// Commits `chunk`: written to `.tmp/`, synced, renamed into `chunks/`
    /// under its digest.
    pub fn commit(&mut self, chunk: Chunk) -> Result<()> {
        if chunk.keys.is_empty() {
            return Ok(());
        }
        let tmp = self.dir.join(".tmp");
        fs::create_dir_all(&tmp)?;
        let scratch = tmp.join(format!("chunk-{}.parquet", std::process::id()));
        let keys = chunk.keys.clone();
        tables::feature_chunks::write(&scratch, chunk)?;
        let digest = blake3::hash(&fs::read(&scratch)?).to_hex().to_string();
        let path = self.dir.join("chunks").join(format!("{digest}.parquet"));
        fs::rename(&scratch, &path)
            .with_context(|| format!("cannot move a feature chunk to {}", path.display()))?;
        if let Ok(d) = fs::File::open(self.dir.join("chunks")) {
            let _ = d.sync_all();
        }
        self.add_to_index(path, &keys);
        Ok(())
    }
}

/// Rows in the store that a run reads, by chunk: collected while the run's
/// keys stream past ([`ChunksUsed::note`]), then checked at once
/// ([`FeatureStore::verify`]) before anything is embedded.
#[derive(Debug, Default)]
pub struct ChunksUsed(std::collections::BTreeMap<usize, usize>);

impl ChunksUsed {
    /// Whether the store holds `key`; if it does, its chunk is noted.
    pub fn note(&mut self, store: &FeatureStore, key: &Key) -> bool {
        match store.index.get(key) {
            Some(loc) => {
                *self.0.entry(loc.chunk as usize).or_default() += 1;
                true
            }
            None => false,
        }
    }
}

impl FeatureStore {
    /// Checks each chunk in `used` against its digest (its name), reading
    /// it a block at a time; a damaged one is removed and its keys
    /// forgotten (the caller embeds them again). One warning per removal;
    /// and how many of the noted rows the removed chunks held.
    pub fn verify(&mut self, used: &ChunksUsed) -> Result<(Vec<String>, usize)> {
        let mut warnings = Vec::new();
        let mut lost = 0;
        for (&id, &rows) in &used.0 {
            let path = self.chunks[id].clone();
            let mut hasher = blake3::Hasher::new();
            let intact = hasher
                .update_reader(fs::File::open(&path)?)
                .map(|h| h.finalize().to_hex().as_str() == digest_name(&path))
                .unwrap_or(false);
            if !intact {
                warnings.push(drop_chunk(&path, "its bytes no longer match its digest"));
                self.index.retain(|_, loc| loc.chunk as usize != id);
                lost += rows;
            }
        }
        Ok((warnings, lost))
    }
}

/// Stored rows to keep, one bit each, marked by key
/// ([`FeatureStore::mark`]): what `gc` holds instead of the referenced keys.
#[derive(Debug, Default)]
pub struct Marks(Vec<Vec<u64>>);

impl Marks {
    fn set(&mut self, loc: Loc) {
        let (chunk, word) = (loc.chunk as usize, loc.row as usize / 64);
        if self.0.len() <= chunk {
            self.0.resize_with(chunk + 1, Vec::new);
        }
        let words = &mut self.0[chunk];
        if words.len() <= word {
            words.resize(word + 1, 0);
        }
        words[word] |= 1 << (loc.row % 64);
    }

    fn contains(&self, chunk: usize, row: usize) -> bool {
        self.0
            .get(chunk)
            .and_then(|words| words.get(row / 64))
            .is_some_and(|word| word >> (row % 64) & 1 == 1)
    }
}

impl FeatureStore {
    /// Marks `key`'s row to be kept by [`FeatureStore::retain`] (of this
    /// store, before anything else changes it); a key it lacks is ignored.
    pub fn mark(&self, marks: &mut Marks, key: &Key) {
        if let Some(loc) = self.locate(key) {
            marks.set(loc);
        }
    }
}

/// What [`FeatureStore::retain`] removed (or, in a dry run, would).
#[derive(Debug, Default, PartialEq)]
pub struct Pruned {
    pub kept: usize,
    pub removed: usize,
    pub bytes: u64,
}

impl FeatureStore {
    /// Keeps the vectors marked in `keep` and removes the rest: a chunk with
    /// nothing to keep is deleted, one with some is rewritten with just
    /// those (committed before the old one goes). `dry_run`: count only.
    pub fn retain(&mut self, keep: &Marks, dry_run: bool) -> Result<Pruned> {
        let mut pruned = Pruned::default();
        for (id, path) in std::mem::take(&mut self.chunks).into_iter().enumerate() {
            let chunk = verified_read(&path).with_context(|| {
                format!("{}: run the pipeline to repair it first", path.display())
            })?;
            let kept: Vec<usize> = (0..chunk.keys.len())
                .filter(|&i| keep.contains(id, i))
                .collect();
            pruned.kept += kept.len();
            pruned.removed += chunk.keys.len() - kept.len();
            // What the removed vectors take (key and floats), the same
            // figure for a dry run and a real one.
            pruned.bytes += ((chunk.keys.len() - kept.len()) * (32 + 4 * chunk.hidden)) as u64;
            if kept.len() == chunk.keys.len() {
                self.chunks.push(path);
                continue;
            }
            let h = chunk.hidden;
            let rest = Chunk {
                keys: kept.iter().map(|&i| chunk.keys[i]).collect(),
                hidden: h,
                features: kept
                    .iter()
                    .flat_map(|&i| chunk.features[i * h..(i + 1) * h].iter().copied())
                    .collect(),
            };
            if dry_run {
                self.chunks.push(path);
                continue;
            }
            self.commit(rest)?;
            fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        }
        if !dry_run {
            // The index now names only what is left (and rewritten chunks).
            self.index.clear();
            for path in std::mem::take(&mut self.chunks) {
                let keys = tables::feature_chunks::read_keys(&path)?;
                self.add_to_index(path, &keys);
            }
        }
        Ok(pruned)
    }
}

/// Resident memory (bytes) the store's key index takes for `rows` distinct
/// synthetic keys: what a lookup over that many rows costs before any
/// vector is read (`cargo xtask bench`). Linux only (`/proc/self/statm`).
pub fn index_memory(rows: usize) -> Result<u64> {
    fn resident() -> Result<u64> {
        let statm =
            fs::read_to_string("/proc/self/statm").context("cannot read /proc/self/statm")?;
        let pages: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .context("unexpected /proc/self/statm")?;
        Ok(pages * 4096)
    }
    let before = resident()?;
    let mut store = FeatureStore {
        dir: PathBuf::new(),
        index: HashMap::new(),
        chunks: Vec::new(),
    };
    let keys: Vec<Key> = (0..rows as u64)
        .map(|i| *blake3::hash(&i.to_le_bytes()).as_bytes())
        .collect();
    for chunk in keys.chunks(CHUNK_ROWS) {
        store.add_to_index(PathBuf::from("synthetic.parquet"), chunk);
    }
    drop(keys);
    let after = resident()?;
    std::hint::black_box(&store);
    Ok(after.saturating_sub(before))
}

/// Refuses a symbolic link as the store's folder, its `chunks/` or `.tmp/`
/// (each chunk is checked as it is listed, [`chunk_paths`]): the store
/// removes and rewrites chunks (`gc`, a damaged one), which through a link
/// would change files outside the artifacts folder.
fn refuse_links(dir: &Path) -> Result<()> {
    for path in [dir.to_path_buf(), dir.join("chunks"), dir.join(".tmp")] {
        refuse_link(&path)?;
    }
    Ok(())
}

/// Everything in `chunks/`, sorted; a symbolic link there is refused.
fn chunk_paths(chunk_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for entry in fs::read_dir(chunk_dir)?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_symlink()) {
            refuse_link(&entry.path())?;
        }
        paths.push(entry.path());
    }
    paths.sort();
    Ok(paths)
}

fn refuse_link(path: &Path) -> Result<()> {
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        anyhow::bail!(
            "{} is a symbolic link (to {}); the feature store never follows links, since gc \
             would then delete or rewrite files outside the artifacts folder. Replace the \
             link by what it points to (or move the whole artifacts folder and pass \
             --artifacts DIR) and run again",
            path.display(),
            fs::read_link(path).unwrap_or_default().display()
        );
    }
    Ok(())
}

/// The chunk at `path`, if its bytes still hash to its name.
fn verified_read(path: &Path) -> Result<Chunk> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if blake3::hash(&bytes).to_hex().as_str() != digest_name(path) {
        anyhow::bail!("its bytes no longer match its digest");
    }
    tables::feature_chunks::from_bytes(bytes, path)
}

/// The digest a chunk is named by.
fn digest_name(path: &Path) -> String {
    path.file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// Removes a damaged chunk; the warning that says so.
fn drop_chunk(path: &Path, why: &str) -> String {
    let _ = fs::remove_file(path);
    format!(
        "feature store: dropped {} ({why}); its rows are embedded again",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(keys: &[u8]) -> Chunk {
        Chunk {
            keys: keys.iter().map(|&k| [k; 32]).collect(),
            hidden: 2,
            features: keys.iter().flat_map(|&k| [k as f32, -(k as f32)]).collect(),
        }
    }

    #[test]
    fn committed_vectors_are_found_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, warnings) = FeatureStore::open(dir.path()).unwrap();
        assert!(store.is_empty() && warnings.is_empty());
        store.commit(chunk(&[1, 2])).unwrap();
        store.commit(chunk(&[3])).unwrap();
        let (mut store, _) = FeatureStore::open(dir.path()).unwrap();
        assert_eq!(store.len(), 3);
        let (found, warnings) = store.fetch(&[[2; 32], [3; 32], [9; 32]]).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(found.len(), 2);
        assert_eq!(found[&[2; 32]], [2.0, -2.0]);
        assert_eq!(found[&[3; 32]], [3.0, -3.0]);
    }

    #[test]
    fn a_damaged_chunk_is_dropped_and_its_rows_reported_missing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = FeatureStore::open(dir.path()).unwrap();
        store.commit(chunk(&[1])).unwrap();
        store.commit(chunk(&[2])).unwrap();
        let damaged = store.chunks[0].clone();
        let mut bytes = fs::read(&damaged).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        fs::write(&damaged, bytes).unwrap();
        let (found, warnings) = store.fetch(&[[1; 32], [2; 32]]).unwrap();
        assert_eq!(found.len(), 1, "only the intact chunk serves");
        assert!(found.contains_key(&[2; 32]));
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("no longer match its digest"),
            "{warnings:?}"
        );
        assert!(!damaged.exists());
        assert!(!store.contains(&[1; 32]));
    }

    #[test]
    fn retain_keeps_what_is_named_and_removes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = FeatureStore::open(dir.path()).unwrap();
        store.commit(chunk(&[1, 2])).unwrap();
        store.commit(chunk(&[3])).unwrap();
        store.commit(chunk(&[4])).unwrap();
        let mut keep = Marks::default();
        for key in [[1; 32], [4; 32], [9; 32]] {
            store.mark(&mut keep, &key);
        }
        let would = store.retain(&keep, true).unwrap();
        assert_eq!(
            would,
            Pruned {
                kept: 2,
                removed: 2,
                bytes: 2 * (32 + 8)
            }
        );
        assert_eq!(store.len(), 4, "a dry run changes nothing");
        assert_eq!(store.retain(&keep, false).unwrap(), would);
        let (mut store, _) = FeatureStore::open(dir.path()).unwrap();
        assert_eq!(store.len(), 2);
        let (found, _) = store.fetch(&[[1; 32], [2; 32], [3; 32], [4; 32]]).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[&[1; 32]], [1.0, -1.0]);
        assert_eq!(found[&[4; 32]], [4.0, -4.0]);
    }

    #[test]
    fn keys_tell_model_pooling_and_ids_apart() {
        let base = row_key("m1", "pooler", &[101, 7, 102]);
        assert_eq!(base, row_key("m1", "pooler", &[101, 7, 102]));
        assert_ne!(base, row_key("m2", "pooler", &[101, 7, 102]));
        assert_ne!(base, row_key("m1", "mean", &[101, 7, 102]));
        assert_ne!(base, row_key("m1", "pooler", &[101, 7]));
    }
}
