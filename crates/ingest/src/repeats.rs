//! Which rows repeat an earlier row's text, found without a table of the
//! texts in memory: each row's 128-bit text hash (XXH3-128; a collision
//! among 10^10 texts has odds of ~10^-19), position and label go to one of
//! `BUCKETS` scratch files by the hash's top bits, and once the CSV is read
//! each bucket (a `BUCKETS`th of the rows) is sorted in memory by hash,
//! then position: a row whose hash an earlier row has is a repeat.
//!
//! Why not a hash table: it holds a distinct text's 24-byte entry in a
//! table twice its size, and again while it doubles: 420 to 630 MB at
//! 10,000,000 distinct rows, most of ingest's peak (BENCHMARKS.md). Here
//! memory holds one bucket and a bit a row.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::Path;

use anyhow::{Context, Result};
use bitvec::vec::BitVec;

/// Scratch files the records are spread over: at 10,000,000 rows each
/// holds ~156,000 records (5 MB), and 64 file buffers are 4 MB.
const BUCKETS: usize = 64;
/// A record: the hash (16 bytes), the row's position (8), its label (8).
const RECORD: usize = 32;

/// The rows' hashes on their way to the scratch files.
pub(crate) struct RepeatIndex {
    buckets: Vec<(tempfile::NamedTempFile, BufWriter<File>)>,
    rows: u64,
}

/// What the index found.
#[derive(Debug, Default)]
pub(crate) struct Repeats {
    /// Rows whose text an earlier row has.
    pub repeats: usize,
    /// Of those, how many carry another label than the first such row.
    pub conflicting: usize,
    /// By position: whether the row repeats an earlier one.
    pub later: BitVec,
}

impl RepeatIndex {
    /// Scratch files in `dir` (removed when the index is dropped).
    pub fn create(dir: &Path) -> Result<RepeatIndex> {
        let buckets = (0..BUCKETS)
            .map(|_| {
                let file = tempfile::Builder::new()
                    .prefix(".ingest-repeats-")
                    .tempfile_in(dir)
                    .with_context(|| {
                        format!("cannot create a scratch file in {}", dir.display())
                    })?;
                let writer = BufWriter::with_capacity(64 << 10, file.as_file().try_clone()?);
                Ok((file, writer))
            })
            .collect::<Result<_>>()?;
        Ok(RepeatIndex { buckets, rows: 0 })
    }

    /// Notes the next row (positions count from 0 in call order).
    pub fn note(&mut self, text: &str, label: i64) -> Result<()> {
        let hash = xxhash_rust::xxh3::xxh3_128(text.as_bytes());
        let bucket = (hash >> 122) as usize % BUCKETS;
        let mut record = [0u8; RECORD];
        record[..16].copy_from_slice(&hash.to_le_bytes());
        record[16..24].copy_from_slice(&self.rows.to_le_bytes());
        record[24..].copy_from_slice(&label.to_le_bytes());
        let (file, writer) = &mut self.buckets[bucket];
        writer
            .write_all(&record)
            .with_context(|| format!("cannot write {}", file.path().display()))?;
        self.rows += 1;
        Ok(())
    }

    /// Sorts each bucket in turn and marks every row that repeats an
    /// earlier one.
    pub fn finish(self) -> Result<Repeats> {
        let mut found = Repeats {
            later: BitVec::repeat(false, self.rows as usize),
            ..Repeats::default()
        };
        let mut records: Vec<(u128, u64, i64)> = Vec::new();
        for (file, writer) in self.buckets {
            let shown = file.path().display().to_string();
            let mut reader = writer.into_inner().map_err(|e| e.into_error())?;
            reader.rewind()?;
            let mut reader = BufReader::new(reader);
            records.clear();
            let mut record = [0u8; RECORD];
            loop {
                match reader.read_exact(&mut record) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e).with_context(|| format!("cannot read {shown}")),
                }
                let field = |r: std::ops::Range<usize>| record[r].try_into().expect("8 bytes");
                records.push((
                    u128::from_le_bytes(record[..16].try_into().expect("16 bytes")),
                    u64::from_le_bytes(field(16..24)),
                    i64::from_le_bytes(field(24..32)),
                ));
            }
            records.sort_unstable();
            for run in records.chunk_by(|a, b| a.0 == b.0) {
                let first_label = run[0].2;
                for &(_, position, label) in &run[1..] {
                    found.repeats += 1;
                    found.conflicting += usize::from(label != first_label);
                    found.later.set(position as usize, true);
                }
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_rows_of_a_text_are_marked_and_their_labels_compared_with_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = RepeatIndex::create(dir.path()).unwrap();
        // Enough texts that every bucket gets some, repeats far apart.
        let texts: Vec<String> = (0..5000).map(|i| format!("text {}", i % 2000)).collect();
        for (i, t) in texts.iter().enumerate() {
            index.note(t, i64::from(i >= 4000)).unwrap();
        }
        let found = index.finish().unwrap();
        assert_eq!(found.repeats, 3000);
        // Rows 4000.. carry label 1; their first rows (0..1000) label 0.
        assert_eq!(found.conflicting, 1000);
        for i in 0..5000 {
            assert_eq!(found.later[i], i >= 2000, "row {i}");
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the scratch files are gone"
        );
    }

    #[test]
    fn no_rows_no_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let found = RepeatIndex::create(dir.path()).unwrap().finish().unwrap();
        assert_eq!(
            (found.repeats, found.conflicting, found.later.len()),
            (0, 0, 0)
        );
    }
}
