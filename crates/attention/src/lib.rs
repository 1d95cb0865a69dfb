//! Scaled dot-product attention whose forward is the backend's fused kernel and whose backward is
//! handwritten, so that training keeps no `L_q × L_k` tensor alive per layer.
//!
//! burn's autodiff decomposes attention (`matmul → softmax → matmul`) and keeps every
//! intermediate, the probabilities included, until backward. [`attention`] instead registers one
//! autodiff op:
//!
//! - forward: the inner backend's fused `attention` (flex: a naive/flash CPU kernel; libtorch:
//!   `scaled_dot_product_attention` without a mask, burn-tch's decomposition with one);
//! - saved state: `Q`, `K`, `V` (as autodiff checkpoints, shared with the graph when other ops
//!   keep them too), the additive mask and the scale; no output, no probabilities;
//! - backward ([`backward`]): recomputes `P = softmax(s·QKᵀ + M)` (as flash attention does) and
//!   applies `dV = Pᵀ dO`, `dP = dO Vᵀ`, `dS = P ∘ (dP − rowsum(P ∘ dP))`, `dQ = s·dS K`,
//!   `dK = s·dSᵀ Q`. `rowsum(P ∘ dP)` equals flash attention's `rowsum(dO ∘ O)`, so `O` need not be
//!   kept either. The mask gets no gradient.
//!
//! Without autodiff (inference) it is the fused forward alone. On a backend the op is not compiled
//! for (anything but flex, and libtorch without this crate's `tch` feature) it falls back to
//! [`attention_decomposed`], which is correct but keeps the probabilities for backward.
//!
//! - [`mask`]: [`AttentionMask`], the additive mask.
//! - [`backend`]: the backend extension trait, [`FusedAttentionBackend`].
//! - [`autodiff`]: its `Autodiff<B, C>` implementation with the handwritten backward.
//! - [`backward`]: the gradient formulas on backend primitives.
//! - [`reference`]: [`attention_decomposed`], the explicit `softmax(s·QKᵀ + M) V`.

pub mod autodiff;
pub mod backend;
pub mod backward;
pub mod mask;
pub mod reference;

pub use backend::FusedAttentionBackend;
pub use mask::AttentionMask;
pub use reference::{attention_decomposed, attention_probabilities};

use burn::backend::{Dispatch, DispatchDevice};
use burn::prelude::*;

/// `softmax(scale · Q Kᵀ + mask) V`, fused forward and memory-lean backward.
///
/// `scale` is usually `1 / √d` ([`default_scale`]). The mask is additive (0 where attended, a large
/// negative value where not) and broadcasts over the scores; it is treated as a constant (no
/// gradient).
///
/// # Shapes
/// - query: `[B, H, L_q, d]`
/// - key: `[B, H, L_k, d]`
/// - value: `[B, H, L_k, d_v]`
/// - mask: broadcastable to `[B, H, L_q, L_k]`, every dimension either full or 1 (e.g. padding
///   `[B, 1, 1, L_k]`, causal `[1, 1, L_q, L_k]`)
/// - output: `[B, H, L_q, d_v]`
///
/// # Panics
/// On shapes that do not fit together.
pub fn attention(
    query: Tensor<4>,
    key: Tensor<4>,
    value: Tensor<4>,
    mask: Option<AttentionMask>,
    scale: f64,
) -> Tensor<4> {
    check_shapes(&query, &key, &value, mask.as_ref());
    if !is_fused(&query.device()) {
        return attention_decomposed(query, key, value, mask, scale);
    }
    let (query, key, value) = (query.into_dispatch(), key.into_dispatch(), value.into_dispatch());
    let output = match mask {
        None => <Dispatch as FusedAttentionBackend>::fused_attention(query, key, value, scale),
        Some(mask) => <Dispatch as FusedAttentionBackend>::fused_attention_masked(
            query,
            key,
            value,
            mask.into_tensor().into_dispatch(),
            scale,
        ),
    };
    Tensor::from_dispatch(output)
}

/// `1 / √d`, the usual scale for a head width `d`.
pub fn default_scale(head_width: usize) -> f64 {
    1.0 / (head_width as f64).sqrt()
}

/// Whether [`attention`] runs the fused op on `device` (otherwise the decomposed fallback).
pub fn is_fused(device: &Device) -> bool {
    match device.as_dispatch().clone().inner() {
        DispatchDevice::Flex(_) => true,
        #[cfg(feature = "tch")]
        DispatchDevice::LibTorch(_) => true,
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// Panics with a readable message when the operands do not fit together.
fn check_shapes(query: &Tensor<4>, key: &Tensor<4>, value: &Tensor<4>, mask: Option<&AttentionMask>) {
    let [batch, heads, length_q, width] = query.dims();
    let [key_batch, key_heads, length_k, key_width] = key.dims();
    let [value_batch, value_heads, value_length, _] = value.dims();
    assert!(
        key_batch == batch && key_heads == heads && key_width == width,
        "attention: key {:?} does not fit query {:?}",
        key.dims(),
        query.dims()
    );
    assert!(
        value_batch == batch && value_heads == heads && value_length == length_k,
        "attention: value {:?} does not fit key {:?}",
        value.dims(),
        key.dims()
    );
    if let Some(mask) = mask {
        let dims = mask.tensor().dims();
        let full = [batch, heads, length_q, length_k];
        assert!(
            dims.iter().zip(full).all(|(&dim, full)| dim == full || dim == 1),
            "attention: mask {dims:?} does not broadcast to the scores {full:?}"
        );
    }
}
