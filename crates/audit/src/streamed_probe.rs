//! The linear probe past `audit.probe_in_memory_rows` training rows:
//! multinomial logistic regression fitted by minibatch Adam on the training
//! features read a batch at a time, never held whole.
//!
//! Every fold's probe learns in the same passes: a minibatch's rows train
//! each probe but their own fold's. A first pass measures each feature's
//! mean and spread (the fits see standardised features, which Adam needs
//! far less tuning on than raw ones); `PROBE_EPOCHS` passes train; a last
//! one predicts each row with the probe of its own fold, which never saw
//! it. Memory: folds × classes × (H + 1) weights, twice that of Adam's
//! moments, and one batch.

use std::path::Path;

use anyhow::{Result, ensure};
use ndarray::{Array1, Array2, ArrayView2, Axis, linalg::general_mat_mul};

use crate::params::AuditParams;

/// Passes over the training rows that fit the probes.
pub const PROBE_EPOCHS: usize = 2;
/// Rows per Adam step.
const MINIBATCH: usize = 256;
/// Rows read from the features file at a time.
const READ_ROWS: usize = 16_384;
const LEARNING_RATE: f32 = 0.01;
const BETAS: (f32, f32) = (0.9, 0.999);
const EPSILON: f32 = 1e-8;

/// Row-major [rows × classes] out-of-fold probabilities of the training
/// split at `train` (rows in file order, labelled `labels`).
pub fn out_of_fold(
    params: &AuditParams,
    train: &Path,
    labels: &[i64],
    fold_of: &[usize],
    classes: usize,
) -> Result<Vec<f32>> {
    let (mean, scale) = standardisation(train)?;
    let hidden = mean.len();
    let fit_rows: Vec<usize> = (0..params.folds)
        .map(|f| fold_of.iter().filter(|&&g| g != f).count())
        .collect();
    let mut probes: Vec<Probe> = (0..params.folds)
        .map(|f| {
            Probe::new(
                classes,
                hidden,
                params.l2 as f32 / fit_rows[f].max(1) as f32,
            )
        })
        .collect();
    for _ in 0..PROBE_EPOCHS {
        for_each_minibatch(train, &mean, &scale, labels.len(), |first, x| {
            for (f, probe) in probes.iter_mut().enumerate() {
                let rows: Vec<usize> = (0..x.nrows())
                    .filter(|&i| fold_of[first + i] != f)
                    .collect();
                if !rows.is_empty() {
                    let targets: Vec<usize> =
                        rows.iter().map(|&i| labels[first + i] as usize).collect();
                    probe.step(x.select(Axis(0), &rows).view(), &targets);
                }
            }
        })?;
    }
    let mut out = vec![0f32; labels.len() * classes];
    for_each_minibatch(train, &mean, &scale, labels.len(), |first, x| {
        for i in 0..x.nrows() {
            let row = x.slice(ndarray::s![i..i + 1, ..]);
            let p = probes[fold_of[first + i]].probabilities(row);
            out[(first + i) * classes..(first + i + 1) * classes]
                .copy_from_slice(p.as_slice().expect("a standard-layout row"));
        }
    })?;
    Ok(out)
}

/// Each feature's mean and 1 / standard deviation (1 where it is constant),
/// over every training row.
fn standardisation(train: &Path) -> Result<(Array1<f32>, Array1<f32>)> {
    let (batches, hidden) = tables::features::read_batched(train, READ_ROWS)?;
    let (mut sum, mut squares) = (vec![0f64; hidden], vec![0f64; hidden]);
    let mut rows = 0usize;
    for batch in batches {
        let batch = batch?;
        for row in batch.features.chunks_exact(hidden) {
            for (j, &x) in row.iter().enumerate() {
                sum[j] += f64::from(x);
                squares[j] += f64::from(x) * f64::from(x);
            }
        }
        rows += batch.row_ids.len();
    }
    let n = rows.max(1) as f64;
    let mean: Array1<f32> = sum.iter().map(|s| (s / n) as f32).collect();
    let scale: Array1<f32> = (0..hidden)
        .map(|j| {
            let variance = (squares[j] / n - (sum[j] / n).powi(2)).max(0.0);
            if variance > 1e-12 {
                (1.0 / variance.sqrt()) as f32
            } else {
                1.0
            }
        })
        .collect();
    Ok((mean, scale))
}

/// Calls `f(first_row, standardised rows)` for every `MINIBATCH` rows in
/// file order.
fn for_each_minibatch(
    train: &Path,
    mean: &Array1<f32>,
    scale: &Array1<f32>,
    rows: usize,
    mut f: impl FnMut(usize, ArrayView2<f32>),
) -> Result<()> {
    let (batches, hidden) = tables::features::read_batched(train, READ_ROWS)?;
    let mut first = 0;
    for batch in batches {
        let batch = batch?;
        let mut x = Array2::from_shape_vec((batch.row_ids.len(), hidden), batch.features)?;
        x -= mean;
        x *= scale;
        for (k, part) in x.axis_chunks_iter(Axis(0), MINIBATCH).enumerate() {
            f(first + k * MINIBATCH, part);
        }
        first += x.nrows();
    }
    ensure!(
        first == rows,
        "{} holds {first} rows, not {rows}",
        train.display()
    );
    Ok(())
}

/// One fold's logistic regression and its Adam state.
struct Probe {
    /// [classes × (H + 1)]: the weights, then the bias.
    weights: Array2<f32>,
    first_moment: Array2<f32>,
    second_moment: Array2<f32>,
    steps: i32,
    /// The L2 penalty on the mean loss (`l2` on the summed loss over the
    /// fold's training rows).
    l2: f32,
}

impl Probe {
    fn new(classes: usize, hidden: usize, l2: f32) -> Probe {
        let zeros = || Array2::zeros((classes, hidden + 1));
        Probe {
            weights: zeros(),
            first_moment: zeros(),
            second_moment: zeros(),
            steps: 0,
            l2,
        }
    }

    /// Class probabilities of `x`'s rows ([rows × classes]).
    fn probabilities(&self, x: ArrayView2<f32>) -> Array2<f32> {
        let h = x.ncols();
        let w = self.weights.slice(ndarray::s![.., ..h]);
        let mut logits = Array2::zeros((x.nrows(), w.nrows()));
        general_mat_mul(1.0, &x, &w.t(), 0.0, &mut logits);
        logits += &self.weights.column(h);
        for mut row in logits.rows_mut() {
            let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            row.mapv_inplace(|v| (v - max).exp());
            let total = row.sum();
            row /= total;
        }
        logits
    }

    /// One Adam step on the mean log-loss of `x`'s rows plus the penalty.
    fn step(&mut self, x: ArrayView2<f32>, targets: &[usize]) {
        let h = x.ncols();
        let mut error = self.probabilities(x);
        for (i, &t) in targets.iter().enumerate() {
            error[[i, t]] -= 1.0;
        }
        error /= x.nrows() as f32;
        let mut gradient = Array2::zeros(self.weights.raw_dim());
        {
            let mut g = gradient.slice_mut(ndarray::s![.., ..h]);
            general_mat_mul(1.0, &error.t(), &x, 0.0, &mut g);
            g.scaled_add(self.l2, &self.weights.slice(ndarray::s![.., ..h]));
        }
        gradient.column_mut(h).assign(&error.sum_axis(Axis(0)));
        self.steps += 1;
        let (b1, b2) = BETAS;
        self.first_moment *= b1;
        self.first_moment.scaled_add(1.0 - b1, &gradient);
        gradient.mapv_inplace(|g| g * g);
        self.second_moment *= b2;
        self.second_moment.scaled_add(1.0 - b2, &gradient);
        let (c1, c2) = (1.0 - b1.powi(self.steps), 1.0 - b2.powi(self.steps));
        ndarray::Zip::from(&mut self.weights)
            .and(&self.first_moment)
            .and(&self.second_moment)
            .for_each(|w, &m, &v| {
                *w -= LEARNING_RATE * (m / c1) / ((v / c2).sqrt() + EPSILON);
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tables::features::FeatureTable;

    /// Three classes along three directions, far from the origin and
    /// unevenly scaled (as raw features are); every 25th row mislabelled.
    fn write_rows(dir: &Path, n: usize) -> (std::path::PathBuf, Vec<i64>, Vec<usize>) {
        let noise = crate::near_duplicate::tests::random_rows(n, 4, 5);
        let mut features = Vec::new();
        let mut labels = Vec::new();
        for (i, e) in noise.iter().enumerate() {
            let class = i % 3;
            let mut x = [10.0 + e[0], -3.0 + e[1], 0.01 * e[2], 100.0 * e[3]];
            x[class] += 2.0;
            features.extend(x);
            labels.push(if i % 25 == 0 {
                ((class + 1) % 3) as i64
            } else {
                class as i64
            });
        }
        let path = dir.join("train.parquet");
        tables::features::write(
            &path,
            FeatureTable {
                row_ids: (0..n as i64).collect(),
                labels: labels.clone(),
                hidden: 4,
                features,
            },
            &tables::Provenance::default(),
        )
        .unwrap();
        let folds = crate::folds::assign(&labels, 3, 5, 1);
        (path, labels, folds)
    }

    #[test]
    fn streamed_probes_learn_the_classes_without_seeing_their_own_rows() {
        let dir = tempfile::tempdir().unwrap();
        let (path, labels, folds) = write_rows(dir.path(), 3000);
        let p = out_of_fold(&AuditParams::default(), &path, &labels, &folds, 3).unwrap();
        let mut believed_true_class = 0;
        for i in 0..3000 {
            let row = &p[i * 3..i * 3 + 3];
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4, "row {i}");
            let best = crate::confident::first_argmax(row.iter().map(|&v| f64::from(v)));
            believed_true_class += usize::from(best == i % 3);
        }
        // The mislabelled rows too: no probe was taught their wrong label.
        assert!(believed_true_class >= 2900, "{believed_true_class} of 3000");
    }

    #[test]
    fn the_same_rows_give_the_same_probabilities() {
        let dir = tempfile::tempdir().unwrap();
        let (path, labels, folds) = write_rows(dir.path(), 600);
        let p = out_of_fold(&AuditParams::default(), &path, &labels, &folds, 3).unwrap();
        let again = out_of_fold(&AuditParams::default(), &path, &labels, &folds, 3).unwrap();
        assert_eq!(p, again, "sequential passes in file order: no randomness");
    }
}
