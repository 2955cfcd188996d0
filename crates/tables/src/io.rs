//! Deterministic Parquet writing and metadata reading shared by all schemas.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

/// Fixed, so the bytes of a file do not depend on the library build.
const CREATED_BY: &str = "bert-sentiment tables";

/// Where an artifact came from: written into its Parquet key-value metadata.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    pub entries: Vec<(String, String)>,
}

impl Provenance {
    /// The stage key and canonical parameters (JSON) of the producing stage.
    pub fn stage(key: &str, params_json: &str) -> Provenance {
        Provenance {
            entries: vec![
                ("stage_key".into(), key.into()),
                ("params".into(), params_json.into()),
            ],
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<String>) -> Provenance {
        self.entries.push((key.into(), value.into()));
        self
    }
}

/// How a file's columns are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// Snappy, dictionaries, page statistics: for text, ids and labels.
    Compact,
    /// Plain values, no dictionary, no statistics: for float matrices
    /// (features), which none of those shrink (snappy saves 0.5 % on
    /// SST-2's features) but which they slow down: writing SST-2's
    /// training features took ~1.3 s instead of ~1.8 s on the 2-core machine.
    Plain,
}

pub(crate) fn write_batch(
    path: &Path,
    schema: Arc<Schema>,
    batch: RecordBatch,
    provenance: &Provenance,
) -> Result<()> {
    write_batch_encoded(path, schema, batch, provenance, Encoding::Compact)
}

pub(crate) fn write_batch_encoded(
    path: &Path,
    schema: Arc<Schema>,
    batch: RecordBatch,
    provenance: &Provenance,
    encoding: Encoding,
) -> Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let file = encode_batch(file, schema, batch, provenance, encoding)?;
    file.sync_all()?;
    Ok(())
}

/// The deterministic Parquet bytes of `batch`, for a caller that stores
/// them itself (e.g. atomically, beside other files).
pub(crate) fn batch_bytes(
    schema: Arc<Schema>,
    batch: RecordBatch,
    provenance: &Provenance,
) -> Result<Vec<u8>> {
    encode_batch(Vec::new(), schema, batch, provenance, Encoding::Compact)
}

/// Writes `batch` as Parquet into `sink` and gives the sink back.
fn encode_batch<W: std::io::Write + Send>(
    sink: W,
    schema: Arc<Schema>,
    batch: RecordBatch,
    provenance: &Provenance,
    encoding: Encoding,
) -> Result<W> {
    let (mut writer, schema) = writer_for(sink, schema, provenance, encoding, None)?;
    writer.write(&batch.with_schema(schema)?)?;
    Ok(writer.into_inner()?)
}

/// A Parquet file written batch by batch: each row group is flushed once
/// it holds `rows_per_group` rows, so what is held in memory is one row
/// group, whatever the file's size. Deterministic as [`write_batch`] is,
/// for the same batches.
pub(crate) struct BatchWriter {
    writer: ArrowWriter<File>,
    schema: Arc<Schema>,
}

impl BatchWriter {
    pub(crate) fn create(
        path: &Path,
        schema: Arc<Schema>,
        provenance: &Provenance,
        encoding: Encoding,
        rows_per_group: usize,
    ) -> Result<BatchWriter> {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let (writer, schema) =
            writer_for(file, schema, provenance, encoding, Some(rows_per_group))?;
        Ok(BatchWriter { writer, schema })
    }

    pub(crate) fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.writer
            .write(&batch.with_schema(self.schema.clone())?)?;
        Ok(())
    }

    /// Closes the file and syncs it to disk.
    pub(crate) fn finish(self) -> Result<()> {
        let file = self.writer.into_inner()?;
        file.sync_all()?;
        Ok(())
    }
}

/// An `ArrowWriter` with the deterministic settings, and the schema (with
/// the provenance inside) that its batches must carry.
fn writer_for<W: std::io::Write + Send>(
    sink: W,
    schema: Arc<Schema>,
    provenance: &Provenance,
    encoding: Encoding,
    rows_per_group: Option<usize>,
) -> Result<(ArrowWriter<W>, Arc<Schema>)> {
    // Provenance goes both into the Parquet key-value metadata (duckdb's
    // `parquet_kv_metadata`, [`read_metadata`]) and into the Arrow schema
    // (pyarrow's `read_table().schema.metadata` shows only that one).
    let kv = provenance
        .entries
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    let metadata: HashMap<String, String> = provenance.entries.iter().cloned().collect();
    let schema = Arc::new(schema.as_ref().clone().with_metadata(metadata));
    let props = WriterProperties::builder()
        .set_created_by(CREATED_BY.to_string())
        .set_key_value_metadata(Some(kv));
    let mut props = match encoding {
        Encoding::Compact => props.set_compression(Compression::SNAPPY),
        Encoding::Plain => props
            .set_compression(Compression::UNCOMPRESSED)
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::None),
    };
    if let Some(rows) = rows_per_group {
        props = props.set_max_row_group_size(rows);
    }
    let writer = ArrowWriter::try_new(sink, schema.clone(), Some(props.build()))?;
    Ok((writer, schema))
}

/// The batches of a Parquet file, read `rows` at a time as they are asked
/// for (not the whole file at once), and its schema.
pub(crate) fn batch_reader(
    path: &Path,
    rows: usize,
) -> Result<(
    impl Iterator<Item = Result<RecordBatch>> + use<>,
    Arc<Schema>,
)> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{} is not a readable Parquet file", path.display()))?;
    let schema = builder.schema().clone();
    let shown = path.display().to_string();
    let reader = builder.with_batch_size(rows.max(1)).build()?;
    Ok((
        reader.map(move |b| b.with_context(|| format!("cannot read {shown}"))),
        schema,
    ))
}

/// The named top-level columns of a Parquet file (the others are not read
/// from disk), `rows` at a time as they are asked for, and the file's
/// whole schema. The batches hold the columns in the file's order.
pub(crate) fn column_reader(
    path: &Path,
    columns: &[&str],
    rows: usize,
) -> Result<(
    impl Iterator<Item = Result<RecordBatch>> + use<>,
    Arc<Schema>,
)> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{} is not a readable Parquet file", path.display()))?;
    let schema = builder.schema().clone();
    let mask =
        parquet::arrow::ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
    let shown = path.display().to_string();
    let reader = builder
        .with_projection(mask)
        .with_batch_size(rows.max(1))
        .build()?;
    Ok((
        reader.map(move |b| b.with_context(|| format!("cannot read {shown}"))),
        schema,
    ))
}

/// The rows of a Parquet file, from its footer (no data is read).
pub fn row_count(path: &Path) -> Result<usize> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{} is not a readable Parquet file", path.display()))?;
    Ok(builder.metadata().file_metadata().num_rows() as usize)
}

/// The named top-level columns only (the others are not read from disk).
pub(crate) fn read_columns(path: &Path, columns: &[&str]) -> Result<Vec<RecordBatch>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{} is not a readable Parquet file", path.display()))?;
    let mask =
        parquet::arrow::ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
    let batches = builder
        .with_projection(mask)
        .build()?
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(batches)
}

pub(crate) fn read_batches(path: &Path) -> Result<(Vec<RecordBatch>, Arc<Schema>)> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    batches_of(file, path)
}

/// The batches and schema of Parquet data from `reader` (a file, or bytes
/// already in memory), read from `source`.
pub(crate) fn batches_of<R: parquet::file::reader::ChunkReader + 'static>(
    reader: R,
    source: &Path,
) -> Result<(Vec<RecordBatch>, Arc<Schema>)> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(reader)
        .with_context(|| format!("{} is not a readable Parquet file", source.display()))?;
    let schema = builder.schema().clone();
    let batches = builder
        .build()?
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((batches, schema))
}

/// The key-value metadata of a Parquet file.
pub fn read_metadata(path: &Path) -> Result<Vec<(String, String)>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{} is not a readable Parquet file", path.display()))?;
    Ok(builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default())
}

/// One key-value metadata entry of a Parquet file; an error naming the file
/// and the key when it is absent.
pub fn metadata_value(path: &Path, key: &str) -> Result<String> {
    read_metadata(path)?
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .with_context(|| format!("{}: no `{key}` in its metadata", path.display()))
}

/// The width of the fixed-size-list column `column`; `what` names the
/// artifact kind for the error ("an embed output").
pub(crate) fn fixed_list_width(
    schema: &Schema,
    column: &str,
    path: &Path,
    what: &str,
) -> Result<usize> {
    match schema
        .field_with_name(column)
        .map(|f| f.data_type().clone())
    {
        Ok(arrow::datatypes::DataType::FixedSizeList(_, n)) => Ok(n as usize),
        _ => anyhow::bail!(
            "{}: no fixed-size {column} column; not {what}",
            path.display()
        ),
    }
}

/// The column `name` of a batch read from `path`, as its concrete Arrow type.
pub(crate) fn named<T: arrow::array::Array + Clone + 'static>(
    batch: &RecordBatch,
    name: &str,
    path: &Path,
) -> Result<T> {
    typed(named_column(batch, name, path)?, name)
}

/// The column `name` of a batch read from `path`, untyped.
pub(crate) fn named_column<'a>(
    batch: &'a RecordBatch,
    name: &str,
    path: &Path,
) -> Result<&'a arrow::array::ArrayRef> {
    batch
        .column_by_name(name)
        .with_context(|| format!("{}: no {name} column", path.display()))
}

/// `array` as its concrete Arrow type; `what` names it in the error.
pub(crate) fn typed<T: arrow::array::Array + Clone + 'static>(
    array: &arrow::array::ArrayRef,
    what: &str,
) -> Result<T> {
    array
        .as_any()
        .downcast_ref::<T>()
        .cloned()
        .with_context(|| format!("{what} has an unexpected type"))
}

/// Appends the rows of a fixed_size_list<float32>[`width`] column to `out`.
pub(crate) fn extend_f32_rows(
    out: &mut Vec<f32>,
    array: &arrow::array::ArrayRef,
    width: usize,
    what: &str,
) -> Result<()> {
    use arrow::array::{Array, FixedSizeListArray, Float32Array};
    let list: FixedSizeListArray = typed(array, what)?;
    let values: Float32Array = typed(list.values(), what)?;
    let start = list.offset() * width;
    out.extend_from_slice(&values.values()[start..start + list.len() * width]);
    Ok(())
}

/// The column type of `width` float32 values per row.
pub(crate) fn f32_rows_type(width: usize) -> arrow::datatypes::DataType {
    use arrow::datatypes::{DataType, Field};
    DataType::FixedSizeList(
        Arc::new(Field::new("item", DataType::Float32, false)),
        width as i32,
    )
}

/// `values` ([rows × width], row-major) as a [`f32_rows_type`] column,
/// without a copy.
pub(crate) fn f32_rows(values: Vec<f32>, width: usize) -> Result<arrow::array::FixedSizeListArray> {
    use arrow::array::{FixedSizeListArray, Float32Array};
    use arrow::datatypes::{DataType, Field};
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    Ok(FixedSizeListArray::try_new(
        item,
        width as i32,
        Arc::new(Float32Array::from(values)),
        None,
    )?)
}
