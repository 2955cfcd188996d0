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

/// The store's key index: where each stored row's vector is, by the first
/// 16 of its key's 32 bytes. It is what grows with the rows in every
/// command that reads the store, so its entries (a 16-byte prefix and a
/// [`Loc`], 24 bytes) sit in an array sorted by prefix, searched by
/// bisection, with no empty slots: rows added since the last merge wait
/// in a small Fx-hashed table (`recent`: at most an eighth of the array, or
/// `RECENT_ROWS`) and are merged in when it fills. ~29 bytes a distinct row
/// at 1,000,000 rows (`index_memory`), where a hash table of the same
/// entries took 53 (2²¹ slots of 25 bytes, doubling as it grows) and
/// whole keys under SipHash 93. Two keys share a 128-bit blake3 prefix
/// with a chance of about n² / 2¹²⁹ (10⁻²¹ at a billion rows), which is
/// why the prefix is enough to tell rows apart; the chunks keep whole keys.
#[derive(Debug, Default)]
struct KeyIndex {
    /// Ascending by prefix, each prefix once.
    sorted: Vec<([u64; 2], Loc)>,
    /// Prefixes added since the last merge: none of them in `sorted`.
    recent: rustc_hash::FxHashMap<[u64; 2], Loc>,
}

/// `recent` is merged into `sorted` when it holds this many rows or an
/// eighth of `sorted`, whichever is more: a merge moves every entry, so
/// merging at a fraction keeps the work per added row constant.
const RECENT_ROWS: usize = 1 << 16;

fn prefix(key: &Key) -> [u64; 2] {
    let half = |at: usize| u64::from_le_bytes(key[at..at + 8].try_into().expect("8 bytes"));
    [half(0), half(8)]
}

impl KeyIndex {
    /// The index of whole chunks at once (opening a store): `entries` in
    /// the order they were listed, chunk by chunk, a later entry of a
    /// prefix winning as with `insert`; sorted once.
    fn from_entries(mut entries: Vec<([u64; 2], Loc)>) -> KeyIndex {
        let order = |l: &Loc| (l.chunk, l.row);
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(order(&b.1).cmp(&order(&a.1))));
        entries.dedup_by_key(|e| e.0);
        entries.shrink_to_fit();
        KeyIndex {
            sorted: entries,
            recent: Default::default(),
        }
    }

    fn find(&self, prefix: &[u64; 2]) -> Result<usize, usize> {
        self.sorted.binary_search_by(|(p, _)| p.cmp(prefix))
    }
    fn get(&self, key: &Key) -> Option<&Loc> {
        let p = prefix(key);
        match self.find(&p) {
            Ok(i) => Some(&self.sorted[i].1),
            Err(_) => self.recent.get(&p),
        }
    }
    fn contains_key(&self, key: &Key) -> bool {
        self.get(key).is_some()
    }
    /// Adds `key`, or points it at `loc` if it is there.
    fn insert(&mut self, key: Key, loc: Loc) {
        let p = prefix(&key);
        match self.find(&p) {
            Ok(i) => self.sorted[i].1 = loc,
            Err(_) => {
                self.recent.insert(p, loc);
                if self.recent.len() >= RECENT_ROWS.max(self.sorted.len() / 8) {
                    self.merge();
                }
            }
        }
    }
    /// Moves `recent` into `sorted`: sorted on its own, then merged from
    /// the back into the array grown in place (no second copy of it).
    fn merge(&mut self) {
        let mut added: Vec<([u64; 2], Loc)> = self.recent.drain().collect();
        added.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let old = self.sorted.len();
        self.sorted.reserve_exact(added.len());
        self.sorted
            .resize(old + added.len(), ([0, 0], Loc { chunk: 0, row: 0 }));
        let (mut i, mut k) = (old, self.sorted.len());
        while let Some(&last) = added.last() {
            k -= 1;
            if i > 0 && self.sorted[i - 1].0 > last.0 {
                self.sorted[k] = self.sorted[i - 1];
                i -= 1;
            } else {
                self.sorted[k] = last;
                added.pop();
            }
        }
    }
    fn retain(&mut self, mut keep: impl FnMut(&Loc) -> bool) {
        self.sorted.retain(|(_, loc)| keep(loc));
        self.recent.retain(|_, loc| keep(loc));
    }
    fn values(&self) -> impl Iterator<Item = &Loc> {
        self.sorted
            .iter()
            .map(|(_, loc)| loc)
            .chain(self.recent.values())
    }
    fn values_mut(&mut self) -> impl Iterator<Item = &mut Loc> {
        self.sorted
            .iter_mut()
            .map(|(_, loc)| loc)
            .chain(self.recent.values_mut())
    }
    fn len(&self) -> usize {
        self.sorted.len() + self.recent.len()
    }
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn clear(&mut self) {
        self.sorted.clear();
        self.recent.clear();
    }
}

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
    index: KeyIndex,
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
            index: KeyIndex::default(),
            chunks: Vec::new(),
        };
        let mut warnings = Vec::new();
        let mut entries = Vec::new();
        for path in paths {
            match tables::feature_chunks::read_keys(&path) {
                Ok(keys) => store.list_chunk(path, &keys, &mut entries),
                Err(e) => {
                    warnings.push(drop_chunk(&path, &format!("{e:#}")));
                }
            }
        }
        store.index = KeyIndex::from_entries(entries);
        Ok((store, warnings))
    }

    /// The keys `dir` holds, read without changing anything (for a dry
    /// run): a missing folder is an empty store, an unreadable chunk is
    /// skipped.
    pub fn peek(dir: &Path) -> Result<FeatureStore> {
        let mut store = FeatureStore {
            dir: dir.to_path_buf(),
            index: KeyIndex::default(),
            chunks: Vec::new(),
        };
        refuse_links(dir)?;
        let chunk_dir = dir.join("chunks");
        if !chunk_dir.is_dir() {
            return Ok(store);
        }
        let mut entries = Vec::new();
        for path in chunk_paths(&chunk_dir)? {
            if let Ok(keys) = tables::feature_chunks::read_keys(&path) {
                store.list_chunk(path, &keys, &mut entries);
            }
        }
        store.index = KeyIndex::from_entries(entries);
        Ok(store)
    }

    /// Lists chunk `path` and its keys' entries (for `KeyIndex::from_entries`).
    fn list_chunk(&mut self, path: PathBuf, keys: &[Key], entries: &mut Vec<([u64; 2], Loc)>) {
        let chunk = self.chunks.len() as u32;
        self.chunks.push(path);
        entries.extend(keys.iter().enumerate().map(|(row, key)| {
            let row = row as u32;
            (prefix(key), Loc { chunk, row })
        }));
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

    /// Chunk `id`, checked against its digest (a chunk that changed since
    /// the run checked it fails), then read a row group at a time: `f` gets
    /// each batch and the chunk row its first row is. Memory holds one
    /// batch, however large the chunk (an adopted embed output is a whole
    /// split). Returns the vectors' width.
    pub fn read_chunk(&self, id: u32, f: impl FnMut(usize, Chunk) -> Result<()>) -> Result<usize> {
        let path = &self.chunks[id as usize];
        verify_file(path)
            .with_context(|| format!("{} changed during the run; run again", path.display()))?;
        self.stream_chunk(id, f)
    }

    /// [`FeatureStore::read_chunk`] of a chunk just verified.
    fn stream_chunk(
        &self,
        id: u32,
        mut f: impl FnMut(usize, Chunk) -> Result<()>,
    ) -> Result<usize> {
        let path = &self.chunks[id as usize];
        let (batches, hidden) =
            tables::feature_chunks::read_batched(path, tables::feature_chunks::ROWS_PER_GROUP)?;
        let mut first = 0;
        for batch in batches {
            let batch = batch?;
            let rows = batch.keys.len();
            f(first, batch)?;
            first += rows;
        }
        Ok(hidden)
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
            if let Err(e) = verify_file(&path) {
                warnings.push(drop_chunk(&path, &format!("{e:#}")));
                self.index.retain(|loc| loc.chunk as usize != id);
                continue;
            }
            let wanted: HashSet<&Key> = by_chunk[&id].iter().collect();
            self.stream_chunk(id as u32, |_, chunk| {
                let h = chunk.hidden;
                for (row, key) in chunk.keys.iter().enumerate() {
                    if wanted.contains(key) {
                        found.insert(*key, chunk.features[row * h..(row + 1) * h].to_vec());
                    }
                }
                Ok(())
            })?;
        }
        Ok((found, warnings))
    }

    /// Commits `chunk`: written to `.tmp/`, synced, renamed into `chunks/`
    /// under its digest.
    pub fn commit(&mut self, chunk: Chunk) -> Result<()> {
        if chunk.keys.is_empty() {
            return Ok(());
        }
        let scratch = self.scratch_path()?;
        tables::feature_chunks::write(&scratch, chunk)?;
        self.commit_file(&scratch)?;
        Ok(())
    }

    /// Where a chunk is written before it is committed.
    fn scratch_path(&self) -> Result<PathBuf> {
        let tmp = self.dir.join(".tmp");
        fs::create_dir_all(&tmp)?;
        Ok(tmp.join(format!("chunk-{}.parquet", std::process::id())))
    }

    /// Commits the finished chunk file `scratch` (in `.tmp/`): renamed into
    /// `chunks/` under its digest, and indexed.
    fn commit_file(&mut self, scratch: &Path) -> Result<u32> {
        let path = self.chunk_path(&file_digest(scratch)?);
        fs::rename(scratch, &path)
            .with_context(|| format!("cannot move a feature chunk to {}", path.display()))?;
        self.sync_chunk_dir();
        self.index_chunk(path)
    }

    fn chunk_path(&self, digest: &str) -> PathBuf {
        self.dir.join("chunks").join(format!("{digest}.parquet"))
    }

    fn sync_chunk_dir(&self) {
        if let Ok(d) = fs::File::open(self.dir.join("chunks")) {
            let _ = d.sync_all();
        }
    }

    /// Lists the committed chunk `path` and indexes its keys (they now
    /// point at it); its id.
    fn index_chunk(&mut self, path: PathBuf) -> Result<u32> {
        let keys = tables::feature_chunks::read_keys(&path)?;
        self.add_to_index(path, &keys);
        Ok(self.chunks.len() as u32 - 1)
    }

    /// Takes the finished, synced embed output `file` (same file system:
    /// inside the artifacts folder) as a chunk: a second name for the same
    /// bytes (a hard link, named by their digest), so its vectors are on
    /// disk once. Its keys now point at it. `Ok(None)` for an empty file.
    /// An error (a file system without hard links) changes nothing: the
    /// rows stay where they were.
    pub fn adopt(&mut self, file: &Path) -> Result<Option<u32>> {
        if tables::row_count(file)? == 0 {
            return Ok(None);
        }
        let path = self.chunk_path(&file_digest(file)?);
        // The same bytes already committed under that name (a forced rerun
        // writing what it wrote before) need no second link.
        if !path.exists() {
            fs::hard_link(file, &path).with_context(|| {
                format!(
                    "cannot link {} into the feature store as {}",
                    file.display(),
                    path.display()
                )
            })?;
            self.sync_chunk_dir();
        }
        if let Some(id) = self.chunks.iter().position(|p| *p == path) {
            // Listed already: its keys point at it again.
            self.point_keys_at(id)?;
            return Ok(Some(id as u32));
        }
        self.index_chunk(path).map(Some)
    }

    /// Points the keys of the listed chunks named in `digests` at them (in
    /// the index only; nothing on disk changes), so a lookup of those keys
    /// finds them there rather than in an older chunk holding them too.
    pub fn prefer(&mut self, digests: &[String]) -> Result<()> {
        for id in 0..self.chunks.len() {
            if digests.contains(&digest_name(&self.chunks[id])) {
                self.point_keys_at(id)?;
            }
        }
        Ok(())
    }

    fn point_keys_at(&mut self, id: usize) -> Result<()> {
        let keys = tables::feature_chunks::read_keys(&self.chunks[id])?;
        for (row, key) in keys.iter().enumerate() {
            let loc = Loc {
                chunk: id as u32,
                row: row as u32,
            };
            self.index.insert(*key, loc);
        }
        Ok(())
    }

    /// Removes every chunk that no key points at any more (each of its rows
    /// is held by a later chunk: an adopted output), except `keep`; the
    /// chunks and rows removed. A removed chunk that is also a finished
    /// output of an earlier run (a hard link) stays there under that name.
    pub fn drop_shadowed(&mut self, keep: &[u32]) -> Result<(usize, usize)> {
        let mut pointed = vec![false; self.chunks.len()];
        for loc in self.index.values() {
            pointed[loc.chunk as usize] = true;
        }
        let mut new_id = vec![u32::MAX; self.chunks.len()];
        let (mut removed, mut rows) = (0, 0);
        let mut kept = Vec::new();
        for (id, path) in std::mem::take(&mut self.chunks).into_iter().enumerate() {
            if pointed[id] || keep.contains(&(id as u32)) {
                new_id[id] = kept.len() as u32;
                kept.push(path);
                continue;
            }
            refuse_link(&path)?;
            rows += tables::row_count(&path)?;
            fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
            removed += 1;
        }
        self.chunks = kept;
        for loc in self.index.values_mut() {
            loc.chunk = new_id[loc.chunk as usize];
        }
        Ok((removed, rows))
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
            if verify_file(&path).is_err() {
                warnings.push(drop_chunk(&path, "its bytes no longer match its digest"));
                self.index.retain(|loc| loc.chunk as usize != id);
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
    /// those (committed before the old one goes). A chunk named in `whole`
    /// (by digest: the current embed outputs, which are chunks too) is kept
    /// as it is, its repeated rows included: rewriting it would put its
    /// vectors on disk twice. `dry_run`: count only.
    pub fn retain(&mut self, keep: &Marks, whole: &[String], dry_run: bool) -> Result<Pruned> {
        let mut pruned = Pruned::default();
        let mut left = Vec::new();
        for id in 0..self.chunks.len() {
            let path = self.chunks[id].clone();
            let repair = || format!("{}: run the pipeline to repair it first", path.display());
            verify_file(&path).with_context(repair)?;
            let rows = tables::row_count(&path)?;
            let kept = if whole.contains(&digest_name(&path)) {
                rows
            } else {
                (0..rows).filter(|&i| keep.contains(id, i)).count()
            };
            pruned.kept += kept;
            pruned.removed += rows - kept;
            if kept == rows {
                left.push(path);
                continue;
            }
            // What the removed vectors take (key and floats), the same
            // figure for a dry run and a real one.
            pruned.bytes += ((rows - kept) * (32 + 4 * chunk_width(&path)?)) as u64;
            if dry_run {
                left.push(path);
                continue;
            }
            if kept > 0 {
                left.push(self.rewrite_kept(id, keep)?);
            }
            fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        }
        // The index now names only what is left (and rewritten chunks).
        self.index.clear();
        self.chunks.clear();
        for path in left {
            self.index_chunk(path)?;
        }
        Ok(pruned)
    }
}

impl FeatureStore {
    /// Writes the rows of chunk `id` marked in `keep` to a new chunk, a
    /// batch at a time, and commits it (not indexed: `retain` indexes what
    /// is left at the end); its path.
    fn rewrite_kept(&mut self, id: usize, keep: &Marks) -> Result<PathBuf> {
        let scratch = self.scratch_path()?;
        let mut writer: Option<tables::feature_chunks::Writer> = None;
        self.stream_chunk(id as u32, |first, chunk| {
            let h = chunk.hidden;
            let rows: Vec<usize> = (0..chunk.keys.len())
                .filter(|&i| keep.contains(id, first + i))
                .collect();
            let writer = match &mut writer {
                Some(w) => w,
                None => writer.insert(tables::feature_chunks::Writer::create(&scratch, h)?),
            };
            writer.write(Chunk {
                keys: rows.iter().map(|&i| chunk.keys[i]).collect(),
                hidden: h,
                features: rows
                    .iter()
                    .flat_map(|&i| chunk.features[i * h..(i + 1) * h].iter().copied())
                    .collect(),
            })
        })?;
        writer
            .context("a chunk with rows to keep read as empty")?
            .finish()?;
        let path = self.chunk_path(&file_digest(&scratch)?);
        fs::rename(&scratch, &path)
            .with_context(|| format!("cannot move a feature chunk to {}", path.display()))?;
        self.sync_chunk_dir();
        Ok(path)
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
        index: KeyIndex::default(),
        chunks: Vec::new(),
    };
    let keys: Vec<Key> = (0..rows as u64)
        .map(|i| *blake3::hash(&i.to_le_bytes()).as_bytes())
        .collect();
    let mut entries = Vec::new();
    for chunk in keys.chunks(CHUNK_ROWS) {
        store.list_chunk(PathBuf::from("synthetic.parquet"), chunk, &mut entries);
    }
    drop(keys);
    store.index = KeyIndex::from_entries(entries);
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

/// Whether the chunk at `path` still hashes to its name (read a block at a
/// time).
fn verify_file(path: &Path) -> Result<()> {
    if file_digest(path)? != digest_name(path) {
        anyhow::bail!("its bytes no longer match its digest");
    }
    Ok(())
}

/// The hex blake3 of a file, read a block at a time.
fn file_digest(path: &Path) -> Result<String> {
    let file = fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(file)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// The vectors' width of a chunk file, from its schema.
fn chunk_width(path: &Path) -> Result<usize> {
    Ok(tables::feature_chunks::read_batched(path, 1)?.1)
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

    /// The index against a map under the same seeded inserts (new keys
    /// and repointed ones, enough to merge many times), removals and
    /// rewrites of every location.
    #[test]
    fn the_key_index_answers_as_a_map_does() {
        use std::collections::HashMap;
        let mut oracle: HashMap<Key, Loc> = HashMap::new();
        let mut state = 7u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            state >> 33
        };
        let key = |i: u64| *blake3::hash(&i.to_le_bytes()).as_bytes();
        // Opened from two chunks that share half their keys: the later wins.
        let mut entries = Vec::new();
        for (chunk, first) in [(0u32, 0u64), (1, 25_000)] {
            for row in 0..50_000u32 {
                let (k, loc) = (key(first + u64::from(row)), Loc { chunk, row });
                entries.push((prefix(&k), loc));
                oracle.insert(k, loc);
            }
        }
        let mut index = KeyIndex::from_entries(entries);
        assert_eq!(index.len(), 75_000);
        for round in 200_000..500_000u64 {
            // Keys from a range twice the inserts' count: about a third repeat.
            let k = key(next() % 400_000);
            let loc = Loc {
                chunk: (round / 4096) as u32,
                row: (round % 4096) as u32,
            };
            index.insert(k, loc);
            oracle.insert(k, loc);
            if round == 350_000 {
                index.retain(|l| l.chunk % 3 != 0);
                oracle.retain(|_, l| l.chunk % 3 != 0);
            }
        }
        assert!(
            index.sorted.len() > 100_000,
            "merged: {}",
            index.sorted.len()
        );
        assert!(!index.recent.is_empty(), "some rows wait to merge");
        assert_eq!(index.len(), oracle.len());
        for i in 0..400_000 {
            assert_eq!(index.get(&key(i)), oracle.get(&key(i)), "key {i}");
        }
        for loc in index.values_mut() {
            loc.row += 1;
        }
        let mut rows: Vec<(u32, u32)> = index.values().map(|l| (l.chunk, l.row)).collect();
        let mut expected: Vec<(u32, u32)> = oracle.values().map(|l| (l.chunk, l.row + 1)).collect();
        rows.sort_unstable();
        expected.sort_unstable();
        assert_eq!(rows, expected);
        assert!(index.sorted.windows(2).all(|w| w[0].0 < w[1].0));
        index.clear();
        assert!(index.is_empty() && index.get(&key(1)).is_none());
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
        let would = store.retain(&keep, &[], true).unwrap();
        assert_eq!(
            would,
            Pruned {
                kept: 2,
                removed: 2,
                bytes: 2 * (32 + 8)
            }
        );
        assert_eq!(store.len(), 4, "a dry run changes nothing");
        assert_eq!(store.retain(&keep, &[], false).unwrap(), would);
        let (mut store, _) = FeatureStore::open(dir.path()).unwrap();
        assert_eq!(store.len(), 2);
        let (found, _) = store.fetch(&[[1; 32], [2; 32], [3; 32], [4; 32]]).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[&[1; 32]], [1.0, -1.0]);
        assert_eq!(found[&[4; 32]], [4.0, -4.0]);
    }

    #[test]
    fn a_chunk_named_whole_is_kept_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = FeatureStore::open(dir.path()).unwrap();
        store.commit(chunk(&[1, 2, 3])).unwrap();
        let path = store.chunks[0].clone();
        let bytes = fs::read(&path).unwrap();
        let mut keep = Marks::default();
        store.mark(&mut keep, &[2; 32]);
        let whole = [digest_name(&path)];
        let pruned = store.retain(&keep, &whole, false).unwrap();
        assert_eq!((pruned.kept, pruned.removed), (3, 0));
        assert_eq!(fs::read(&path).unwrap(), bytes, "not rewritten");
        // Not named: rewritten with the marked row alone.
        let (mut store, _) = FeatureStore::open(dir.path()).unwrap();
        let mut keep = Marks::default();
        store.mark(&mut keep, &[2; 32]);
        assert_eq!(store.retain(&keep, &[], false).unwrap().kept, 1);
        assert!(!path.exists());
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
