//! Multi-head self-attention with a fused input projection, as PyTorch's
//! `nn.MultiheadAttention` in OpenAI CLIP (HF's separate `q_proj`/`k_proj`/`v_proj` are fused on
//! loading).

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use sspa_attention::{AttentionMask, attention, default_scale};
use sspa_encoders::weights::Checkpoint;

use crate::weights;

/// Configuration of [`Attention`].
#[derive(Config, Debug, PartialEq)]
pub struct AttentionConfig {
    /// Model width `W`; divisible by `heads`.
    pub width: usize,
    /// Number of heads.
    pub heads: usize,
}

impl AttentionConfig {
    /// Random initialisation.
    pub fn init(&self, device: &Device) -> Attention {
        Attention {
            in_proj: LinearConfig::new(self.width, 3 * self.width).init(device),
            out_proj: LinearConfig::new(self.width, self.width).init(device),
            heads: self.heads,
        }
    }

    /// OpenAI keys `{prefix}.in_proj_weight` `[3W, W]`, `{prefix}.in_proj_bias`,
    /// `{prefix}.out_proj.{weight,bias}`.
    pub fn load_openai(&self, checkpoint: &mut Checkpoint, prefix: &str, device: &Device) -> Attention {
        Attention {
            in_proj: weights::in_projection(checkpoint, prefix, self.width, device),
            out_proj: weights::linear(checkpoint, &format!("{prefix}.out_proj"), self.width, self.width, device),
            heads: self.heads,
        }
    }

    /// HF keys `{prefix}.{q,k,v,out}_proj.{weight,bias}`.
    pub fn load_hf(&self, checkpoint: &mut Checkpoint, prefix: &str, device: &Device) -> Attention {
        let [q, k, v] = ["q_proj", "k_proj", "v_proj"].map(|name| format!("{prefix}.{name}"));
        Attention {
            in_proj: weights::fused_linear(checkpoint, [&q, &k, &v], self.width, device),
            out_proj: weights::linear(checkpoint, &format!("{prefix}.out_proj"), self.width, self.width, device),
            heads: self.heads,
        }
    }
}

/// `W_o · softmax(Q Kᵀ / √d_head + mask) V`.
#[derive(Module, Debug)]
pub struct Attention {
    /// `W → 3W`: queries, keys and values, in this order.
    pub in_proj: Linear,
    /// Output projection.
    pub out_proj: Linear,
    /// Number of heads.
    pub heads: usize,
}

impl Attention {
    /// # Shapes
    /// - input: `[B, L, W]`
    /// - additive_mask: `[L, L]`, 0 where attended, a large negative value where masked
    /// - output: `[B, L, W]`
    pub fn forward(&self, input: Tensor<3>, additive_mask: Option<Tensor<2>>) -> Tensor<3> {
        let [batch, length, width] = input.dims();
        let heads = self.heads;
        let head_width = width / heads;
        let fused = self.in_proj.forward(input).reshape([batch, length, 3, heads, head_width]);
        let part = |index: usize| {
            fused.clone().narrow(2, index, 1).reshape([batch, length, heads, head_width]).swap_dims(1, 2)
        };
        let (query, key, value) = (part(0), part(1), part(2));
        // Fused forward, backward recomputing the probabilities (`sspa-attention`).
        let mask = additive_mask.map(|mask| AttentionMask::additive(mask.reshape([1, 1, length, length])));
        let context = attention(query, key, value, mask, default_scale(head_width));
        let context = context.swap_dims(1, 2).reshape([batch, length, width]);
        self.out_proj.forward(context)
    }
}
