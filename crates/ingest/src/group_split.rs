//! The split with `ingest.group_column`: every row of a group on one side,
//! class proportions kept as far as whole groups allow.
//!
//! Groups are shuffled (seeded), then placed largest first, each into the
//! split with the largest relative shortfall for the group's classes:
//! Σ_c g_c · (target_sc − placed_sc) / target_sc, where target_sc is the
//! split's fraction of class c's rows. Within a split rows keep their CSV
//! order (the head shuffles its batches itself).

use std::collections::HashMap;

use crate::numpy_rng::LegacyRandomState;

/// Why a group split is impossible.
#[derive(Debug, Clone, PartialEq)]
pub struct MissingClass {
    /// 0 = train, 1 = val, 2 = test.
    pub split: usize,
    pub class: i64,
    pub groups: usize,
}

/// Positions into `labels` for train, val and test; `groups[i]` names row
/// `i`'s group (any value: the caller may pass interned ids).
pub fn split<G: Copy + Eq + std::hash::Hash>(
    labels: &[i64],
    groups: &[G],
    classes: usize,
    fractions: [f64; 3],
    seed: u32,
) -> Result<[Vec<usize>; 3], MissingClass> {
    let mut index: HashMap<G, usize> = HashMap::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    for (row, &group) in groups.iter().enumerate() {
        let id = *index.entry(group).or_insert_with(|| {
            members.push(Vec::new());
            members.len() - 1
        });
        members[id].push(row);
    }
    let mut order: Vec<usize> = LegacyRandomState::new(seed).permutation(members.len());
    order.sort_by_key(|&g| std::cmp::Reverse(members[g].len()));

    let mut class_total = vec![0f64; classes];
    for &l in labels {
        class_total[l as usize] += 1.0;
    }
    let target: Vec<Vec<f64>> = fractions
        .iter()
        .map(|f| {
            class_total
                .iter()
                .map(|t| (f * t).max(f64::MIN_POSITIVE))
                .collect()
        })
        .collect();
    let mut placed = vec![vec![0f64; classes]; 3];
    let mut split_of_group = vec![0usize; members.len()];
    for g in order {
        let mut counts = vec![0f64; classes];
        for &row in &members[g] {
            counts[labels[row] as usize] += 1.0;
        }
        let shortfall = |s: usize| -> f64 {
            (0..classes)
                .map(|c| counts[c] * (target[s][c] - placed[s][c]) / target[s][c])
                .sum()
        };
        let best = (0..3)
            .max_by(|&a, &b| shortfall(a).total_cmp(&shortfall(b)).then(b.cmp(&a)))
            .expect("three splits");
        for c in 0..classes {
            placed[best][c] += counts[c];
        }
        split_of_group[g] = best;
    }
    for (s, per_class) in placed.iter().enumerate() {
        if let Some(class) = per_class.iter().position(|&n| n == 0.0) {
            return Err(MissingClass {
                split: s,
                class: class as i64,
                groups: members.len(),
            });
        }
    }
    let mut out: [Vec<usize>; 3] = Default::default();
    for (row, group) in groups.iter().enumerate() {
        out[split_of_group[index[group]]].push(row);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 300 groups of 1..=6 rows; a group's rows share a label (class 1 in
    /// two groups of three, and in larger ones: 76 % of the rows).
    fn data() -> (Vec<i64>, Vec<String>) {
        let (mut labels, mut groups) = (Vec::new(), Vec::new());
        for g in 0..300 {
            for _ in 0..(g % 6 + 1) {
                labels.push(i64::from(g % 3 != 0));
                groups.push(format!("review {g}"));
            }
        }
        (labels, groups)
    }

    #[test]
    fn groups_stay_whole_and_sizes_and_classes_follow_the_fractions() {
        let (labels, groups) = data();
        let names: Vec<&str> = groups.iter().map(String::as_str).collect();
        let splits = split(&labels, &names, 2, [0.7, 0.15, 0.15], 2021).unwrap();
        let mut side: HashMap<&str, usize> = HashMap::new();
        for (s, rows) in splits.iter().enumerate() {
            for &row in rows {
                assert_eq!(
                    *side.entry(names[row]).or_insert(s),
                    s,
                    "{} split",
                    names[row]
                );
            }
        }
        let n = labels.len() as f64;
        let overall = labels.iter().filter(|&&l| l == 1).count() as f64 / n;
        for (s, fraction) in [0.7, 0.15, 0.15].iter().enumerate() {
            let size = splits[s].len() as f64 / n;
            assert!(
                (size - fraction).abs() < 0.02,
                "split {s}: {size} vs {fraction}"
            );
            let positive = splits[s].iter().filter(|&&r| labels[r] == 1).count() as f64;
            let share = positive / splits[s].len() as f64;
            assert!(
                (share - overall).abs() < 0.02,
                "split {s}: class 1 share {share} vs {overall}"
            );
        }
        let mut all: Vec<usize> = splits.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..labels.len()).collect::<Vec<_>>(), "a partition");
    }

    #[test]
    fn seeded() {
        let (labels, groups) = data();
        let names: Vec<&str> = groups.iter().map(String::as_str).collect();
        let a = split(&labels, &names, 2, [0.7, 0.15, 0.15], 1).unwrap();
        assert_eq!(a, split(&labels, &names, 2, [0.7, 0.15, 0.15], 1).unwrap());
        assert_ne!(a, split(&labels, &names, 2, [0.7, 0.15, 0.15], 2).unwrap());
    }

    #[test]
    fn too_few_groups_for_every_class_everywhere_is_refused() {
        let labels = [0, 0, 1, 1];
        let groups = ["a", "a", "b", "b"];
        let err = split(&labels, &groups, 2, [0.7, 0.15, 0.15], 1).unwrap_err();
        assert_eq!(err.groups, 2);
    }
}
