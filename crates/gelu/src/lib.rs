//! Exact GELU, `x Φ(x) = ½ x (1 + erf(x / √2))`, as one custom burn op.
//!
//! burn's flex backend evaluates `erf` with a scalar libm call per value in GELU's forward and
//! backward, which made GELU one of the largest costs of a CPU training step (MiniLM's feed-forward
//! layers under CAP, the head's MLPs). [`gelu`] routes flex tensors (with or without autodiff)
//! through kernels that vectorise ([`kernel`]: a rational `erf` within 1e-6, a polynomial `exp`);
//! every other backend uses its own `gelu`.
//!
//! - [`backend`]: the backend extension trait, [`GeluBackend`].
//! - [`autodiff`]: its `Autodiff<B, C>` implementation (the input checkpointed).
//! - [`kernel`]: the scalar `erf`, `exp`, GELU and GELU-gradient kernels.

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

/// Whether [`gelu`] uses this crate's kernels on `device` (flex, with or without autodiff).
pub fn is_fast(device: &Device) -> bool {
    matches!(device.as_dispatch().clone().inner(), DispatchDevice::Flex(_))
}
