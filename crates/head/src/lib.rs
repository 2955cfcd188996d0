//! head: the reference tutorial's classifier on frozen features, trained
//! with burn: Linear(H, 512) → ReLU → Dropout(0.2) → Linear(512, K) →
//! LogSoftmax; AdamW; class-weighted NLL; gradient-norm clipping at 1.0;
//! seeded shuffling; the weights of the best validation loss are kept.

mod clip;
mod fused_adamw;
mod model;
mod rows;
mod train;

pub use burn::prelude::Device;
pub use model::{Head, HeadShape, HeadWeights};
pub use rows::{Rows, ScratchRows, Subset};
pub use train::{Backend, HeadParams, TrainSummary, class_weights, train};

pub const OUTPUTS: [&str; 3] = [
    "head.safetensors",
    "history.parquet",
    "test_predictions.parquet",
];

/// The head stage: feature splits -> trained head, history, test predictions.
pub fn run(
    params: &HeadParams,
    features: [&std::path::Path; 3],
    classes: usize,
    out_dir: &std::path::Path,
    provenance: tables::Provenance,
) -> anyhow::Result<Vec<String>> {
    // Each split copied into a scratch file of this stage's output folder
    // and read from there by row; the copies go when this returns (and
    // with the folder, after a crash).
    let [train_t, val_t, test_t] = features.map(|f| ScratchRows::copy(f, out_dir));
    let (train_t, val_t, test_t) = (train_t?, val_t?, test_t?);
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "head {bar:30} {pos}/{len} steps  {per_sec}  ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    let summary = train::train(params, classes, &train_t, &val_t, &test_t, &bar)?;
    bar.finish_and_clear();
    let provenance = provenance.with("best_epoch", summary.best_epoch.to_string());
    summary
        .head
        .save(&out_dir.join(OUTPUTS[0]), summary.shape)?;
    let history: Vec<tables::training::EpochRow> = summary
        .history
        .iter()
        .map(|e| tables::training::EpochRow {
            epoch: e.epoch,
            train_loss: e.train_loss,
            val_loss: e.val_loss,
            val_accuracy: e.val_accuracy,
            seconds: e.seconds,
        })
        .collect();
    tables::training::write_history(&out_dir.join(OUTPUTS[1]), &history, &provenance)?;
    tables::training::write_predictions(
        &out_dir.join(OUTPUTS[2]),
        &test_t.row_ids,
        test_t.labels(),
        &summary.test_probabilities,
        classes,
        &provenance,
    )?;
    let mut notes: Vec<String> = summary
        .history
        .iter()
        .map(|e| {
            format!(
                "epoch {:>2}: train loss {:.4}, val loss {:.4}, val accuracy {:.4} ({:.2}s)",
                e.epoch, e.train_loss, e.val_loss, e.val_accuracy, e.seconds
            )
        })
        .collect();
    notes.push(format!(
        "best validation loss at epoch {}; {:.1}s in all",
        summary.best_epoch,
        started.elapsed().as_secs_f64()
    ));
    Ok(notes)
}
