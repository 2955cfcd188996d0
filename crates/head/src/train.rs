//! The training loop.

use std::time::Instant;

use anyhow::{Result, bail};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::fused_adamw::{self, FusedAdamW};
use crate::model::{Head, HeadShape};
use crate::rows::Rows;

/// `[head]` in pipeline.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadParams {
    #[serde(default = "d_lr")]
    pub learning_rate: f64,
    #[serde(default = "d_epochs")]
    pub epochs: usize,
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    #[serde(default = "d_hidden")]
    pub hidden: usize,
    #[serde(default = "d_dropout")]
    pub dropout: f64,
    /// AdamW's decoupled weight decay (the tutorial's transformers AdamW: 0).
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default = "d_clip")]
    pub clip_grad_norm: f64,
    #[serde(default = "d_seed")]
    pub seed: u64,
    #[serde(default)]
    pub backend: Backend,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// burn's flex backend: pure-Rust CPU, deterministic for a seed.
    #[default]
    Cpu,
    /// burn-wgpu (build with the `wgpu` feature).
    Wgpu,
}

fn d_lr() -> f64 {
    1e-5
}
fn d_epochs() -> usize {
    10
}
fn d_batch() -> usize {
    32
}
fn d_hidden() -> usize {
    512
}
fn d_dropout() -> f64 {
    0.2
}
fn d_clip() -> f64 {
    1.0
}
fn d_seed() -> u64 {
    2021
}

impl Default for HeadParams {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}

impl HeadParams {
    /// Refuses values that cannot work, naming the key, the value and what
    /// is allowed (before any stage runs).
    pub fn check(&self) -> Result<()> {
        let positive = |name: &str, v: f64| -> Result<()> {
            if !(v.is_finite() && v > 0.0) {
                bail!("head.{name} = {v}; must be a finite number > 0");
            }
            Ok(())
        };
        positive("learning_rate", self.learning_rate)?;
        positive("clip_grad_norm", self.clip_grad_norm)?;
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            bail!(
                "head.weight_decay = {}; must be a finite number >= 0",
                self.weight_decay
            );
        }
        if !(0.0..1.0).contains(&self.dropout) {
            bail!(
                "head.dropout = {}; must be in [0, 1) (the fraction of hidden units dropped)",
                self.dropout
            );
        }
        for (name, value) in [
            ("epochs", self.epochs),
            ("batch_size", self.batch_size),
            ("hidden", self.hidden),
        ] {
            if value == 0 {
                bail!("head.{name} = 0; must be at least 1");
            }
        }
        Ok(())
    }
}

/// One epoch's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Epoch {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub seconds: f64,
}

pub struct TrainSummary {
    pub history: Vec<Epoch>,
    pub best_epoch: usize,
    /// Test-split class probabilities, row-major [rows × classes].
    pub test_probabilities: Vec<f32>,
    pub head: Head,
    pub shape: HeadShape,
}

/// scikit-learn's `compute_class_weight('balanced')`: n / (K · count_k).
pub fn class_weights(labels: &[i64], classes: usize) -> Result<Vec<f32>> {
    let mut counts = vec![0usize; classes];
    for &l in labels {
        if l < 0 || l as usize >= classes {
            bail!("label {l} outside 0..{}", classes - 1);
        }
        counts[l as usize] += 1;
    }
    if let Some(k) = counts.iter().position(|&c| c == 0) {
        bail!("class {k} has no training rows; class weights are undefined");
    }
    let n = labels.len() as f64;
    Ok(counts
        .iter()
        .map(|&c| (n / (classes as f64 * c as f64)) as f32)
        .collect())
}

fn device(backend: Backend) -> Result<Device> {
    match backend {
        Backend::Cpu => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => Ok(Device::wgpu(Default::default())),
        #[cfg(not(feature = "wgpu"))]
        Backend::Wgpu => bail!(
            "head.backend = \"wgpu\" needs a build with burn-wgpu: run the same command as `cargo xtask-wgpu ...` instead of `cargo xtask ...`"
        ),
    }
}

/// The rows' features and labels as tensors on `device`.
fn batch_tensor(
    split: &dyn Rows,
    rows: &[usize],
    device: &Device,
) -> Result<(Tensor<2>, Tensor<1, Int>)> {
    let h = split.hidden();
    let mut x = Vec::with_capacity(rows.len() * h);
    split.features_of(rows, &mut x)?;
    let y: Vec<i64> = rows.iter().map(|&r| split.labels()[r]).collect();
    Ok((
        Tensor::from_data(TensorData::new(x, [rows.len(), h]), device),
        Tensor::from_data(TensorData::new(y, [rows.len()]), device),
    ))
}

/// Trains on `train`, selects by `val` loss, predicts `test`.
pub fn train(
    params: &HeadParams,
    classes: usize,
    train: &dyn Rows,
    val: &dyn Rows,
    test: &dyn Rows,
    progress: &indicatif::ProgressBar,
) -> Result<TrainSummary> {
    if params.batch_size == 0 || params.epochs == 0 {
        bail!("head.batch_size and head.epochs must be positive");
    }
    if !(params.clip_grad_norm > 0.0) {
        bail!(
            "head.clip_grad_norm must be positive (the tutorial's 1.0), got {}",
            params.clip_grad_norm
        );
    }
    let base = device(params.backend)?;
    base.seed(params.seed);
    let ad = base.clone().autodiff();
    let shape = HeadShape {
        input: train.hidden(),
        hidden: params.hidden,
        classes,
    };
    let mut head = Head::new(shape, params.dropout, &ad);
    let weights = class_weights(train.labels(), classes)?;
    let loss_fn = CrossEntropyLossConfig::new()
        .with_weights(Some(weights.clone()))
        .init(&ad);
    let val_loss_fn = CrossEntropyLossConfig::new()
        .with_weights(Some(weights.clone()))
        .init(&base);
    let mut optim = Step::new(params);
    let mut rng = rand::rngs::StdRng::seed_from_u64(params.seed);
    let rows = train.labels().len();
    let mut order: Vec<usize> = (0..rows).collect();
    // Each step reads its rows (from disk for a stage run: rows.rs); the
    // loss is summed on the device and read once per epoch, so a step
    // waits for no result from the device.
    let mut history = Vec::new();
    let mut best: Option<(f64, usize, Head)> = None;
    progress.set_length((params.epochs * rows.div_ceil(params.batch_size)) as u64);
    for epoch in 1..=params.epochs {
        let started = Instant::now();
        order.shuffle(&mut rng);
        let mut total: Option<Tensor<1>> = None;
        let mut batches = 0;
        for step_rows in order.chunks(params.batch_size) {
            let (x, y) = batch_tensor(train, step_rows, &ad)?;
            // The head outputs log-probabilities; cross-entropy over them is the NLL.
            let loss = loss_fn.forward(head.forward(x), y);
            let step_loss = loss.clone().detach().reshape([1]);
            total = Some(match total {
                Some(sum) => sum + step_loss,
                None => step_loss,
            });
            batches += 1;
            let grads = GradientsParams::from_grads(loss.backward(), &head);
            head = optim.step(params.learning_rate, head, grads);
            progress.inc(1);
        }
        let eval = head.valid();
        let (val_loss, val_accuracy, _) = evaluate(&eval, &val_loss_fn, &weights, val, &base)?;
        history.push(Epoch {
            epoch,
            train_loss: total.map_or(0.0, |t| t.into_scalar::<f32>() as f64) / batches as f64,
            val_loss,
            val_accuracy,
            seconds: started.elapsed().as_secs_f64(),
        });
        if best.as_ref().is_none_or(|(b, _, _)| val_loss < *b) {
            best = Some((val_loss, epoch, eval));
        }
    }
    let (_, best_epoch, best_head) = best.expect("at least one epoch");
    let (_, _, test_probabilities) = evaluate(&best_head, &val_loss_fn, &weights, test, &base)?;
    Ok(TrainSummary {
        history,
        best_epoch,
        test_probabilities,
        head: best_head,
        shape,
    })
}

/// AdamW after clipping by the global norm: fused on the host for the CPU
/// backend (fused_adamw.rs says why), burn's own on a GPU backend, where the
/// weights stay on the device. Clipping is by the global norm (clip.rs), not
/// by burn's per-tensor `GradientClippingConfig::Norm`.
enum Step {
    Fused(FusedAdamW),
    Burn {
        optim: ModuleOptimizer,
        max_norm: f32,
    },
}

impl Step {
    fn new(params: &HeadParams) -> Step {
        let (decay, max_norm) = (params.weight_decay as f32, params.clip_grad_norm as f32);
        match params.backend {
            Backend::Cpu => Step::Fused(FusedAdamW::new(decay, max_norm)),
            Backend::Wgpu => Step::Burn {
                optim: AdamWConfig::new()
                    .with_beta_1(fused_adamw::BETA_1)
                    .with_beta_2(fused_adamw::BETA_2)
                    .with_epsilon(fused_adamw::EPSILON)
                    .with_weight_decay(decay)
                    .init(),
                max_norm,
            },
        }
    }

    fn step(&mut self, lr: f64, head: Head, mut grads: GradientsParams) -> Head {
        match self {
            Step::Fused(optim) => optim.step(lr, head, grads),
            Step::Burn { optim, max_norm } => {
                crate::clip::clip_global_norm(&head, &mut grads, *max_norm);
                optim.step(lr, head, grads)
            }
        }
    }
}

/// (class-weighted NLL, accuracy, probabilities) over a whole split: the
/// weighted mean over all rows, Σ w_y·nll / Σ w_y, as PyTorch's NLLLoss.
fn evaluate(
    head: &Head,
    loss_fn: &burn::nn::loss::CrossEntropyLoss,
    weights: &[f32],
    split: &dyn Rows,
    device: &Device,
) -> Result<(f64, f64, Vec<f32>)> {
    let labels = split.labels();
    let rows: Vec<usize> = (0..labels.len()).collect();
    let mut loss_sum = 0.0;
    let mut weight_sum = 0.0;
    let mut correct = 0usize;
    let mut probs = Vec::new();
    for chunk in rows.chunks(1024) {
        let (x, y) = batch_tensor(split, chunk, device)?;
        let logp = head.forward(x);
        let w: f64 = chunk
            .iter()
            .map(|&r| weights[labels[r] as usize] as f64)
            .sum();
        loss_sum += loss_fn.forward(logp.clone(), y).into_scalar::<f32>() as f64 * w;
        weight_sum += w;
        let p: Vec<f32> = logp
            .exp()
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32 probabilities");
        let k = p.len() / chunk.len();
        for (i, &r) in chunk.iter().enumerate() {
            let row = &p[i * k..(i + 1) * k];
            let pred = (0..k)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap_or(0);
            correct += usize::from(pred as i64 == labels[r]);
        }
        probs.extend(p);
    }
    Ok((
        loss_sum / weight_sum.max(1.0),
        correct as f64 / labels.len().max(1) as f64,
        probs,
    ))
}
