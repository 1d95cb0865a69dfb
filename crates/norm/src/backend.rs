//! The backend extension: [`LayerNormBackend`], implemented by flex (its fused forward and the
//! one-pass backward of [`crate::kernel`]) and by `Autodiff<B, C>` (see [`crate::autodiff`]).

use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Flex, backend_extension};
use burn::tensor::{DType, Shape};

use crate::kernel;

/// LayerNorm over the last dimension as a backend operation.
///
/// # Shapes
/// - input, grad, grad_input: `[..., d]`
/// - gamma, beta, grad_gamma, grad_beta: `[d]`
#[backend_extension(Flex, Autodiff)]
pub trait LayerNormBackend: Backend {
    /// `γ ⊙ x̂ + β`, `x̂ = (x − μ) / √(σ² + ε)`.
    fn fused_layer_norm(
        input: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        Self::layer_norm(input, gamma, Some(beta), epsilon)
    }

    /// `(∂x, ∂γ, ∂β)` from the input, `γ` and the output gradient.
    fn fused_layer_norm_backward(
        input: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl LayerNormBackend for Flex {
    fn fused_layer_norm_backward(
        input: FlexTensor,
        gamma: FlexTensor,
        grad: FlexTensor,
        epsilon: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        assert!(
            input.dtype() == DType::F32 && gamma.dtype() == DType::F32 && grad.dtype() == DType::F32,
            "sspa-norm's flex backward takes f32 (LayerNorm::forward routes other dtypes to burn)"
        );
        let shape = input.layout().shape().clone();
        let width = *shape.last().expect("LayerNorm input has a last dimension");
        let (input, gamma, grad) = (input.to_contiguous(), gamma.to_contiguous(), grad.to_contiguous());
        let mut grad_input = FlexTensor::empty(shape, DType::F32);
        let mut grad_gamma = FlexTensor::empty(Shape::from(vec![width]), DType::F32);
        let mut grad_beta = FlexTensor::empty(Shape::from(vec![width]), DType::F32);
        kernel::backward_rows(
            input.storage::<f32>(),
            gamma.storage::<f32>(),
            grad.storage::<f32>(),
            epsilon as f32,
            kernel::Outputs {
                grad_input: grad_input.storage_mut::<f32>(),
                grad_gamma: grad_gamma.storage_mut::<f32>(),
                grad_beta: grad_beta.storage_mut::<f32>(),
            },
        );
        (grad_input, grad_gamma, grad_beta)
    }
}
