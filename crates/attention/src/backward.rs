//! The attention gradients on backend primitives, recomputing the probabilities.
//!
//! With `S = s·QKᵀ + M`, `P = softmax(S)` over the keys, `O = P V` and upstream `dO`:
//! `dV = Pᵀ dO`, `dP = dO Vᵀ`, `dS = P ∘ (dP − rowsum(P ∘ dP))`, `dQ = s·dS K`, `dK = s·dSᵀ Q`.
//! `rowsum(P ∘ dP) = rowsum(dO ∘ O)` (because `O = P V`), so the output is not needed.
//!
//! The `L_q × L_k` tensors exist only while one op's backward runs, never between forward and
//! backward.

use burn::backend::Backend;
use burn::backend::tensor::FloatTensor;

/// Which gradients to compute.
#[derive(Debug, Clone, Copy)]
pub struct Wanted {
    /// `dQ`.
    pub query: bool,
    /// `dK`.
    pub key: bool,
    /// `dV`.
    pub value: bool,
}

/// `dQ`, `dK`, `dV`, each `None` where not [`Wanted`].
#[derive(Debug)]
pub struct AttentionGradients<T> {
    /// `dQ`.
    pub query: Option<T>,
    /// `dK`.
    pub key: Option<T>,
    /// `dV`.
    pub value: Option<T>,
}

/// The gradients of attention with respect to the [`Wanted`] inputs.
///
/// # Shapes
/// - query `[B, H, L_q, d]`, key `[B, H, L_k, d]`, value `[B, H, L_k, d_v]`
/// - mask: broadcastable to `[B, H, L_q, L_k]`
/// - grad_output `[B, H, L_q, d_v]`
/// - gradients: the shapes of query, key and value
pub fn attention_backward<B: Backend>(
    query: FloatTensor<B>,
    key: FloatTensor<B>,
    value: FloatTensor<B>,
    mask: Option<FloatTensor<B>>,
    scale: f64,
    grad_output: FloatTensor<B>,
    wanted: Wanted,
) -> AttentionGradients<FloatTensor<B>> {
    // Scale the (small) query rather than the (large) scores: S = (s·Q) Kᵀ + M.
    let query_scaled = B::float_mul_scalar(query, scale.into());
    let scores = B::float_matmul(query_scaled.clone(), B::float_transpose(key.clone()));
    let scores = match mask {
        Some(mask) => {
            let shape = burn::backend::TensorMetadata::shape(&scores);
            B::float_add(scores, B::float_expand(mask, shape))
        }
        None => scores,
    };
    let probabilities = B::softmax(scores, 3);

    let value_gradient =
        wanted.value.then(|| B::float_matmul(B::float_transpose(probabilities.clone()), grad_output.clone()));
    if !wanted.query && !wanted.key {
        return AttentionGradients { query: None, key: None, value: value_gradient };
    }

    let grad_probabilities = B::float_matmul(grad_output, B::float_transpose(value));
    let row_dot = B::float_sum_dim(B::float_mul(probabilities.clone(), grad_probabilities.clone()), 3);
    let grad_scores = B::float_mul(probabilities, B::float_sub(grad_probabilities, row_dot));

    let key_gradient = wanted.key.then(|| B::float_matmul(B::float_transpose(grad_scores.clone()), query_scaled));
    let query_gradient = wanted.query.then(|| B::float_mul_scalar(B::float_matmul(grad_scores, key), scale.into()));
    AttentionGradients { query: query_gradient, key: key_gradient, value: value_gradient }
}
