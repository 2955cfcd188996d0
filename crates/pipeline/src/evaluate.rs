//! `evaluate`: the current pipeline's classifier on another labelled CSV
//! (held-out data), as scikit-learn's classification report.

use std::path::Path;

use anyhow::{Result, bail};

/// The report of the trained pipeline in `artifacts` on `csv`, read with the
/// pipeline's own ingest settings (columns, label mapping, empty sentences),
/// and what the feature store served.
pub fn evaluate(
    pipeline: &runner::Pipeline,
    artifacts: &Path,
    csv: &Path,
    ingest: &ingest::IngestParams,
) -> Result<(report::Metrics, String, embed::through_store::StoreUse)> {
    let table = ingest::read_csv(csv, ingest)?;
    // Checked before anything is embedded, then again with the classes
    // read under the lock (a run may have replaced the head in between).
    to_trained(
        &table.classes,
        &crate::predict::trained_classes(artifacts)?,
        csv,
    )?;
    let sentences: Vec<String> = table.rows.iter().map(|r| r.sentence.clone()).collect();
    let crate::predict::Predicted {
        predictions,
        classes: trained,
        used,
    } = crate::predict::predict(pipeline, artifacts, &sentences)?;
    let to_trained = to_trained(&table.classes, &trained, csv)?;
    let labels: Vec<i64> = table
        .rows
        .iter()
        .map(|r| to_trained[r.label as usize] as i64)
        .collect();
    let preds: Vec<i64> = predictions.iter().map(|p| p.class as i64).collect();
    let metrics = report::metrics(&labels, &preds, &trained);
    let text = report::classification_report(&metrics, 2);
    Ok((metrics, text, used))
}

/// Class ids of the file are its own: matched to the trained ones by name.
fn to_trained(classes: &[String], trained: &[String], csv: &Path) -> Result<Vec<usize>> {
    classes
        .iter()
        .map(|name| match trained.iter().position(|t| t == name) {
            Some(id) => Ok(id),
            None => bail!(
                "{}: label {name:?} is not a class the head was trained on ({trained:?}); \
                 use the same ingest.labels / num_classes as the training data",
                csv.display()
            ),
        })
        .collect()
}
