//! Patch-to-label aggregation (SSPA Eqs. 14–16, Fig. 5).
//!
//! `l_ij = α · cos(F*_i, T*_j)` per image, `α = exp(min(a, ln 100))`. The soft aggregator weighs
//! patches by `w_ij = softmax_i(l_ij / τ)` with a learnable temperature `τ = exp(b)` and returns
//! `s^r_j = Σ_i w_ij l_ij` (logits are aggregated; the sigmoid is applied once, later). Ablations:
//! the mean over patches, and the hard max (CDUL).

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use sspa_config::Aggregator as AggregatorKind;

use crate::similarity::{LOGIT_SCALE_INIT, logit_scale, scalar_param, scaled_cosine};

/// Configuration of [`Aggregator`].
#[derive(Config, Debug)]
pub struct AggregatorConfig {
    /// Soft (learnable temperature), mean or hard max.
    #[config(default = "AggregatorKind::Soft")]
    pub kind: AggregatorKind,
    /// Initial `a` of the logit scale `α = exp(a)`; `ln(1/0.07)` as CLIP.
    #[config(default = "LOGIT_SCALE_INIT")]
    pub logit_scale_init: f64,
    /// Initial `b` of the temperature `τ = exp(b)` (soft only).
    #[config(default = 0.0)]
    pub log_temperature_init: f64,
}

impl AggregatorConfig {
    /// Builds the scalars: `a` always, `b` for the soft aggregator only.
    pub fn init(&self, device: &Device) -> Aggregator {
        Aggregator {
            logit_scale: scalar_param(self.logit_scale_init, device),
            log_temperature: (self.kind == AggregatorKind::Soft)
                .then(|| scalar_param(self.log_temperature_init, device)),
            kind: self.kind,
        }
    }
}

/// Regional logits from aligned patches and category centres.
#[derive(Module, Debug)]
pub struct Aggregator {
    /// `a`, `[1]`.
    pub logit_scale: Param<Tensor<1>>,
    /// `b`, `[1]` (soft only).
    pub log_temperature: Option<Param<Tensor<1>>>,
    /// Which aggregation runs.
    #[module(skip)]
    pub kind: AggregatorKind,
}

/// What [`Aggregator::forward`] returns.
#[derive(Debug, Clone)]
pub struct AggregatorOutput {
    /// Regional logits `s^r`, `[B, C]`.
    pub logits: Tensor<2>,
    /// Patch-label logits `l`, `[B, N, C]`.
    pub patch_logits: Tensor<3>,
    /// Patch importance `w`, `[B, N, C]`, summing to 1 over `N`: softmax weights (soft), `1/N`
    /// (mean), or an indicator of the arg-max patches, ties shared (hard).
    pub weights: Tensor<3>,
}

impl Aggregator {
    /// # Shapes
    /// - patches (`F*`): `[B, N, d]`
    /// - text (`T*`): `[B, C, d]`
    /// - output: see [`AggregatorOutput`]
    pub fn forward(&self, patches: Tensor<3>, text: Tensor<3>) -> AggregatorOutput {
        let patch_logits = scaled_cosine(patches, text, logit_scale(&self.logit_scale));
        let [_, n, _] = patch_logits.dims();
        let weights = match (&self.kind, &self.log_temperature) {
            (AggregatorKind::Soft, Some(b)) => {
                let temperature = b.val().exp().unsqueeze::<3>();
                softmax(patch_logits.clone() / temperature, 1)
            }
            (AggregatorKind::Hard, _) => {
                let max = patch_logits.clone().detach().max_dim(1);
                let winners = patch_logits.clone().detach().equal(max.expand(patch_logits.dims()));
                // In the logits' float type (bf16 under mixed precision), not the device default.
                let winners = patch_logits.clone().detach().zeros_like().mask_fill(winners, 1.0);
                let count = winners.clone().sum_dim(1);
                winners / count
            }
            _ => patch_logits.ones_like().div_scalar(n as f64),
        };
        let logits = (weights.clone() * patch_logits.clone()).sum_dim(1).squeeze_dim::<2>(1);
        AggregatorOutput { logits, patch_logits, weights }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::similarity::LOGIT_SCALE_MAX_LN;
    use crate::test_util::{assert_close, device, random, values};

    fn soft(b: f64, device: &Device) -> Aggregator {
        AggregatorConfig::new().with_log_temperature_init(b).init(device)
    }

    #[test]
    fn soft_tends_to_the_max_as_the_temperature_vanishes() {
        let device = device();
        let (patches, text) = (random([2, 9, 16], &device), random([2, 4, 16], &device));
        let cold = soft(-20.0, &device).forward(patches.clone(), text.clone());
        let max = cold.patch_logits.clone().max_dim(1).squeeze_dim::<2>(1);
        assert_close(cold.logits, max, 1e-4);
        let warm = soft(0.0, &device).forward(patches, text);
        let max = warm.patch_logits.clone().max_dim(1).squeeze_dim::<2>(1);
        assert!(crate::test_util::max_difference(warm.logits, max) > 1e-2, "τ = 1 is not the max");
    }

    #[test]
    fn soft_tends_to_the_mean_as_the_temperature_grows() {
        let device = device();
        let (patches, text) = (random([2, 9, 16], &device), random([2, 4, 16], &device));
        let hot = soft(20.0, &device).forward(patches, text);
        let mean = hot.patch_logits.clone().mean_dim(1).squeeze_dim::<2>(1);
        assert_close(hot.logits, mean, 1e-5);
        assert!(values(hot.weights).iter().all(|&w| (w - 1.0 / 9.0).abs() < 1e-6));
    }

    #[test]
    fn mean_and_hard_ablations() {
        let device = device();
        let (patches, text) = (random([2, 9, 16], &device), random([2, 4, 16], &device));
        let mean = AggregatorConfig::new().with_kind(AggregatorKind::Mean).init(&device);
        assert!(mean.log_temperature.is_none());
        let out = mean.forward(patches.clone(), text.clone());
        assert_close(out.logits, out.patch_logits.mean_dim(1).squeeze_dim::<2>(1), 1e-6);
        let hard = AggregatorConfig::new().with_kind(AggregatorKind::Hard).init(&device);
        let out = hard.forward(patches, text);
        assert_close(out.logits, out.patch_logits.max_dim(1).squeeze_dim::<2>(1), 1e-6);
    }

    #[test]
    fn the_logit_scale_is_clamped_at_100() {
        let device = device();
        let patches = random([1, 3, 8], &device);
        let aggregator = AggregatorConfig::new().with_logit_scale_init(10.0).init(&device);
        let same = aggregator.forward(patches.clone(), patches).patch_logits;
        // cos(f_i, f_i) = 1 on the diagonal, so those logits are exactly α = 100.
        let diagonal: Vec<f32> = values(same).chunks(3).enumerate().map(|(i, row)| row[i]).collect();
        assert!(diagonal.iter().all(|&l| (l - 100.0).abs() < 1e-3), "{diagonal:?}");
        assert!((LOGIT_SCALE_MAX_LN.exp() - 100.0).abs() < 1e-9);
    }
}
