//! Cosine similarity and the clamped learnable logit scale shared by the global branch and the
//! aggregator (SSPA.md, "Shapes and shared conventions").

use burn::module::Param;
use burn::prelude::*;

/// `ln(1/0.07)`: CLIP's initial logit scale exponent.
pub const LOGIT_SCALE_INIT: f64 = 2.659_260_036_932_778_5;

/// `ln(100)`: the logit scale `α = exp(a)` is clamped at 100 in the forward pass.
pub const LOGIT_SCALE_MAX_LN: f64 = 4.605_170_185_988_092;

/// Smallest norm divided by when L2-normalising (as `torch.nn.functional.normalize`).
const NORM_EPS: f64 = 1e-12;

/// L2-normalises the last axis.
///
/// # Shapes
/// - input: `[..., d]`
/// - output: `[..., d]`
pub fn l2_normalize<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let norm = x.clone().square().sum_dim(D - 1).sqrt().clamp_min(NORM_EPS);
    x / norm
}

/// A scalar parameter `a` initialised to `value`.
pub fn scalar_param(value: f64, device: &Device) -> Param<Tensor<1>> {
    Param::from_tensor(Tensor::<1>::from_floats([value as f32], device))
}

/// `α = exp(min(a, ln 100))` for a scalar parameter `a`.
///
/// # Shapes
/// - input: `[1]`
/// - output: `[1]`
pub fn logit_scale(a: &Param<Tensor<1>>) -> Tensor<1> {
    a.val().clamp_max(LOGIT_SCALE_MAX_LN).exp()
}

/// `α · cos(x_i, y_j)` for every pair of rows, per batch element.
///
/// # Shapes
/// - x: `[B, n, d]`
/// - y: `[B, m, d]`
/// - scale: `[1]`
/// - output: `[B, n, m]`
pub fn scaled_cosine(x: Tensor<3>, y: Tensor<3>, scale: Tensor<1>) -> Tensor<3> {
    let cosine = l2_normalize(x).matmul(l2_normalize(y).swap_dims(1, 2));
    cosine * scale.unsqueeze::<3>()
}
