//! Where training reads feature rows from: a split in memory (the audit's
//! folds), or an embed output copied once into an uncompressed scratch
//! file and read a row at a time by position ([`ScratchRows`]), so that
//! what training holds in memory is its labels and its permutation, not
//! the features. Positioned reads rather than a memory map: a mapped file's
//! pages count as the process's resident memory as they are touched, and
//! an epoch touches all of them.

use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use tables::features::FeatureTable;

/// Feature rows by index, and their labels.
pub trait Rows: Sync {
    fn hidden(&self) -> usize;
    /// One label per row; its length is the row count.
    fn labels(&self) -> &[i64];
    /// Appends the features of `rows`, in their order, to `out`.
    fn features_of(&self, rows: &[usize], out: &mut Vec<f32>) -> Result<()>;
}

impl Rows for FeatureTable {
    fn hidden(&self) -> usize {
        self.hidden
    }
    fn labels(&self) -> &[i64] {
        &self.labels
    }
    fn features_of(&self, rows: &[usize], out: &mut Vec<f32>) -> Result<()> {
        let h = self.hidden;
        for &r in rows {
            out.extend_from_slice(&self.features[r * h..(r + 1) * h]);
        }
        Ok(())
    }
}

/// An embed output's features in a scratch file (row-major little-endian
/// f32, deleted when this is dropped), its labels and row ids in memory.
pub struct ScratchRows {
    file: tempfile::NamedTempFile,
    hidden: usize,
    labels: Vec<i64>,
    pub row_ids: Vec<i64>,
}

impl ScratchRows {
    /// Copies the embed output at `features` into a scratch file in `dir`,
    /// reading it a row group at a time.
    pub fn copy(features: &Path, dir: &Path) -> Result<ScratchRows> {
        let scratch = tempfile::Builder::new()
            .prefix(".head-scratch-")
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a scratch file in {}", dir.display()))?;
        let (batches, hidden) =
            tables::features::read_batched(features, tables::features::ROWS_PER_GROUP)?;
        let (mut labels, mut row_ids) = (Vec::new(), Vec::new());
        let mut out = BufWriter::new(scratch.as_file());
        for batch in batches {
            let batch = batch?;
            labels.extend_from_slice(&batch.labels);
            row_ids.extend_from_slice(&batch.row_ids);
            for value in &batch.features {
                out.write_all(&value.to_le_bytes())?;
            }
        }
        out.flush()
            .with_context(|| format!("cannot write {}", scratch.path().display()))?;
        drop(out);
        Ok(ScratchRows {
            file: scratch,
            hidden,
            labels,
            row_ids,
        })
    }
}

impl Rows for ScratchRows {
    fn hidden(&self) -> usize {
        self.hidden
    }
    fn labels(&self) -> &[i64] {
        &self.labels
    }
    fn features_of(&self, rows: &[usize], out: &mut Vec<f32>) -> Result<()> {
        let width = self.hidden * 4;
        let mut bytes = vec![0u8; width];
        out.reserve(rows.len() * self.hidden);
        for &r in rows {
            ensure!(r < self.labels.len(), "row {r} past the end of the split");
            self.file
                .as_file()
                .read_exact_at(&mut bytes, (r * width) as u64)
                .with_context(|| format!("cannot read {}", self.file.path().display()))?;
            out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
        }
        Ok(())
    }
}

/// Some rows of another [`Rows`], in the order given (the audit's folds):
/// their labels copied, their features read from the rows underneath, so a
/// fold costs 16 bytes a row, not its features.
pub struct Subset<'a> {
    of: &'a dyn Rows,
    picked: Vec<usize>,
    labels: Vec<i64>,
}

impl<'a> Subset<'a> {
    pub fn new(of: &'a dyn Rows, picked: Vec<usize>) -> Subset<'a> {
        let labels = picked.iter().map(|&r| of.labels()[r]).collect();
        Subset { of, picked, labels }
    }
}

impl Rows for Subset<'_> {
    fn hidden(&self) -> usize {
        self.of.hidden()
    }
    fn labels(&self) -> &[i64] {
        &self.labels
    }
    fn features_of(&self, rows: &[usize], out: &mut Vec<f32>) -> Result<()> {
        let under: Vec<usize> = rows.iter().map(|&r| self.picked[r]).collect();
        self.of.features_of(&under, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subset_reads_its_picked_rows_in_order() {
        let table = FeatureTable {
            row_ids: vec![10, 11, 12, 13],
            labels: vec![1, 0, 1, 2],
            hidden: 1,
            features: vec![0.5, 1.5, 2.5, 3.5],
        };
        let subset = Subset::new(&table, vec![3, 1]);
        assert_eq!((subset.hidden(), subset.labels()), (1, &[2i64, 0][..]));
        let mut out = Vec::new();
        subset.features_of(&[1, 0, 1], &mut out).unwrap();
        assert_eq!(out, [1.5, 3.5, 1.5]);
    }

    #[test]
    fn a_scratch_copy_reads_the_rows_of_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let table = FeatureTable {
            row_ids: vec![10, 11, 12],
            labels: vec![1, 0, 1],
            hidden: 2,
            features: vec![0.5, -1.0, 2.0, 3.0, f32::MIN_POSITIVE, -0.0],
        };
        let path = dir.path().join("f.parquet");
        tables::features::write(&path, table.clone(), &tables::Provenance::stage("k", "{}"))
            .unwrap();
        let scratch = ScratchRows::copy(&path, dir.path()).unwrap();
        assert_eq!(scratch.labels(), table.labels());
        assert_eq!(scratch.row_ids, table.row_ids);
        for rows in [vec![2, 0], vec![1], vec![]] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            scratch.features_of(&rows, &mut a).unwrap();
            table.features_of(&rows, &mut b).unwrap();
            assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
        assert!(scratch.features_of(&[3], &mut Vec::new()).is_err());
        let scratch_path = scratch.file.path().to_path_buf();
        drop(scratch);
        assert!(!scratch_path.exists(), "the scratch file goes with it");
    }
}
