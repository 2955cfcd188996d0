//! A split's vectors, read from the feature store, in the split's row order,
//! in bounded memory, each stored chunk read once.
//!
//! The rows of a split need not sit in the store in their order: a repeated
//! text points back at the chunk that first held it, and an earlier run
//! (another seed, other fractions) stored them in another order. Reading
//! the chunks a batch of rows needs, batch by batch, then reads the whole
//! store again for every batch (measured: 200,000 rows with ~1 % repeats
//! touched every chunk in every batch, and held them all). Instead, the
//! rows' locations (8 bytes a row) are sorted by chunk, each chunk is read
//! once (a row group at a time) and its vectors written at their rows' places in a scratch file
//! beside the output, which is then read back in order, a batch at a time.

use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context, Result, ensure};

use crate::store::{FeatureStore, Loc};

/// The vectors of the rows at `locs` (in that order), through a scratch
/// file in `dir` (deleted when the result is dropped).
pub struct Gathered {
    scratch: tempfile::NamedTempFile,
    rows: usize,
    /// The vectors' width (0 when there are no rows).
    pub hidden: usize,
}

impl Gathered {
    pub fn new(store: &FeatureStore, locs: &[Loc], dir: &Path) -> Result<Gathered> {
        let scratch = tempfile::Builder::new()
            .prefix(".embed-gather-")
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a scratch file in {}", dir.display()))?;
        let mut hidden = None;
        let file = scratch.as_file();
        let mut bytes = Vec::new();
        for (chunk_id, mut rows) in by_chunk(locs, store.chunk_count()) {
            // A chunk is read a row group at a time, its rows in order.
            rows.sort_unstable_by_key(|&(_, row)| row);
            let mut next = 0;
            let h = store.read_chunk(chunk_id, |first, chunk| {
                let h = *hidden.get_or_insert(chunk.hidden);
                ensure!(
                    chunk.hidden == h,
                    "feature-store chunks of different widths"
                );
                let end = first + chunk.keys.len();
                while let Some(&(position, row)) = rows.get(next) {
                    let row = row as usize;
                    if row >= end {
                        break;
                    }
                    let vector = &chunk.features[(row - first) * h..(row - first + 1) * h];
                    bytes.clear();
                    bytes.extend(vector.iter().flat_map(|v| v.to_le_bytes()));
                    file.write_all_at(&bytes, position as u64 * (h as u64 * 4))
                        .with_context(|| format!("cannot write {}", scratch.path().display()))?;
                    next += 1;
                }
                Ok(())
            })?;
            ensure!(
                next == rows.len(),
                "a feature-store chunk lacks a row its index names"
            );
            hidden.get_or_insert(h);
        }
        Ok(Gathered {
            scratch,
            rows: locs.len(),
            hidden: hidden.unwrap_or(0),
        })
    }

    /// A reader of the vectors in row order.
    pub fn reader(&self) -> Result<InOrder> {
        Ok(InOrder {
            file: BufReader::new(File::open(self.scratch.path())?),
            width: self.hidden * 4,
            left: self.rows,
            bytes: Vec::new(),
        })
    }
}

/// The gathered vectors, read in row order ([`InOrder::next_rows`]).
pub struct InOrder {
    file: BufReader<File>,
    width: usize,
    left: usize,
    bytes: Vec<u8>,
}

impl InOrder {
    /// The next `n` rows' vectors ([n × hidden]).
    pub fn next_rows(&mut self, n: usize) -> Result<Vec<f32>> {
        ensure!(n <= self.left, "fewer gathered vectors than rows");
        self.left -= n;
        self.bytes.resize(n * self.width, 0);
        self.file
            .read_exact(&mut self.bytes)
            .context("cannot read the gathered vectors back")?;
        Ok(self
            .bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect())
    }
}

/// For each chunk holding any of `locs`, in chunk order: its id and the
/// (position in `locs`, row in the chunk) pairs it serves. A counting sort:
/// 4 bytes a row beside `locs`.
fn by_chunk(locs: &[Loc], chunks: usize) -> impl Iterator<Item = (u32, Vec<(u32, u32)>)> + '_ {
    let mut starts = vec![0u32; chunks + 1];
    for loc in locs {
        starts[loc.chunk as usize + 1] += 1;
    }
    for c in 0..chunks {
        starts[c + 1] += starts[c];
    }
    let mut next = starts.clone();
    let mut order = vec![0u32; locs.len()];
    for (position, loc) in locs.iter().enumerate() {
        order[next[loc.chunk as usize] as usize] = position as u32;
        next[loc.chunk as usize] += 1;
    }
    (0..chunks).filter_map(move |c| {
        let served = &order[starts[c] as usize..starts[c + 1] as usize];
        (!served.is_empty()).then(|| {
            (
                c as u32,
                served.iter().map(|&p| (p, locs[p as usize].row)).collect(),
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_chunk_lists_each_chunk_once_with_its_positions_in_order() {
        let loc = |chunk, row| Loc { chunk, row };
        let locs = [loc(2, 0), loc(0, 5), loc(2, 1), loc(0, 4)];
        let groups: Vec<_> = by_chunk(&locs, 3).collect();
        assert_eq!(
            groups,
            vec![(0, vec![(1, 5), (3, 4)]), (2, vec![(0, 0), (2, 1)])]
        );
    }
}
