//! `head/history.parquet` and `head/test_predictions.parquet`.
//!
//! history: `epoch` int32, `train_loss` float64, `val_loss` float64,
//! `val_accuracy` float64, `seconds` float64; metadata `best_epoch`.
//!
//! test_predictions: `row_id` int64, `label` int64, `pred` int64,
//! `probabilities` fixed_size_list<float32>[K] (class order = class ids);
//! rows in the order of the test split. Metadata `classes`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use arrow::array::{Float64Array, Int32Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};

use crate::io::{Provenance, f32_rows, f32_rows_type, write_batch};

#[derive(Debug, Clone, PartialEq)]
pub struct EpochRow {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub seconds: f64,
}

pub fn write_history(path: &Path, rows: &[EpochRow], provenance: &Provenance) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("epoch", DataType::Int32, false),
        Field::new("train_loss", DataType::Float64, false),
        Field::new("val_loss", DataType::Float64, false),
        Field::new("val_accuracy", DataType::Float64, false),
        Field::new("seconds", DataType::Float64, false),
    ]));
    let f64s =
        |f: fn(&EpochRow) -> f64| Arc::new(Float64Array::from_iter_values(rows.iter().map(f)));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int32Array::from_iter_values(
                rows.iter().map(|r| r.epoch as i32),
            )),
            f64s(|r| r.train_loss),
            f64s(|r| r.val_loss),
            f64s(|r| r.val_accuracy),
            f64s(|r| r.seconds),
        ],
    )?;
    write_batch(path, schema, batch, provenance)
}

pub fn write_predictions(
    path: &Path,
    row_ids: &[i64],
    labels: &[i64],
    probabilities: &[f32],
    classes: usize,
    provenance: &Provenance,
) -> Result<()> {
    let preds: Vec<i64> = probabilities
        .chunks(classes)
        .map(|p| {
            (0..classes)
                .max_by(|&a, &b| p[a].total_cmp(&p[b]))
                .unwrap_or(0) as i64
        })
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("row_id", DataType::Int64, false),
        Field::new("label", DataType::Int64, false),
        Field::new("pred", DataType::Int64, false),
        Field::new("probabilities", f32_rows_type(classes), false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(row_ids.to_vec())),
            Arc::new(Int64Array::from(labels.to_vec())),
            Arc::new(Int64Array::from(preds)),
            Arc::new(f32_rows(probabilities.to_vec(), classes)?),
        ],
    )?;
    write_batch(path, schema, batch, provenance)
}

/// The per-epoch rows of a history file and its `best_epoch` metadata.
pub fn read_history(path: &Path) -> Result<(Vec<EpochRow>, usize)> {
    let (batches, _) = crate::io::read_batches(path)?;
    let mut rows = Vec::new();
    for batch in batches {
        let epoch: Int32Array = crate::io::named(&batch, "epoch", path)?;
        let f64s = |name: &str| -> Result<Float64Array> { crate::io::named(&batch, name, path) };
        let (train, val, acc, secs) = (
            f64s("train_loss")?,
            f64s("val_loss")?,
            f64s("val_accuracy")?,
            f64s("seconds")?,
        );
        for i in 0..batch.num_rows() {
            rows.push(EpochRow {
                epoch: epoch.value(i) as usize,
                train_loss: train.value(i),
                val_loss: val.value(i),
                val_accuracy: acc.value(i),
                seconds: secs.value(i),
            });
        }
    }
    let best_epoch = crate::io::metadata_value(path, "best_epoch")?
        .parse()
        .map_err(|e| anyhow::anyhow!("{}: bad best_epoch metadata: {e}", path.display()))?;
    Ok((rows, best_epoch))
}

/// (labels, preds) of a test_predictions file.
pub fn read_predictions(path: &Path) -> Result<(Vec<i64>, Vec<i64>)> {
    let p = read_prediction_rows(path)?;
    Ok((p.labels, p.preds))
}

/// Every column of a test_predictions file.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    pub row_ids: Vec<i64>,
    pub labels: Vec<i64>,
    pub preds: Vec<i64>,
    /// Row-major [rows × classes].
    pub probabilities: Vec<f32>,
    pub classes: usize,
}

/// A test_predictions file whole, probabilities included.
pub fn read_prediction_rows(path: &Path) -> Result<Predictions> {
    let (batches, schema) = crate::io::read_batches(path)?;
    let classes = crate::io::fixed_list_width(&schema, "probabilities", path, "a head output")?;
    let mut out = Predictions {
        row_ids: Vec::new(),
        labels: Vec::new(),
        preds: Vec::new(),
        probabilities: Vec::new(),
        classes,
    };
    for batch in batches {
        let col = |name: &str| -> Result<Int64Array> { crate::io::named(&batch, name, path) };
        out.row_ids.extend(col("row_id")?.values().iter());
        out.labels.extend(col("label")?.values().iter());
        out.preds.extend(col("pred")?.values().iter());
        let probabilities = crate::io::named_column(&batch, "probabilities", path)?;
        crate::io::extend_f32_rows(
            &mut out.probabilities,
            probabilities,
            classes,
            "probabilities",
        )?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_round_trips_with_its_best_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.parquet");
        let rows: Vec<EpochRow> = (1..=3)
            .map(|e| EpochRow {
                epoch: e,
                train_loss: 1.0 / e as f64,
                val_loss: 0.5 + (e as f64 - 2.0).abs(),
                val_accuracy: 0.25 * e as f64,
                seconds: 0.125,
            })
            .collect();
        let prov = Provenance::stage("k", "{}").with("best_epoch", "2");
        write_history(&path, &rows, &prov).unwrap();
        assert_eq!(read_history(&path).unwrap(), (rows, 2));
    }

    #[test]
    fn history_without_best_epoch_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.parquet");
        write_history(&path, &[], &Provenance::stage("k", "{}")).unwrap();
        let err = read_history(&path).unwrap_err().to_string();
        assert!(
            err.contains("history.parquet") && err.contains("best_epoch"),
            "{err}"
        );
    }

    #[test]
    fn predictions_round_trip_with_probabilities() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test_predictions.parquet");
        let probabilities = [0.25, 0.75, 0.9, 0.1, 0.5, 0.5];
        let prov = Provenance::stage("k", "{}");
        write_predictions(&path, &[7, 3, 9], &[1, 0, 1], &probabilities, 2, &prov).unwrap();
        let read = read_prediction_rows(&path).unwrap();
        assert_eq!(read.row_ids, [7, 3, 9]);
        assert_eq!(read.labels, [1, 0, 1]);
        // A tie goes to the later class (`max_by` keeps the last maximum).
        assert_eq!(read.preds, [1, 0, 1]);
        assert_eq!(read.probabilities, probabilities);
        assert_eq!(read.classes, 2);
    }
}
