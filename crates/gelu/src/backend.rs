//! The backend extension: [`GeluBackend`], implemented by flex (the vectorised kernels of
//! [`crate::kernel`]) and by `Autodiff<B, C>` (see [`crate::autodiff`]); `#[backend_extension]`
//! generates the routing from [`Dispatch`](burn::backend::Dispatch) tensors to them.

use burn::backend::flex::FlexTensor;
use burn::backend::ops::{ActivationOps, FloatTensorOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Flex, backend_extension};
use burn::tensor::DType;

use crate::kernel;

/// Exact GELU and ReLU6 as backend operations. The default bodies are the backend's own `gelu`,
/// `gelu_backward` and clamp; flex overrides them for `f32`.
///
/// # Shapes
/// - input, grad, output: any, all the same
#[backend_extension(Flex, Autodiff)]
pub trait GeluBackend: Backend {
    /// `x Φ(x)`.
    fn fast_gelu(input: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu(input)
    }

    /// `grad · GELU'(input)`.
    fn fast_gelu_backward(input: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu_backward(input, grad)
    }

    /// `min(max(x, 0), 6)`.
    fn fast_relu6(input: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_clamp(input, 0.0.into(), 6.0.into())
    }

    /// `grad` where `0 < input < 6`, else 0.
    fn fast_relu6_backward(input: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// flex computes `erf` with a scalar libm call per value; these loops vectorise and run on
/// rayon's threads instead ([`kernel`]). Other dtypes take flex's own kernels.
impl GeluBackend for Flex {
    fn fast_gelu(input: FlexTensor) -> FlexTensor {
        if input.dtype() != DType::F32 {
            return Self::gelu(input);
        }
        map_values(input, kernel::gelu_in_place, kernel::gelu_slice)
    }

    fn fast_gelu_backward(input: FlexTensor, grad: FlexTensor) -> FlexTensor {
        if input.dtype() != DType::F32 || grad.dtype() != DType::F32 || input.layout().shape() != grad.layout().shape()
        {
            return Self::gelu_backward(input, grad);
        }
        map_gradient(input, grad, kernel::gelu_grad_in_place)
    }

    fn fast_relu6(input: FlexTensor) -> FlexTensor {
        if input.dtype() != DType::F32 {
            return Self::float_clamp(input, 0.0.into(), 6.0.into());
        }
        map_values(input, kernel::relu6_in_place, kernel::relu6_slice)
    }

    fn fast_relu6_backward(input: FlexTensor, grad: FlexTensor) -> FlexTensor {
        assert!(
            input.dtype() == DType::F32
                && grad.dtype() == DType::F32
                && input.layout().shape() == grad.layout().shape(),
            "relu6 backward takes f32 tensors of one shape (sspa_gelu::relu6 routes others to burn)"
        );
        map_gradient(input, grad, kernel::relu6_grad_in_place)
    }
}

/// `f(input)` elementwise: over `input` itself when nothing else reads it (autodiff did not keep
/// it), else into a new buffer.
fn map_values(input: FlexTensor, in_place: fn(&mut [f32]), copy: fn(&[f32], &mut [f32])) -> FlexTensor {
    let mut input = contiguous(input);
    if input.is_unique() {
        in_place(input.storage_mut::<f32>());
        return input;
    }
    let mut output = FlexTensor::empty(input.layout().shape().clone(), DType::F32);
    copy(input.storage::<f32>(), output.storage_mut::<f32>());
    output
}

/// `grad ← kernel(input, grad)`, writing a copy of `grad` when another reader shares it.
fn map_gradient(input: FlexTensor, grad: FlexTensor, kernel: fn(&[f32], &mut [f32])) -> FlexTensor {
    let input = contiguous(input);
    let mut grad = contiguous(grad);
    if !grad.is_unique() {
        let mut copy = FlexTensor::empty(grad.layout().shape().clone(), DType::F32);
        copy.storage_mut::<f32>().copy_from_slice(grad.storage::<f32>());
        grad = copy;
    }
    kernel(input.storage::<f32>(), grad.storage_mut::<f32>());
    grad
}

/// `tensor` as a contiguous buffer starting at offset 0 whose storage holds exactly its values:
/// itself (still unique if it was), or a copy when it is a view.
fn contiguous(tensor: FlexTensor) -> FlexTensor {
    tensor.to_contiguous()
}
