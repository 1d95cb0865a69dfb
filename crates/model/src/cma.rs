//! Cross-modal attention with query-only projection (SSPA Eq. 3).
//!
//! `CMA(X, Y) = softmax(LN_q(X) W_q LN_kv(Y)ᵀ / √d) · LN_kv(Y)`: keys and values keep their
//! original semantics (normalised, never projected); one head, `W_q` without bias, no output
//! projection, no mask, softmax over the keys.

use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;

/// Configuration of [`CrossModalAttention`].
#[derive(Config, Debug)]
pub struct CrossModalAttentionConfig {
    /// Width `d` of queries, keys and values; also the `√d` of the scale.
    pub d_model: usize,
    /// LayerNorm epsilon.
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
}

impl CrossModalAttentionConfig {
    /// Builds the block: two LayerNorms (γ = 1, β = 0) and `W_q` without bias.
    pub fn init(&self, device: &Device) -> CrossModalAttention {
        CrossModalAttention {
            norm_query: LayerNormConfig::new(self.d_model).with_epsilon(self.layer_norm_eps).init(device),
            norm_key_value: LayerNormConfig::new(self.d_model).with_epsilon(self.layer_norm_eps).init(device),
            query: LinearConfig::new(self.d_model, self.d_model).with_bias(false).init(device),
            d_model: self.d_model,
        }
    }
}

/// Single-head attention where only the query is projected.
#[derive(Module, Debug)]
pub struct CrossModalAttention {
    /// `LN_q`, applied to the queries.
    pub norm_query: LayerNorm,
    /// `LN_kv`, applied to `Y`, which is then both key and value.
    pub norm_key_value: LayerNorm,
    /// `W_q`, `d → d`, no bias (burn's `[in, out]` layout).
    pub query: Linear,
    /// `d`, for the `1/√d` scale.
    pub d_model: usize,
}

impl CrossModalAttention {
    /// `CMA(x, y)`.
    ///
    /// # Shapes
    /// - x (queries): `[B, n, d]`
    /// - y (keys = values): `[B, m, d]`
    /// - output: `[B, n, d]`
    pub fn forward(&self, x: Tensor<3>, y: Tensor<3>) -> Tensor<3> {
        self.forward_with_attention(x, y).0
    }

    /// `CMA(x, y)` and the attention weights (rows sum to 1 over the `m` keys).
    ///
    /// # Shapes
    /// - x (queries): `[B, n, d]`
    /// - y (keys = values): `[B, m, d]`
    /// - output: `[B, n, d]`, attention `[B, n, m]`
    pub fn forward_with_attention(&self, x: Tensor<3>, y: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
        let query = self.query.forward(self.norm_query.forward(x));
        let key_value = self.norm_key_value.forward(y);
        let scores = query.matmul(key_value.clone().swap_dims(1, 2)).div_scalar((self.d_model as f64).sqrt());
        let attention = softmax(scores, 2);
        (attention.clone().matmul(key_value), attention)
    }
}
