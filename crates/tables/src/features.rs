//! `embed/{train,val,test}.parquet`: one feature vector per row.
//!
//! | column     | type                               |                          |
//! |------------|------------------------------------|--------------------------|
//! | `row_id`   | int64                              | as in the ingest split   |
//! | `label`    | int64                              | class id                 |
//! | `features` | fixed_size_list<float32>[H]        | pooled BERT output       |
//! | `key`      | fixed_size_binary[32]              | the row's feature-store key |
//!
//! The `key` column makes the file a feature-store chunk as it is
//! ([`crate::feature_chunks`]): the embed stage's store takes its finished
//! outputs as chunks, so the vectors are on disk once. Rows in the order of
//! the ingest split. Metadata: `stage_key`, `params`,
//! `hidden_size`, `pooling`, `device`. Written plain (no compression,
//! dictionary or statistics: see [`crate::io::Encoding`]), a row group of
//! [`ROWS_PER_GROUP`] rows at a time ([`FeatureWriter`]).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, ensure};
use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};

use crate::feature_chunks::Key;
use crate::io::{
    BatchWriter, Encoding, Provenance, batch_reader, extend_f32_rows, f32_rows, f32_rows_type,
    fixed_list_width, typed,
};

pub fn schema(hidden: usize) -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("row_id", DataType::Int64, false),
        Field::new("label", DataType::Int64, false),
        Field::new("features", f32_rows_type(hidden), false),
        Field::new("key", DataType::FixedSizeBinary(32), false),
    ]))
}

/// Features of all rows, row-major [rows × hidden].
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureTable {
    pub row_ids: Vec<i64>,
    pub labels: Vec<i64>,
    pub hidden: usize,
    pub features: Vec<f32>,
}

/// Rows per row group of an embed output: at H = 384 a group is 25 MB,
/// what the writer holds before it flushes, and what a batched reader
/// decodes at a time.
pub const ROWS_PER_GROUP: usize = 16_384;

/// An embed output written as its rows are produced
/// ([`FeatureWriter::write`]), a row group at a time.
pub struct FeatureWriter {
    writer: BatchWriter,
    schema: Arc<Schema>,
    hidden: usize,
}

impl FeatureWriter {
    pub fn create(path: &Path, hidden: usize, provenance: &Provenance) -> Result<FeatureWriter> {
        let schema = schema(hidden);
        let writer = BatchWriter::create(
            path,
            schema.clone(),
            provenance,
            Encoding::Plain,
            ROWS_PER_GROUP,
        )?;
        Ok(FeatureWriter {
            writer,
            schema,
            hidden,
        })
    }

    /// Appends `table`'s rows (taken by value: its columns move into Arrow
    /// arrays without a copy), `keys[i]` being row `i`'s store key.
    pub fn write(&mut self, table: FeatureTable, keys: &[Key]) -> Result<()> {
        ensure!(
            table.hidden == self.hidden
                && table.features.len() == table.row_ids.len() * self.hidden
                && keys.len() == table.row_ids.len(),
            "feature matrix has the wrong size"
        );
        if table.row_ids.is_empty() {
            return Ok(());
        }
        let batch = RecordBatch::try_new(
            self.schema.clone(),
            vec![
                Arc::new(Int64Array::from(table.row_ids)),
                Arc::new(Int64Array::from(table.labels)),
                Arc::new(f32_rows(table.features, table.hidden)?),
                Arc::new(arrow::array::FixedSizeBinaryArray::try_from_iter(
                    keys.iter(),
                )?),
            ],
        )?;
        self.writer.write(batch)
    }

    /// Closes the file and syncs it to disk.
    pub fn finish(self) -> Result<()> {
        self.writer.finish()
    }
}

/// Writes `table` whole, for tests and tools: its keys are unknown and
/// written as zeros, so the file must never be adopted into a feature store
/// (only the embed stage adopts its own outputs, with their real keys).
pub fn write(path: &Path, table: FeatureTable, provenance: &Provenance) -> Result<()> {
    let mut writer = FeatureWriter::create(path, table.hidden, provenance)?;
    let keys = vec![[0; 32]; table.row_ids.len()];
    writer.write(table, &keys)?;
    writer.finish()
}

pub fn read(path: &Path) -> Result<FeatureTable> {
    let (batches, hidden) = read_batched(path, ROWS_PER_GROUP)?;
    let mut table = FeatureTable {
        row_ids: Vec::new(),
        labels: Vec::new(),
        hidden,
        features: Vec::new(),
    };
    for batch in batches {
        let batch = batch?;
        table.row_ids.extend(batch.row_ids);
        table.labels.extend(batch.labels);
        table.features.extend(batch.features);
    }
    Ok(table)
}

/// The row ids of an embed output, without reading its vectors.
pub fn read_row_ids(path: &Path) -> Result<Vec<i64>> {
    let mut ids = Vec::new();
    for batch in crate::io::read_columns(path, &["row_id"])? {
        let column: Int64Array = crate::io::named(&batch, "row_id", path)?;
        ids.extend_from_slice(column.values());
    }
    Ok(ids)
}

/// The rows of an embed output, `rows` at a time, read as they are asked
/// for; and the vectors' width.
pub fn read_batched(
    path: &Path,
    rows: usize,
) -> Result<(impl Iterator<Item = Result<FeatureTable>> + use<>, usize)> {
    let (batches, file_schema) = batch_reader(path, rows)?;
    let hidden = fixed_list_width(&file_schema, "features", path, "an embed output")?;
    let tables = batches.map(move |batch| {
        let batch = batch?;
        let row_ids: Int64Array = typed(batch.column(0), "row_id")?;
        let labels: Int64Array = typed(batch.column(1), "label")?;
        let mut features = Vec::with_capacity(batch.num_rows() * hidden);
        extend_f32_rows(&mut features, batch.column(2), hidden, "features")?;
        Ok(FeatureTable {
            row_ids: row_ids.values().to_vec(),
            labels: labels.values().to_vec(),
            hidden,
            features,
        })
    });
    Ok((tables, hidden))
}
