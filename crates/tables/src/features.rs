//! `embed/{train,val,test}.parquet`: one feature vector per row.
//!
//! | column     | type                               |                          |
//! |------------|------------------------------------|--------------------------|
//! | `row_id`   | int64                              | as in the ingest split   |
//! | `label`    | int64                              | class id                 |
//! | `features` | fixed_size_list<float32>[H]        | pooled BERT output       |
//!
//! Rows in the order of the ingest split. Metadata: `stage_key`, `params`,
//! `hidden_size`, `pooling`, `device`. Written plain (no compression,
//! dictionary or statistics: see [`crate::io::Encoding`]).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, ensure};
use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};

use crate::io::{
    Encoding, Provenance, extend_f32_rows, f32_rows, f32_rows_type, fixed_list_width, read_batches,
    typed, write_batch_encoded,
};

pub fn schema(hidden: usize) -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("row_id", DataType::Int64, false),
        Field::new("label", DataType::Int64, false),
        Field::new("features", f32_rows_type(hidden), false),
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

/// Writes `table` (taken by value: its columns move into Arrow arrays
/// without a copy).
pub fn write(path: &Path, table: FeatureTable, provenance: &Provenance) -> Result<()> {
    ensure!(
        table.features.len() == table.row_ids.len() * table.hidden,
        "feature matrix has the wrong size"
    );
    let schema = schema(table.hidden);
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(table.row_ids)),
            Arc::new(Int64Array::from(table.labels)),
            Arc::new(f32_rows(table.features, table.hidden)?),
        ],
    )?;
    write_batch_encoded(path, schema, batch, provenance, Encoding::Plain)
}

pub fn read(path: &Path) -> Result<FeatureTable> {
    let (batches, file_schema) = read_batches(path)?;
    let hidden = fixed_list_width(&file_schema, "features", path, "an embed output")?;
    let mut table = FeatureTable {
        row_ids: Vec::new(),
        labels: Vec::new(),
        hidden,
        features: Vec::new(),
    };
    for batch in batches {
        let row_ids: Int64Array = typed(batch.column(0), "row_id")?;
        let labels: Int64Array = typed(batch.column(1), "label")?;
        table.row_ids.extend(row_ids.values().iter());
        table.labels.extend(labels.values().iter());
        extend_f32_rows(&mut table.features, batch.column(2), hidden, "features")?;
    }
    Ok(table)
}
