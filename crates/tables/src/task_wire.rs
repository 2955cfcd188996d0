//! What a remote embed task (`embed-chunk`, run by the Ray executor) reads
//! and writes: Arrow IPC streams, bytes that travel through Ray's object
//! store instead of a shared filesystem.
//!
//! Task input, one row per model input:
//!
//! | column | type          |                                   |
//! |--------|---------------|-----------------------------------|
//! | `ids`  | list<uint32>  | token ids, unpadded               |
//!
//! Task output, the same rows in the same order:
//!
//! | column     | type                         |                 |
//! |------------|------------------------------|-----------------|
//! | `features` | fixed_size_list<float32>[H]  | pooled BERT output |
//!
//! Output schema metadata: `device` (what ran the model: `cpu`, `cuda`).

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use arrow::array::{Array, ListArray, RecordBatch, UInt32Array};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

use crate::io::{extend_f32_rows, f32_rows, f32_rows_type, typed};

/// The vectors a task computed, [rows × hidden], and the device it used.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskFeatures {
    pub hidden: usize,
    pub features: Vec<f32>,
    pub device: String,
}

impl TaskFeatures {
    pub fn rows(&self) -> usize {
        self.features.len().checked_div(self.hidden).unwrap_or(0)
    }
}

/// A task's input: the token ids of each row.
pub fn write_token_rows<'a>(rows: impl IntoIterator<Item = &'a [u32]>) -> Result<Vec<u8>> {
    let mut lengths = Vec::new();
    let mut flat = Vec::new();
    for row in rows {
        lengths.push(row.len());
        flat.extend_from_slice(row);
    }
    let item = Arc::new(Field::new("item", DataType::UInt32, false));
    let ids = ListArray::try_new(
        item.clone(),
        OffsetBuffer::from_lengths(lengths),
        Arc::new(UInt32Array::from(flat)),
        None,
    )?;
    let schema = Arc::new(Schema::new(vec![Field::new(
        "ids",
        DataType::List(item),
        false,
    )]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(ids)])?;
    stream_bytes(schema, batch)
}

/// The token ids of each row of a task's input.
pub fn read_token_rows(bytes: &[u8]) -> Result<Vec<Vec<u32>>> {
    let mut rows = Vec::new();
    for batch in read_stream(bytes, "a task input")? {
        let column = batch
            .column_by_name("ids")
            .context("a task input has no `ids` column")?;
        let list: ListArray = typed(column, "ids")?;
        for i in 0..list.len() {
            let ids: UInt32Array = typed(&list.value(i), "ids")?;
            rows.push(ids.values().to_vec());
        }
    }
    Ok(rows)
}

/// A task's output.
pub fn write_features(out: TaskFeatures) -> Result<Vec<u8>> {
    ensure!(
        out.hidden > 0 && out.features.len().is_multiple_of(out.hidden),
        "task features are not whole rows of {}",
        out.hidden
    );
    let schema = Arc::new(Schema::new_with_metadata(
        vec![Field::new("features", f32_rows_type(out.hidden), false)],
        HashMap::from([("device".to_string(), out.device)]),
    ));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(f32_rows(out.features, out.hidden)?)],
    )?;
    stream_bytes(schema, batch)
}

/// A task's output, from its bytes.
pub fn read_features(bytes: &[u8]) -> Result<TaskFeatures> {
    let reader = StreamReader::try_new(Cursor::new(bytes), None)
        .context("task output is not an Arrow IPC stream")?;
    let schema = reader.schema();
    let hidden = match schema.field_with_name("features").map(|f| f.data_type()) {
        Ok(DataType::FixedSizeList(_, n)) => *n as usize,
        _ => anyhow::bail!("task output has no fixed-size `features` column"),
    };
    let device = schema.metadata().get("device").cloned().unwrap_or_default();
    let mut features = Vec::new();
    for batch in reader {
        let batch = batch.context("task output is damaged")?;
        extend_f32_rows(&mut features, batch.column(0), hidden, "features")?;
    }
    Ok(TaskFeatures {
        hidden,
        features,
        device,
    })
}

fn stream_bytes(schema: Arc<Schema>, batch: RecordBatch) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut writer = StreamWriter::try_new(&mut out, &schema)?;
    writer.write(&batch)?;
    writer.finish()?;
    drop(writer);
    Ok(out)
}

fn read_stream(bytes: &[u8], what: &str) -> Result<Vec<RecordBatch>> {
    let reader = StreamReader::try_new(Cursor::new(bytes), None)
        .with_context(|| format!("{what} is not an Arrow IPC stream"))?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{what} is damaged"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_rows_round_trip() {
        let rows: Vec<Vec<u32>> = vec![vec![101, 7, 102], vec![], vec![101, 102]];
        let bytes = write_token_rows(rows.iter().map(Vec::as_slice)).unwrap();
        assert_eq!(read_token_rows(&bytes).unwrap(), rows);
    }

    #[test]
    fn features_round_trip_with_their_device() {
        let out = TaskFeatures {
            hidden: 2,
            features: vec![0.5, -1.0, 3.25, 4.0],
            device: "cpu".into(),
        };
        let bytes = write_features(out.clone()).unwrap();
        let back = read_features(&bytes).unwrap();
        assert_eq!(back, out);
        assert_eq!(back.rows(), 2);
    }

    #[test]
    fn a_truncated_output_is_refused() {
        let bytes = write_features(TaskFeatures {
            hidden: 1,
            features: vec![1.0; 64],
            device: "cpu".into(),
        })
        .unwrap();
        assert!(read_features(&bytes[..bytes.len() / 2]).is_err());
    }
}
