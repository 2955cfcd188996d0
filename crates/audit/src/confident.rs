//! Confident learning (Northcutt et al., as cleanlab 2.x's
//! `find_label_issues(filter_by="confident_learning")` computes it): a row is
//! a likely label issue when the out-of-fold probabilities confidently put it
//! in another class than its label.
//!
//! Per class k the threshold t_k is the mean probability of k over the rows
//! labelled k. A row's confident classes are those with p_k >= t_k; with
//! one, that is its likely true class, with several, the most probable. The
//! row is flagged when that class is not its label, unless its label is
//! still the most probable class (cleanlab's `_reduce_issues`). Flagged
//! rows are ranked by self-confidence (the probability of the given label),
//! lowest first.

/// cleanlab's floating-point slack for `p >= t` and for the argmax check.
const SLACK: f64 = 1e-6;
/// cleanlab's lower bound on a threshold (2 × the slack).
const MIN_THRESHOLD: f64 = 2e-6;

/// A flagged row.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    /// Index into the rows given.
    pub row: usize,
    pub given: usize,
    /// The confident class that is not the label.
    pub suggested: usize,
    pub self_confidence: f32,
}

/// The flagged rows of `probabilities` (row-major [rows × classes]), least
/// self-confident first (ties in row order).
pub fn label_issues(labels: &[i64], probabilities: &[f32], classes: usize) -> Vec<Issue> {
    let p = |row: usize, k: usize| f64::from(probabilities[row * classes + k]);
    let thresholds: Vec<f64> = (0..classes)
        .map(|k| {
            let rows: Vec<usize> = (0..labels.len())
                .filter(|&i| labels[i] == k as i64)
                .collect();
            if rows.is_empty() {
                // cleanlab: a class nobody has is never confident.
                return 2.0;
            }
            let mean = rows.iter().map(|&i| p(i, k)).sum::<f64>() / rows.len() as f64;
            mean.max(MIN_THRESHOLD)
        })
        .collect();
    let argmax = |row: usize, bonus_for: usize| {
        first_argmax((0..classes).map(|k| p(row, k) + if k == bonus_for { SLACK } else { 0.0 }))
    };
    let mut issues = Vec::new();
    for (row, &label) in labels.iter().enumerate() {
        let given = label as usize;
        let confident: Vec<usize> = (0..classes)
            .filter(|&k| p(row, k) >= thresholds[k] - SLACK)
            .collect();
        let guess = match confident.as_slice() {
            [] => continue,
            [only] => *only,
            _ => argmax(row, usize::MAX),
        };
        if guess == given || argmax(row, given) == given {
            continue;
        }
        issues.push(Issue {
            row,
            given,
            suggested: guess,
            self_confidence: probabilities[row * classes + given],
        });
    }
    issues.sort_by(|a, b| a.self_confidence.total_cmp(&b.self_confidence));
    issues
}

/// numpy's argmax: the index of the first of equal maxima.
pub fn first_argmax(values: impl Iterator<Item = f64>) -> usize {
    values
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (k, v)| {
            if v > best.1 { (k, v) } else { best }
        })
        .0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confidently_other_row_is_flagged_and_a_doubtful_one_is_not() {
        // Class 0 rows mostly say 0 (mean p0 = 0.7); class 1 rows say 1.
        let labels = [0, 0, 0, 1, 1, 1];
        #[rustfmt::skip]
        let probabilities = [
            0.9, 0.1,
            0.95, 0.05,
            0.25, 0.75,  // labelled 0, confidently 1: flagged
            0.1, 0.9,
            0.2, 0.8,
            0.55, 0.45,  // labelled 1, p0 = 0.55 below class 0's threshold: not flagged
        ];
        let issues = label_issues(&labels, &probabilities, 2);
        assert_eq!(
            issues,
            [Issue {
                row: 2,
                given: 0,
                suggested: 1,
                self_confidence: 0.25
            }]
        );
    }

    #[test]
    fn issues_are_ranked_by_self_confidence() {
        let labels = [0, 0, 0, 0, 1, 1, 1, 1];
        #[rustfmt::skip]
        let probabilities = [
            0.99, 0.01, 0.99, 0.01, 0.3, 0.7, 0.1, 0.9,
            0.01, 0.99, 0.01, 0.99, 0.8, 0.2, 0.95, 0.05,
        ];
        let rows: Vec<usize> = label_issues(&labels, &probabilities, 2)
            .iter()
            .map(|i| i.row)
            .collect();
        assert_eq!(rows, [7, 3, 6, 2]);
    }
}
