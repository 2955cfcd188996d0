//! The head trains to the same quality on every backend this build has.
//! CPU (flex) always; wgpu when built with `--features wgpu` (on a machine
//! without a GPU, Mesa's lavapipe gives wgpu a software Vulkan device).

use head::{Backend, HeadParams, train};
use tables::features::FeatureTable;

/// Two Gaussian blobs in 24 dimensions, separable but not trivially.
fn blobs(rows: usize, seed: u64) -> FeatureTable {
    let mut state = seed;
    let mut uniform = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64 / (1u64 << 53) as f64) as f32
    };
    let hidden = 24;
    let mut features = Vec::with_capacity(rows * hidden);
    let mut labels = Vec::with_capacity(rows);
    for r in 0..rows {
        let label = (r % 2) as i64;
        for d in 0..hidden {
            // Box-Muller: a normal sample around ±0.6 in the first 4 dims.
            let (u1, u2) = (uniform().max(1e-7), uniform());
            let noise = (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos();
            let centre = if d < 4 {
                0.6 * (2 * label - 1) as f32
            } else {
                0.0
            };
            features.push(centre + noise);
        }
        labels.push(label);
    }
    FeatureTable {
        row_ids: (0..rows as i64).collect(),
        labels,
        hidden,
        features,
    }
}

fn params(backend: Backend) -> HeadParams {
    HeadParams {
        learning_rate: 1e-3,
        epochs: 5,
        backend,
        ..HeadParams::default()
    }
}

/// burn's seeded RNG is one per process: trainings in parallel test threads
/// would draw from it in turn, so they take turns here (the pipeline trains
/// once per process).
static ONE_TRAINING_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn test_accuracy(backend: Backend) -> (f64, Vec<f64>) {
    let _turn = ONE_TRAINING_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let (train_t, val_t, test_t) = (blobs(2000, 1), blobs(400, 2), blobs(400, 3));
    let bar = indicatif::ProgressBar::hidden();
    let summary = train(&params(backend), 2, &train_t, &val_t, &test_t, &bar).unwrap();
    let probs = &summary.test_probabilities;
    let correct = test_t
        .labels
        .iter()
        .enumerate()
        .filter(|&(i, &l)| (probs[2 * i + 1] > probs[2 * i]) == (l == 1))
        .count();
    let losses = summary.history.iter().map(|e| e.val_loss).collect();
    (correct as f64 / test_t.labels.len() as f64, losses)
}

#[test]
fn cpu_backend_learns_and_is_deterministic() {
    let (accuracy, losses) = test_accuracy(Backend::Cpu);
    // Bayes accuracy of these blobs is about 0.89.
    assert!(accuracy > 0.8, "accuracy {accuracy}");
    assert_eq!(
        test_accuracy(Backend::Cpu).1,
        losses,
        "same seed, same losses"
    );
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_backend_trains_as_well_as_the_cpu() {
    let (cpu, cpu_losses) = test_accuracy(Backend::Cpu);
    let (gpu, gpu_losses) = test_accuracy(Backend::Wgpu);
    println!(
        "test accuracy cpu {cpu:.4} wgpu {gpu:.4}; val losses cpu {cpu_losses:?} wgpu {gpu_losses:?}"
    );
    assert!(gpu > 0.8, "wgpu accuracy {gpu}");
    assert!((gpu - cpu).abs() < 0.03, "cpu {cpu} vs wgpu {gpu}");
}

/// The head stage trains from scratch copies on disk (`ScratchRows`, read
/// a row at a time): the same head, losses and test probabilities, bit for
/// bit, as from the same splits in memory.
#[test]
fn training_from_disk_gives_the_head_trained_in_memory() {
    let _turn = ONE_TRAINING_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let splits = [blobs(600, 4), blobs(150, 5), blobs(150, 6)];
    let on_disk: Vec<head::ScratchRows> = splits
        .iter()
        .enumerate()
        .map(|(i, table)| {
            let path = dir.path().join(format!("{i}.parquet"));
            let provenance = tables::Provenance::stage("k", "{}");
            tables::features::write(&path, table.clone(), &provenance).unwrap();
            head::ScratchRows::copy(&path, dir.path()).unwrap()
        })
        .collect();
    let bar = indicatif::ProgressBar::hidden();
    let p = params(Backend::Cpu);
    let memory = train(&p, 2, &splits[0], &splits[1], &splits[2], &bar).unwrap();
    let disk = train(&p, 2, &on_disk[0], &on_disk[1], &on_disk[2], &bar).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(&memory.test_probabilities),
        bits(&disk.test_probabilities)
    );
    assert_eq!(memory.history.len(), disk.history.len());
    for (a, b) in memory.history.iter().zip(&disk.history) {
        assert_eq!(
            (a.train_loss.to_bits(), a.val_loss.to_bits()),
            (b.train_loss.to_bits(), b.val_loss.to_bits())
        );
    }
    let (a, b) = (
        dir.path().join("a.safetensors"),
        dir.path().join("b.safetensors"),
    );
    memory.head.save(&a, memory.shape).unwrap();
    disk.head.save(&b, disk.shape).unwrap();
    assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
}
