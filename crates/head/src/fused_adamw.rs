//! AdamW with global-norm clipping in one pass over host memory: the CPU
//! backend's optimizer step.
//!
//! Why not burn's `AdamW` with `clip.rs`: for this head they spent 43 % of a
//! training step (perf, BENCHMARKS.md). burn-optim 0.22.1 runs the update as
//! about a dozen element-wise tensor operations per parameter, each a new
//! allocation of the 768 KiB `fc1` weight, and clipping adds two more. Here
//! the gradients are read once, the norm is summed, and each element's
//! moments, bias correction, decay and update are one loop iteration.
//!
//! The arithmetic is burn-optim 0.22.1's `AdamW` (moments, bias correction,
//! epsilon added after the square root, decoupled decay `p·(1 − lr·wd)`) after
//! clipping by the global norm as `clip.rs` does (`unit test:
//! matches_burn_adamw_after_global_clipping`). On a GPU backend the host
//! round trip would cost more than it saves: `train.rs` keeps burn's there.

use std::collections::HashMap;

use burn::module::{ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;

/// burn's `AdamWConfig` defaults, which the head has always trained with.
pub const BETA_1: f32 = 0.9;
pub const BETA_2: f32 = 0.999;
pub const EPSILON: f32 = 1e-5;

pub struct FusedAdamW {
    weight_decay: f32,
    max_norm: f32,
    /// Steps taken (burn's `time`: 1 at the first step).
    time: i32,
    /// (first moment, second moment) per parameter.
    moments: HashMap<ParamId, (Vec<f32>, Vec<f32>)>,
}

impl FusedAdamW {
    pub fn new(weight_decay: f32, max_norm: f32) -> FusedAdamW {
        FusedAdamW {
            weight_decay,
            max_norm,
            time: 0,
            moments: HashMap::new(),
        }
    }

    /// Clips `grads` to a global norm of at most `max_norm`, then applies one
    /// AdamW update to every parameter of `module` that has a gradient.
    pub fn step<M: Module>(&mut self, lr: f64, module: M, mut grads: GradientsParams) -> M {
        let mut host = HostGradients {
            grads: &mut grads,
            values: HashMap::new(),
            squares: 0.0,
        };
        module.visit(&mut host);
        let (values, squares) = (host.values, host.squares);
        if values.is_empty() {
            return module;
        }
        // clip.rs: min(1, max_norm / (‖g‖ + 1e-6)).
        let norm = squares.sqrt() as f32;
        let clip = (self.max_norm / (norm + 1e-6)).min(1.0);
        self.time += 1;
        let mut update = Update {
            optim: self,
            grads: values,
            clip,
            lr,
        };
        module.map(&mut update)
    }

    fn update(&mut self, id: ParamId, params: &mut [f32], grad: &[f32], clip: f32, lr: f64) {
        let (m, v) = self
            .moments
            .entry(id)
            .or_insert_with(|| (vec![0.0; grad.len()], vec![0.0; grad.len()]));
        let (c1, c2) = (1.0 - BETA_1.powi(self.time), 1.0 - BETA_2.powi(self.time));
        // Written without branches or indexing so that it vectorises. The
        // moments start at 0 (0·β + (1 − β)·g rounds as burn's (1 − β)·g), and
        // with no decay `p·1` is `p`: no special cases are needed.
        let decay = (1.0 - lr * self.weight_decay as f64) as f32;
        let lr = lr as f32;
        for (((p, &g), m), v) in params
            .iter_mut()
            .zip(grad)
            .zip(m.iter_mut())
            .zip(v.iter_mut())
        {
            let g = g * clip;
            *m = *m * BETA_1 + g * (1.0 - BETA_1);
            *v = *v * BETA_2 + g * g * (1.0 - BETA_2);
            let delta = (*m / c1) / ((*v / c2).sqrt() + EPSILON);
            *p = *p * decay - delta * lr;
        }
    }
}

/// Takes every parameter's gradient to host memory and sums their squares.
struct HostGradients<'a> {
    grads: &'a mut GradientsParams,
    values: HashMap<ParamId, Vec<f32>>,
    squares: f64,
}

impl ModuleVisitor for HostGradients<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.remove::<D>(param.id) {
            let values: Vec<f32> = grad
                .into_data()
                .try_into_vec::<f32>()
                .expect("f32 gradients");
            self.squares += values.iter().map(|&g| (g as f64) * (g as f64)).sum::<f64>();
            self.values.insert(param.id, values);
        }
    }
}

/// Replaces each parameter by its updated values.
struct Update<'a> {
    optim: &'a mut FusedAdamW,
    grads: HashMap<ParamId, Vec<f32>>,
    clip: f32,
    lr: f64,
}

impl ModuleMapper for Update<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(grad) = self.grads.remove(&param.id) else {
            return param;
        };
        let (id, tensor, mapper) = param.consume();
        let (device, shape) = (tensor.device(), tensor.shape());
        let mut values: Vec<f32> = tensor
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32 parameters");
        self.optim
            .update(id, &mut values, &grad, self.clip, self.lr);
        let updated =
            Tensor::<D>::from_data(TensorData::new(values, shape), &device).require_grad();
        Param::from_mapped_value(id, updated, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Head, HeadShape};
    use burn::nn::loss::CrossEntropyLossConfig;
    use burn::optim::AdamWConfig;

    fn weights(head: &Head) -> Vec<f32> {
        struct All(Vec<f32>);
        impl ModuleVisitor for All {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.0
                    .extend(param.val().into_data().try_into_vec::<f32>().expect("f32"));
            }
        }
        let mut all = All(Vec::new());
        head.visit(&mut all);
        all.0
    }

    /// Five steps from the same start with burn's AdamW after `clip.rs` and
    /// with the fused step, on inputs whose gradients are far above the clip
    /// norm at first, with weight decay on.
    #[test]
    fn matches_burn_adamw_after_global_clipping() {
        let device = Device::flex().autodiff();
        device.seed(11);
        let shape = HeadShape {
            input: 8,
            hidden: 16,
            classes: 3,
        };
        let start = Head::new(shape, 0.0, &device);
        let x = Tensor::<2>::random(
            [32, 8],
            burn::tensor::Distribution::Normal(0.0, 20.0),
            &device,
        );
        let y = Tensor::<1, Int>::from_data(
            TensorData::new((0..32).map(|i| i % 3).collect::<Vec<i64>>(), [32]),
            &device,
        );
        let loss_fn = CrossEntropyLossConfig::new().init(&device);
        let grads_of = |head: &Head| {
            let loss = loss_fn.forward(head.forward(x.clone()), y.clone());
            GradientsParams::from_grads(loss.backward(), head)
        };
        let (lr, wd, max_norm) = (1e-2, 0.1, 1.0);
        let mut burn_optim = AdamWConfig::new()
            .with_weight_decay(wd as f32)
            .with_beta_1(BETA_1)
            .with_beta_2(BETA_2)
            .with_epsilon(EPSILON)
            .init();
        let mut fused = FusedAdamW::new(wd as f32, max_norm);
        let initial = weights(&start);
        let (mut a, mut b) = (start.clone(), start);
        for step in 1..=5 {
            let mut ga = grads_of(&a);
            crate::clip::clip_global_norm(&a, &mut ga, max_norm);
            a = burn_optim.step(lr, a, ga);
            let gb = grads_of(&b);
            b = fused.step(lr, b, gb);
            let (wa, wb) = (weights(&a), weights(&b));
            let worst = wa
                .iter()
                .zip(&wb)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-5, "step {step}: weights differ by {worst}");
        }
        // Both moved: the comparison is not of two untouched heads.
        let moved = weights(&b)
            .iter()
            .zip(&initial)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max);
        assert!(moved > 1e-2, "the fused step moved the weights by {moved}");
    }
}
