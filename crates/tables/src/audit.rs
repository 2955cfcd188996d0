//! The audit stage's tables.
//!
//! `audit/overlap.parquet`: one row per (row of a held-out split, earlier
//! split) pair that overlaps, with the strongest kind of overlap found:
//!
//! | column            | type    |                                                        |
//! |-------------------|---------|--------------------------------------------------------|
//! | `split`           | utf8    | the row's split: `val` or `test`                       |
//! | `row_id`          | int64   | as in ingest                                           |
//! | `sentence`        | utf8    | the row's text                                         |
//! | `against`         | utf8    | the split it overlaps: `train`, or `val` (for test)    |
//! | `kind`            | utf8    | `exact`, `inside`, `contains`, `near_duplicate`        |
//! | `match_row_id`    | int64   | a row of `against` that shows it                       |
//! | `match_sentence`  | utf8    | that row's text                                        |
//! | `cosine`          | float32 | the highest feature cosine with any row of `against`   |
//!
//! `audit/label_issues.parquet`: the training rows confident learning flags,
//! least self-confident first: `row_id` int64, `sentence` utf8, `given` int64
//! (the label), `suggested` int64 (the class the probe believes),
//! `self_confidence` float32 (the out-of-fold probability of `given`).
//!
//! `audit/out_of_fold.parquet`: every training row's out-of-fold class
//! probabilities: `row_id` int64, `label` int64, `fold` int32,
//! `probabilities` fixed_size_list<float32>[K].
//!
//! All three carry the stage's provenance and `classes` metadata;
//! `overlap.parquet` also `split_rows` and `feature_search` (a JSON list of
//! [`FeatureSearch`]: how each pair's features were searched and, where
//! approximately, the recall measured).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow::array::{Array, Float32Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use crate::io::{
    BatchWriter, Encoding, Provenance, batch_reader, extend_f32_rows, f32_rows, f32_rows_type,
    fixed_list_width, named, named_column, read_batches, write_batch,
};

/// One row of `overlap.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct OverlapRow {
    pub split: String,
    pub row_id: i64,
    pub sentence: String,
    pub against: String,
    pub kind: String,
    pub match_row_id: i64,
    pub match_sentence: String,
    pub cosine: f32,
}

/// How the audit searched one (held-out split, earlier split) pair for each
/// row's most similar features.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FeatureSearch {
    pub split: String,
    pub against: String,
    /// `None`: exact, every pair of rows compared.
    pub approximate: Option<Approximate>,
}

/// An approximate search (clusters of the earlier split), and what a
/// sample of held-out rows searched exactly too showed of it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Approximate {
    pub clusters: usize,
    /// Clusters searched per held-out row: `audit.search_probes`, or more
    /// where fewer did not reach `audit.search_recall` on the tuning rows.
    pub probes: usize,
    /// Other held-out rows (none of `sampled`) searched exactly too, that
    /// chose `probes`: 0 when `audit.search_recall` is 0.
    #[serde(default)]
    pub tuning_sampled: usize,
    /// Of those, rows whose most similar earlier row `probes` found.
    #[serde(default)]
    pub tuning_found: usize,
    /// Held-out rows also searched exactly.
    pub sampled: usize,
    /// Of those, rows whose most similar earlier row the search found.
    pub found: usize,
    /// Sampled rows whose exact most similar row is a near-duplicate.
    pub near_duplicates: usize,
    /// Of those, rows the search also found a near-duplicate for.
    pub near_duplicates_found: usize,
}

impl Approximate {
    /// The fraction of sampled rows whose most similar row was found.
    pub fn recall(&self) -> f64 {
        if self.sampled == 0 {
            return 1.0;
        }
        self.found as f64 / self.sampled as f64
    }
}

/// The `feature_search` metadata of `overlap.parquet`.
pub fn read_feature_search(path: &Path) -> Result<Vec<FeatureSearch>> {
    let text = crate::io::metadata_value(path, "feature_search")?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: feature_search metadata", path.display()))
}

/// One row of `label_issues.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelIssueRow {
    pub row_id: i64,
    pub sentence: String,
    pub given: i64,
    pub suggested: i64,
    pub self_confidence: f32,
}

/// `out_of_fold.parquet` whole.
#[derive(Debug, Clone, PartialEq)]
pub struct OutOfFold {
    pub row_ids: Vec<i64>,
    pub labels: Vec<i64>,
    pub folds: Vec<i32>,
    /// Row-major [rows × classes].
    pub probabilities: Vec<f32>,
    pub classes: usize,
}

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> Arc<dyn Array> {
    Arc::new(StringArray::from_iter_values(values))
}

fn ints(values: impl Iterator<Item = i64>) -> Arc<dyn Array> {
    Arc::new(Int64Array::from_iter_values(values))
}

/// Rows per row group of `overlap.parquet` and `label_issues.parquet` as
/// their writers flush them: two sentences a row, so a group in memory is
/// a few MB whatever the table's length.
pub const ROWS_PER_GROUP: usize = 16_384;

fn overlap_schema() -> Arc<Schema> {
    let text = |name| Field::new(name, DataType::Utf8, false);
    let int = |name| Field::new(name, DataType::Int64, false);
    Arc::new(Schema::new(vec![
        text("split"),
        int("row_id"),
        text("sentence"),
        text("against"),
        text("kind"),
        int("match_row_id"),
        text("match_sentence"),
        Field::new("cosine", DataType::Float32, false),
    ]))
}

fn overlap_batch(rows: &[OverlapRow]) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(
        overlap_schema(),
        vec![
            strings(rows.iter().map(|r| r.split.as_str())),
            ints(rows.iter().map(|r| r.row_id)),
            strings(rows.iter().map(|r| r.sentence.as_str())),
            strings(rows.iter().map(|r| r.against.as_str())),
            strings(rows.iter().map(|r| r.kind.as_str())),
            ints(rows.iter().map(|r| r.match_row_id)),
            strings(rows.iter().map(|r| r.match_sentence.as_str())),
            Arc::new(Float32Array::from_iter_values(
                rows.iter().map(|r| r.cosine),
            )),
        ],
    )?)
}

fn label_issues_schema() -> Arc<Schema> {
    let int = |name| Field::new(name, DataType::Int64, false);
    Arc::new(Schema::new(vec![
        int("row_id"),
        Field::new("sentence", DataType::Utf8, false),
        int("given"),
        int("suggested"),
        Field::new("self_confidence", DataType::Float32, false),
    ]))
}

fn label_issues_batch(rows: &[LabelIssueRow]) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(
        label_issues_schema(),
        vec![
            ints(rows.iter().map(|r| r.row_id)),
            strings(rows.iter().map(|r| r.sentence.as_str())),
            ints(rows.iter().map(|r| r.given)),
            ints(rows.iter().map(|r| r.suggested)),
            Arc::new(Float32Array::from_iter_values(
                rows.iter().map(|r| r.self_confidence),
            )),
        ],
    )?)
}

/// One of the audit's row tables written as its rows are made, a row group
/// of [`ROWS_PER_GROUP`] rows at a time: [`OverlapWriter`] and
/// [`LabelIssueWriter`].
pub struct TableWriter<R> {
    writer: BatchWriter,
    batch: fn(&[R]) -> Result<RecordBatch>,
}

pub type OverlapWriter = TableWriter<OverlapRow>;
pub type LabelIssueWriter = TableWriter<LabelIssueRow>;

impl TableWriter<OverlapRow> {
    pub fn overlap(path: &Path, provenance: &Provenance) -> Result<OverlapWriter> {
        TableWriter::create(path, overlap_schema(), overlap_batch, provenance)
    }
}

impl TableWriter<LabelIssueRow> {
    pub fn label_issues(path: &Path, provenance: &Provenance) -> Result<LabelIssueWriter> {
        TableWriter::create(path, label_issues_schema(), label_issues_batch, provenance)
    }
}

impl<R> TableWriter<R> {
    fn create(
        path: &Path,
        schema: Arc<Schema>,
        batch: fn(&[R]) -> Result<RecordBatch>,
        provenance: &Provenance,
    ) -> Result<TableWriter<R>> {
        let writer =
            BatchWriter::create(path, schema, provenance, Encoding::Compact, ROWS_PER_GROUP)?;
        Ok(TableWriter { writer, batch })
    }

    pub fn write(&mut self, rows: &[R]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.writer.write((self.batch)(rows)?)
    }

    /// Closes the file and syncs it to disk.
    pub fn finish(self) -> Result<()> {
        self.writer.finish()
    }
}

/// `overlap.parquet` from rows in memory (a writer's one batch).
pub fn write_overlap(path: &Path, rows: &[OverlapRow], provenance: &Provenance) -> Result<()> {
    let mut writer = OverlapWriter::overlap(path, provenance)?;
    writer.write(rows)?;
    writer.finish()
}

/// The rows of `overlap.parquet`, `rows` at a time, read as they are asked
/// for.
pub fn read_overlap_batched(
    path: &Path,
    rows: usize,
) -> Result<impl Iterator<Item = Result<Vec<OverlapRow>>> + use<>> {
    let (batches, _) = batch_reader(path, rows)?;
    let path = path.to_path_buf();
    Ok(batches.map(move |batch| overlap_rows(&batch?, &path)))
}

/// `overlap.parquet` whole (tests, small tables).
pub fn read_overlap(path: &Path) -> Result<Vec<OverlapRow>> {
    let mut rows = Vec::new();
    for batch in read_overlap_batched(path, ROWS_PER_GROUP)? {
        rows.extend(batch?);
    }
    Ok(rows)
}

fn overlap_rows(batch: &RecordBatch, path: &Path) -> Result<Vec<OverlapRow>> {
    let text = |name: &str| -> Result<StringArray> { named(batch, name, path) };
    let int = |name: &str| -> Result<Int64Array> { named(batch, name, path) };
    let (split, sentence, against, kind, match_sentence) = (
        text("split")?,
        text("sentence")?,
        text("against")?,
        text("kind")?,
        text("match_sentence")?,
    );
    let (row_id, match_row_id) = (int("row_id")?, int("match_row_id")?);
    let cosine: Float32Array = named(batch, "cosine", path)?;
    Ok((0..batch.num_rows())
        .map(|i| OverlapRow {
            split: split.value(i).to_string(),
            row_id: row_id.value(i),
            sentence: sentence.value(i).to_string(),
            against: against.value(i).to_string(),
            kind: kind.value(i).to_string(),
            match_row_id: match_row_id.value(i),
            match_sentence: match_sentence.value(i).to_string(),
            cosine: cosine.value(i),
        })
        .collect())
}

/// `label_issues.parquet` from rows in memory (a writer's one batch).
pub fn write_label_issues(
    path: &Path,
    rows: &[LabelIssueRow],
    provenance: &Provenance,
) -> Result<()> {
    let mut writer = LabelIssueWriter::label_issues(path, provenance)?;
    writer.write(rows)?;
    writer.finish()
}

/// The first `limit` rows of `label_issues.parquet` (the least
/// self-confident, as the audit writes them) and how many rows it has.
pub fn read_label_issues_head(path: &Path, limit: usize) -> Result<(Vec<LabelIssueRow>, usize)> {
    let total = crate::io::row_count(path)?;
    let (batches, _) = batch_reader(path, limit.clamp(1, ROWS_PER_GROUP))?;
    let mut rows = Vec::new();
    for batch in batches {
        if rows.len() >= limit {
            break;
        }
        rows.extend(label_issue_rows(&batch?, path)?);
    }
    rows.truncate(limit);
    Ok((rows, total))
}

/// `label_issues.parquet` whole (tests, small tables).
pub fn read_label_issues(path: &Path) -> Result<Vec<LabelIssueRow>> {
    Ok(read_label_issues_head(path, usize::MAX)?.0)
}

fn label_issue_rows(batch: &RecordBatch, path: &Path) -> Result<Vec<LabelIssueRow>> {
    let int = |name: &str| -> Result<Int64Array> { named(batch, name, path) };
    let (row_id, given, suggested) = (int("row_id")?, int("given")?, int("suggested")?);
    let sentence: StringArray = named(batch, "sentence", path)?;
    let confidence: Float32Array = named(batch, "self_confidence", path)?;
    Ok((0..batch.num_rows())
        .map(|i| LabelIssueRow {
            row_id: row_id.value(i),
            sentence: sentence.value(i).to_string(),
            given: given.value(i),
            suggested: suggested.value(i),
            self_confidence: confidence.value(i),
        })
        .collect())
}

pub fn write_out_of_fold(path: &Path, oof: OutOfFold, provenance: &Provenance) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("row_id", DataType::Int64, false),
        Field::new("label", DataType::Int64, false),
        Field::new("fold", DataType::Int32, false),
        Field::new("probabilities", f32_rows_type(oof.classes), false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(oof.row_ids)),
            Arc::new(Int64Array::from(oof.labels)),
            Arc::new(Int32Array::from(oof.folds)),
            Arc::new(f32_rows(oof.probabilities, oof.classes)?),
        ],
    )?;
    write_batch(path, schema, batch, provenance)
}

pub fn read_out_of_fold(path: &Path) -> Result<OutOfFold> {
    let (batches, schema) = read_batches(path)?;
    let classes = fixed_list_width(&schema, "probabilities", path, "an audit output")?;
    let mut out = OutOfFold {
        row_ids: Vec::new(),
        labels: Vec::new(),
        folds: Vec::new(),
        probabilities: Vec::new(),
        classes,
    };
    for batch in batches {
        let row_id: Int64Array = named(&batch, "row_id", path)?;
        let label: Int64Array = named(&batch, "label", path)?;
        let fold: Int32Array = named(&batch, "fold", path)?;
        out.row_ids.extend(row_id.values().iter());
        out.labels.extend(label.values().iter());
        out.folds.extend(fold.values().iter());
        extend_f32_rows(
            &mut out.probabilities,
            named_column(&batch, "probabilities", path)?,
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
    fn the_three_tables_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let prov = Provenance::stage("k", "{}");
        let overlap = vec![OverlapRow {
            split: "test".into(),
            row_id: 4,
            sentence: "a good film".into(),
            against: "train".into(),
            kind: "inside".into(),
            match_row_id: 9,
            match_sentence: "A good film , really".into(),
            cosine: 0.93,
        }];
        let path = dir.path().join("o.parquet");
        write_overlap(&path, &overlap, &prov).unwrap();
        assert_eq!(read_overlap(&path).unwrap(), overlap);

        let issues = vec![LabelIssueRow {
            row_id: 2,
            sentence: "awful".into(),
            given: 1,
            suggested: 0,
            self_confidence: 0.01,
        }];
        let path = dir.path().join("l.parquet");
        write_label_issues(&path, &issues, &prov).unwrap();
        assert_eq!(read_label_issues(&path).unwrap(), issues);

        // Written in pieces past a row group; read back whole, and the
        // head of the issues with the count.
        let many: Vec<LabelIssueRow> = (0..40_000)
            .map(|i| LabelIssueRow {
                row_id: i,
                sentence: format!("row {i}"),
                given: i % 3,
                suggested: (i + 1) % 3,
                self_confidence: i as f32 / 40_000.0,
            })
            .collect();
        let mut writer = LabelIssueWriter::label_issues(&path, &prov).unwrap();
        for piece in many.chunks(9_999) {
            writer.write(piece).unwrap();
        }
        writer.finish().unwrap();
        assert_eq!(read_label_issues(&path).unwrap(), many);
        let (head, total) = read_label_issues_head(&path, 10).unwrap();
        assert_eq!((head.as_slice(), total), (&many[..10], 40_000));
        let overlaps: Vec<OverlapRow> = (0..40_000)
            .map(|i| OverlapRow {
                row_id: i,
                match_row_id: 2 * i,
                cosine: 0.5,
                ..overlap[0].clone()
            })
            .collect();
        let path = dir.path().join("o2.parquet");
        let mut writer = OverlapWriter::overlap(&path, &prov).unwrap();
        for piece in overlaps.chunks(20_000) {
            writer.write(piece).unwrap();
        }
        writer.finish().unwrap();
        let batches: Vec<usize> = read_overlap_batched(&path, 16_384)
            .unwrap()
            .map(|b| b.unwrap().len())
            .collect();
        assert_eq!(batches, [16_384, 16_384, 7_232]);
        assert_eq!(read_overlap(&path).unwrap(), overlaps);

        let oof = OutOfFold {
            row_ids: vec![2, 5],
            labels: vec![1, 0],
            folds: vec![0, 1],
            probabilities: vec![0.99, 0.01, 0.7, 0.3],
            classes: 2,
        };
        let path = dir.path().join("f.parquet");
        write_out_of_fold(&path, oof.clone(), &prov).unwrap();
        assert_eq!(read_out_of_fold(&path).unwrap(), oof);
    }
}
