//! A chunk of the embed stage's feature store (`artifacts/.cache/embed/`):
//! one feature vector per distinct model input.
//!
//! | column     | type                          |                                        |
//! |------------|-------------------------------|----------------------------------------|
//! | `key`      | fixed_size_binary[32]         | blake3 of the model input (see `embed::store`) |
//! | `features` | fixed_size_list<float32>[H]   | pooled BERT output                     |
//!
//! Written plain, like the embed outputs. Metadata: `hidden_size`. An
//! embed output (`tables::features`) has both columns too, among others:
//! the readers here find them by name, so the store takes a finished embed
//! output as one of its chunks (`embed::store::FeatureStore::adopt`).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, ensure};
use arrow::array::{FixedSizeBinaryArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};

use crate::io::{
    BatchWriter, Encoding, Provenance, column_reader, extend_f32_rows, f32_rows, f32_rows_type,
    fixed_list_width, named_column, read_columns, typed,
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

/// Rows per row group of a chunk file (and rows decoded at a time by
/// [`read_batched`]'s callers in the store).
pub const ROWS_PER_GROUP: usize = 16_384;

/// A chunk file written a batch at a time ([`Writer::write`]).
pub struct Writer {
    writer: BatchWriter,
    schema: Arc<Schema>,
    hidden: usize,
}

impl Writer {
    pub fn create(path: &Path, hidden: usize) -> Result<Writer> {
        let schema = schema(hidden);
        let provenance = Provenance::default().with("hidden_size", hidden.to_string());
        let writer = BatchWriter::create(
            path,
            schema.clone(),
            &provenance,
            Encoding::Plain,
            ROWS_PER_GROUP,
        )?;
        Ok(Writer {
            writer,
            schema,
            hidden,
        })
    }

    pub fn write(&mut self, chunk: Chunk) -> Result<()> {
        ensure!(
            chunk.hidden == self.hidden && chunk.features.len() == chunk.keys.len() * self.hidden,
            "feature chunk has the wrong size"
        );
        if chunk.keys.is_empty() {
            return Ok(());
        }
        let keys = FixedSizeBinaryArray::try_from_iter(chunk.keys.iter())?;
        let batch = RecordBatch::try_new(
            self.schema.clone(),
            vec![
                Arc::new(keys),
                Arc::new(f32_rows(chunk.features, chunk.hidden)?),
            ],
        )?;
        self.writer.write(batch)
    }

    /// Closes the file and syncs it to disk.
    pub fn finish(self) -> Result<()> {
        self.writer.finish()
    }
}

/// Writes `chunk` whole.
pub fn write(path: &Path, chunk: Chunk) -> Result<()> {
    let mut writer = Writer::create(path, chunk.hidden)?;
    writer.write(chunk)?;
    writer.finish()
}

/// The keys and vectors of a chunk file (or of an embed output), `rows` at
/// a time as they are asked for (the file's other columns are not read);
/// and the vectors' width.
pub fn read_batched(
    path: &Path,
    rows: usize,
) -> Result<(impl Iterator<Item = Result<Chunk>> + use<>, usize)> {
    let (batches, schema) = column_reader(path, &["key", "features"], rows)?;
    let hidden = fixed_list_width(&schema, "features", path, "a feature chunk")?;
    let source = path.to_path_buf();
    let chunks = batches.map(move |batch| {
        let batch = batch?;
        let mut chunk = Chunk {
            keys: Vec::with_capacity(batch.num_rows()),
            hidden,
            features: Vec::with_capacity(batch.num_rows() * hidden),
        };
        extend_keys(
            &mut chunk.keys,
            named_column(&batch, "key", &source)?,
            &source,
        )?;
        extend_f32_rows(
            &mut chunk.features,
            named_column(&batch, "features", &source)?,
            hidden,
            "features",
        )?;
        Ok(chunk)
    });
    Ok((chunks, hidden))
}

/// A whole chunk file (small chunks; the store reads large ones with
/// [`read_batched`]).
pub fn read(path: &Path) -> Result<Chunk> {
    let (batches, hidden) = read_batched(path, ROWS_PER_GROUP)?;
    let mut chunk = Chunk {
        keys: Vec::new(),
        hidden,
        features: Vec::new(),
    };
    for batch in batches {
        let batch = batch?;
        chunk.keys.extend(batch.keys);
        chunk.features.extend(batch.features);
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

/// Appends the 32-byte keys of a `key` column to `out`.
pub(crate) fn extend_keys(
    out: &mut Vec<Key>,
    array: &arrow::array::ArrayRef,
    source: &Path,
) -> Result<()> {
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
        assert_eq!(read(&path).unwrap(), chunk);
        let (batches, hidden) = read_batched(&path, 1).unwrap();
        assert_eq!(hidden, 3);
        let batches: Vec<Chunk> = batches.map(|b| b.unwrap()).collect();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[1].keys, vec![[2; 32]]);
        assert_eq!(batches[1].features, vec![3.0, 4.0, 5.5]);
    }
}
