//! `ingest/{train,val,test}.parquet`: one labelled sentence per row.
//!
//! | column     | type         | meaning                                    |
//! |------------|--------------|--------------------------------------------|
//! | `row_id`   | int64        | 0-based data row in the source CSV         |
//! | `sentence` | utf8         | the text, as read                          |
//! | `label`    | int64        | class id, 0..K-1                           |
//!
//! Metadata: `stage_key`, `params` (JSON), `classes` (JSON array of class
//! names, index = class id).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, ensure};
use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use crate::io::{BatchWriter, Encoding, Provenance, read_batches, typed, write_batch};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledRow {
    pub row_id: i64,
    pub sentence: String,
    pub label: i64,
}

pub fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("row_id", DataType::Int64, false),
        Field::new("sentence", DataType::Utf8, false),
        Field::new("label", DataType::Int64, false),
    ]))
}

pub fn write(path: &Path, rows: &[LabelledRow], provenance: &Provenance) -> Result<()> {
    write_batch(path, schema(), batch_of(rows)?, provenance)
}

/// Rows per row group of a split written by [`SplitWriter`]: ~100 bytes a
/// row (SST-2 pairs), so a group in memory is a few MB.
pub const ROWS_PER_GROUP: usize = 65_536;

/// A split file written as rows arrive ([`SplitWriter::write`]), a row
/// group at a time.
pub struct SplitWriter(BatchWriter);

impl SplitWriter {
    pub fn create(path: &Path, provenance: &Provenance) -> Result<SplitWriter> {
        let writer = BatchWriter::create(
            path,
            schema(),
            provenance,
            Encoding::Compact,
            ROWS_PER_GROUP,
        )?;
        Ok(SplitWriter(writer))
    }

    pub fn write(&mut self, rows: &[LabelledRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.0.write(batch_of(rows)?)
    }

    /// Closes the file and syncs it to disk.
    pub fn finish(self) -> Result<()> {
        self.0.finish()
    }
}

fn batch_of(rows: &[LabelledRow]) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.row_id))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.sentence.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.label))),
        ],
    )?)
}

/// The rows of a split file, `rows` at a time, read as they are asked for.
pub fn read_batched(
    path: &Path,
    rows: usize,
) -> Result<impl Iterator<Item = Result<Vec<LabelledRow>>> + use<>> {
    let (batches, file_schema) = crate::io::batch_reader(path, rows)?;
    check_schema(&file_schema, path)?;
    Ok(batches.map(|batch| rows_of(&batch?)))
}

fn check_schema(file_schema: &Schema, path: &Path) -> Result<()> {
    ensure!(
        file_schema.fields() == schema().fields(),
        "{} does not have the split schema (row_id, sentence, label); was it written by another version?",
        path.display()
    );
    Ok(())
}

fn rows_of(batch: &RecordBatch) -> Result<Vec<LabelledRow>> {
    let ids: Int64Array = typed(batch.column(0), "row_id")?;
    let sentences: StringArray = typed(batch.column(1), "sentence")?;
    let labels: Int64Array = typed(batch.column(2), "label")?;
    Ok((0..batch.num_rows())
        .map(|i| LabelledRow {
            row_id: ids.value(i),
            sentence: sentences.value(i).to_string(),
            label: labels.value(i),
        })
        .collect())
}

/// The row ids and labels of a split, without reading its texts.
pub fn read_ids_and_labels(path: &Path) -> Result<(Vec<i64>, Vec<i64>)> {
    let (mut ids, mut labels) = (Vec::new(), Vec::new());
    for batch in crate::io::read_columns(path, &["row_id", "label"])? {
        let row_ids: Int64Array = crate::io::named(&batch, "row_id", path)?;
        let batch_labels: Int64Array = crate::io::named(&batch, "label", path)?;
        ids.extend_from_slice(row_ids.values());
        labels.extend_from_slice(batch_labels.values());
    }
    Ok((ids, labels))
}

pub fn read(path: &Path) -> Result<Vec<LabelledRow>> {
    let (batches, file_schema) = read_batches(path)?;
    check_schema(&file_schema, path)?;
    let mut rows = Vec::new();
    for batch in batches {
        rows.extend(rows_of(&batch)?);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_lossless_and_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![
            LabelledRow {
                row_id: 3,
                sentence: "great, \"really\"\nfun".into(),
                label: 1,
            },
            LabelledRow {
                row_id: 0,
                sentence: "ünïcödé".into(),
                label: 0,
            },
        ];
        let prov = Provenance::stage("abc", "{}").with("classes", "[\"neg\",\"pos\"]");
        let (a, b) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
        write(&a, &rows, &prov).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        write(&b, &rows, &prov).unwrap();
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "bytes must not depend on time"
        );
        assert_eq!(read(&a).unwrap(), rows);
        let meta = crate::read_metadata(&a).unwrap();
        assert!(meta.contains(&("stage_key".into(), "abc".into())));
    }
}
