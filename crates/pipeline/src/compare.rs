//! `compare-features`: how far two embed results are apart (e.g. fp16 on a
//! GPU against fp32 on the CPU), row by row.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Result, bail};

/// Per split: rows compared, ‖a − b‖ / ‖b‖ over the split, and the largest
/// per-row relative error.
pub struct SplitDifference {
    pub split: String,
    pub rows: usize,
    pub relative_error: f64,
    pub worst_row_relative_error: f64,
}

pub fn compare_features(a: &Path, b: &Path) -> Result<Vec<SplitDifference>> {
    let mut out = Vec::new();
    for split in ["train", "val", "test"] {
        let file = format!("{split}.parquet");
        let (ta, tb) = (
            tables::features::read(&a.join(&file))?,
            tables::features::read(&b.join(&file))?,
        );
        if ta.hidden != tb.hidden {
            bail!(
                "{split}: feature sizes differ ({} in {}, {} in {})",
                ta.hidden,
                a.display(),
                tb.hidden,
                b.display()
            );
        }
        let h = ta.hidden;
        let row_of_b: HashMap<i64, usize> = tb
            .row_ids
            .iter()
            .enumerate()
            .map(|(i, &r)| (r, i))
            .collect();
        let (mut diff, mut norm, mut worst, mut rows) = (0.0f64, 0.0f64, 0.0f64, 0usize);
        for (i, row_id) in ta.row_ids.iter().enumerate() {
            let Some(&j) = row_of_b.get(row_id) else {
                bail!(
                    "{split}: row {row_id} is in {} but not in {}",
                    a.display(),
                    b.display()
                );
            };
            let (x, y) = (
                &ta.features[i * h..(i + 1) * h],
                &tb.features[j * h..(j + 1) * h],
            );
            let d: f64 = x.iter().zip(y).map(|(p, q)| ((p - q) as f64).powi(2)).sum();
            let n: f64 = y.iter().map(|q| (*q as f64).powi(2)).sum();
            worst = worst.max((d / n.max(f64::MIN_POSITIVE)).sqrt());
            diff += d;
            norm += n;
            rows += 1;
        }
        if rows != tb.row_ids.len() {
            bail!(
                "{split}: {} has rows that {} lacks",
                b.display(),
                a.display()
            );
        }
        out.push(SplitDifference {
            split: split.to_string(),
            rows,
            relative_error: (diff / norm.max(f64::MIN_POSITIVE)).sqrt(),
            worst_row_relative_error: worst,
        });
    }
    Ok(out)
}
