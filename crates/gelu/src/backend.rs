//! The backend extension: [`GeluBackend`], implemented by flex (the vectorised kernels of
//! [`crate::kernel`]) and by `Autodiff<B, C>` (see [`crate::autodiff`]); `#[backend_extension]`
//! generates the routing from [`Dispatch`](burn::backend::Dispatch) tensors to them.

use burn::backend::flex::FlexTensor;
use burn::backend::ops::ActivationOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Flex, backend_extension};
use burn::tensor::DType;

use crate::kernel;

/// Exact GELU as a backend operation. The default bodies are the backend's own `gelu` and
/// `gelu_backward`; flex overrides them for `f32`.
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
}

/// flex computes `erf` with a scalar libm call per value; these loops vectorise and run on
/// rayon's threads instead ([`kernel`]). Other dtypes take flex's own kernels.
impl GeluBackend for Flex {
    fn fast_gelu(input: FlexTensor) -> FlexTensor {
        if input.dtype() != DType::F32 {
            return Self::gelu(input);
        }
        let mut input = contiguous(input);
        if input.is_unique() {
            // Nothing else reads this buffer (autodiff did not keep it): overwrite it.
            kernel::gelu_in_place(input.storage_mut::<f32>());
            return input;
        }
        let mut output = FlexTensor::empty(input.layout().shape().clone(), DType::F32);
        kernel::gelu_slice(input.storage::<f32>(), output.storage_mut::<f32>());
        output
    }

    fn fast_gelu_backward(input: FlexTensor, grad: FlexTensor) -> FlexTensor {
        if input.dtype() != DType::F32 || grad.dtype() != DType::F32 || input.layout().shape() != grad.layout().shape()
        {
            return Self::gelu_backward(input, grad);
        }
        let input = contiguous(input);
        let mut grad = contiguous(grad);
        if !grad.is_unique() {
            // Shared with another reader: write a copy.
            let mut copy = FlexTensor::empty(grad.layout().shape().clone(), DType::F32);
            copy.storage_mut::<f32>().copy_from_slice(grad.storage::<f32>());
            grad = copy;
        }
        kernel::gelu_grad_in_place(input.storage::<f32>(), grad.storage_mut::<f32>());
        grad
    }
}

/// `tensor` as a contiguous buffer starting at offset 0 whose storage holds exactly its values:
/// itself (still unique if it was), or a copy when it is a view.
fn contiguous(tensor: FlexTensor) -> FlexTensor {
    tensor.to_contiguous()
}
