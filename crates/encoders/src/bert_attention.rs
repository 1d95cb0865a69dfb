//! BERT multi-head self-attention with its output projection, residual and LayerNorm (post-LN).

use burn::nn::LinearConfig;
use burn::prelude::*;
use sspa_attention::{AttentionMask, attention, default_scale};
use sspa_norm::{LayerNorm, LayerNormConfig};

use crate::frozen_linear::FrozenLinear;
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
        let width = self.hidden_size;
        BertAttention {
            qkv: FrozenLinear::from_linear(LinearConfig::new(width, 3 * width).init(device)),
            output: FrozenLinear::from_linear(LinearConfig::new(width, width).init(device)),
            norm: LayerNormConfig::new(self.hidden_size).with_epsilon(self.layer_norm_eps).init(device),
            num_heads: self.num_heads,
        }
    }

    /// Loads `{prefix}.self.{query,key,value}`, `{prefix}.output.dense` and
    /// `{prefix}.output.LayerNorm` (PyTorch `[out, in]` weights are transposed for burn).
    pub fn load(&self, checkpoint: &mut Checkpoint, prefix: &str, device: &Device) -> BertAttention {
        let width = self.hidden_size;
        let mut take = |name: &str| {
            let weight = checkpoint.take::<2>(&format!("{prefix}.{name}.weight"), [width, width], device);
            let bias = checkpoint.take::<1>(&format!("{prefix}.{name}.bias"), [width], device);
            (weight, bias)
        };
        let (query, key, value) = (take("self.query"), take("self.key"), take("self.value"));
        let qkv = FrozenLinear::from_pytorch(
            Tensor::cat(vec![query.0, key.0, value.0], 0),
            Tensor::cat(vec![query.1, key.1, value.1], 0),
        );
        let output = weights::frozen_linear(checkpoint, &format!("{prefix}.output.dense"), width, width, device);
        let norm =
            weights::layer_norm(checkpoint, &format!("{prefix}.output.LayerNorm"), width, self.layer_norm_eps, device);
        BertAttention { qkv, output, norm, num_heads: self.num_heads }
    }
}

/// `LN(x + W_o · softmax(Q Kᵀ / √d_head + mask) V)`.
#[derive(Module, Debug)]
pub struct BertAttention {
    /// Query, key and value projections as one `Linear(d, 3d)`: one matmul instead of three.
    pub qkv: FrozenLinear,
    /// Output projection.
    pub output: FrozenLinear,
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
        let qkv = self.qkv.forward(input.clone());
        let split = |index: usize| {
            qkv.clone().narrow(2, index * width, width).reshape([batch, length, heads, head_width]).swap_dims(1, 2)
        };
        let (query, key, value) = (split(0), split(1), split(2));
        // Fused forward, backward recomputing the probabilities (`sspa-attention`).
        let mask = Some(AttentionMask::additive(additive_mask));
        let context = attention(query, key, value, mask, default_scale(head_width));
        let context = context.swap_dims(1, 2).reshape([batch, length, width]);
        self.norm.forward(self.output.forward(context) + input)
    }
}
