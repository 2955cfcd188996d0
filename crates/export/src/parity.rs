//! The export's parity check: the test split scored from the written files
//! alone must reproduce the classifier the pipeline trained.
//!
//! fp32 and int8: against the head stage's own test predictions (features
//! from the embed stage, head in burn): every class equal, every
//! probability within [`TOLERANCE`]. Measured differences are ~2e-7. An
//! int8 graph quantizes activations per row, so a text's features do not
//! depend on the texts batched with it, and the embed stage's batches
//! (mixed with the other splits) give the same features as the export's.
//!
//! fp16: the same bound, but against the model stage's graph and the head
//! recomputed here in exactly the batches the exported graph is scored in:
//! half-precision sums depend on the padded length of a batch, and the
//! embed stage batched the test rows with the other splits. How far it is
//! from the head stage is still reported.
//!
//! On a stratified sample of the test split: `export.parity_rows` rows
//! ([`PARITY_ROWS`] unless set), all of them below that, so that the check
//! costs the same at any size. The sample is the same for the same test
//! split: within each class, rows evenly spaced ([`stratified_sample`]).

use std::path::Path;

use anyhow::{Result, bail};

use crate::folder::{self, Classifier, Ids};
use crate::{ExportInputs, Pool, TOLERANCE};

/// Test rows the parity check scores unless `export.parity_rows` says
/// otherwise: 10,000 rows take ~10 s on two cores (the model, tokenizing
/// and the head once), and a disagreement shows in far fewer.
pub const PARITY_ROWS: usize = 10_000;

/// What the parity check found.
pub struct Parity {
    /// Rows scored, of `test_rows`.
    pub rows: usize,
    pub test_rows: usize,
    pub largest_difference: f32,
    /// What it was compared with.
    pub reference: &'static str,
    /// For fp16: agreement with the head stage's own predictions.
    pub against_head: Option<String>,
}

impl Parity {
    pub fn summary(&self) -> String {
        let rows = if self.rows == self.test_rows {
            format!("all {} test rows", self.rows)
        } else {
            format!(
                "a stratified sample of {} of the {} test rows",
                self.rows, self.test_rows
            )
        };
        format!(
            "parity with {} on {rows}: every class equal, largest probability \
             difference {:.1e} (bound {TOLERANCE:.0e})",
            self.reference, self.largest_difference
        )
    }
}

/// Scores a sample of the test split from the files in `out_dir` and
/// compares.
pub fn check(inputs: &ExportInputs, out_dir: &Path) -> Result<Parity> {
    let all = tables::training::read_prediction_rows(inputs.test_predictions)?;
    let test_rows = all.row_ids.len();
    let sample = stratified_sample(&all.labels, inputs.parity_rows);
    let texts = sample_texts(inputs, &all.row_ids, &sample)?;
    let k = all.classes;
    let head = tables::training::Predictions {
        row_ids: sample.iter().map(|&i| all.row_ids[i]).collect(),
        labels: sample.iter().map(|&i| all.labels[i]).collect(),
        preds: sample.iter().map(|&i| all.preds[i]).collect(),
        probabilities: sample
            .iter()
            .flat_map(|&i| all.probabilities[i * k..(i + 1) * k].iter().copied())
            .collect(),
        classes: k,
    };
    drop(all);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut classifier = Classifier::open(out_dir, threads)?;
    let ids = classifier.tokenize(&texts)?;
    let (exported, _) = classifier.score_ids(&ids, folder::BATCH_TOKENS)?;
    let row_ids = &head.row_ids;
    if inputs.precision != model::Precision::Fp16 {
        let largest = compare(&exported, &head.probabilities, k, row_ids, "the head")?;
        return Ok(Parity {
            rows: sample.len(),
            test_rows,
            largest_difference: largest,
            reference: "the head stage's predictions",
            against_head: None,
        });
    }
    let recomputed = recompute(inputs, &ids, classifier.pad_id(), threads)?;
    let largest = compare(
        &exported,
        &recomputed,
        k,
        row_ids,
        "the recomputed classifier",
    )?;
    let classes = folder::argmax(&exported, k);
    let agree = classes
        .iter()
        .zip(&head.preds)
        .filter(|(a, b)| **a as i64 == **b)
        .count();
    let furthest = exported
        .iter()
        .zip(&head.probabilities)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    Ok(Parity {
        rows: sample.len(),
        test_rows,
        largest_difference: largest,
        reference: "the model graph and head recomputed in the same batches",
        against_head: Some(format!(
            "{:?} sums depend on the padded length of a batch: against the head stage's own \
             predictions (other batches) {agree} of {} classes equal, probabilities up to \
             {furthest:.1e} apart",
            inputs.precision,
            sample.len()
        )),
    })
}

/// Positions (ascending) of at most `wanted` of `labels`, each class
/// represented in proportion (largest remainders), its rows evenly spaced
/// through the split; every position when there are no more than `wanted`.
pub fn stratified_sample(labels: &[i64], wanted: usize) -> Vec<usize> {
    let n = labels.len();
    if n <= wanted {
        return (0..n).collect();
    }
    let mut by_class: std::collections::BTreeMap<i64, Vec<usize>> = Default::default();
    for (i, &label) in labels.iter().enumerate() {
        by_class.entry(label).or_default().push(i);
    }
    // Quotas by largest remainder: floor(wanted · n_c / n), then one more
    // for the classes with the largest fractional parts (ties: lower label).
    let mut quotas: Vec<(i64, usize, usize)> = by_class
        .iter()
        .map(|(&c, rows)| {
            let exact = wanted * rows.len();
            (c, exact / n, exact % n)
        })
        .collect();
    let short = wanted - quotas.iter().map(|q| q.1).sum::<usize>();
    let mut order: Vec<usize> = (0..quotas.len()).collect();
    order.sort_by_key(|&q| std::cmp::Reverse(quotas[q].2));
    for &q in order.iter().take(short) {
        quotas[q].1 += 1;
    }
    let mut sample: Vec<usize> = quotas
        .iter()
        .flat_map(|&(c, quota, _)| {
            let rows = &by_class[&c];
            (0..quota).map(move |j| rows[j * rows.len() / quota])
        })
        .collect();
    sample.sort_unstable();
    sample
}

/// The sentences of the test split at positions `sample` (ascending),
/// read a batch at a time; the split must list `row_ids`, in order.
fn sample_texts(inputs: &ExportInputs, row_ids: &[i64], sample: &[usize]) -> Result<Vec<String>> {
    let mismatch = || {
        anyhow::anyhow!(
            "{} and {} list different rows: rerun the pipeline",
            inputs.test_split.display(),
            inputs.test_predictions.display()
        )
    };
    let mut texts = Vec::with_capacity(sample.len());
    let mut wanted = sample.iter().peekable();
    let mut position = 0;
    for batch in tables::splits::read_batched(inputs.test_split, 8192)? {
        for row in batch? {
            if row_ids.get(position) != Some(&row.row_id) {
                return Err(mismatch());
            }
            if wanted.next_if_eq(&&position).is_some() {
                texts.push(row.sentence);
            }
            position += 1;
        }
    }
    if position != row_ids.len() {
        return Err(mismatch());
    }
    Ok(texts)
}

/// The largest probability difference; fails naming rows whose class
/// differs or whose difference exceeds [`TOLERANCE`].
fn compare(ours: &[f32], theirs: &[f32], k: usize, row_ids: &[i64], what: &str) -> Result<f32> {
    let (our_classes, their_classes) = (folder::argmax(ours, k), folder::argmax(theirs, k));
    let mut largest = 0f32;
    let mut failed = Vec::new();
    for (i, row_id) in row_ids.iter().enumerate() {
        // A NaN on either side counts as an infinite difference (f32::max
        // would skip it).
        let difference = ours[i * k..(i + 1) * k]
            .iter()
            .zip(&theirs[i * k..(i + 1) * k])
            .map(|(a, b)| {
                let d = (a - b).abs();
                if d.is_nan() { f32::INFINITY } else { d }
            })
            .fold(0f32, f32::max);
        largest = largest.max(difference);
        if our_classes[i] != their_classes[i] || difference > TOLERANCE {
            failed.push(format!(
                "data row {row_id} (class {} exported, {} by {what}; probabilities differ by {difference:.1e})",
                our_classes[i], their_classes[i]
            ));
        }
    }
    if !failed.is_empty() {
        let shown = failed.len().min(10);
        bail!(
            "the exported classifier does not reproduce {what} on {} of {} test rows \
             (bound {TOLERANCE:.0e}); nothing was exported. First rows: {}. This is a bug \
             in the export or a damaged upstream result: rerun with `run-pipeline --force export`, \
             and report it if it persists",
            failed.len(),
            row_ids.len(),
            failed[..shown].join("; ")
        );
    }
    Ok(largest)
}

/// The model stage's graph (embed's encoder and pooling) and the trained
/// head (burn) over `ids`, in the batches (and with the padding)
/// [`Classifier::score_ids`] uses.
fn recompute(inputs: &ExportInputs, ids: &[Ids], pad_id: i64, threads: usize) -> Result<Vec<f32>> {
    let pooling = match inputs.pool {
        Pool::Mean => embed::Pooling::Mean,
        Pool::Cls => embed::Pooling::Cls,
        Pool::Pooler => embed::Pooling::Pooler,
    };
    let (mut encoder, _) =
        embed::Encoder::open(inputs.model, pooling, embed::Device::Cpu, threads)?;
    let device = head::Device::flex();
    let (head, shape) = head::Head::load(inputs.head, &device)?;
    let (out, _) = folder::score_in_batches(ids, shape.classes, folder::BATCH_TOKENS, |rows| {
        let (input, mask, seq) = folder::pad(rows, pad_id);
        let features = encoder.embed(input, mask, rows.len(), seq)?;
        head.probabilities(features, rows.len(), shape.input, &device)
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::stratified_sample;

    #[test]
    fn a_sample_keeps_the_class_proportions_and_spreads_through_the_split() {
        // 700 of class 0 then 300 of class 1, interleaved every tenth row.
        let labels: Vec<i64> = (0..1000).map(|i| i64::from(i % 10 >= 7)).collect();
        let sample = stratified_sample(&labels, 100);
        assert_eq!(sample.len(), 100);
        assert!(
            sample.windows(2).all(|w| w[0] < w[1]),
            "ascending, distinct"
        );
        let ones = sample.iter().filter(|&&i| labels[i] == 1).count();
        assert_eq!(ones, 30);
        assert!(
            sample[0] < 20 && *sample.last().unwrap() > 980,
            "{sample:?}"
        );
        assert_eq!(
            sample,
            stratified_sample(&labels, 100),
            "the same every time"
        );
    }

    #[test]
    fn quotas_round_by_largest_remainder_and_small_splits_are_taken_whole() {
        let labels = [0, 0, 0, 1, 1, 2, 2, 2, 2, 2];
        let sample = stratified_sample(&labels, 4);
        let count = |c| sample.iter().filter(|&&i| labels[i] == c).count();
        // Exact shares 1.2, 0.8, 2.0: floors 1, 0, 2, one more for class 1.
        assert_eq!((count(0), count(1), count(2)), (1, 1, 2));
        assert_eq!(stratified_sample(&labels, 10), (0..10).collect::<Vec<_>>());
        assert_eq!(stratified_sample(&labels, 50).len(), 10);
    }
}
