//! `encode/{train,val,test}.parquet`: each row's token ids, unpadded.
//!
//! | column           | type                | |
//! |------------------|---------------------|-------------------------------------|
//! | `row_id`         | int64               | as in the ingest split              |
//! | `label`          | int64               | class id                            |
//! | `input_ids`      | list<int32>         | [CLS] … [SEP], at most `max_len`    |
//! | `n_tokens`       | int32               | token count before truncation       |
//!
//! Rows in the order of the ingest split. Metadata: `stage_key`, `params`,
//! `max_len`, `max_len_rule`, `pad_id`. Ids are stored as they are, not
//! padded to `max_len`: sentences are far shorter than the longest (SST-2:
//! ~13 tokens on average, 66 at most), and the embed stage pads each batch
//! to its own longest row anyway. Written a row group at a time
//! ([`EncodedWriter`]), so the writer holds one group, never a split.
//!
//! `encode/length_histogram.parquet` (training split): `n_tokens` int32,
//! `rows` int64, one row per token count that occurs, ascending.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use arrow::array::{Int32Array, Int64Array, ListArray, RecordBatch};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Schema};

use crate::io::{
    BatchWriter, Encoding, Provenance, batch_reader, read_batches, typed, write_batch,
};

#[derive(Debug, Clone, PartialEq)]
pub struct EncodedRow {
    pub row_id: i64,
    pub label: i64,
    /// Unpadded ids (at most `max_len`).
    pub ids: Vec<u32>,
    pub n_tokens: usize,
}

/// Rows per row group of an encode output: ~50 bytes a row (SST-2), so a
/// group in memory is a few MB.
pub const ROWS_PER_GROUP: usize = 65_536;

pub fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("row_id", DataType::Int64, false),
        Field::new("label", DataType::Int64, false),
        Field::new("input_ids", DataType::List(ids_item()), false),
        Field::new("n_tokens", DataType::Int32, false),
    ]))
}

fn ids_item() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Int32, false))
}

/// An encode output written as rows arrive ([`EncodedWriter::write`]).
pub struct EncodedWriter {
    writer: BatchWriter,
    max_len: usize,
}

impl EncodedWriter {
    /// `provenance` must carry `max_len` and `pad_id` (the metadata readers
    /// rely on).
    pub fn create(path: &Path, max_len: usize, provenance: &Provenance) -> Result<EncodedWriter> {
        let writer = BatchWriter::create(
            path,
            schema(),
            provenance,
            Encoding::Compact,
            ROWS_PER_GROUP,
        )?;
        Ok(EncodedWriter { writer, max_len })
    }

    pub fn write(&mut self, rows: &[EncodedRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut values = Vec::new();
        let mut lengths = Vec::with_capacity(rows.len());
        for r in rows {
            ensure!(
                r.ids.len() <= self.max_len,
                "row {} has {} ids > max_len {}",
                r.row_id,
                r.ids.len(),
                self.max_len
            );
            values.extend(r.ids.iter().map(|&i| i as i32));
            lengths.push(r.ids.len());
        }
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.row_id))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.label))),
                Arc::new(ListArray::try_new(
                    ids_item(),
                    OffsetBuffer::from_lengths(lengths),
                    Arc::new(Int32Array::from(values)),
                    None,
                )?),
                Arc::new(Int32Array::from_iter_values(
                    rows.iter().map(|r| r.n_tokens as i32),
                )),
            ],
        )?;
        self.writer.write(batch)
    }

    pub fn finish(self) -> Result<()> {
        self.writer.finish()
    }
}

/// The rows of an encode output, and its `max_len` (from the metadata).
pub fn read(path: &Path) -> Result<(Vec<EncodedRow>, usize)> {
    let (batches, max_len) = read_batched(path, ROWS_PER_GROUP)?;
    let mut rows = Vec::new();
    for batch in batches {
        rows.extend(batch?);
    }
    Ok((rows, max_len))
}

/// The rows of an encode output, `rows` at a time, read as they are asked
/// for; and its `max_len` (from the metadata).
pub fn read_batched(
    path: &Path,
    rows: usize,
) -> Result<(impl Iterator<Item = Result<Vec<EncodedRow>>> + use<>, usize)> {
    let (batches, file_schema) = batch_reader(path, rows)?;
    ensure!(
        file_schema.fields() == schema().fields(),
        "{}: not an encode output of this version (row_id, label, input_ids list<int32>, \
         n_tokens); rerun the pipeline",
        path.display()
    );
    let max_len: usize = crate::io::metadata_value(path, "max_len")?
        .parse()
        .with_context(|| format!("{}: bad max_len metadata", path.display()))?;
    let path = path.to_path_buf();
    Ok((
        batches.map(move |batch| rows_of(&batch?, max_len, &path)),
        max_len,
    ))
}

fn rows_of(batch: &RecordBatch, max_len: usize, path: &Path) -> Result<Vec<EncodedRow>> {
    let row_ids: Int64Array = typed(batch.column(0), "row_id")?;
    let labels: Int64Array = typed(batch.column(1), "label")?;
    let ids_list: ListArray = typed(batch.column(2), "input_ids")?;
    let values: Int32Array = typed(ids_list.values(), "input_ids items")?;
    let offsets = ids_list.value_offsets();
    let n_tokens: Int32Array = typed(batch.column(3), "n_tokens")?;
    let mut rows = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let ids = &values.values()[offsets[i] as usize..offsets[i + 1] as usize];
        ensure!(
            ids.len() <= max_len,
            "{}: row {} has {} ids, more than max_len {max_len}",
            path.display(),
            row_ids.value(i),
            ids.len()
        );
        rows.push(EncodedRow {
            row_id: row_ids.value(i),
            label: labels.value(i),
            ids: ids.iter().map(|&v| v as u32).collect(),
            n_tokens: n_tokens.value(i) as usize,
        });
    }
    Ok(rows)
}

pub fn histogram_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("n_tokens", DataType::Int32, false),
        Field::new("rows", DataType::Int64, false),
    ]))
}

/// (token count, rows) pairs, ascending by token count.
pub fn write_histogram(
    path: &Path,
    counts: &[(usize, usize)],
    provenance: &Provenance,
) -> Result<()> {
    let schema = histogram_schema();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int32Array::from_iter_values(
                counts.iter().map(|c| c.0 as i32),
            )),
            Arc::new(Int64Array::from_iter_values(
                counts.iter().map(|c| c.1 as i64),
            )),
        ],
    )?;
    write_batch(path, schema, batch, provenance)
}

/// The training split's token-length histogram and the `max_len` encode chose.
#[derive(Debug, Clone, PartialEq)]
pub struct LengthHistogram {
    /// (token count, rows), ascending by token count.
    pub counts: Vec<(usize, usize)>,
    pub max_len: usize,
    /// How `max_len` was chosen ("fixed", "p100 of training lengths", …).
    pub max_len_rule: String,
}

pub fn read_histogram(path: &Path) -> Result<LengthHistogram> {
    let (batches, file_schema) = read_batches(path)?;
    ensure!(
        file_schema.fields() == histogram_schema().fields(),
        "{}: unexpected length-histogram schema",
        path.display()
    );
    let mut counts = Vec::new();
    for batch in batches {
        let n_tokens: Int32Array = typed(batch.column(0), "n_tokens")?;
        let rows: Int64Array = typed(batch.column(1), "rows")?;
        counts.extend(
            n_tokens
                .values()
                .iter()
                .zip(rows.values())
                .map(|(&n, &r)| (n as usize, r as usize)),
        );
    }
    let max_len = crate::io::metadata_value(path, "max_len")?
        .parse()
        .map_err(|e| anyhow::anyhow!("{}: bad max_len metadata: {e}", path.display()))?;
    Ok(LengthHistogram {
        counts,
        max_len,
        max_len_rule: crate::io::metadata_value(path, "max_len_rule")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_round_trips_with_max_len() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("length_histogram.parquet");
        let counts = vec![(3, 10), (4, 2), (40, 1)];
        let prov = Provenance::stage("k", "{}")
            .with("max_len", "17")
            .with("max_len_rule", "fixed");
        write_histogram(&path, &counts, &prov).unwrap();
        let want = LengthHistogram {
            counts,
            max_len: 17,
            max_len_rule: "fixed".into(),
        };
        assert_eq!(read_histogram(&path).unwrap(), want);
    }
}
