//! For every held-out row, its most similar row of an earlier split by the
//! cosine of their cached features, read from the embed splits a block at a
//! time (memory never holds a split past `exact_search_rows`):
//! - **exact**, while the earlier split has at most `exact_search_rows`
//!   rows: blocked matrix products of the L2-normalised features (threaded
//!   `matrixmultiply` kernels) against the whole earlier split, held in
//!   memory (at most `exact_search_rows` × H floats);
//! - **approximate** past it (`ivf`): each held-out row is compared with the
//!   earlier rows of the few clusters nearest it, so its cost stops growing
//!   with the earlier split; the recall against the exact search is measured
//!   on a sample of held-out rows and returned with the result.

use std::path::Path;

use anyhow::{Result, ensure};
use ndarray::{Array2, ArrayView2, linalg::general_mat_mul, s};

use crate::ivf;
use crate::params::AuditParams;

/// Rows per side of one block of the similarity matrix (64 MiB of f32).
pub(crate) const BLOCK_ROWS: usize = 4096;

/// The most similar earlier row found so far for one held-out row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nearest {
    pub cosine: f32,
    /// Index into the earlier split.
    pub row: usize,
}

impl Nearest {
    pub(crate) const NONE: Nearest = Nearest {
        cosine: f32::NEG_INFINITY,
        row: usize::MAX,
    };

    /// Keeps the higher cosine; of equal ones the earlier row, so the
    /// answer does not depend on the order rows are compared in.
    pub(crate) fn offer(&mut self, cosine: f32, row: usize) {
        if cosine > self.cosine || (cosine == self.cosine && row < self.row) {
            *self = Nearest { cosine, row };
        }
    }
}

/// The nearest earlier row of a held-out split's rows (in split order),
/// and how they were searched.
pub type Searched = (Vec<Nearest>, Option<tables::audit::Approximate>);

/// For each held-out split, per row its nearest earlier row, and how it was
/// searched; the splits share the earlier split's reading (and index).
/// Rows of zero features have cosine 0 with everything; with no earlier
/// rows every cosine is 0.
pub fn most_similar(
    params: &AuditParams,
    helds: &[&Path],
    earlier: &Path,
    earlier_rows: usize,
    scratch_dir: &Path,
) -> Result<Vec<Searched>> {
    if earlier_rows == 0 || earlier_rows <= params.exact_search_rows {
        let found = exact(helds, earlier, earlier_rows)?;
        return Ok(found.into_iter().map(|found| (found, None)).collect());
    }
    let searched = ivf::search(params, helds, earlier, earlier_rows, scratch_dir)?;
    Ok(searched
        .into_iter()
        .map(|(found, approximate)| (found, Some(approximate)))
        .collect())
}

/// Each held-out split against the earlier split, read into memory once.
fn exact(helds: &[&Path], earlier: &Path, earlier_rows: usize) -> Result<Vec<Vec<Nearest>>> {
    let (blocks, _) = unit_blocks(earlier, BLOCK_ROWS)?;
    let earlier: Vec<Array2<f32>> = blocks.collect::<Result<_>>()?;
    let counted: usize = earlier.iter().map(Array2::nrows).sum();
    ensure!(
        counted == earlier_rows,
        "the earlier split holds {counted} rows, not {earlier_rows}"
    );
    let mut product = Array2::<f32>::zeros((0, 0));
    let mut searched = Vec::new();
    for held in helds {
        let mut found = Vec::new();
        let (held_blocks, _) = unit_blocks(held, BLOCK_ROWS)?;
        for block in held_blocks {
            let block = block?;
            let mut best = vec![Nearest::NONE; block.nrows()];
            let mut first = 0;
            for rows in &earlier {
                offer_all(
                    block.view(),
                    rows.view(),
                    |j| first + j,
                    &mut best,
                    &mut product,
                );
                first += rows.nrows();
            }
            found.extend(best);
        }
        searched.push(settled(found));
    }
    Ok(searched)
}

/// Offers every pair of `queries` × `rows` (both unit rows) to `best` (one
/// per query); `row_of` maps a column of `rows` to its earlier row.
/// `product` is reused between calls.
pub(crate) fn offer_all(
    queries: ArrayView2<f32>,
    rows: ArrayView2<f32>,
    row_of: impl Fn(usize) -> usize,
    best: &mut [Nearest],
    product: &mut Array2<f32>,
) {
    if rows.nrows() == 0 {
        return;
    }
    for q0 in (0..queries.nrows()).step_by(BLOCK_ROWS) {
        let q = queries.slice(s![q0..(q0 + BLOCK_ROWS).min(queries.nrows()), ..]);
        if product.nrows() < q.nrows() || product.ncols() < rows.nrows() {
            *product = Array2::zeros((
                q.nrows().max(product.nrows()),
                rows.nrows().max(product.ncols()),
            ));
        }
        let mut out = product.slice_mut(s![..q.nrows(), ..rows.nrows()]);
        general_mat_mul(1.0, &q, &rows.t(), 0.0, &mut out);
        for (i, sims) in out.rows().into_iter().enumerate() {
            let slot = &mut best[q0 + i];
            for (j, &sim) in sims.iter().enumerate() {
                if sim >= slot.cosine {
                    slot.offer(sim, row_of(j));
                }
            }
        }
    }
}

/// Rows that met no earlier row (there were none) get cosine 0.
pub(crate) fn settled(mut found: Vec<Nearest>) -> Vec<Nearest> {
    for n in &mut found {
        if n.row == usize::MAX {
            *n = Nearest {
                cosine: 0.0,
                row: 0,
            };
        }
    }
    found
}

/// A feature split's rows scaled to unit length, `rows` at a time, as
/// row-major blocks; and the vectors' width.
pub(crate) fn unit_blocks(
    path: &Path,
    rows: usize,
) -> Result<(impl Iterator<Item = Result<Array2<f32>>> + use<>, usize)> {
    let (batches, hidden) = tables::features::read_batched(path, rows)?;
    let blocks = batches.map(move |batch| {
        let batch = batch?;
        let mut block = Array2::from_shape_vec((batch.row_ids.len(), hidden), batch.features)?;
        for mut row in block.rows_mut() {
            let norm = row.dot(&row).sqrt();
            if norm > 0.0 {
                row /= norm;
            }
        }
        Ok(block)
    });
    Ok((blocks, hidden))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tables::features::FeatureTable;

    pub(crate) fn write(
        dir: &Path,
        name: &str,
        hidden: usize,
        rows: &[Vec<f32>],
    ) -> std::path::PathBuf {
        let path = dir.join(name);
        tables::features::write(
            &path,
            FeatureTable {
                row_ids: (0..rows.len() as i64).collect(),
                labels: vec![0; rows.len()],
                hidden,
                features: rows.iter().flatten().copied().collect(),
            },
            &tables::Provenance::default(),
        )
        .unwrap();
        path
    }

    /// Seeded rows of `hidden` uniform values in [-0.5, 0.5).
    pub(crate) fn random_rows(n: usize, hidden: usize, seed: u32) -> Vec<Vec<f32>> {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        (0..n)
            .map(|_| (0..hidden).map(|_| next()).collect())
            .collect()
    }

    /// The nearest row by a plain loop over every pair.
    pub(crate) fn brute_force(query: &[f32], rows: &[Vec<f32>]) -> Nearest {
        let unit = |v: &[f32]| {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter().map(|x| x / norm).collect::<Vec<f32>>()
        };
        let q = unit(query);
        let mut best = Nearest::NONE;
        for (j, r) in rows.iter().enumerate() {
            let r = unit(r);
            best.offer(q.iter().zip(&r).map(|(a, b)| a * b).sum(), j);
        }
        best
    }

    fn exact_of(held: &[Vec<f32>], earlier: &[Vec<f32>], hidden: usize) -> Vec<Nearest> {
        let dir = tempfile::tempdir().unwrap();
        let params = AuditParams::default();
        let (h, e) = (
            write(dir.path(), "held.parquet", hidden, held),
            write(dir.path(), "earlier.parquet", hidden, earlier),
        );
        let (found, approximate) = most_similar(&params, &[&h], &e, earlier.len(), dir.path())
            .unwrap()
            .pop()
            .unwrap();
        assert!(
            approximate.is_none(),
            "below exact_search_rows the search is exact"
        );
        found
    }

    #[test]
    fn the_most_similar_row_is_found_whatever_the_scale() {
        let earlier = [
            vec![1.0, 0.0, 0.0],
            vec![0.0, 1.0, 0.0],
            vec![1.0, 1.0, 0.0],
        ];
        let held = [
            vec![0.0, 5.0, 0.0],
            vec![2.0, 2.1, 0.0],
            vec![0.0, 0.0, 0.0],
        ];
        let found = exact_of(&held, &earlier, 3);
        assert_eq!(found[0].row, 1);
        assert!((found[0].cosine - 1.0).abs() < 1e-6);
        assert_eq!(found[1].row, 2);
        assert!(found[1].cosine > 0.99 && found[1].cosine < 1.0);
        assert_eq!(found[2].cosine, 0.0, "zero features are similar to nothing");
        assert_eq!(
            exact_of(&held, &[], 3)[0],
            Nearest {
                cosine: 0.0,
                row: 0
            }
        );
    }

    #[test]
    fn blocks_change_nothing() {
        // More rows than one block on both sides, against a plain loop.
        let n = BLOCK_ROWS + 37;
        let (held, earlier) = (random_rows(n, 3, 1), random_rows(n, 3, 2));
        let found = exact_of(&held, &earlier, 3);
        for i in (0..n).step_by(97) {
            let best = brute_force(&held[i], &earlier);
            assert!(
                (found[i].cosine - best.cosine).abs() < 1e-5,
                "row {i}: {:?} vs {best:?}",
                found[i]
            );
        }
    }

    #[test]
    fn of_equal_cosines_the_earlier_row_wins() {
        let earlier = [vec![0.0, 1.0], vec![2.0, 0.0], vec![1.0, 0.0]];
        assert_eq!(exact_of(&[vec![3.0, 0.0]], &earlier, 2)[0].row, 1);
    }

    #[test]
    fn exact_splits_searched_together_get_what_each_gets_alone() {
        let dir = tempfile::tempdir().unwrap();
        let params = AuditParams::default();
        let (a, b, earlier) = (
            random_rows(50, 3, 4),
            random_rows(70, 3, 5),
            random_rows(90, 3, 6),
        );
        let (a, b, e) = (
            write(dir.path(), "a.parquet", 3, &a),
            write(dir.path(), "b.parquet", 3, &b),
            write(dir.path(), "earlier.parquet", 3, &earlier),
        );
        let together = most_similar(&params, &[&a, &b], &e, 90, dir.path()).unwrap();
        for (held, searched) in [&a, &b].into_iter().zip(together) {
            assert_eq!(
                most_similar(&params, &[held], &e, 90, dir.path()).unwrap(),
                [searched]
            );
        }
    }
}
