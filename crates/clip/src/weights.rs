//! Small helpers turning checkpoint tensors into burn layers (PyTorch `[out, in]` weights are
//! transposed to burn's `[in, out]`, contiguous: see `Checkpoint::take_transposed`).

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use sspa_encoders::weights::Checkpoint;
pub(crate) use sspa_encoders::weights::{layer_norm, linear};

/// A [`Linear`] `inputs → 3 · inputs` from three PyTorch projections (HF `q_proj`, `k_proj`,
/// `v_proj`), concatenated as PyTorch's fused `in_proj_weight`.
pub(crate) fn fused_linear(checkpoint: &mut Checkpoint, prefixes: [&str; 3], width: usize, device: &Device) -> Linear {
    let mut weights = Vec::with_capacity(3);
    let mut biases = Vec::with_capacity(3);
    for prefix in prefixes {
        weights.push(checkpoint.take_transposed(&format!("{prefix}.weight"), [width, width], device));
        biases.push(checkpoint.take::<1>(&format!("{prefix}.bias"), [width], device));
    }
    Linear {
        weight: Param::from_tensor(Tensor::cat(weights, 1)),
        bias: Some(Param::from_tensor(Tensor::cat(biases, 0))),
    }
}

/// A [`Linear`] `inputs → 3 · inputs` from PyTorch `nn.MultiheadAttention`'s
/// `in_proj_weight` `[3W, W]` and `in_proj_bias` `[3W]`.
pub(crate) fn in_projection(checkpoint: &mut Checkpoint, prefix: &str, width: usize, device: &Device) -> Linear {
    let weight = checkpoint.take_transposed(&format!("{prefix}.in_proj_weight"), [3 * width, width], device);
    let bias = checkpoint.take(&format!("{prefix}.in_proj_bias"), [3 * width], device);
    Linear { weight: Param::from_tensor(weight), bias: Some(Param::from_tensor(bias)) }
}

/// A projection matrix `[inputs, outputs]` applied as `x · P`: OpenAI stores it so
/// (`text_projection`, `visual.proj`), HF stores a bias-free `nn.Linear` weight `[outputs, inputs]`.
pub(crate) fn projection(
    checkpoint: &mut Checkpoint,
    key: &str,
    inputs: usize,
    outputs: usize,
    pytorch_linear: bool,
    device: &Device,
) -> Param<Tensor<2>> {
    let matrix = if pytorch_linear {
        checkpoint.take_transposed(key, [outputs, inputs], device)
    } else {
        checkpoint.take::<2>(key, [inputs, outputs], device)
    };
    Param::from_tensor(matrix)
}

/// The two key layouts the loaders read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLayout {
    /// OpenAI / OpenCLIP `state_dict` names (`transformer.resblocks.N.attn.in_proj_weight`, …).
    OpenAi,
    /// HF `transformers` `CLIPModel` names (`text_model.encoder.layers.N.self_attn.q_proj`, …).
    Hf,
}
