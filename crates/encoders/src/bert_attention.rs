//! BERT multi-head self-attention with its output projection, residual and LayerNorm (post-LN).

use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use sspa_attention::{AttentionMask, attention, default_scale};

use crate::weights::{self, Checkpoint};

/// Configuration of [`BertAttention`].
#[derive(Config, Debug)]
pub struct BertAttentionConfig {
    /// Hidden width `d_t`; must be divisible by `num_heads`.
    pub hidden_size: usize,
    /// Number of heads.
    pub num_heads: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
}

impl BertAttentionConfig {
    /// Random initialisation.
    pub fn init(&self, device: &Device) -> BertAttention {
        let linear = || LinearConfig::new(self.hidden_size, self.hidden_size).init(device);
        BertAttention {
            query: linear(),
            key: linear(),
            value: linear(),
            output: linear(),
            norm: LayerNormConfig::new(self.hidden_size).with_epsilon(self.layer_norm_eps).init(device),
            num_heads: self.num_heads,
        }
    }

    /// Loads `{prefix}.self.{query,key,value}`, `{prefix}.output.dense` and
    /// `{prefix}.output.LayerNorm` (PyTorch `[out, in]` weights are transposed for burn).
    pub fn load(&self, checkpoint: &mut Checkpoint, prefix: &str, device: &Device) -> BertAttention {
        let width = self.hidden_size;
        let mut linear = |name: &str| weights::linear(checkpoint, &format!("{prefix}.{name}"), width, width, device);
        let query = linear("self.query");
        let key = linear("self.key");
        let value = linear("self.value");
        let output = linear("output.dense");
        let norm =
            weights::layer_norm(checkpoint, &format!("{prefix}.output.LayerNorm"), width, self.layer_norm_eps, device);
        BertAttention { query, key, value, output, norm, num_heads: self.num_heads }
    }
}

/// `LN(x + W_o · softmax(Q Kᵀ / √d_head + mask) V)`.
#[derive(Module, Debug)]
pub struct BertAttention {
    /// Query projection.
    pub query: Linear,
    /// Key projection.
    pub key: Linear,
    /// Value projection.
    pub value: Linear,
    /// Output projection.
    pub output: Linear,
    /// Post-residual LayerNorm.
    pub norm: LayerNorm,
    /// Number of heads.
    pub num_heads: usize,
}

impl BertAttention {
    /// # Shapes
    /// - input: `[B, L, d_t]`
    /// - additive_mask: `[B, 1, 1, L]`, 0 where attended, a large negative value on padding
    /// - output: `[B, L, d_t]`
    pub fn forward(&self, input: Tensor<3>, additive_mask: Tensor<4>) -> Tensor<3> {
        let [batch, length, width] = input.dims();
        let heads = self.num_heads;
        let head_width = width / heads;
        let split = |x: Tensor<3>| x.reshape([batch, length, heads, head_width]).swap_dims(1, 2);
        let query = split(self.query.forward(input.clone()));
        let key = split(self.key.forward(input.clone()));
        let value = split(self.value.forward(input.clone()));
        // Fused forward, backward recomputing the probabilities (`sspa-attention`).
        let mask = Some(AttentionMask::additive(additive_mask));
        let context = attention(query, key, value, mask, default_scale(head_width));
        let context = context.swap_dims(1, 2).reshape([batch, length, width]);
        self.norm.forward(self.output.forward(context) + input)
    }
}
