//! For every held-out row, its most similar row of an earlier split by the
//! cosine of their cached features: blocked matrix products of the
//! L2-normalised feature matrices (threaded `matrixmultiply` kernels), so
//! memory stays at one block (`BLOCK_ROWS` × `BLOCK_ROWS` floats) while the
//! work is the full product.

use ndarray::{Array2, ArrayView2, linalg::general_mat_mul, s};
use tables::features::FeatureTable;

/// Rows per side of one block of the similarity matrix (64 MiB of f32).
const BLOCK_ROWS: usize = 4096;

/// Per held-out row: (the highest cosine with any earlier row, that row's
/// index). Rows of zero features have cosine 0 with everything.
pub fn most_similar(held: &FeatureTable, earlier: &FeatureTable) -> Vec<(f32, usize)> {
    let (q, r) = (unit_rows(held), unit_rows(earlier));
    let mut best = vec![(f32::NEG_INFINITY, 0usize); q.nrows()];
    if r.nrows() == 0 {
        return best.into_iter().map(|_| (0.0, 0)).collect();
    }
    let mut block = Array2::<f32>::zeros((BLOCK_ROWS.min(q.nrows()), BLOCK_ROWS.min(r.nrows())));
    for q0 in (0..q.nrows()).step_by(BLOCK_ROWS) {
        let q_block = q.slice(s![q0..(q0 + BLOCK_ROWS).min(q.nrows()), ..]);
        for r0 in (0..r.nrows()).step_by(BLOCK_ROWS) {
            let r_block = r.slice(s![r0..(r0 + BLOCK_ROWS).min(r.nrows()), ..]);
            let mut out = block.slice_mut(s![..q_block.nrows(), ..r_block.nrows()]);
            general_mat_mul(1.0, &q_block, &r_block.t(), 0.0, &mut out);
            for (i, sims) in out.rows().into_iter().enumerate() {
                let slot = &mut best[q0 + i];
                for (j, &sim) in sims.iter().enumerate() {
                    if sim > slot.0 {
                        *slot = (sim, r0 + j);
                    }
                }
            }
        }
    }
    best
}

/// The features with every row scaled to unit length.
fn unit_rows(table: &FeatureTable) -> Array2<f32> {
    let view = ArrayView2::from_shape((table.row_ids.len(), table.hidden), &table.features)
        .expect("a feature table is rows × hidden");
    let mut rows = view.to_owned();
    for mut row in rows.rows_mut() {
        let norm = row.dot(&row).sqrt();
        if norm > 0.0 {
            row /= norm;
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[[f32; 3]]) -> FeatureTable {
        FeatureTable {
            row_ids: (0..rows.len() as i64).collect(),
            labels: vec![0; rows.len()],
            hidden: 3,
            features: rows.iter().flatten().copied().collect(),
        }
    }

    #[test]
    fn the_most_similar_row_is_found_whatever_the_scale() {
        let earlier = table(&[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]]);
        let held = table(&[[0.0, 5.0, 0.0], [2.0, 2.1, 0.0], [0.0, 0.0, 0.0]]);
        let found = most_similar(&held, &earlier);
        assert_eq!(found[0].1, 1);
        assert!((found[0].0 - 1.0).abs() < 1e-6);
        assert_eq!(found[1].1, 2);
        assert!(found[1].0 > 0.99 && found[1].0 < 1.0);
        assert_eq!(found[2].0, 0.0, "zero features are similar to nothing");
    }

    #[test]
    fn blocks_change_nothing() {
        // More rows than one block on both sides, against a plain loop.
        let n = BLOCK_ROWS + 37;
        let make = |seed: u32| {
            let mut state = seed;
            let mut next = move || {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            };
            let rows: Vec<[f32; 3]> = (0..n).map(|_| [next(), next(), next()]).collect();
            table(&rows)
        };
        let (held, earlier) = (make(1), make(2));
        let found = most_similar(&held, &earlier);
        let unit = |t: &FeatureTable, i: usize| {
            let v = &t.features[i * 3..i * 3 + 3];
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            [v[0] / norm, v[1] / norm, v[2] / norm]
        };
        for i in (0..n).step_by(97) {
            let q = unit(&held, i);
            let best = (0..n)
                .map(|j| {
                    let r = unit(&earlier, j);
                    q[0] * r[0] + q[1] * r[1] + q[2] * r[2]
                })
                .fold(f32::NEG_INFINITY, f32::max);
            assert!(
                (found[i].0 - best).abs() < 1e-5,
                "row {i}: {} vs {best}",
                found[i].0
            );
        }
    }
}
