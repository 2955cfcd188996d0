//! `evaluate`: the current pipeline's classifier on another labelled CSV
//! (held-out data), as scikit-learn's classification report.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::predict::{Predictor, WINDOW};

/// The report of the trained pipeline in `artifacts` on `csv`, read with the
/// pipeline's own ingest settings (columns, label mapping, empty sentences),
/// and what the feature store served. The file is read twice as a stream:
/// once for its classes (checked against the head's before anything is
/// embedded), then scored [`WINDOW`] sentences at a time, keeping 16 bytes
/// a row (label and prediction).
pub fn evaluate(
    pipeline: &runner::Pipeline,
    artifacts: &Path,
    csv: &Path,
    ingest: &ingest::IngestParams,
) -> Result<(report::Metrics, String, embed::through_store::StoreUse)> {
    let classes = ingest::scan(csv, ingest, |_| Ok(()))?.classes;
    // Checked before anything is embedded, then again with the classes
    // read under the lock (a run may have replaced the head in between).
    to_trained(&classes, &crate::predict::trained_classes(artifacts)?, csv)?;
    let mut predictor = Predictor::open(pipeline, artifacts)?;
    let to_trained = to_trained(&classes, predictor.classes(), csv)?;
    let (mut labels, mut preds) = (Vec::new(), Vec::new());
    let mut window = Vec::with_capacity(WINDOW);
    let mut score = |window: &mut Vec<String>, preds: &mut Vec<i64>| -> Result<()> {
        if window.is_empty() {
            return Ok(());
        }
        preds.extend(predictor.score(window)?.iter().map(|p| p.class as i64));
        window.clear();
        Ok(())
    };
    ingest::scan(csv, ingest, |row| {
        let label = to_trained
            .get(row.label as usize)
            .with_context(|| format!("{}: changed while it was read; run again", csv.display()))?;
        labels.push(*label as i64);
        window.push(row.sentence.to_string());
        if window.len() == WINDOW {
            score(&mut window, &mut preds)?;
        }
        Ok(())
    })?;
    score(&mut window, &mut preds)?;
    let trained = predictor.classes();
    let metrics = report::metrics(&labels, &preds, trained);
    let text = report::classification_report(&metrics, 2);
    Ok((metrics, text, predictor.store_use().clone()))
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
