//! Stratified fold assignment: each class's rows shuffled (seeded) and dealt
//! round the folds, continuing where the previous class stopped, so folds
//! differ in size by at most one row and in each class by at most one.

use rand::SeedableRng;
use rand::seq::SliceRandom;

/// The fold (0..folds) of each row.
pub fn assign(labels: &[i64], classes: usize, folds: usize, seed: u64) -> Vec<usize> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut fold_of = vec![0; labels.len()];
    let mut next = 0;
    for class in 0..classes as i64 {
        let mut rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        rows.shuffle(&mut rng);
        for row in rows {
            fold_of[row] = next;
            next = (next + 1) % folds;
        }
    }
    fold_of
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_balanced_per_class_and_seeded() {
        let labels: Vec<i64> = (0..103).map(|i| i64::from(i % 7 == 0)).collect();
        let folds = assign(&labels, 2, 5, 1);
        for class in 0..2 {
            let sizes: Vec<usize> = (0..5)
                .map(|f| {
                    (0..103)
                        .filter(|&i| folds[i] == f && labels[i] == class)
                        .count()
                })
                .collect();
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(hi - lo <= 1, "class {class}: {sizes:?}");
        }
        assert_eq!(folds, assign(&labels, 2, 5, 1));
        assert_ne!(folds, assign(&labels, 2, 5, 2));
    }
}
