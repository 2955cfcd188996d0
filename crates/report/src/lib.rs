//! report: scikit-learn's `classification_report` (text, byte for byte),
//! metrics.json with the confusion matrix, three SVG plots and one
//! self-contained `report.html` page that shows them with the run's parameters.

mod metrics;
mod page;
pub mod plots;

use std::path::Path;

pub use metrics::{Metrics, classification_report, metrics};
use tables::encoded::LengthHistogram;
use tables::training::EpochRow;

pub const OUTPUTS: [&str; 6] = [
    "classification_report.txt",
    "metrics.json",
    "confusion_matrix.svg",
    "loss.svg",
    "token_lengths.svg",
    "report.html",
];

/// Everything the report is made from.
pub struct ReportInputs<'a> {
    /// Test split: true and predicted class ids.
    pub labels: &'a [i64],
    pub preds: &'a [i64],
    pub classes: &'a [String],
    pub history: &'a [EpochRow],
    pub best_epoch: usize,
    pub lengths: &'a LengthHistogram,
    /// (`stage.parameter`, value) of every stage.
    pub params: &'a [(String, String)],
}

/// The report stage: writes every file of [`OUTPUTS`] into `out_dir` and
/// returns the classification report text.
pub fn run(inputs: &ReportInputs, out_dir: &Path) -> anyhow::Result<String> {
    let m = metrics(inputs.labels, inputs.preds, inputs.classes);
    let text = classification_report(&m, 2);
    let confusion_svg = plots::confusion_matrix(&m.confusion, &m.classes)?;
    let loss_svg = plots::loss_curves(inputs.history, inputs.best_epoch)?;
    let lengths_svg = plots::token_lengths(inputs.lengths)?;
    let html = page::render(&page::Page {
        metrics: &m,
        report_text: &text,
        history: inputs.history,
        best_epoch: inputs.best_epoch,
        loss_svg: &loss_svg,
        lengths_svg: &lengths_svg,
        confusion_svg: &confusion_svg,
        params: inputs.params,
    });
    let files: [(&str, &[u8]); 6] = [
        (OUTPUTS[0], text.as_bytes()),
        (OUTPUTS[1], &serde_json::to_vec_pretty(&m)?),
        (OUTPUTS[2], confusion_svg.as_bytes()),
        (OUTPUTS[3], loss_svg.as_bytes()),
        (OUTPUTS[4], lengths_svg.as_bytes()),
        (OUTPUTS[5], html.as_bytes()),
    ];
    for (name, bytes) in files {
        let path = out_dir.join(name);
        std::fs::write(&path, bytes)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    Ok(text)
}
