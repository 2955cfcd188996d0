//! A chunk of the embed stage's feature store (`artifacts/.cache/embed/`):
//! one feature vector per distinct model input.
//!
//! | column     | type                          |                                        |
//! |------------|-------------------------------|----------------------------------------|
//! | `key`      | fixed_size_binary[32]         | blake3 of the model input (see `embed::store`) |
//! | `features` | fixed_size_list<float32>[H]   | pooled BERT output                     |
//!
//! Written plain, like the embed outputs. Metadata: `hidden_size`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, ensure};
use arrow::array::{FixedSizeBinaryArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};

use crate::io::{
    Encoding, Provenance, batches_of, extend_f32_rows, f32_rows, f32_rows_type, fixed_list_width,
    read_columns, typed, write_batch_encoded,
};

/// A row key: 32 bytes.
pub type Key = [u8; 32];

/// Keys and their feature vectors, row-major [rows × hidden].
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub keys: Vec<Key>,
    pub hidden: usize,
    pub features: Vec<f32>,
}

fn schema(hidden: usize) -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::FixedSizeBinary(32), false),
        Field::new("features", f32_rows_type(hidden), false),
    ]))
}

pub fn write(path: &Path, chunk: Chunk) -> Result<()> {
    ensure!(
        chunk.features.len() == chunk.keys.len() * chunk.hidden,
        "feature chunk has the wrong size"
    );
    let schema = schema(chunk.hidden);
    let keys = FixedSizeBinaryArray::try_from_iter(chunk.keys.iter())?;
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(keys),
            Arc::new(f32_rows(chunk.features, chunk.hidden)?),
        ],
    )?;
    let provenance = Provenance::default().with("hidden_size", chunk.hidden.to_string());
    write_batch_encoded(path, schema, batch, &provenance, Encoding::Plain)
}

/// A chunk from the bytes of its file, already read from `source` (the
/// feature store hashes them before decoding: one read of the disk).
pub fn from_bytes(bytes: Vec<u8>, source: &Path) -> Result<Chunk> {
    let (batches, schema) = batches_of(bytes::Bytes::from(bytes), source)?;
    let hidden = fixed_list_width(&schema, "features", source, "a feature chunk")?;
    let mut chunk = Chunk {
        keys: Vec::new(),
        hidden,
        features: Vec::new(),
    };
    for batch in batches {
        extend_keys(&mut chunk.keys, batch.column(0), source)?;
        extend_f32_rows(&mut chunk.features, batch.column(1), hidden, "features")?;
    }
    Ok(chunk)
}

/// The keys of a chunk, without reading its vectors.
pub fn read_keys(path: &Path) -> Result<Vec<Key>> {
    let mut keys = Vec::new();
    for batch in read_columns(path, &["key"])? {
        extend_keys(&mut keys, batch.column(0), path)?;
    }
    Ok(keys)
}

fn extend_keys(out: &mut Vec<Key>, array: &arrow::array::ArrayRef, source: &Path) -> Result<()> {
    let column: FixedSizeBinaryArray = typed(array, "key")?;
    ensure!(
        column.value_length() == 32,
        "{}: keys are not 32 bytes",
        source.display()
    );
    out.extend(
        column
            .iter()
            .map(|k| <Key>::try_from(k.unwrap_or(&[0; 32])).unwrap()),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.parquet");
        let chunk = Chunk {
            keys: vec![[1; 32], [2; 32]],
            hidden: 3,
            features: vec![0.5, 1.0, -2.0, 3.0, 4.0, 5.5],
        };
        write(&path, chunk.clone()).unwrap();
        assert_eq!(read_keys(&path).unwrap(), chunk.keys);
        assert_eq!(
            from_bytes(std::fs::read(&path).unwrap(), &path).unwrap(),
            chunk
        );
    }
}
