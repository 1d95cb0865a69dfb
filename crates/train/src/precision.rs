//! `train.precision`: which float type the trained weights are kept in ("master weights") and
//! which one the forward and backward passes compute in.
//!
//! | `train.precision` | weights, AdamW state, EMA, checkpoints | forward + backward | loss (ASL) |
//! |---|---|---|---|
//! | `f32` | f32 | f32 | f32 |
//! | `mixed` | f32 (master weights) | bf16 copy of the model | f32 |
//! | `bf16` | bf16 | bf16 | f32 |
//!
//! Under `mixed` every step casts the f32 master weights to a bf16 working copy
//! ([`working_copy`]); the casts are part of the autodiff graph, so the backward pass runs in bf16
//! and each parameter's gradient arrives at its f32 master weight cast back to f32 (burn's cast
//! backward casts the gradient to the input's type). Clipping and AdamW then read f32 gradients
//! and update f32 weights and moments: an update far below bf16's resolution (`lr · update ≪
//! 2⁻⁸ · |w|`) still accumulates. Under `bf16` the weights themselves are bf16 and such updates
//! round away: faster and smaller, lossy for small updates.
//!
//! The device's default float type is the master type ([`crate`]'s callers get it from
//! `sspa_infer::device::select`: f32 for `f32` and `mixed`, bf16 for `bf16`); inputs (features,
//! images, text) are cast to the compute type at the model's edge ([`to_compute`]).

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};
use sspa_config::Precision;

/// The float type of the trained weights, the optimiser state, the EMA and checkpoints.
pub fn master_dtype(precision: Precision) -> FloatDType {
    match precision {
        Precision::F32 | Precision::Mixed => FloatDType::F32,
        Precision::Bf16 => FloatDType::BF16,
    }
}

/// The float type of the forward and backward passes.
pub fn compute_dtype(precision: Precision) -> FloatDType {
    match precision {
        Precision::F32 => FloatDType::F32,
        Precision::Mixed | Precision::Bf16 => FloatDType::BF16,
    }
}

/// Whether `tensor` already has the float type `dtype`.
fn has_dtype<const D: usize>(tensor: &Tensor<D>, dtype: FloatDType) -> bool {
    tensor.dtype() == DType::from(dtype)
}

/// Every float parameter of `module` as a fresh leaf of type `dtype`, ids and gradient settings
/// kept (the master weights of a run; no graph links the result to `module`). A no-op for
/// parameters that already have that type.
pub fn cast_parameters<M: Module>(module: M, dtype: FloatDType) -> M {
    struct Leaves(FloatDType);
    impl ModuleMapper for Leaves {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let dtype = self.0;
            param.map(|tensor| {
                if has_dtype(&tensor, dtype) {
                    return tensor;
                }
                let (require_grad, autodiff) = (tensor.is_require_grad(), tensor.is_autodiff());
                // Cast outside autodiff: the result must be a leaf, not the output of a cast node.
                let cast = tensor.without_autodiff().cast(dtype);
                let cast = if autodiff { cast.autodiff() } else { cast };
                cast.set_require_grad(require_grad)
            })
        }
    }
    module.map(&mut Leaves(dtype))
}

/// The copy of `master` one step computes with: every float parameter cast to `dtype` inside the
/// autodiff graph, ids kept. Gradients of a loss computed from the copy reach the master
/// parameters in the master type (`GradientsParams::from_grads(grads, master)`). When the types
/// agree this is `master.clone()` (the same parameters).
pub fn working_copy<M: Module>(master: &M, dtype: FloatDType) -> M {
    struct InGraph(FloatDType);
    impl ModuleMapper for InGraph {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let dtype = self.0;
            param.map(|tensor| to_compute(tensor, dtype))
        }
    }
    master.clone().map(&mut InGraph(dtype))
}

/// `tensor` in the compute type `dtype` (an input at the model's edge); a no-op when it has it.
pub fn to_compute<const D: usize>(tensor: Tensor<D>, dtype: FloatDType) -> Tensor<D> {
    if has_dtype(&tensor, dtype) { tensor } else { tensor.cast(dtype) }
}

/// `tensor` in the default float type of its device (what frozen modules loaded on that device,
/// such as the text encoder, compute in); a no-op when it has it.
pub fn to_device_float<const D: usize>(tensor: Tensor<D>) -> Tensor<D> {
    let dtype = tensor.device().settings().float_dtype;
    to_compute(tensor, dtype)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::parameter_snapshot;
    use burn::optim::GradientsParams;
    use sspa_model::MlpConfig;

    #[test]
    fn dtypes_of_each_precision() {
        assert_eq!(master_dtype(Precision::F32), FloatDType::F32);
        assert_eq!(compute_dtype(Precision::F32), FloatDType::F32);
        assert_eq!(master_dtype(Precision::Mixed), FloatDType::F32);
        assert_eq!(compute_dtype(Precision::Mixed), FloatDType::BF16);
        assert_eq!(master_dtype(Precision::Bf16), FloatDType::BF16);
        assert_eq!(compute_dtype(Precision::Bf16), FloatDType::BF16);
    }

    #[test]
    fn the_working_copy_keeps_ids_and_sends_f32_gradients_to_the_master() {
        let device = Device::flex().autodiff();
        let master = crate::model::seeded(&device, 7, || {
            let master = MlpConfig::new(4).init(&device);
            drop(parameter_snapshot(&master));
            master
        });
        let copy = working_copy(&master, FloatDType::BF16);
        assert_eq!(copy.expand.weight.id, master.expand.weight.id);
        assert_eq!(copy.expand.weight.val().dtype(), DType::BF16);
        assert_eq!(master.expand.weight.val().dtype(), DType::F32);

        let input = Tensor::<2>::ones([3, 4], &device).cast(FloatDType::BF16);
        let loss = copy.forward(input).cast(FloatDType::F32).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &master);
        let grad = grads.get::<2>(master.expand.weight.id).expect("a gradient for the master weight");
        assert_eq!(grad.dtype(), DType::F32);
        assert_eq!(grad.dims(), master.expand.weight.val().dims());

        let leaves = cast_parameters(master.clone(), FloatDType::BF16);
        assert_eq!(leaves.expand.weight.id, master.expand.weight.id);
        assert_eq!(leaves.expand.weight.val().dtype(), DType::BF16);
        assert!(leaves.expand.weight.val().is_require_grad());
        let back = cast_parameters(leaves, FloatDType::F32);
        assert_eq!(back.expand.weight.val().dtype(), DType::F32);
    }
}
