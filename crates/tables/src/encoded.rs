//! `encode/{train,val,test}.parquet`: token tensors of fixed length.
//!
//! | column           | type                              |                                     |
//! |------------------|-----------------------------------|-------------------------------------|
//! | `row_id`         | int64                             | as in the ingest split              |
//! | `label`          | int64                             | class id                            |
//! | `input_ids`      | fixed_size_list<int32>[max_len]   | [CLS] … [SEP], then pad id          |
//! | `attention_mask` | fixed_size_list<int8>[max_len]    | 1 for tokens, 0 for padding         |
//! | `n_tokens`       | int32                             | token count before truncation       |
//!
//! Rows in the order of the ingest split. Metadata: `stage_key`, `params`,
//! `max_len`, `max_len_rule`, `pad_id`.
//!
//! `encode/length_histogram.parquet` (training split): `n_tokens` int32,
//! `rows` int64, one row per token count that occurs, ascending.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, ensure};
use arrow::array::{Array, FixedSizeListArray, Int8Array, Int32Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};

use crate::io::{Provenance, fixed_list_width, read_batches, typed, write_batch};

#[derive(Debug, Clone, PartialEq)]
pub struct EncodedRow {
    pub row_id: i64,
    pub label: i64,
    /// Unpadded ids (at most `max_len`).
    pub ids: Vec<u32>,
    pub n_tokens: usize,
}

pub fn schema(max_len: usize) -> Arc<Schema> {
    let item = |t: DataType| Arc::new(Field::new("item", t, false));
    Arc::new(Schema::new(vec![
        Field::new("row_id", DataType::Int64, false),
        Field::new("label", DataType::Int64, false),
        Field::new(
            "input_ids",
            DataType::FixedSizeList(item(DataType::Int32), max_len as i32),
            false,
        ),
        Field::new(
            "attention_mask",
            DataType::FixedSizeList(item(DataType::Int8), max_len as i32),
            false,
        ),
        Field::new("n_tokens", DataType::Int32, false),
    ]))
}

pub fn write(
    path: &Path,
    rows: &[EncodedRow],
    max_len: usize,
    pad_id: u32,
    provenance: &Provenance,
) -> Result<()> {
    let mut ids = Vec::with_capacity(rows.len() * max_len);
    let mut mask = Vec::with_capacity(rows.len() * max_len);
    for r in rows {
        ensure!(
            r.ids.len() <= max_len,
            "row {} has {} ids > max_len {max_len}",
            r.row_id,
            r.ids.len()
        );
        ids.extend(r.ids.iter().map(|&i| i as i32));
        ids.extend(std::iter::repeat_n(pad_id as i32, max_len - r.ids.len()));
        mask.extend(std::iter::repeat_n(1i8, r.ids.len()));
        mask.extend(std::iter::repeat_n(0i8, max_len - r.ids.len()));
    }
    let schema = schema(max_len);
    let item = |t: DataType| Arc::new(Field::new("item", t, false));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.row_id))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.label))),
            Arc::new(FixedSizeListArray::try_new(
                item(DataType::Int32),
                max_len as i32,
                Arc::new(Int32Array::from(ids)),
                None,
            )?),
            Arc::new(FixedSizeListArray::try_new(
                item(DataType::Int8),
                max_len as i32,
                Arc::new(Int8Array::from(mask)),
                None,
            )?),
            Arc::new(Int32Array::from_iter_values(
                rows.iter().map(|r| r.n_tokens as i32),
            )),
        ],
    )?;
    write_batch(path, schema, batch, provenance)
}

/// Rows with ids unpadded again (cut at the attention mask).
pub fn read(path: &Path) -> Result<(Vec<EncodedRow>, usize)> {
    let (batches, file_schema) = read_batches(path)?;
    let max_len = fixed_list_width(&file_schema, "input_ids", path, "an encode output")?;
    ensure!(
        file_schema.fields() == schema(max_len).fields(),
        "{}: unexpected encode schema",
        path.display()
    );
    let mut rows = Vec::new();
    for batch in batches {
        let row_ids: Int64Array = typed(batch.column(0), "row_id")?;
        let labels: Int64Array = typed(batch.column(1), "label")?;
        let ids_list: FixedSizeListArray = typed(batch.column(2), "input_ids")?;
        let mask_list: FixedSizeListArray = typed(batch.column(3), "attention_mask")?;
        let ids: Int32Array = typed(ids_list.values(), "input_ids items")?;
        let mask: Int8Array = typed(mask_list.values(), "attention_mask items")?;
        let n_tokens: Int32Array = typed(batch.column(4), "n_tokens")?;
        let offset = ids_list.offset() * max_len;
        for i in 0..batch.num_rows() {
            let start = offset + i * max_len;
            let len = (0..max_len)
                .take_while(|&j| mask.value(start + j) == 1)
                .count();
            rows.push(EncodedRow {
                row_id: row_ids.value(i),
                label: labels.value(i),
                ids: (0..len).map(|j| ids.value(start + j) as u32).collect(),
                n_tokens: n_tokens.value(i) as usize,
            });
        }
    }
    Ok((rows, max_len))
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
