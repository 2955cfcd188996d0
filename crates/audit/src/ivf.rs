//! The approximate nearest-row search past `exact_search_rows`: an inverted
//! file over the earlier split, built and searched with the feature splits
//! read a block at a time.
//!
//! 1. **Clusters.** Spherical k-means (cosine) on an evenly spaced sample of
//!    at most `KMEANS_SAMPLE` earlier rows: one cluster per
//!    `search_cluster_rows` earlier rows, seeded, `KMEANS_ROUNDS` rounds.
//! 2. **Inverted file.** Every earlier row goes to its nearest cluster; the
//!    unit rows are written to a scratch file in cluster order (4 bytes a
//!    row in memory map a place back to its row).
//! 3. **Probes.** `recall_sample` held-out rows (seeded) are searched with
//!    `search_probes` nearest clusters, then half again as many, ... until
//!    the search finds the exact most similar row of `search_recall` of
//!    them (at most `search_max_probes`): the recall falls as the clusters
//!    grow in number, so a fixed count would not hold it.
//! 4. **Search.** Held-out rows, a batch at a time, are compared with the
//!    rows of their nearest clusters (as many as chosen), one cluster at a
//!    time for all of the batch's rows that probe it (a matrix product
//!    each).
//!
//! Held-out splits searched in the same earlier split (val and test in
//! train) share steps 1 and 2 and the exact pass of their samples: at
//! 10,000,000 rows assigning train's rows to their clusters alone is
//! ~2.4 × 10^10 dot products (rows × clusters, both growing with the rows).
//!
//! So a held-out row costs probes × `search_cluster_rows` + clusters dot
//! products whatever the split sizes. Memory holds the centroids, one
//! batch of held-out rows (`BATCH_BYTES`), one block of a cluster and 8 bytes
//! per earlier row. Recall is measured, not assumed: `recall_sample`
//! other held-out rows (seeded) are also compared with every earlier row
//! (in the pass that assigns clusters, with the tuning rows) and their
//! exact nearest rows are compared with what the search found.
//!
//! Why not a graph index (HNSW): it holds every vector and its links in
//! memory — 8,000,000 training rows of H = 384 are 12 GB of floats alone —
//! and a memory-mapped one counts its pages in the stage's resident memory
//! as it touches them; the inverted file keeps its rows on disk and reads
//! each cluster once per batch.

use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use ndarray::{Array2, ArrayView2, Axis, linalg::general_mat_mul, s};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tables::audit::Approximate;

use crate::near_duplicate::{BLOCK_ROWS, Nearest, offer_all, settled, unit_blocks};
use crate::params::AuditParams;

/// Rows k-means learns the clusters from: 64 a cluster at 2,048 clusters.
const KMEANS_SAMPLE: usize = 131_072;
/// Lloyd rounds of k-means.
const KMEANS_ROUNDS: usize = 8;
/// Rows whose nearest clusters are found with one matrix product (its
/// output is this × clusters floats).
const ASSIGN_ROWS: usize = 1024;
/// Held-out rows searched at a time, by their floats' size.
const BATCH_BYTES: usize = 128 << 20;
/// A sampled row counts as found when the search's cosine is within this
/// of the exact one (two different matrix products round differently).
const SAME_COSINE: f32 = 1e-5;

/// For each held-out split, the nearest earlier row of every row, and the
/// search's recall. The splits share one index (clusters learned, earlier
/// rows assigned and written, their sample's exact search: one pass over
/// the earlier split), each as if searched alone.
pub fn search(
    params: &AuditParams,
    helds: &[&Path],
    earlier: &Path,
    earlier_rows: usize,
    scratch_dir: &Path,
) -> Result<Vec<(Vec<Nearest>, Approximate)>> {
    let tuning = if params.search_recall > 0.0 {
        params.recall_sample
    } else {
        0
    };
    let samples = helds
        .iter()
        .map(|held| Samples::draw(held, params.recall_sample, tuning, params.seed))
        .collect::<Result<Vec<_>>>()?;
    let every_sample: Vec<ArrayView2<f32>> = samples.iter().map(|s| s.rows.view()).collect();
    let every_sample = ndarray::concatenate(Axis(0), &every_sample)?;
    let centroids = clusters(earlier, earlier_rows, params)?;
    let (index, exact) =
        Index::build(earlier, earlier_rows, centroids, &every_sample, scratch_dir)?;
    let mut exact = exact.as_slice();
    let mut searched = Vec::new();
    for (held, samples) in helds.iter().zip(&samples) {
        let (own, rest) = exact.split_at(samples.rows.nrows());
        exact = rest;
        searched.push(search_split(&index, params, held, samples, own)?);
    }
    Ok(searched)
}

/// One held-out split searched: `exact` is its samples' exact nearest rows.
fn search_split(
    index: &Index,
    params: &AuditParams,
    held: &Path,
    samples: &Samples,
    exact: &[Nearest],
) -> Result<(Vec<Nearest>, Approximate)> {
    let (tuning_rows, tuning_truth): (Vec<usize>, Vec<Nearest>) = (0..exact.len())
        .filter(|&i| samples.tunes[i])
        .map(|i| (i, exact[i]))
        .unzip();
    let tuning_rows = samples.rows.select(Axis(0), &tuning_rows);
    let (probes, tuning_found) = index.choose_probes(tuning_rows, &tuning_truth, params)?;
    let (batches, _) = unit_blocks(held, index.batch_rows())?;
    let found = index.search(batches, probes)?;
    let mut approximate = Approximate {
        clusters: index.centroids.nrows(),
        probes,
        tuning_sampled: tuning_truth.len(),
        tuning_found,
        sampled: 0,
        found: 0,
        near_duplicates: 0,
        near_duplicates_found: 0,
    };
    let threshold = params.near_duplicate_cosine as f32;
    for (i, truth) in exact.iter().enumerate().filter(|(i, _)| !samples.tunes[*i]) {
        let got = &found[samples.held_rows[i]];
        approximate.sampled += 1;
        approximate.found += usize::from(is_found(got, truth));
        if truth.cosine >= threshold {
            approximate.near_duplicates += 1;
            approximate.near_duplicates_found += usize::from(got.cosine >= threshold);
        }
    }
    Ok((found, approximate))
}

/// Whether the search found the row as similar as the exact search's.
fn is_found(got: &Nearest, truth: &Nearest) -> bool {
    got.cosine >= truth.cosine - SAME_COSINE
}

/// Held-out rows searched exactly too: some state the recall, the others
/// (disjoint, so that the recall stated is not the one tuned for) choose
/// the clusters searched.
struct Samples {
    /// Their held-out row indices, ascending.
    held_rows: Vec<usize>,
    /// Their unit rows, in that order.
    rows: Array2<f32>,
    /// Whether each row tunes (else it measures).
    tunes: Vec<bool>,
}

impl Samples {
    /// `measured` + `tuning` held-out rows (seeded; fewer when the split has
    /// fewer, the measured ones first).
    fn draw(held: &Path, measured: usize, tuning: usize, seed: u64) -> Result<Samples> {
        let (blocks, hidden) = unit_blocks(held, BLOCK_ROWS)?;
        let rows = tables::row_count(held)?;
        let mut rng = StdRng::seed_from_u64(seed);
        let picked = rand::seq::index::sample(&mut rng, rows, (measured + tuning).min(rows));
        let mut picked: Vec<(usize, bool)> = picked
            .into_iter()
            .enumerate()
            .map(|(nth, row)| (row, nth >= measured))
            .collect();
        picked.sort_unstable();
        let mut sample = Array2::zeros((picked.len(), hidden));
        let (mut first, mut next) = (0, 0);
        for block in blocks {
            let block = block?;
            while next < picked.len() && picked[next].0 < first + block.nrows() {
                sample
                    .row_mut(next)
                    .assign(&block.row(picked[next].0 - first));
                next += 1;
            }
            first += block.nrows();
        }
        ensure!(next == picked.len(), "{} ended early", held.display());
        Ok(Samples {
            held_rows: picked.iter().map(|p| p.0).collect(),
            rows: sample,
            tunes: picked.iter().map(|p| p.1).collect(),
        })
    }
}

/// Unit centroids learned from an evenly spaced sample of the earlier rows.
fn clusters(earlier: &Path, rows: usize, params: &AuditParams) -> Result<Array2<f32>> {
    let stride = rows.div_ceil(KMEANS_SAMPLE).max(1);
    let (blocks, hidden) = unit_blocks(earlier, BLOCK_ROWS)?;
    let mut sample = Vec::new();
    let mut first = 0usize;
    for block in blocks {
        let block = block?;
        for i in (first.next_multiple_of(stride) - first..block.nrows()).step_by(stride) {
            sample.extend(block.row(i).iter().copied());
        }
        first += block.nrows();
    }
    let sample = Array2::from_shape_vec((sample.len() / hidden, hidden), sample)?;
    let k = rows
        .div_ceil(params.search_cluster_rows)
        .clamp(1, sample.nrows().max(1));
    Ok(kmeans(&sample, k, params.seed))
}

/// Spherical k-means: centroids are unit vectors, rows join the centroid of
/// highest cosine. A cluster left empty restarts at a random sample row.
fn kmeans(sample: &Array2<f32>, k: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let start = rand::seq::index::sample(&mut rng, sample.nrows(), k).into_vec();
    let mut centroids = sample.select(Axis(0), &start);
    let mut product = Array2::zeros((0, 0));
    for _ in 0..KMEANS_ROUNDS {
        let mut sums = Array2::<f32>::zeros(centroids.raw_dim());
        let mut sizes = vec![0usize; k];
        for first in (0..sample.nrows()).step_by(ASSIGN_ROWS) {
            let block = sample.slice(s![first..(first + ASSIGN_ROWS).min(sample.nrows()), ..]);
            for (i, nearest) in nearest_clusters(block, &centroids, 1, &mut product)
                .into_iter()
                .enumerate()
            {
                sums.row_mut(nearest as usize)
                    .scaled_add(1.0, &block.row(i));
                sizes[nearest as usize] += 1;
            }
        }
        for (c, mut sum) in sums.rows_mut().into_iter().enumerate() {
            let norm = sum.dot(&sum).sqrt();
            if sizes[c] == 0 || norm == 0.0 {
                let row = rng.random_range(0..sample.nrows());
                centroids.row_mut(c).assign(&sample.row(row));
            } else {
                sum /= norm;
                centroids.row_mut(c).assign(&sum);
            }
        }
    }
    centroids
}

/// For each row of `rows`, its `probes` clusters of highest cosine (best
/// first), flattened: rows × probes cluster indices.
fn nearest_clusters(
    rows: ArrayView2<f32>,
    centroids: &Array2<f32>,
    probes: usize,
    product: &mut Array2<f32>,
) -> Vec<u32> {
    let k = centroids.nrows();
    let probes = probes.min(k);
    if product.dim() != (rows.nrows(), k) {
        *product = Array2::zeros((rows.nrows(), k));
    }
    general_mat_mul(1.0, &rows, &centroids.t(), 0.0, product);
    let mut out = Vec::with_capacity(rows.nrows() * probes);
    let mut order: Vec<u32> = Vec::with_capacity(k);
    for sims in product.rows() {
        order.clear();
        order.extend(0..k as u32);
        // Highest cosine first; of equal ones the lower cluster.
        let higher = |a: &u32, b: &u32| {
            sims[*b as usize]
                .total_cmp(&sims[*a as usize])
                .then(a.cmp(b))
        };
        if probes < k {
            order.select_nth_unstable_by(probes - 1, higher);
        }
        order[..probes].sort_unstable_by(higher);
        out.extend_from_slice(&order[..probes]);
    }
    out
}

/// The earlier split's unit rows on disk, in cluster order.
struct Index {
    centroids: Array2<f32>,
    /// Cluster c's rows are places `starts[c]..starts[c + 1]`.
    starts: Vec<usize>,
    /// The earlier row at each place.
    row_at: Vec<u32>,
    scratch: tempfile::NamedTempFile,
    hidden: usize,
}

impl Index {
    /// Assigns and writes every earlier row; on the way, the exact nearest
    /// earlier row of each row of `sample`.
    fn build(
        earlier: &Path,
        rows: usize,
        centroids: Array2<f32>,
        sample: &Array2<f32>,
        scratch_dir: &Path,
    ) -> Result<(Index, Vec<Nearest>)> {
        ensure!(
            rows <= u32::MAX as usize,
            "{rows} earlier rows: at most 2^32 are searched"
        );
        let (k, hidden) = centroids.dim();
        let mut cluster_of = Vec::with_capacity(rows);
        let mut exact = vec![Nearest::NONE; sample.nrows()];
        let (mut product, mut sample_product) = (Array2::zeros((0, 0)), Array2::zeros((0, 0)));
        let (blocks, _) = unit_blocks(earlier, BLOCK_ROWS)?;
        for block in blocks {
            let block = block?;
            let first = cluster_of.len();
            offer_all(
                sample.view(),
                block.view(),
                |j| first + j,
                &mut exact,
                &mut sample_product,
            );
            for r0 in (0..block.nrows()).step_by(ASSIGN_ROWS) {
                let part = block.slice(s![r0..(r0 + ASSIGN_ROWS).min(block.nrows()), ..]);
                cluster_of.extend(nearest_clusters(part, &centroids, 1, &mut product));
            }
        }
        ensure!(
            cluster_of.len() == rows,
            "{} holds {} rows, not {rows}",
            earlier.display(),
            cluster_of.len()
        );
        let mut starts = vec![0usize; k + 1];
        for &c in &cluster_of {
            starts[c as usize + 1] += 1;
        }
        for c in 0..k {
            starts[c + 1] += starts[c];
        }

        let scratch = tempfile::Builder::new()
            .prefix(".audit-clusters-")
            .tempfile_in(scratch_dir)
            .with_context(|| {
                format!("cannot create a scratch file in {}", scratch_dir.display())
            })?;
        let file = scratch.as_file();
        let row_bytes = hidden * 4;
        file.set_len((rows * row_bytes) as u64)?;
        let mut filled = starts[..k].to_vec();
        let mut row_at = vec![0u32; rows];
        let mut bytes = Vec::with_capacity(row_bytes);
        let (blocks, _) = unit_blocks(earlier, BLOCK_ROWS)?;
        let mut row = 0;
        for block in blocks {
            for values in block?.rows() {
                let place = &mut filled[cluster_of[row] as usize];
                bytes.clear();
                bytes.extend(values.iter().flat_map(|x| x.to_le_bytes()));
                file.write_all_at(&bytes, (*place * row_bytes) as u64)
                    .with_context(|| format!("cannot write {}", scratch.path().display()))?;
                row_at[*place] = row as u32;
                *place += 1;
                row += 1;
            }
        }
        let index = Index {
            centroids,
            starts,
            row_at,
            scratch,
            hidden,
        };
        Ok((index, settled(exact)))
    }

    /// Held-out rows searched at a time.
    fn batch_rows(&self) -> usize {
        (BATCH_BYTES / (4 * self.hidden)).max(ASSIGN_ROWS)
    }

    /// The fewest clusters to search per row, from `search_probes` up by
    /// half again (at most `search_max_probes`), whose search finds the
    /// exact most similar row (`truth`) of `search_recall` of the tuning
    /// rows; and of how many it found it.
    fn choose_probes(
        &self,
        tuning: Array2<f32>,
        truth: &[Nearest],
        params: &AuditParams,
    ) -> Result<(usize, usize)> {
        let most = params.search_max_probes.min(self.centroids.nrows()).max(1);
        let mut probes = params.search_probes.min(most);
        if tuning.nrows() == 0 {
            return Ok((probes, 0));
        }
        let wanted = params.search_recall * tuning.nrows() as f64;
        loop {
            let found = self.search(std::iter::once(Ok(tuning.clone())), probes)?;
            let hits = found
                .iter()
                .zip(truth)
                .filter(|(g, t)| is_found(g, t))
                .count();
            if hits as f64 >= wanted || probes == most {
                return Ok((probes, hits));
            }
            probes = (probes + probes.div_ceil(2)).min(most);
        }
    }

    /// The nearest earlier row, among their clusters', of every row of the
    /// batches (unit rows).
    fn search(
        &self,
        batches: impl Iterator<Item = Result<Array2<f32>>>,
        probes: usize,
    ) -> Result<Vec<Nearest>> {
        let probes = probes.min(self.centroids.nrows());
        let mut found = Vec::new();
        let (mut product, mut probe_product) = (Array2::zeros((0, 0)), Array2::zeros((0, 0)));
        let mut rows = Vec::new();
        for batch in batches {
            let batch = batch?;
            // (cluster, held row of the batch) for every probe, by cluster.
            let mut probing = Vec::with_capacity(batch.nrows() * probes);
            for q0 in (0..batch.nrows()).step_by(ASSIGN_ROWS) {
                let part = batch.slice(s![q0..(q0 + ASSIGN_ROWS).min(batch.nrows()), ..]);
                let nearest = nearest_clusters(part, &self.centroids, probes, &mut probe_product);
                let per_row = nearest.len() / part.nrows();
                for (i, c) in nearest.into_iter().enumerate() {
                    probing.push((c, (q0 + i / per_row) as u32));
                }
            }
            probing.sort_unstable();
            let mut best = vec![Nearest::NONE; batch.nrows()];
            for run in probing.chunk_by(|a, b| a.0 == b.0) {
                let cluster = run[0].0 as usize;
                let queries: Vec<usize> = run.iter().map(|&(_, q)| q as usize).collect();
                let gathered = batch.select(Axis(0), &queries);
                let mut cluster_best: Vec<Nearest> = queries.iter().map(|&q| best[q]).collect();
                let (start, end) = (self.starts[cluster], self.starts[cluster + 1]);
                for r0 in (start..end).step_by(BLOCK_ROWS) {
                    let r1 = (r0 + BLOCK_ROWS).min(end);
                    self.read(r0, r1, &mut rows)?;
                    let block = ArrayView2::from_shape((r1 - r0, self.hidden), &rows)?;
                    let row_at = &self.row_at[r0..r1];
                    offer_all(
                        gathered.view(),
                        block,
                        |j| row_at[j] as usize,
                        &mut cluster_best,
                        &mut product,
                    );
                }
                for (&q, nearest) in queries.iter().zip(cluster_best) {
                    best[q] = nearest;
                }
            }
            found.extend(best);
        }
        Ok(settled(found))
    }

    /// Places `r0..r1` into `out` (row-major floats).
    fn read(&self, r0: usize, r1: usize, out: &mut Vec<f32>) -> Result<()> {
        let row_bytes = self.hidden * 4;
        let mut bytes = vec![0u8; (r1 - r0) * row_bytes];
        self.scratch
            .as_file()
            .read_exact_at(&mut bytes, (r0 * row_bytes) as u64)
            .with_context(|| format!("cannot read {}", self.scratch.path().display()))?;
        out.clear();
        out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::near_duplicate::tests::{brute_force, random_rows, write};

    /// One held-out split searched alone.
    fn search(
        params: &AuditParams,
        held: &Path,
        earlier: &Path,
        earlier_rows: usize,
        scratch_dir: &Path,
    ) -> Result<(Vec<Nearest>, Approximate)> {
        let mut searched = super::search(params, &[held], earlier, earlier_rows, scratch_dir)?;
        Ok(searched.pop().expect("one split"))
    }

    fn params(probes: usize) -> AuditParams {
        AuditParams {
            exact_search_rows: 0,
            search_cluster_rows: 64,
            search_probes: probes,
            search_recall: 0.0,
            recall_sample: 200,
            ..AuditParams::default()
        }
    }

    /// Rows drawn around 40 centres (cosine ~0.9 to their centre), as
    /// sentence features gather by topic; a few held-out rows are copies
    /// of earlier rows with a little noise (near-duplicates).
    fn clustered(n: usize, seed: u32) -> Vec<Vec<f32>> {
        let centres = random_rows(40, 16, 7);
        let noise = random_rows(n, 16, seed);
        (0..n)
            .map(|i| {
                let c = &centres[(i * 7 + seed as usize) % 40];
                c.iter().zip(&noise[i]).map(|(a, b)| a + 0.3 * b).collect()
            })
            .collect()
    }

    #[test]
    fn every_probe_is_the_exact_search() {
        let dir = tempfile::tempdir().unwrap();
        let (held, earlier) = (clustered(300, 1), clustered(1000, 2));
        let (h, e) = (
            write(dir.path(), "held.parquet", 16, &held),
            write(dir.path(), "earlier.parquet", 16, &earlier),
        );
        let p = params(usize::MAX);
        let (found, approximate) = search(&p, &h, &e, earlier.len(), dir.path()).unwrap();
        assert_eq!(approximate.clusters, 16);
        assert_eq!(approximate.probes, 16);
        assert_eq!((approximate.sampled, approximate.found), (200, 200));
        for (i, q) in held.iter().enumerate() {
            let truth = brute_force(q, &earlier);
            assert_eq!(found[i].row, truth.row, "row {i}");
            assert!((found[i].cosine - truth.cosine).abs() < 1e-5);
        }
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 2, "the scratch file is gone");
    }

    /// `[audit]` as pipeline.toml would give it, on the test's sizes.
    fn from_toml(extra: &str) -> AuditParams {
        serde_json::from_str(&format!(
            r#"{{"exact_search_rows": 0, "search_cluster_rows": 64, "recall_sample": 1000, {extra}}}"#
        ))
        .expect("audit params")
    }

    #[test]
    fn probes_grow_until_other_sampled_rows_reach_the_recall_target() {
        let dir = tempfile::tempdir().unwrap();
        let (held, earlier) = (clustered(3000, 5), clustered(8000, 6));
        let (h, e) = (
            write(dir.path(), "held.parquet", 16, &held),
            write(dir.path(), "earlier.parquet", 16, &earlier),
        );
        let fixed = from_toml(r#""search_probes": 2, "search_recall": 0.0"#);
        let (_, fixed) = search(&fixed, &h, &e, earlier.len(), dir.path()).unwrap();
        assert_eq!((fixed.clusters, fixed.probes), (125, 2));
        assert_eq!(fixed.tuning_sampled, 0, "no target: no tuning rows");
        assert!(
            fixed.recall() < 0.95,
            "2 of 125 clusters miss: {}",
            fixed.recall()
        );

        let tuned = from_toml(r#""search_probes": 2, "search_recall": 0.98"#);
        let (found, tuned) = search(&tuned, &h, &e, earlier.len(), dir.path()).unwrap();
        assert!(tuned.probes > 2 && tuned.probes < 125, "{}", tuned.probes);
        assert_eq!(tuned.tuning_sampled, 1000);
        assert!(
            tuned.tuning_found as f64 >= 0.98 * 1000.0,
            "{}",
            tuned.tuning_found
        );
        // The recall stated is measured on other rows than the ones tuned on.
        assert_eq!(tuned.sampled, 1000);
        assert!(tuned.recall() >= 0.95, "{}", tuned.recall());
        let truly_found = (0..held.len())
            .filter(|&i| found[i].cosine >= brute_force(&held[i], &earlier).cosine - SAME_COSINE)
            .count();
        assert!(
            truly_found as f64 >= 0.95 * held.len() as f64,
            "{truly_found}"
        );

        // A target the cap forbids stops at the cap, and the recall says so.
        let capped =
            from_toml(r#""search_probes": 2, "search_recall": 1.0, "search_max_probes": 3"#);
        let (_, capped) = search(&capped, &h, &e, earlier.len(), dir.path()).unwrap();
        assert_eq!(capped.probes, 3);
        assert!(capped.tuning_found < 1000);
    }

    #[test]
    fn a_few_probes_find_most_nearest_rows_and_say_how_many() {
        let dir = tempfile::tempdir().unwrap();
        let (mut held, earlier) = (clustered(2000, 3), clustered(8000, 4));
        let near = random_rows(100, 16, 9);
        for i in 0..100 {
            held[i * 20] = earlier[i * 80]
                .iter()
                .zip(&near[i])
                .map(|(a, b)| a + 0.01 * b)
                .collect();
        }
        let (h, e) = (
            write(dir.path(), "held.parquet", 16, &held),
            write(dir.path(), "earlier.parquet", 16, &earlier),
        );
        let p = AuditParams {
            recall_sample: 2000,
            near_duplicate_cosine: 0.999,
            ..params(3)
        };
        let (found, approximate) = search(&p, &h, &e, earlier.len(), dir.path()).unwrap();
        assert_eq!((approximate.clusters, approximate.probes), (125, 3));
        let truly_found = (0..held.len())
            .filter(|&i| found[i].cosine >= brute_force(&held[i], &earlier).cosine - SAME_COSINE)
            .count();
        // Every row sampled: the measured recall is the true one.
        assert_eq!(approximate.found, truly_found);
        assert!(truly_found < held.len(), "3 of 125 clusters miss some");
        assert!(
            truly_found as f64 >= 0.9 * held.len() as f64,
            "{truly_found}"
        );
        assert_eq!(approximate.near_duplicates, 100);
        assert_eq!(approximate.near_duplicates_found, 100);
        for i in 0..100 {
            assert_eq!(found[i * 20].row, i * 80);
        }
    }

    #[test]
    fn splits_searched_together_get_what_each_gets_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, earlier) = (clustered(700, 11), clustered(500, 12), clustered(6000, 13));
        let (a, b, e) = (
            write(dir.path(), "a.parquet", 16, &a),
            write(dir.path(), "b.parquet", 16, &b),
            write(dir.path(), "earlier.parquet", 16, &earlier),
        );
        let p = AuditParams {
            recall_sample: 150,
            ..from_toml(r#""search_probes": 2, "search_recall": 0.99"#)
        };
        let together = super::search(&p, &[&a, &b], &e, earlier.len(), dir.path()).unwrap();
        let alone = [
            search(&p, &a, &e, earlier.len(), dir.path()).unwrap(),
            search(&p, &b, &e, earlier.len(), dir.path()).unwrap(),
        ];
        for ((found, approximate), (found_alone, approximate_alone)) in together.iter().zip(&alone)
        {
            assert_eq!(approximate, approximate_alone);
            assert_eq!(found, found_alone);
        }
        assert!(together[0].1.probes > 2, "tuned: {:?}", together[0].1);
    }
}
