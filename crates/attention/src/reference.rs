//! The explicit (decomposed) attention: the reference for the tests and benchmark, the fallback
//! on backends without the fused op, and the way to get the probabilities themselves.
//!
//! Under autodiff burn keeps its intermediates, the `L_q × L_k` probabilities included, until
//! backward.

use burn::prelude::*;
use burn::tensor::activation::softmax;

use crate::mask::AttentionMask;

/// `softmax(scale · Q Kᵀ + mask)` over the keys.
///
/// # Shapes
/// - query `[B, H, L_q, d]`, key `[B, H, L_k, d]`
/// - mask: broadcastable to `[B, H, L_q, L_k]`
/// - output `[B, H, L_q, L_k]`, rows summing to 1
pub fn attention_probabilities(query: Tensor<4>, key: Tensor<4>, mask: Option<AttentionMask>, scale: f64) -> Tensor<4> {
    let scores = query.matmul(key.swap_dims(2, 3)).mul_scalar(scale);
    let scores = match mask {
        Some(mask) => scores + mask.into_tensor(),
        None => scores,
    };
    softmax(scores, 3)
}

/// `softmax(scale · Q Kᵀ + mask) V`, composed of differentiable tensor ops.
///
/// # Shapes
/// - query `[B, H, L_q, d]`, key `[B, H, L_k, d]`, value `[B, H, L_k, d_v]`
/// - mask: broadcastable to `[B, H, L_q, L_k]`
/// - output `[B, H, L_q, d_v]`
pub fn attention_decomposed(
    query: Tensor<4>,
    key: Tensor<4>,
    value: Tensor<4>,
    mask: Option<AttentionMask>,
    scale: f64,
) -> Tensor<4> {
    attention_probabilities(query, key, mask, scale).matmul(value)
}
