//! Stratified splitting, reproducing scikit-learn's `train_test_split(...,
//! stratify=y, random_state=seed)` (its `StratifiedShuffleSplit`): the same
//! per-class counts and the same rows in the same order.

use crate::numpy_rng::LegacyRandomState;

/// Why a stratified split is impossible.
#[derive(Debug, Clone, PartialEq)]
pub enum SplitError {
    /// A class has fewer than 2 rows.
    ClassTooSmall { class: i64, rows: usize },
    /// One side of the split would have fewer rows than there are classes.
    SideTooSmall {
        side: &'static str,
        rows: usize,
        classes: usize,
    },
}

/// Result of one split: positions into the input, in scikit-learn's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// `train_test_split(range(len(y)), test_size=test_fraction, stratify=y,
/// random_state=seed)` with `train_size` left to default.
pub fn train_test_split(y: &[i64], test_fraction: f64, seed: u32) -> Result<Split, SplitError> {
    let n = y.len();
    // sklearn: n_test = ceil(test_size * n_samples), n_train = rest.
    let n_test = (test_fraction * n as f64).ceil() as usize;
    let n_train = n.saturating_sub(n_test);

    let mut classes: Vec<i64> = y.to_vec();
    classes.sort_unstable();
    classes.dedup();
    let class_of = |label: i64| classes.binary_search(&label).unwrap();
    let mut class_indices: Vec<Vec<usize>> = vec![Vec::new(); classes.len()];
    for (i, &label) in y.iter().enumerate() {
        class_indices[class_of(label)].push(i);
    }
    let counts: Vec<u64> = class_indices.iter().map(|v| v.len() as u64).collect();
    if let Some((c, rows)) = counts.iter().enumerate().find(|(_, n)| **n < 2) {
        return Err(SplitError::ClassTooSmall {
            class: classes[c],
            rows: *rows as usize,
        });
    }
    for (side, rows) in [("train", n_train), ("test", n_test)] {
        if rows < classes.len() {
            return Err(SplitError::SideTooSmall {
                side,
                rows,
                classes: classes.len(),
            });
        }
    }

    let mut rng = LegacyRandomState::new(seed);
    let n_i = approximate_mode(&counts, n_train as u64, &mut rng);
    let remaining: Vec<u64> = counts.iter().zip(&n_i).map(|(c, t)| c - t).collect();
    let t_i = approximate_mode(&remaining, n_test as u64, &mut rng);

    let mut train = Vec::with_capacity(n_train);
    let mut test = Vec::with_capacity(n_test);
    for (c, indices) in class_indices.iter().enumerate() {
        let perm = rng.permutation(indices.len());
        let shuffled: Vec<usize> = perm.iter().map(|&p| indices[p]).collect();
        let (a, b) = (n_i[c] as usize, t_i[c] as usize);
        train.extend_from_slice(&shuffled[..a]);
        test.extend_from_slice(&shuffled[a..a + b]);
    }
    rng.shuffle(&mut train);
    rng.shuffle(&mut test);
    Ok(Split { train, test })
}

/// scikit-learn's `_approximate_mode`: per-class draws proportional to the
/// class counts, remainders handed out largest first, ties broken by `rng`.
fn approximate_mode(class_counts: &[u64], n_draws: u64, rng: &mut LegacyRandomState) -> Vec<u64> {
    let total: u64 = class_counts.iter().sum();
    let continuous: Vec<f64> = class_counts
        .iter()
        .map(|&c| c as f64 / total as f64 * n_draws as f64)
        .collect();
    let mut floored: Vec<f64> = continuous.iter().map(|c| c.floor()).collect();
    let mut need_to_add = (n_draws as f64 - floored.iter().sum::<f64>()) as i64;
    if need_to_add > 0 {
        let remainder: Vec<f64> = continuous
            .iter()
            .zip(&floored)
            .map(|(c, f)| c - f)
            .collect();
        let mut values = remainder.clone();
        values.sort_by(|a, b| b.partial_cmp(a).unwrap());
        values.dedup();
        for value in values {
            let inds: Vec<usize> = (0..remainder.len())
                .filter(|&i| remainder[i] == value)
                .collect();
            let add_now = inds.len().min(need_to_add as usize);
            for i in rng.choice_without_replacement(&inds, add_now) {
                floored[i] += 1.0;
            }
            need_to_add -= add_now as i64;
            if need_to_add == 0 {
                break;
            }
        }
    }
    floored.into_iter().map(|f| f as u64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_sklearn_rounding() {
        let y: Vec<i64> = (0..101).map(|i| (i % 2) as i64).collect();
        let split = train_test_split(&y, 0.3, 2021).unwrap();
        assert_eq!(split.test.len(), 31, "ceil(0.3 * 101)");
        assert_eq!(split.train.len(), 70);
        let mut all: Vec<usize> = split.train.iter().chain(&split.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..101).collect::<Vec<_>>(), "a partition of the rows");
    }

    #[test]
    fn per_class_proportions_are_kept() {
        let y: Vec<i64> = (0..1000)
            .map(|i| {
                if i < 100 {
                    2
                } else if i < 400 {
                    0
                } else {
                    1
                }
            })
            .collect();
        let split = train_test_split(&y, 0.3, 7).unwrap();
        let count = |rows: &[usize], c: i64| rows.iter().filter(|&&i| y[i] == c).count();
        assert_eq!(
            [
                count(&split.test, 0),
                count(&split.test, 1),
                count(&split.test, 2)
            ],
            [90, 180, 30]
        );
    }

    #[test]
    fn impossible_splits_are_refused() {
        assert_eq!(
            train_test_split(&[0, 0, 0, 1], 0.5, 1),
            Err(SplitError::ClassTooSmall { class: 1, rows: 1 })
        );
        assert_eq!(
            train_test_split(&[0, 0, 1, 1, 2, 2], 0.1, 1),
            Err(SplitError::SideTooSmall {
                side: "test",
                rows: 1,
                classes: 3
            })
        );
    }

    #[test]
    fn same_seed_same_split_other_seed_other_split() {
        let y: Vec<i64> = (0..200).map(|i| (i % 3) as i64).collect();
        let a = train_test_split(&y, 0.3, 2021).unwrap();
        assert_eq!(a, train_test_split(&y, 0.3, 2021).unwrap());
        assert_ne!(a, train_test_split(&y, 0.3, 2022).unwrap());
    }
}
