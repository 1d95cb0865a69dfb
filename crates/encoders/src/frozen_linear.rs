//! A `Linear` of a frozen encoder that keeps its weight in both layouts.
//!
//! Gradients reach CAP's prompts through the frozen text encoder, so every training step runs
//! each of its linear layers forward (`x W`, `W` `[in, out]`) and backward for the input only
//! (`∂x = g Wᵀ`). burn's linear backward multiplies by a transposed view of `W`; on flex, the
//! `gemm` crate packs such a column-major operand about 1.5× slower than a row-major one (MiniLM's
//! feed-forward shapes, 110 tokens: 1.55 vs 1.00 ms for `g [110, 1536] · Wᵀ`). A frozen weight
//! never changes, so [`FrozenLinear`] stores `Wᵀ` once, contiguous, and its own autodiff op
//! ([`FrozenLinearBackend`]) multiplies by it in backward. The price is a second copy of the
//! weights (MiniLM: 21 M linear weights, 85 MB in f32).
//!
//! The fast path runs only where it is exact: flex (with or without autodiff) and a weight that
//! does not require gradients. A weight that is being trained, or another backend, takes burn's
//! own linear, so training a [`FrozenLinear`] stays correct (the stored `Wᵀ` is then unused).

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, DispatchDevice, Flex, backend_extension};
use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;

use crate::weights::transposed;

/// `y = x W + b` with `W` `[in, out]` and its transpose `Wᵀ` `[out, in]`, both contiguous.
///
/// # Shapes
/// - input: `[..., in]`
/// - output: `[..., out]`
#[derive(Module, Debug)]
pub struct FrozenLinear {
    /// `W`, `[in, out]` (burn's layout).
    pub weight: Param<Tensor<2>>,
    /// `Wᵀ`, `[out, in]` (PyTorch's layout), used by the backward pass of the input.
    pub weight_t: Param<Tensor<2>>,
    /// `b`, `[out]`.
    pub bias: Param<Tensor<1>>,
}

impl FrozenLinear {
    /// From a PyTorch weight `[out, in]` and bias `[out]` (both taken as they are stored).
    pub fn from_pytorch(weight: Tensor<2>, bias: Tensor<1>) -> Self {
        FrozenLinear {
            weight: Param::from_tensor(transposed(weight.clone())),
            weight_t: Param::from_tensor(weight),
            bias: Param::from_tensor(bias),
        }
    }

    /// From a burn [`Linear`] (a missing bias becomes zeros).
    pub fn from_linear(linear: Linear) -> Self {
        let weight = linear.weight.val();
        let [_, outputs] = weight.dims();
        let device = weight.device();
        let bias = linear.bias.map(|bias| bias.val()).unwrap_or_else(|| Tensor::zeros([outputs], &device));
        FrozenLinear {
            weight_t: Param::from_tensor(transposed(weight.clone())),
            weight: Param::from_tensor(weight),
            bias: Param::from_tensor(bias),
        }
    }

    /// `x W + b`.
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        let weight = self.weight.val();
        if weight.is_require_grad() || !matches!(input.device().as_dispatch().clone().inner(), DispatchDevice::Flex(_))
        {
            return burn::tensor::module::linear(input, weight, Some(self.bias.val()));
        }
        Tensor::from_dispatch(<Dispatch as FrozenLinearBackend>::frozen_linear(
            input.into_dispatch(),
            weight.into_dispatch(),
            self.weight_t.val().into_dispatch(),
            self.bias.val().into_dispatch(),
        ))
    }
}

/// The linear layer of a frozen weight as a backend operation: the backend's own `linear`
/// forward; under autodiff, a backward for the input that multiplies by the stored `Wᵀ`.
///
/// # Shapes
/// - input: `[..., in]`, weight: `[in, out]`, weight_t: `[out, in]`, bias: `[out]`
/// - output: `[..., out]`
#[backend_extension(Flex, Autodiff)]
pub trait FrozenLinearBackend: Backend {
    /// `input · weight + bias`.
    fn frozen_linear(
        input: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        weight_t: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let _ = weight_t;
        Self::linear(input, weight, Some(bias))
    }
}

impl FrozenLinearBackend for Flex {}

impl<B: FrozenLinearBackend, C: CheckpointStrategy> FrozenLinearBackend for Autodiff<B, C> {
    fn frozen_linear(
        input: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        weight_t: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        // Weight, transpose and bias are constants: their primitives only, no graph nodes.
        let (weight, bias) = (weight.into_primitive(), bias.into_primitive());
        match FrozenLinearBackward.prepare::<C>([input.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                prep.finish(weight_t.into_primitive(), B::linear(input.into_primitive(), weight, Some(bias)))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::linear(input.into_primitive(), weight, Some(bias))),
        }
    }
}

/// `∂x = g Wᵀ` with the stored, contiguous `Wᵀ`.
#[derive(Debug)]
struct FrozenLinearBackward;

impl<B: Backend> Backward<B, 1> for FrozenLinearBackward {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(parent) = parent {
            grads.register::<B>(parent.id, B::linear(grad, ops.state, None));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};

    fn seeded<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
    }

    /// Forward and the input's gradient equal burn's `Linear` on the same weights.
    #[test]
    fn matches_burn_linear_forward_and_input_gradient() {
        let device = Device::flex().autodiff();
        let weight = seeded([24, 40], &device); // PyTorch [out, in]
        let bias = seeded([24], &device);
        let frozen = FrozenLinear::from_pytorch(weight.clone(), bias.clone());
        let plain = Linear { weight: Param::from_tensor(transposed(weight)), bias: Some(Param::from_tensor(bias)) };
        let x = seeded([3, 5, 40], &device).require_grad();
        let upstream = seeded([3, 5, 24], &device);

        let ours = frozen.forward(x.clone());
        let theirs = plain.forward(x.clone());
        ours.to_data().assert_approx_eq::<f32>(&theirs.to_data(), Tolerance::rel_abs(1e-5, 1e-5));

        let grad_ours = (ours * upstream.clone()).sum().backward();
        let grad_theirs = (theirs * upstream).sum().backward();
        x.grad(&grad_ours).expect("input gradient").to_data().assert_approx_eq::<f32>(
            &x.grad(&grad_theirs).expect("input gradient").to_data(),
            Tolerance::rel_abs(1e-5, 1e-5),
        );
    }

    /// A weight that requires gradients takes burn's linear: its gradient exists and the input's
    /// gradient is still exact.
    #[test]
    fn a_trained_weight_gets_its_gradient() {
        let device = Device::flex().autodiff();
        let frozen = FrozenLinear::from_pytorch(seeded([6, 4], &device), seeded([6], &device));
        let frozen = FrozenLinear { weight: frozen.weight.set_require_grad(true), ..frozen };
        let x = seeded([2, 4], &device).require_grad();
        let grads = frozen.forward(x.clone()).sum().backward();
        assert!(frozen.weight.val().grad(&grads).is_some(), "trained weight has a gradient");
        let expected = frozen.weight.val().sum_dim(1).reshape([1, 4]).repeat_dim(0, 2);
        x.grad(&grads)
            .expect("input gradient")
            .to_data()
            .assert_approx_eq::<f32>(&expected.to_data(), Tolerance::rel_abs(1e-5, 1e-5));
    }
}
