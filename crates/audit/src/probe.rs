//! Out-of-fold class probabilities for the training split: for each fold, a
//! probe trained on the other folds' cached features predicts the fold's
//! rows. No row's probabilities come from a model that saw its label.

use anyhow::{Context, Result};
use linfa::prelude::*;
use linfa_logistic::MultiLogisticRegression;
use ndarray::{Array1, Array2};
use tables::features::FeatureTable;

use crate::params::AuditParams;

/// The training rows of each fold: those outside it (`inside` false), or
/// in it.
fn fold_rows(fold_of: &[usize], fold: usize, inside: bool) -> Vec<usize> {
    (0..fold_of.len())
        .filter(|&i| (fold_of[i] == fold) == inside)
        .collect()
}

/// Row-major [rows × classes] probabilities from linear probes, each row
/// from the probe that did not see it; the training split in memory.
pub fn linear_out_of_fold(
    params: &AuditParams,
    train: &FeatureTable,
    fold_of: &[usize],
    classes: usize,
) -> Result<Vec<f32>> {
    let mut probabilities = vec![0f32; train.row_ids.len() * classes];
    // Folds are independent: one thread each, as many at a time as there
    // are cores (the fits are mostly small matrix products and line
    // searches). More threads than cores would not finish sooner, and each
    // holds its fold's training matrix (f64): five at once were 2.5 GB of
    // the audit's 3 GB at 250,000 rows.
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, params.folds.max(1));
    let folds: Vec<usize> = (0..params.folds).collect();
    let mut results: Vec<Result<Vec<f32>>> = Vec::with_capacity(params.folds);
    for group in folds.chunks(workers) {
        results.extend(std::thread::scope(|scope| {
            let handles: Vec<_> = group
                .iter()
                .map(|&fold| {
                    let fit_rows = fold_rows(fold_of, fold, false);
                    let held = fold_rows(fold_of, fold, true);
                    scope.spawn(move || linear(params, train, &fit_rows, &held, classes))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a probe thread panicked"))
                .collect::<Vec<_>>()
        }));
    }
    for (fold, result) in results.into_iter().enumerate() {
        let held = fold_rows(fold_of, fold, true);
        scatter(&mut probabilities, &held, &result?, classes);
    }
    Ok(probabilities)
}

/// Row-major [rows × classes] probabilities from the `[head]` MLP trained
/// per fold, each row from the head that did not see it. The rows are read
/// where they are (`train`, `val`: scratch copies for the stage), a fold
/// being its rows' indices.
pub fn head_out_of_fold(
    params: &AuditParams,
    head: Option<&head::HeadParams>,
    train: &dyn head::Rows,
    val: &dyn head::Rows,
    fold_of: &[usize],
    classes: usize,
) -> Result<Vec<f32>> {
    let head = head.context("audit.probe = \"head\" needs the [head] parameters")?;
    let mut probabilities = vec![0f32; train.labels().len() * classes];
    let bar = indicatif::ProgressBar::hidden();
    for fold in 0..params.folds {
        let held = fold_rows(fold_of, fold, true);
        // The head keeps its best validation epoch: on the val split, never
        // on the held-out fold.
        let summary = head::train(
            head,
            classes,
            &head::Subset::new(train, fold_rows(fold_of, fold, false)),
            val,
            &head::Subset::new(train, held.clone()),
            &bar,
        )
        .with_context(|| format!("training the head on fold {} of {}", fold + 1, params.folds))?;
        scatter(
            &mut probabilities,
            &held,
            &summary.test_probabilities,
            classes,
        );
    }
    Ok(probabilities)
}

fn scatter(into: &mut [f32], rows: &[usize], values: &[f32], classes: usize) {
    for (j, &row) in rows.iter().enumerate() {
        into[row * classes..(row + 1) * classes]
            .copy_from_slice(&values[j * classes..(j + 1) * classes]);
    }
}

fn matrix(table: &FeatureTable, rows: &[usize]) -> Array2<f64> {
    let h = table.hidden;
    Array2::from_shape_fn((rows.len(), h), |(i, j)| {
        f64::from(table.features[rows[i] * h + j])
    })
}

/// Multinomial logistic regression (linfa, L-BFGS) fitted on `fit_rows`,
/// probabilities of `held` ([held × classes]; a class absent from
/// `fit_rows` gets probability 0).
fn linear(
    params: &AuditParams,
    table: &FeatureTable,
    fit_rows: &[usize],
    held: &[usize],
    classes: usize,
) -> Result<Vec<f32>> {
    let targets: Array1<usize> = fit_rows.iter().map(|&r| table.labels[r] as usize).collect();
    let mut present: Vec<usize> = targets.to_vec();
    present.sort_unstable();
    present.dedup();
    if let [only] = present.as_slice() {
        // A fold whose other rows hold one class (tiny data): that class is
        // all such a probe could say; linfa refuses a single class.
        let mut out = vec![0f32; held.len() * classes];
        for i in 0..held.len() {
            out[i * classes + only] = 1.0;
        }
        return Ok(out);
    }
    let dataset = Dataset::new(matrix(table, fit_rows), targets);
    let model = MultiLogisticRegression::default()
        .alpha(params.l2)
        .max_iterations(params.linear_iterations)
        .fit(&dataset)
        .context("fitting the linear probe")?;
    let predicted = model.predict_probabilities(&matrix(table, held));
    let mut out = vec![0f32; held.len() * classes];
    for (column, &class) in model.classes().iter().enumerate() {
        for i in 0..held.len() {
            out[i * classes + class] = predicted[[i, column]] as f32;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two classes apart along the first feature, with a little of the
    /// second; row 5 sits with class 1 but is labelled 0.
    fn table() -> FeatureTable {
        let mut features = Vec::new();
        let mut labels = Vec::new();
        for i in 0..40 {
            let class = i % 2;
            let x = if class == 1 || i == 4 { 1.0 } else { -1.0 };
            features.extend([x, (i as f32 * 0.37).sin() * 0.2]);
            labels.push(class as i64);
        }
        FeatureTable {
            row_ids: (0..40).collect(),
            labels,
            hidden: 2,
            features,
        }
    }

    #[test]
    fn out_of_fold_linear_probabilities_come_from_probes_that_did_not_see_the_row() {
        let t = table();
        let params = AuditParams::default();
        let folds = crate::folds::assign(&t.labels, 2, 5, 1);
        let p = linear_out_of_fold(&params, &t, &folds, 2).unwrap();
        for i in 0..40 {
            let sum = p[i * 2] + p[i * 2 + 1];
            assert!((sum - 1.0).abs() < 1e-5, "row {i}: {sum}");
            let believed = usize::from(p[i * 2 + 1] > 0.5);
            let expected = if i == 4 { 1 } else { i % 2 };
            assert_eq!(believed, expected, "row {i}: {:?}", &p[i * 2..i * 2 + 2]);
        }
    }

    #[test]
    fn a_fold_whose_other_rows_hold_one_class_predicts_that_class() {
        let t = table();
        let fit: Vec<usize> = (0..40).step_by(2).collect(); // class 0 only
        let p = linear(&AuditParams::default(), &t, &fit, &[1, 3], 2).unwrap();
        assert_eq!(p, [1.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn the_head_probe_reads_its_folds_from_scratch_copies_as_from_memory() {
        let t = table();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.parquet");
        tables::features::write(&path, t.clone(), &tables::Provenance::stage("k", "{}")).unwrap();
        let scratch = head::ScratchRows::copy(&path, dir.path()).unwrap();
        let head = head::HeadParams {
            epochs: 3,
            ..head::HeadParams::default()
        };
        let params = AuditParams::default();
        let folds = crate::folds::assign(&t.labels, 2, 5, 1);
        let in_memory = head_out_of_fold(&params, Some(&head), &t, &t, &folds, 2).unwrap();
        let from_disk =
            head_out_of_fold(&params, Some(&head), &scratch, &scratch, &folds, 2).unwrap();
        let bits = |p: &[f32]| p.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&in_memory), bits(&from_disk));
        assert!(in_memory.iter().all(|p| (0.0..=1.0).contains(p)));
    }
}
