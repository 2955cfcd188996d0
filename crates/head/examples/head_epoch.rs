//! Times the head's training on synthetic features of SST-2's shape
//! (47,144 × 384, 2 classes): `cargo run -p head --example head_epoch [EPOCHS]`.
//! A profiling harness (`perf record` around it); figures for BENCHMARKS.md
//! come from `cargo xtask bench`, which trains on real features.

use head::{HeadParams, train};
use tables::features::FeatureTable;

fn table(rows: usize, hidden: usize, seed: u64) -> FeatureTable {
    // A fixed linear congruential stream: no dependency for a harness.
    let mut state = seed;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    let features: Vec<f32> = (0..rows * hidden).map(|_| next()).collect();
    let labels = (0..rows)
        .map(|r| i64::from(features[r * hidden] + features[r * hidden + 1] > 0.0))
        .collect();
    FeatureTable {
        row_ids: (0..rows as i64).collect(),
        labels,
        hidden,
        features,
    }
}

fn main() {
    let epochs = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2);
    let params = HeadParams {
        epochs,
        learning_rate: 1e-4,
        ..HeadParams::default()
    };
    let (tr, va, te) = (
        table(47_144, 384, 1),
        table(10_102, 384, 2),
        table(1_000, 384, 3),
    );
    let bar = indicatif::ProgressBar::hidden();
    let summary = train(&params, 2, &tr, &va, &te, &bar).expect("training");
    for e in &summary.history {
        println!(
            "epoch {}: {:.3} s, val accuracy {:.4}",
            e.epoch, e.seconds, e.val_accuracy
        );
    }
}
