//! `artifacts/sweeps/<name>.parquet`: one row per variant of a sweep, best
//! first (by the validation figure the sweep ranked on).
//!
//! | column          | type            |                                                  |
//! |-----------------|-----------------|--------------------------------------------------|
//! | `rank`          | int32           | 1 = best by validation; failed variants last     |
//! | `variant`       | int32           | 1-based, in the order the variants ran           |
//! | `set`           | utf8            | the variant's `--set` flags, space-separated     |
//! | one per swept parameter, named by its key (`head.learning_rate`): utf8, the value as given |
//! | `status`        | utf8            | what the head stage did (ran, restored, cached), or `failed: why` |
//! | `best_epoch`    | int32, nullable | the epoch the head kept                          |
//! | `val_loss`, `val_accuracy`, `val_macro_f1` | float64, nullable | that epoch's validation figures |
//! | `test_accuracy`, `test_macro_f1` | float64, nullable | the report's test figures      |
//! | `held_out_accuracy` | float64, nullable | on the test rows sharing nothing with training (audit) |
//! | `head_seconds`  | float64, nullable | the head stage's run time (when it first ran)  |
//! | `head_key`      | utf8, nullable  | the head result's key in the store               |
//!
//! Metadata: `swept` (JSON array of the swept keys).

use std::sync::Arc;

use anyhow::Result;
use arrow::array::{ArrayRef, Float64Array, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use crate::io::{Provenance, batch_bytes};
use crate::training::EpochRow;

/// The names of [`SweepRow::figures`], in order: what a sweep's table shows.
pub const FIGURES: [&str; 6] = [
    "val loss",
    "val accuracy",
    "val macro-F1",
    "test accuracy",
    "test macro-F1",
    "held-out accuracy",
];

/// One variant's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepRow {
    /// 0-based, in run order.
    pub variant: usize,
    /// `KEY=VALUE` per swept parameter.
    pub sets: Vec<String>,
    /// 1-based; set by ranking.
    pub rank: usize,
    pub status: String,
    pub failure: Option<String>,
    pub best_epoch: Option<usize>,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub val_macro_f1: Option<f64>,
    pub test_accuracy: Option<f64>,
    pub test_macro_f1: Option<f64>,
    pub held_out_accuracy: Option<f64>,
    pub head_seconds: Option<f64>,
    pub head_key: Option<String>,
    /// Per-epoch figures (for the overlaid loss curves; not written).
    pub history: Option<Vec<EpochRow>>,
}

impl SweepRow {
    pub fn failed(variant: usize, sets: Vec<String>, why: String) -> SweepRow {
        SweepRow {
            variant,
            sets,
            rank: 0,
            status: format!("failed: {why}"),
            failure: Some(why),
            best_epoch: None,
            val_loss: None,
            val_accuracy: None,
            val_macro_f1: None,
            test_accuracy: None,
            test_macro_f1: None,
            held_out_accuracy: None,
            head_seconds: None,
            head_key: None,
            history: None,
        }
    }

    /// [`FIGURES`] of this variant, shown with 4 decimals (`-` when absent).
    pub fn figures(&self) -> [String; 6] {
        [
            self.val_loss,
            self.val_accuracy,
            self.val_macro_f1,
            self.test_accuracy,
            self.test_macro_f1,
            self.held_out_accuracy,
        ]
        .map(|v| v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into()))
    }

    /// The head's seconds, shown (`-` when absent).
    pub fn head_time(&self) -> String {
        self.head_seconds
            .map(|s| format!("{s:.2}"))
            .unwrap_or_else(|| "-".into())
    }

    /// The value this variant gave `key`.
    pub fn value_of(&self, key: &str) -> Option<&str> {
        self.sets.iter().find_map(|s| {
            let (k, v) = s.split_once('=')?;
            (k == key).then_some(v)
        })
    }
}

/// The table's Parquet bytes (the sweep stores them atomically beside its page).
pub fn encode(keys: &[String], rows: &[SweepRow]) -> Result<Vec<u8>> {
    let mut fields = vec![
        Field::new("rank", DataType::Int32, false),
        Field::new("variant", DataType::Int32, false),
        Field::new("set", DataType::Utf8, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|r| r.rank as i32),
        )),
        Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|r| r.variant as i32 + 1),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.sets.join(" ")),
        )),
    ];
    for key in keys {
        fields.push(Field::new(key, DataType::Utf8, false));
        columns.push(Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.value_of(key).unwrap_or_default()),
        )));
    }
    fields.push(Field::new("status", DataType::Utf8, false));
    columns.push(Arc::new(StringArray::from_iter_values(
        rows.iter().map(|r| r.status.as_str()),
    )));
    fields.push(Field::new("best_epoch", DataType::Int32, true));
    columns.push(Arc::new(Int32Array::from_iter(
        rows.iter().map(|r| r.best_epoch.map(|e| e as i32)),
    )));
    let floats: [(&str, fn(&SweepRow) -> Option<f64>); 7] = [
        ("val_loss", |r| r.val_loss),
        ("val_accuracy", |r| r.val_accuracy),
        ("val_macro_f1", |r| r.val_macro_f1),
        ("test_accuracy", |r| r.test_accuracy),
        ("test_macro_f1", |r| r.test_macro_f1),
        ("held_out_accuracy", |r| r.held_out_accuracy),
        ("head_seconds", |r| r.head_seconds),
    ];
    for (name, get) in floats {
        fields.push(Field::new(name, DataType::Float64, true));
        columns.push(Arc::new(Float64Array::from_iter(rows.iter().map(get))));
    }
    fields.push(Field::new("head_key", DataType::Utf8, true));
    columns.push(Arc::new(StringArray::from_iter(
        rows.iter().map(|r| r.head_key.as_deref()),
    )));
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    // Keys are parameter names (`stage.key`): Debug quoting is JSON for them.
    let swept: Vec<String> = keys.iter().map(|k| format!("{k:?}")).collect();
    let provenance = Provenance::default().with("swept", format!("[{}]", swept.join(",")));
    batch_bytes(schema, batch, &provenance)
}
