//! Asymmetric Loss (Ridnik et al., ICCV 2021; SSPA Eqs. 17, 19) and the total SSPA loss.
//!
//! For `p = σ(s)` and margin `m`: `p_m = max(p − m, 0)`;
//! `L = −(1/B) Σ_b Σ_j [ y⁺ (1−p)^{γ+} log(max(p, eps)) + y⁻ p_m^{γ−} log(max(1 − p_m, eps)) ]`
//! with `y⁺ = [y = 1]`, `y⁻ = [y = 0]`; targets `−1` are ignored, `B` counts every image. The
//! focusing weights are constants in backprop when `detach_focusing` is set (the reference's
//! `disable_torch_grad_focal_loss`). Total: `L = L_asl(s^g) + λ · L_asl(s^r)`.

use burn::prelude::*;
use burn::tensor::FloatDType;
use burn::tensor::activation::sigmoid;
use sspa_config::{AslSection, TrainSection};

use crate::error::ModelError;
use crate::head::SspaOutput;

/// Configuration of [`AsymmetricLoss`].
#[derive(Config, Debug)]
pub struct AsymmetricLossConfig {
    /// Focusing exponent `γ+` of positives.
    #[config(default = 0.0)]
    pub gamma_pos: f64,
    /// Focusing exponent `γ−` of negatives.
    #[config(default = 4.0)]
    pub gamma_neg: f64,
    /// Probability margin `m` shifted off negatives (0 disables it).
    #[config(default = 0.05)]
    pub clip: f64,
    /// Lower clamp of the probabilities inside the logs.
    #[config(default = 1e-8)]
    pub eps: f64,
    /// Treat the focusing weights as constants in backprop.
    #[config(default = true)]
    pub detach_focusing: bool,
}

impl From<&AslSection> for AsymmetricLossConfig {
    fn from(section: &AslSection) -> Self {
        Self::new()
            .with_gamma_pos(section.gamma_pos)
            .with_gamma_neg(section.gamma_neg)
            .with_clip(section.clip)
            .with_eps(section.eps)
            .with_detach_focusing(section.detach_focusing)
    }
}

impl AsymmetricLossConfig {
    /// The loss (it has no parameters).
    pub fn init(&self) -> AsymmetricLoss {
        AsymmetricLoss { config: self.clone() }
    }
}

/// The Asymmetric Loss, summed over labels and averaged over the batch.
#[derive(Debug, Clone)]
pub struct AsymmetricLoss {
    config: AsymmetricLossConfig,
}

impl AsymmetricLoss {
    /// The loss of `logits` against `targets` (1 positive, 0 negative, −1 ignored).
    ///
    /// # Shapes
    /// - logits: `[B, C]`
    /// - targets: `[B, C]`
    /// - output: `[1]`
    pub fn forward(&self, logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
        let config = &self.config;
        let [batch, _] = logits.dims();
        // The loss is computed in f32 also under bf16 (`train.precision = "mixed"` or `"bf16"`): its logs,
        // clamps and powers lose too much in 8 mantissa bits. A no-op for f32 inputs.
        let (logits, targets) = (logits.cast(FloatDType::F32), targets.cast(FloatDType::F32));
        let positive = targets.clone().equal_elem(1.0).float();
        let negative = targets.equal_elem(0.0).float();

        let probability = sigmoid(logits);
        let shifted = if config.clip > 0.0 {
            probability.clone().sub_scalar(config.clip).clamp_min(0.0)
        } else {
            probability.clone()
        };
        let log_positive = probability.clone().clamp_min(config.eps).log();
        let log_negative = shifted.clone().neg().add_scalar(1.0).clamp_min(config.eps).log();

        let weight = |base: Tensor<2>, gamma: f64| {
            let base = if config.detach_focusing { base.detach() } else { base };
            base.powf_scalar(gamma)
        };
        let term_positive = if config.gamma_pos > 0.0 {
            log_positive * weight(probability.neg().add_scalar(1.0), config.gamma_pos)
        } else {
            log_positive
        };
        let term_negative =
            if config.gamma_neg > 0.0 { log_negative * weight(shifted, config.gamma_neg) } else { log_negative };

        (positive * term_positive + negative * term_negative).sum().neg().div_scalar(batch as f64)
    }
}

/// `L = L_asl(s^g) + λ · L_asl(s^r)` over the branches the head produced.
#[derive(Debug, Clone)]
pub struct SspaLoss {
    /// The ASL applied to each branch.
    pub asl: AsymmetricLoss,
    /// `λ`, the weight of the regional loss.
    pub lambda_regional: f64,
}

impl SspaLoss {
    /// The loss described by `[train]` (ASL parameters and `lambda_regional`).
    pub fn from_section(train: &TrainSection) -> Self {
        Self { asl: AsymmetricLossConfig::from(&train.asl).init(), lambda_regional: train.lambda_regional }
    }

    /// # Shapes
    /// - output: the head's logits, `[B, C]` each
    /// - targets: `[B, C]` in `{1, 0, −1}`
    /// - result: `[1]`
    pub fn forward(&self, output: &SspaOutput, targets: Tensor<2>) -> Tensor<1> {
        let global = output.global_logits.as_ref().map(|logits| self.asl.forward(logits.clone(), targets.clone()));
        let regional = output
            .regional_logits
            .as_ref()
            .map(|logits| self.asl.forward(logits.clone(), targets.clone()).mul_scalar(self.lambda_regional));
        match (global, regional) {
            (Some(global), Some(regional)) => global + regional,
            (Some(loss), None) | (None, Some(loss)) => loss,
            (None, None) => Tensor::zeros([1], &targets.device()),
        }
    }
}

/// Checks that every target is 1, 0 or −1 (anything else would silently count as ignored).
///
/// # Errors
/// [`ModelError::Target`] at the first other value.
pub fn validate_targets(targets: &[f32]) -> Result<(), ModelError> {
    match targets.iter().position(|&value| value != 1.0 && value != 0.0 && value != -1.0) {
        Some(index) => Err(ModelError::Target { index, value: targets[index] }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{device, random, values};

    fn targets(device: &Device) -> Tensor<2> {
        Tensor::from_floats([[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 1.0, -1.0]], device)
    }

    #[test]
    fn ignored_targets_contribute_nothing() {
        let device = device();
        let loss = AsymmetricLossConfig::new().init();
        let logits = random([2, 4], &device);
        let moved = logits.clone() + Tensor::from_floats([[0.0, 0.0, 9.0, 0.0], [0.0, 0.0, 0.0, -9.0]], &device);
        let (a, b) =
            (values(loss.forward(logits, targets(&device)))[0], values(loss.forward(moved, targets(&device)))[0]);
        assert_eq!(a, b);
    }

    #[test]
    fn all_ignored_is_zero_and_the_batch_mean_counts_every_image() {
        let device = device();
        let loss = AsymmetricLossConfig::new().init();
        let ignored = Tensor::<2>::full([3, 4], -1.0, &device);
        assert_eq!(values(loss.forward(random([3, 4], &device), ignored))[0], 0.0);
        // Doubling the batch with images whose targets are all ignored halves the loss.
        let logits = random([1, 4], &device);
        let target = Tensor::<2>::from_floats([[1.0, 0.0, 0.0, 1.0]], &device);
        let single = values(loss.forward(logits.clone(), target.clone()))[0];
        let padded = values(loss.forward(
            Tensor::cat(vec![logits.clone(), logits], 0),
            Tensor::cat(vec![target, Tensor::full([1, 4], -1.0, &device)], 0),
        ))[0];
        assert!((padded - single / 2.0).abs() < 1e-6);
    }

    #[test]
    fn the_margin_zeroes_easy_negatives() {
        let device = device();
        // p = σ(−4) ≈ 0.018 < m = 0.05: p_m = 0, so the negative's loss is exactly 0.
        let loss = AsymmetricLossConfig::new().init();
        let value = loss.forward(Tensor::from_floats([[-4.0]], &device), Tensor::from_floats([[0.0]], &device));
        assert_eq!(values(value)[0], 0.0);
    }

    #[test]
    fn total_loss_weights_the_regional_branch() {
        let device = device();
        let train = TrainSection { lambda_regional: 0.5, ..TrainSection::default() };
        let loss = SspaLoss::from_section(&train);
        let (g, r) = (random([2, 4], &device), random([2, 4], &device));
        let output = SspaOutput {
            global_logits: Some(g.clone()),
            regional_logits: Some(r.clone()),
            scores: g.clone(),
            aggregator_weights: None,
            text_gate: None,
            patch_gate: None,
        };
        let total = values(loss.forward(&output, targets(&device)))[0];
        let parts =
            values(loss.asl.forward(g, targets(&device)))[0] + 0.5 * values(loss.asl.forward(r, targets(&device)))[0];
        assert!((total - parts).abs() < 1e-5);
    }

    #[test]
    fn targets_are_checked() {
        assert_eq!(validate_targets(&[1.0, 0.0, -1.0]), Ok(()));
        assert_eq!(validate_targets(&[1.0, 0.5]), Err(ModelError::Target { index: 1, value: 0.5 }));
    }
}
