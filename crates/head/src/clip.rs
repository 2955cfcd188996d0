//! Gradient clipping by the global norm, as PyTorch's
//! `clip_grad_norm_(model.parameters(), max_norm)` that the tutorial calls.
//!
//! burn's own `GradientClippingConfig::Norm` clips each parameter tensor by
//! its own norm (burn-optim 0.22.1, `GradientClipping::clip_by_norm` runs per
//! tensor), which lets the whole gradient grow to √(tensors) × max_norm and
//! changes its direction. This scales every gradient by one factor,
//! `min(1, max_norm / (‖g‖ + 1e-6))` with ‖g‖ over all parameters.

use burn::module::{ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;

/// Sums the squares of every parameter's gradient (kept on the device).
struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    sum: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.get::<D>(param.id) {
            let squares = grad.square().sum();
            self.sum = Some(match self.sum.take() {
                Some(sum) => sum + squares,
                None => squares,
            });
        }
    }
}

/// Multiplies every parameter's gradient by one factor (a 1-element tensor).
struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: Tensor<1>,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.remove::<D>(param.id) {
            let factor: Tensor<D> = self.factor.clone().reshape([1; D]);
            self.grads.register::<D>(param.id, grad * factor);
        }
    }
}

/// The global L2 norm of the gradients of `module`'s parameters.
pub fn global_norm<M: Module>(module: &M, grads: &GradientsParams) -> Option<Tensor<1>> {
    let mut visitor = SquaredNorm { grads, sum: None };
    module.visit(&mut visitor);
    visitor.sum.map(Tensor::sqrt)
}

/// Clips `grads` in place to a global norm of at most `max_norm`.
pub fn clip_global_norm<M: Module>(module: &M, grads: &mut GradientsParams, max_norm: f32) {
    let Some(norm) = global_norm(module, grads) else {
        return;
    };
    let factor = (norm.add_scalar(1e-6))
        .recip()
        .mul_scalar(max_norm)
        .clamp_max(1.0);
    module.visit(&mut Scale { grads, factor });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Head, HeadShape};
    use burn::nn::loss::CrossEntropyLossConfig;

    fn scalar(t: Tensor<1>) -> f32 {
        t.into_scalar::<f32>()
    }

    /// Gradients of a head on inputs large enough that their norm is far above 1.
    fn large_gradients() -> (Head, GradientsParams, Device) {
        let device = Device::flex().autodiff();
        device.seed(7);
        let shape = HeadShape {
            input: 8,
            hidden: 16,
            classes: 3,
        };
        let head = Head::new(shape, 0.0, &device);
        let x = Tensor::<2>::random(
            [32, 8],
            burn::tensor::Distribution::Normal(0.0, 50.0),
            &device,
        );
        let y = Tensor::<1, Int>::from_data(
            TensorData::new((0..32).map(|i| i % 3).collect::<Vec<i64>>(), [32]),
            &device,
        );
        let loss = CrossEntropyLossConfig::new()
            .init(&device)
            .forward(head.forward(x), y);
        let grads = GradientsParams::from_grads(loss.backward(), &head);
        (head, grads, device)
    }

    /// Each parameter's own gradient norm, in visiting order.
    fn per_tensor_norms(head: &Head, grads: &GradientsParams) -> Vec<f32> {
        struct Norms<'a>(&'a GradientsParams, Vec<f32>);
        impl ModuleVisitor for Norms<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let g = self.0.get::<D>(param.id).expect("a gradient per parameter");
                self.1.push(g.square().sum().sqrt().into_scalar::<f32>());
            }
        }
        let mut v = Norms(grads, Vec::new());
        head.visit(&mut v);
        v.1
    }

    #[test]
    fn clips_the_global_norm_keeping_the_direction() {
        let (head, mut grads, _) = large_gradients();
        let before = per_tensor_norms(&head, &grads);
        let global = scalar(global_norm(&head, &grads).unwrap());
        assert_eq!(before.len(), 4, "fc1/fc2 weights and biases");
        assert!(
            global > 5.0,
            "the test needs a large gradient, got {global}"
        );
        clip_global_norm(&head, &mut grads, 1.0);
        let after = per_tensor_norms(&head, &grads);
        let clipped = scalar(global_norm(&head, &grads).unwrap());
        assert!((clipped - 1.0).abs() < 1e-4, "global norm {clipped}");
        // One factor for all: per-tensor clipping would leave ratios changed
        // (and the global norm near 2 for four tensors).
        for (b, a) in before.iter().zip(&after) {
            assert!(
                (a / b - 1.0 / global).abs() < 1e-4 * (1.0 / global),
                "{a} / {b} vs 1 / {global}"
            );
        }
    }

    #[test]
    fn leaves_small_gradients_alone() {
        let (head, mut grads, _) = large_gradients();
        let before = per_tensor_norms(&head, &grads);
        let global = scalar(global_norm(&head, &grads).unwrap());
        clip_global_norm(&head, &mut grads, global * 2.0);
        assert_eq!(per_tensor_norms(&head, &grads), before);
    }
}
