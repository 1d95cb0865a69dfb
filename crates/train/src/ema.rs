//! Exponential moving average of weights (decay 0.9997, updated every step; SSPA.md).
//!
//! The average lives on the device without autodiff (`Module::valid`): it is only evaluated, never
//! trained, so feed it tensors without autodiff (`Tensor::without_autodiff`).

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use std::collections::HashMap;

use burn::module::ParamId;

use crate::optim::parameter_snapshot;

/// `θ_ema ← decay · θ_ema + (1 − decay) · θ` after every optimiser step.
#[derive(Debug, Clone)]
pub struct ModelEma<M: Module> {
    model: M,
    decay: f64,
    updates: u64,
}

impl<M: Module> ModelEma<M> {
    /// Starts the average at the current weights of `model`.
    pub fn new(model: &M, decay: f64) -> Self {
        Self { model: model.valid(), decay, updates: 0 }
    }

    /// Folds the current weights of `model` (the one being trained) into the average. Parameters
    /// are matched by id; ids the average does not know are left alone.
    pub fn update(&mut self, model: &M) {
        struct Blend {
            live: HashMap<ParamId, Tensor<1>>,
            decay: f64,
        }
        impl ModuleMapper for Blend {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                let Some(live) = self.live.remove(&param.id) else {
                    return param;
                };
                let decay = self.decay;
                param.map(|average| {
                    let live = live.reshape(average.shape());
                    average.mul_scalar(decay) + live.mul_scalar(1.0 - decay)
                })
            }
        }
        let mut blend = Blend { live: parameter_snapshot(model), decay: self.decay };
        self.model = self.model.clone().map(&mut blend);
        self.updates += 1;
    }

    /// The averaged model, for evaluation.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// Updates folded in so far.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// The decay.
    pub fn decay(&self) -> f64 {
        self.decay
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sspa_model::MlpConfig;

    #[test]
    fn the_average_moves_by_one_minus_decay() {
        let device = Device::flex().autodiff();
        // Seeded and drawn under the process-wide lock: other tests seed and draw concurrently.
        let start = crate::model::seeded(&device, 7, || {
            let start = MlpConfig::new(4).init(&device);
            drop(crate::optim::parameter_snapshot(&start));
            start
        });
        let mut ema = ModelEma::new(&start, 0.75);
        assert!(!ema.model().expand.weight.val().is_autodiff());

        let moved = start.clone().map(&mut Shift(1.0));
        ema.update(&moved);
        ema.update(&moved);
        // After two updates towards θ + 1: θ + (1 − 0.75²).
        let expected = start.expand.weight.val().without_autodiff().add_scalar(1.0 - 0.75 * 0.75);
        let difference: f32 = (ema.model().expand.weight.val() - expected).abs().max().into_scalar();
        assert!(difference <= 1e-6, "off by {difference}");
        assert_eq!(ema.updates(), 2);
    }

    struct Shift(f32);
    impl ModuleMapper for Shift {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let shift = self.0;
            param.map(|t| t.add_scalar(shift))
        }
    }
}
