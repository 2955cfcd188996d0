//! Profiling harness for the linear probe: linfa fits on 80 % of a cached
//! embed split, raw and standardised, by L-BFGS iterations (time, held-out
//! accuracy and log-loss). The figures behind `audit.linear_iterations`:
//! cargo run -p audit --example probe_fit -- ARTIFACTS/embed/train.parquet
use linfa::prelude::*;
use linfa_logistic::MultiLogisticRegression;
use ndarray::{Array1, Array2, Axis};

fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).expect("embed/train.parquet");
    let t = tables::features::read(std::path::Path::new(&path))?;
    let n = t.row_ids.len() * 4 / 5;
    let m = t.row_ids.len() - n;
    let h = t.hidden;
    let all = Array2::from_shape_vec((n + m, h), t.features.clone())?;
    for standardize in [false, true] {
        let mut x = all.clone();
        if standardize {
            let mean = x.slice(ndarray::s![..n, ..]).mean_axis(Axis(0)).unwrap();
            let std = x.slice(ndarray::s![..n, ..]).std_axis(Axis(0), 0.0);
            x = (x - &mean) / &std.mapv(|s| s.max(1e-6));
        }
        let fit_x = x.slice(ndarray::s![..n, ..]).to_owned();
        let held_x = x.slice(ndarray::s![n.., ..]).to_owned();
        let y: Array1<usize> = t.labels[..n].iter().map(|&l| l as usize).collect();
        for iters in [10u64, 20, 50] {
            let started = std::time::Instant::now();
            let model = MultiLogisticRegression::default()
                .alpha(1.0)
                .max_iterations(iters)
                .fit(&Dataset::new(fit_x.clone(), y.clone()))?;
            let fit = started.elapsed();
            let p = model.predict_probabilities(&held_x);
            let acc = (0..m)
                .filter(|&i| (p[[i, 1]] > 0.5) as i64 == t.labels[n + i])
                .count() as f64
                / m as f64;
            let ll: f32 = (0..m)
                .map(|i| -p[[i, t.labels[n + i] as usize]].max(1e-7).ln())
                .sum::<f32>()
                / m as f32;
            println!(
                "f32 standardize {standardize} iters {iters}: fit {fit:.2?}, held acc {acc:.4}, held log-loss {ll:.4}"
            );
        }
    }
    Ok(())
}
