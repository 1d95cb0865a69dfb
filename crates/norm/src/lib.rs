//! LayerNorm whose backward is one pass over the rows.
//!
//! burn 0.22's autodiff has no LayerNorm op: it records the decomposed form (mean, centre, square,
//! mean, add, sqrt, divide, scale, shift), keeps each intermediate, and runs a backward step per
//! piece. On flex that made a `[64, 16, 192]` LayerNorm 1.5 ms forward + backward against
//! PyTorch's 0.3 ms, and the SSPA head and MiniLM hold about twenty of them per training step.
//! [`LayerNorm`] (a drop-in for `burn::nn::LayerNorm`: same parameters, same record paths) routes
//! flex tensors through [`LayerNormBackend`]: flex's own fused forward, and under autodiff one
//! tracked op whose backward ([`kernel::backward_rows`]) recomputes each row's mean and
//! `1/σ` from the saved input and writes `∂x`, `∂γ` and `∂β` in a single pass. Other backends and
//! dtypes use burn's `LayerNorm` arithmetic unchanged.
//!
//! - [`backend`]: the backend extension trait.
//! - [`autodiff`]: its `Autodiff<B, C>` implementation.
//! - [`kernel`]: the row kernels.

pub mod autodiff;
pub mod backend;
pub mod kernel;

pub use backend::LayerNormBackend;

use burn::backend::{Dispatch, DispatchDevice};
use burn::module::{Module, Param};
use burn::prelude::*;
use burn::tensor::module::layer_norm;
use burn::tensor::{DType, FloatDType};

/// Configuration of [`LayerNorm`], as `burn::nn::LayerNormConfig`.
#[derive(Config, Debug)]
pub struct LayerNormConfig {
    /// Width of the normalised (last) dimension.
    pub d_model: usize,
    /// Added to the variance before the square root.
    #[config(default = 1e-5)]
    pub epsilon: f64,
    /// Whether to learn a shift `β`.
    #[config(default = true)]
    pub bias: bool,
}

impl LayerNormConfig {
    /// `γ = 1`, `β = 0`.
    pub fn init(&self, device: &Device) -> LayerNorm {
        LayerNorm {
            gamma: Param::from_tensor(Tensor::ones([self.d_model], device)),
            beta: self.bias.then(|| Param::from_tensor(Tensor::zeros([self.d_model], device))),
            epsilon: self.epsilon,
        }
    }
}

/// `γ ⊙ (x − μ) / √(σ² + ε) + β` over the last dimension (biased variance, as PyTorch).
///
/// # Shapes
/// - input: `[..., d_model]`
/// - output: same as input
#[derive(Module, Debug)]
pub struct LayerNorm {
    /// Scale `γ`, `[d_model]`.
    pub gamma: Param<Tensor<1>>,
    /// Shift `β`, `[d_model]`.
    pub beta: Option<Param<Tensor<1>>>,
    /// `ε`.
    pub epsilon: f64,
}

impl LayerNorm {
    /// Normalises `input` over its last dimension.
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        let gamma = self.gamma.val();
        if !is_fast(&input) {
            return self.burn_forward(input, gamma);
        }
        let beta = match &self.beta {
            Some(beta) => beta.val(),
            None => Tensor::zeros(gamma.dims(), &gamma.device()),
        };
        Tensor::from_dispatch(<Dispatch as LayerNormBackend>::fused_layer_norm(
            input.into_dispatch(),
            gamma.into_dispatch(),
            beta.into_dispatch(),
            self.epsilon,
        ))
    }
}

impl LayerNorm {
    /// `burn::nn::LayerNorm::forward`'s arithmetic: the backend's `layer_norm`, widening `f16` (not
    /// `bf16`) to `f32` for the sum of squares as burn does.
    fn burn_forward<const D: usize>(&self, input: Tensor<D>, gamma: Tensor<1>) -> Tensor<D> {
        let beta = self.beta.as_ref().map(Param::val);
        if input.dtype() == DType::F16 {
            let wide = FloatDType::F32;
            let output = layer_norm(input.cast(wide), gamma.cast(wide), beta.map(|b| b.cast(wide)), self.epsilon);
            return output.cast(FloatDType::F16);
        }
        layer_norm(input, gamma, beta, self.epsilon)
    }
}

/// Whether [`LayerNorm::forward`] uses this crate's op: `f32` on flex, with or without autodiff.
fn is_fast<const D: usize>(input: &Tensor<D>) -> bool {
    input.dtype() == DType::F32 && matches!(input.device().as_dispatch().clone().inner(), DispatchDevice::Flex(_))
}
