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

use std::path::Path;

use anyhow::{Result, bail, ensure};

use crate::folder::{self, Classifier, Ids};
use crate::{ExportInputs, Pool, TOLERANCE};

/// What the parity check found.
pub struct Parity {
    pub rows: usize,
    pub largest_difference: f32,
    /// What it was compared with.
    pub reference: &'static str,
    /// For fp16: agreement with the head stage's own predictions.
    pub against_head: Option<String>,
}

impl Parity {
    pub fn summary(&self) -> String {
        format!(
            "parity with {} on {} test rows: every class equal, largest probability \
             difference {:.1e} (bound {TOLERANCE:.0e})",
            self.reference, self.rows, self.largest_difference
        )
    }
}

/// Scores the test split from the files in `out_dir` and compares.
pub fn check(inputs: &ExportInputs, out_dir: &Path) -> Result<Parity> {
    let split = tables::splits::read(inputs.test_split)?;
    let head = tables::training::read_prediction_rows(inputs.test_predictions)?;
    ensure!(
        split
            .iter()
            .map(|r| r.row_id)
            .eq(head.row_ids.iter().copied()),
        "{} and {} list different rows: rerun the pipeline",
        inputs.test_split.display(),
        inputs.test_predictions.display()
    );
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut classifier = Classifier::open(out_dir, threads)?;
    let texts: Vec<String> = split.iter().map(|r| r.sentence.clone()).collect();
    let ids = classifier.tokenize(&texts)?;
    let (exported, _) = classifier.score_ids(&ids, folder::BATCH_TOKENS)?;
    let k = head.classes;
    let row_ids: Vec<i64> = split.iter().map(|r| r.row_id).collect();
    if inputs.precision != model::Precision::Fp16 {
        let largest = compare(&exported, &head.probabilities, k, &row_ids, "the head")?;
        return Ok(Parity {
            rows: split.len(),
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
        &row_ids,
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
        rows: split.len(),
        largest_difference: largest,
        reference: "the model graph and head recomputed in the same batches",
        against_head: Some(format!(
            "{:?} sums depend on the padded length of a batch: against the head stage's own \
             predictions (other batches) {agree} of {} classes equal, probabilities up to \
             {furthest:.1e} apart",
            inputs.precision,
            split.len()
        )),
    })
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
