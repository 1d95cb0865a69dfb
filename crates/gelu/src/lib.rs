//! Exact GELU, `x Φ(x) = ½ x (1 + erf(x / √2))`, and ReLU6 as custom burn ops.
//!
//! burn's flex backend evaluates `erf` with a scalar libm call per value in GELU's forward and
//! backward, which made GELU one of the largest costs of a CPU training step (MiniLM's feed-forward
//! layers under CAP, the head's MLPs). [`gelu`] routes flex tensors (with or without autodiff)
//! through kernels that vectorise ([`kernel`]: a rational `erf` within 1e-6, a polynomial `exp`);
//! every other backend uses its own `gelu`. [`relu6`] (EfficientNet-Lite0's activation) does the
//! same for flex's scalar clamp.
//!
//! - [`backend`]: the backend extension trait, [`GeluBackend`].
//! - [`autodiff`]: its `Autodiff<B, C>` implementation (the input checkpointed).
//! - [`kernel`]: the scalar `erf`, `exp`, GELU, ReLU6 and gradient kernels.

pub mod autodiff;
pub mod backend;
pub mod kernel;

pub use backend::GeluBackend;

use burn::backend::{Dispatch, DispatchDevice};
use burn::prelude::*;

/// `GELU(x) = x Φ(x)` (exact, not the tanh approximation), differentiable.
///
/// # Shapes
/// - input: any
/// - output: same as input
pub fn gelu<const D: usize>(input: Tensor<D>) -> Tensor<D> {
    if !is_fast(&input.device()) {
        return burn::tensor::activation::gelu(input);
    }
    Tensor::from_dispatch(<Dispatch as GeluBackend>::fast_gelu(input.into_dispatch()))
}

/// `min(max(x, 0), 6)`, differentiable (gradient `1` on `0 < x < 6`, as PyTorch's
/// `hardtanh_backward`). flex's clamp runs a scalar closure with a NaN branch per value, which was
/// 14 % of EfficientNet-Lite0's forward; this one vectorises.
///
/// # Shapes
/// - input: any
/// - output: same as input
pub fn relu6<const D: usize>(input: Tensor<D>) -> Tensor<D> {
    if !is_fast(&input.device()) || input.dtype() != burn::tensor::DType::F32 {
        return burn::tensor::activation::relu6(input);
    }
    Tensor::from_dispatch(<Dispatch as GeluBackend>::fast_relu6(input.into_dispatch()))
}

/// Whether [`gelu`] and [`relu6`] use this crate's kernels on `device` (flex, with or without autodiff).
pub fn is_fast(device: &Device) -> bool {
    matches!(device.as_dispatch().clone().inner(), DispatchDevice::Flex(_))
}
