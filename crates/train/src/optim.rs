//! AdamW with SSPA's parameter groups, and global gradient-norm clipping.
//!
//! Weight decay applies to weight matrices only (parameters of rank ≥ 2: linear and quaternion
//! weights), never to biases, LayerNorm parameters, logit scales, temperatures or prompt tokens
//! (SSPA.md, "Further fixed choices"). burn's optimiser takes parameter groups by id: every
//! parameter falls back to a decay-free AdamW, and the weight matrices form a second group with
//! decay. burn's own `GradientClipping::Norm` clips each parameter separately, so the global
//! norm (as `torch.nn.utils.clip_grad_norm_`) is computed here.

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::FloatDType;
use sspa_config::TrainSection;

/// Ids of the parameters that receive weight decay: every float parameter of rank ≥ 2.
pub fn decayed_parameter_ids<M: Module>(module: &M) -> Vec<ParamId> {
    struct Matrices(Vec<ParamId>);
    impl ModuleVisitor for Matrices {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if D >= 2 {
                self.0.push(param.id);
            }
        }
    }
    let mut visitor = Matrices(Vec::new());
    module.visit(&mut visitor);
    visitor.0
}

/// Configuration of the grouped AdamW (SSPA.md: β = (0.9, 0.999), eps 1e-8).
#[derive(Config, Debug)]
pub struct AdamWGroupsConfig {
    /// First-moment decay.
    #[config(default = 0.9)]
    pub beta_1: f32,
    /// Second-moment decay.
    #[config(default = 0.999)]
    pub beta_2: f32,
    /// Denominator epsilon.
    #[config(default = 1e-8)]
    pub epsilon: f32,
    /// Decoupled weight decay of the weight matrices.
    #[config(default = 1e-4)]
    pub weight_decay: f32,
}

impl AdamWGroupsConfig {
    /// The optimiser described by `[train]` (`weight_decay`).
    pub fn from_section(train: &TrainSection) -> Self {
        Self::new().with_weight_decay(train.weight_decay as f32)
    }

    /// An optimiser for `module`: decay-free AdamW for all parameters, AdamW with decay for the
    /// weight matrices. The groups are fixed by parameter id, so build it from the module that
    /// will be trained (ids survive optimiser steps and record loading).
    pub fn init<M: Module>(&self, module: &M) -> ModuleOptimizer {
        self.init_excluding(module, &[])
    }

    /// [`AdamWGroupsConfig::init`] with the parameters `no_decay` (e.g. CAP prompt tokens, which
    /// are matrices but take no decay) left out of the decayed group.
    pub fn init_excluding<M: Module>(&self, module: &M, no_decay: &[ParamId]) -> ModuleOptimizer {
        let adamw = |decay: f32| {
            AdamWConfig::new()
                .with_beta_1(self.beta_1)
                .with_beta_2(self.beta_2)
                .with_epsilon(self.epsilon)
                .with_weight_decay(decay)
                .build()
        };
        ModuleOptimizer::from(adamw(0.0)).with_group(
            ParamGroup::from_ids(
                decayed_parameter_ids(module).into_iter().filter(|id| !no_decay.contains(id)).collect(),
            ),
            adamw(self.weight_decay),
            None,
        )
    }
}

/// Scales all gradients by `min(1, max_norm / ‖g‖)` with `‖g‖` the norm over every parameter of
/// `module` together; returns the gradients and the norm before clipping. `max_norm ≤ 0` only
/// measures. The norm is summed in f32; the gradients keep their type.
pub fn clip_grad_norm<M: Module>(module: &M, mut grads: GradientsParams, max_norm: f64) -> (GradientsParams, f64) {
    // The squares are summed on the device and read once: one synchronisation per step rather
    // than one per parameter (which dominates small steps on a GPU).
    struct SquaredNorm<'a> {
        grads: &'a GradientsParams,
        total: Option<Tensor<1>>,
    }
    impl ModuleVisitor for SquaredNorm<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(grad) = self.grads.get::<D>(param.id) {
                // In f32 whatever the gradient's type (a no-op for the f32 gradients of master
                // weights under `train.precision = "mixed"`; bf16 gradients under `"bf16"`).
                let squares = grad.cast(FloatDType::F32).square().sum();
                self.total = Some(match self.total.take() {
                    Some(total) => total + squares,
                    None => squares,
                });
            }
        }
    }
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(grad) = self.grads.remove::<D>(param.id) {
                self.grads.register(param.id, grad.mul_scalar(self.factor));
            }
        }
    }

    let mut measure = SquaredNorm { grads: &grads, total: None };
    module.visit(&mut measure);
    let norm = measure.total.map_or(0.0, |total| f64::from(total.into_scalar::<f32>()).sqrt());
    if max_norm > 0.0 && norm > max_norm {
        let mut scale = Scale { grads: &mut grads, factor: max_norm / (norm + 1e-6) };
        module.visit(&mut scale);
    }
    (grads, norm)
}

/// Current values of every float parameter, flattened, by id (used by the EMA and by tests that
/// check that a step changed a parameter).
pub fn parameter_snapshot<M: Module>(module: &M) -> HashMap<ParamId, Tensor<1>> {
    struct Snapshot(HashMap<ParamId, Tensor<1>>);
    impl ModuleVisitor for Snapshot {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let value = param.val().detach().without_autodiff();
            let count = value.shape().num_elements();
            self.0.insert(param.id, value.reshape([count]));
        }
    }
    let mut visitor = Snapshot(HashMap::new());
    module.visit(&mut visitor);
    visitor.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use sspa_model::SspaHeadConfig;

    /// Unseeded: seeding outside the process-wide lock would change the numbers another test is
    /// drawing under it (modules here are drawn through [`drawn`], which seeds under the lock).
    fn device() -> Device {
        Device::flex()
    }

    /// A module drawn under the process-wide seed lock (other tests seed and draw concurrently),
    /// its lazy parameters materialised there.
    fn drawn<M: burn::module::Module>(device: &Device, init: impl FnOnce() -> M) -> M {
        crate::model::seeded(device, 0, || {
            let module = init();
            drop(parameter_snapshot(&module));
            module
        })
    }

    #[test]
    fn decay_reaches_weight_matrices_only() {
        let device = device().autodiff();
        let head = drawn(&device, || SspaHeadConfig::new(8).init(&device));
        let decayed = decayed_parameter_ids(&head);
        let before = parameter_snapshot(&head);
        assert!(!decayed.is_empty() && decayed.len() < before.len());

        // A loss with zero gradient everywhere: Adam's update is 0, only the decay acts.
        let zero = sum_of_parameters(&head).mul_scalar(0.0);
        let grads = GradientsParams::from_grads(zero.backward(), &head);
        let mut optimizer = AdamWGroupsConfig::new().with_weight_decay(0.5).init(&head);
        let head = optimizer.step(0.1, head, grads);
        let after = parameter_snapshot(&head);
        for (id, old) in before {
            let new = after.get(&id).expect("same ids after a step");
            let factor = if decayed.contains(&id) { 0.95 } else { 1.0 };
            let difference: f32 = (new.clone() - old.mul_scalar(factor)).abs().max().into_scalar();
            assert!(difference <= 1e-6, "parameter {id}: off by {difference}");
        }
    }

    #[test]
    fn global_norm_clipping_scales_all_gradients_together() {
        let device = device().autodiff();
        let head = drawn(&device, || SspaHeadConfig::new(8).init(&device));
        let loss = sum_of_parameters(&head).mul_scalar(3.0);
        let grads = GradientsParams::from_grads(loss.backward(), &head);
        // d(3 Σθ)/dθ = 3 everywhere: the norm is 3·√(#params).
        let count = head.num_params() as f64;
        let (grads, norm) = clip_grad_norm(&head, grads, 1.0);
        assert!((norm - 3.0 * count.sqrt()).abs() < 1e-3 * norm);
        let (_, clipped) = clip_grad_norm(&head, grads, 0.0);
        assert!((clipped - 1.0).abs() < 1e-4, "{clipped}");
    }

    fn sum_of_parameters<M: Module>(module: &M) -> Tensor<1> {
        struct Sum(Option<Tensor<1>>);
        impl ModuleVisitor for Sum {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let s = param.val().sum();
                self.0 = Some(match self.0.take() {
                    Some(total) => total + s,
                    None => s,
                });
            }
        }
        let mut sum = Sum(None);
        module.visit(&mut sum);
        sum.0.expect("parameters")
    }
}
