//! Accuracy, per-class and averaged precision/recall/F1, the confusion
//! matrix, and scikit-learn's `classification_report` text, byte for byte.

use serde::Serialize;

/// Per-class and averaged metrics over classes `0..names.len()`.
#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    pub classes: Vec<String>,
    pub precision: Vec<f64>,
    pub recall: Vec<f64>,
    pub f1: Vec<f64>,
    pub support: Vec<usize>,
    pub accuracy: f64,
    pub macro_precision: f64,
    pub macro_recall: f64,
    pub macro_f1: f64,
    pub weighted_precision: f64,
    pub weighted_recall: f64,
    pub weighted_f1: f64,
    /// `confusion[true][pred]`.
    pub confusion: Vec<Vec<usize>>,
}

/// Division as scikit-learn's `zero_division="warn"`: 0 when the denominator is 0.
fn ratio(num: f64, den: f64) -> f64 {
    if den == 0.0 { 0.0 } else { num / den }
}

pub fn metrics(labels: &[i64], preds: &[i64], names: &[String]) -> Metrics {
    let k = names.len();
    let mut confusion = vec![vec![0usize; k]; k];
    for (&t, &p) in labels.iter().zip(preds) {
        confusion[t as usize][p as usize] += 1;
    }
    let tp: Vec<f64> = (0..k).map(|c| confusion[c][c] as f64).collect();
    let true_sum: Vec<f64> = (0..k)
        .map(|c| confusion[c].iter().sum::<usize>() as f64)
        .collect();
    let pred_sum: Vec<f64> = (0..k)
        .map(|c| (0..k).map(|t| confusion[t][c]).sum::<usize>() as f64)
        .collect();
    let precision: Vec<f64> = (0..k).map(|c| ratio(tp[c], pred_sum[c])).collect();
    let recall: Vec<f64> = (0..k).map(|c| ratio(tp[c], true_sum[c])).collect();
    // As scikit-learn: F1 from counts, 2·tp / (true + pred).
    let f1: Vec<f64> = (0..k)
        .map(|c| ratio(2.0 * tp[c], true_sum[c] + pred_sum[c]))
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let total: f64 = true_sum.iter().sum();
    let weighted = |v: &[f64]| {
        ratio(
            v.iter().zip(&true_sum).map(|(a, w)| a * w).sum::<f64>(),
            total,
        )
    };
    let tp_all: f64 = tp.iter().sum();
    Metrics {
        classes: names.to_vec(),
        accuracy: ratio(2.0 * tp_all, total + pred_sum.iter().sum::<f64>()),
        macro_precision: mean(&precision),
        macro_recall: mean(&recall),
        macro_f1: mean(&f1),
        weighted_precision: weighted(&precision),
        weighted_recall: weighted(&recall),
        weighted_f1: weighted(&f1),
        support: true_sum.iter().map(|&s| s as usize).collect(),
        precision,
        recall,
        f1,
        confusion,
    }
}

/// The text of `sklearn.metrics.classification_report(y_true, y_pred,
/// labels=range(K), target_names=names, digits=digits)`.
pub fn classification_report(m: &Metrics, digits: usize) -> String {
    let last_line_heading = "weighted avg";
    let width = m
        .classes
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(0)
        .max(last_line_heading.len())
        .max(digits);
    let mut out = format!("{:>width$} ", "");
    for h in ["precision", "recall", "f1-score", "support"] {
        out.push_str(&format!(" {h:>9}"));
    }
    out.push_str("\n\n");
    // scikit-learn quirk, reproduced: with no true positive at all its
    // supports are floats and print as "2.0".
    let no_true_positive = (0..m.classes.len()).all(|c| m.confusion[c][c] == 0);
    let count = |s: usize| {
        if no_true_positive {
            format!("{s}.0")
        } else {
            s.to_string()
        }
    };
    let row = |name: &str, p: f64, r: f64, f: f64, s: usize| {
        let s = count(s);
        format!("{name:>width$}  {p:>9.digits$} {r:>9.digits$} {f:>9.digits$} {s:>9}\n")
    };
    for c in 0..m.classes.len() {
        out.push_str(&row(
            &m.classes[c],
            m.precision[c],
            m.recall[c],
            m.f1[c],
            m.support[c],
        ));
    }
    out.push('\n');
    let total: usize = m.support.iter().sum();
    out.push_str(&format!(
        "{:>width$}  {:>9} {:>9} {:>9.digits$} {:>9}\n",
        "accuracy",
        "",
        "",
        m.accuracy,
        count(total)
    ));
    out.push_str(&row(
        "macro avg",
        m.macro_precision,
        m.macro_recall,
        m.macro_f1,
        total,
    ));
    out.push_str(&row(
        "weighted avg",
        m.weighted_precision,
        m.weighted_recall,
        m.weighted_f1,
        total,
    ));
    out
}
