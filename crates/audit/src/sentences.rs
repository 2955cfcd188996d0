//! The sentences of chosen rows of a split, kept in a scratch file, not in
//! memory: the overlap and label-issue tables name a sentence for each of
//! their rows, and on a large split with an all-alike model nearly every
//! held-out row overlaps, so holding those sentences would hold the split.
//!
//! In memory: each chosen row's index and where its sentence ends in the
//! file, 12 bytes a row. The split is read once, a batch at a time.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Rows read from the split at a time.
const BATCH_ROWS: usize = 16_384;

/// The sentences of some rows of one split.
pub struct Sentences {
    /// The chosen rows (indices into the split), ascending.
    rows: Vec<u32>,
    /// Where each one's sentence ends in `file`; it starts where the
    /// previous one ends.
    ends: Vec<u64>,
    file: File,
}

impl Sentences {
    /// Reads the sentences of `rows` (indices into the split at `split`, in
    /// any order, repeats allowed) into a nameless scratch file in
    /// `scratch_dir`, gone when this is dropped (or the process dies).
    pub fn collect(split: &Path, mut rows: Vec<u32>, scratch_dir: &Path) -> Result<Sentences> {
        rows.sort_unstable();
        rows.dedup();
        rows.shrink_to_fit();
        let file = tempfile::tempfile_in(scratch_dir).with_context(|| {
            format!("cannot create a scratch file in {}", scratch_dir.display())
        })?;
        let mut ends = Vec::with_capacity(rows.len());
        let mut out = BufWriter::new(&file);
        let (mut first, mut next, mut written) = (0usize, 0usize, 0u64);
        for batch in tables::splits::read_batched(split, BATCH_ROWS)? {
            let batch = batch?;
            let end = first + batch.len();
            while next < rows.len() && (rows[next] as usize) < end {
                let sentence = &batch[rows[next] as usize - first].sentence;
                out.write_all(sentence.as_bytes())?;
                written += sentence.len() as u64;
                ends.push(written);
                next += 1;
            }
            first = end;
        }
        if next < rows.len() {
            bail!(
                "{} has {first} rows; row {} was asked for",
                split.display(),
                rows[next]
            );
        }
        out.flush()?;
        drop(out);
        Ok(Sentences { rows, ends, file })
    }

    /// The sentence of `row`, one of the rows collected.
    pub fn get(&self, row: usize) -> Result<String> {
        let Ok(at) = self.rows.binary_search(&(row as u32)) else {
            bail!("row {row} was not collected");
        };
        let start = if at == 0 { 0 } else { self.ends[at - 1] };
        let mut bytes = vec![0u8; (self.ends[at] - start) as usize];
        self.file.read_exact_at(&mut bytes, start)?;
        Ok(String::from_utf8(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tables::splits::LabelledRow;

    #[test]
    fn gives_back_each_chosen_rows_sentence_across_batches() {
        let dir = tempfile::tempdir().unwrap();
        let split = dir.path().join("train.parquet");
        let rows: Vec<LabelledRow> = (0..40_000)
            .map(|i| LabelledRow {
                row_id: i,
                sentence: if i % 7 == 0 {
                    String::new()
                } else {
                    format!("sentence number {i} é")
                },
                label: i % 2,
            })
            .collect();
        tables::splits::write(&split, &rows, &tables::Provenance::stage("k", "{}")).unwrap();
        let chosen = vec![39_999, 3, 16_384, 3, 0, 7, 16_383, 20_000];
        let sentences = Sentences::collect(&split, chosen.clone(), dir.path()).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no named scratch file"
        );
        for row in chosen {
            assert_eq!(
                sentences.get(row as usize).unwrap(),
                rows[row as usize].sentence
            );
        }
        assert!(sentences.get(5).is_err());
        assert!(Sentences::collect(&split, vec![40_000], dir.path()).is_err());
    }
}
