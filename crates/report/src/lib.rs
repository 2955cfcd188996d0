//! report: scikit-learn's `classification_report` (text, byte for byte),
//! metrics.json with the confusion matrix, three SVG plots and one
//! self-contained `report.html` page that shows them with the run's parameters.

pub mod audit;
mod metrics;
mod page;
pub mod plots;
mod sweep;

use std::path::Path;

pub use audit::{AuditFindings, HeldOut, OverlapSummary};
pub use metrics::{Metrics, classification_report, metrics};
pub use sweep::sweep_page;
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
    /// Test split: row ids, true and predicted class ids.
    pub test_row_ids: &'a [i64],
    pub labels: &'a [i64],
    pub preds: &'a [i64],
    pub classes: &'a [String],
    pub history: &'a [EpochRow],
    pub best_epoch: usize,
    pub lengths: &'a LengthHistogram,
    /// (`stage.parameter`, value) of every stage.
    pub params: &'a [(String, String)],
    pub audit: &'a AuditFindings<'a>,
}

/// `metrics.json`: the test split's metrics, and the accuracy on its rows
/// that share nothing with training.
#[derive(serde::Serialize)]
struct MetricsFile<'a> {
    #[serde(flatten)]
    metrics: &'a Metrics,
    test_without_train_overlap: &'a HeldOut,
}

/// What the report stage says.
pub struct Summary {
    /// The classification report text.
    pub text: String,
    pub accuracy: f64,
    pub held_out: HeldOut,
}

/// The report stage: writes every file of [`OUTPUTS`] into `out_dir`.
pub fn run(inputs: &ReportInputs, out_dir: &Path) -> anyhow::Result<Summary> {
    let m = metrics(inputs.labels, inputs.preds, inputs.classes);
    let held_out = audit::held_out(
        inputs.test_row_ids,
        inputs.labels,
        inputs.preds,
        inputs.audit.overlap,
    );
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
        held_out: &held_out,
        audit_section: &audit::section(inputs.audit, inputs.classes),
    });
    let metrics_file = MetricsFile {
        metrics: &m,
        test_without_train_overlap: &held_out,
    };
    let files: [(&str, &[u8]); 6] = [
        (OUTPUTS[0], text.as_bytes()),
        (OUTPUTS[1], &serde_json::to_vec_pretty(&metrics_file)?),
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
    Ok(Summary {
        text,
        accuracy: m.accuracy,
        held_out,
    })
}
