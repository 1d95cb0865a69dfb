//! One BERT encoder layer: self-attention block, then the feed-forward block (GELU, exact).

use burn::nn::LinearConfig;
use burn::prelude::*;
use sspa_gelu::gelu;
use sspa_norm::{LayerNorm, LayerNormConfig};

use crate::bert_attention::{BertAttention, BertAttentionConfig};
use crate::frozen_linear::FrozenLinear;
use crate::weights::{self, Checkpoint};

/// Configuration of [`BertLayer`].
#[derive(Config, Debug)]
pub struct BertLayerConfig {
    /// Hidden width `d_t`.
    pub hidden_size: usize,
    /// Number of attention heads.
    pub num_heads: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
}

impl BertLayerConfig {
    fn attention(&self) -> BertAttentionConfig {
        BertAttentionConfig::new(self.hidden_size, self.num_heads, self.layer_norm_eps)
    }

    /// Random initialisation.
    pub fn init(&self, device: &Device) -> BertLayer {
        BertLayer {
            attention: self.attention().init(device),
            intermediate: FrozenLinear::from_linear(
                LinearConfig::new(self.hidden_size, self.intermediate_size).init(device),
            ),
            output: FrozenLinear::from_linear(LinearConfig::new(self.intermediate_size, self.hidden_size).init(device)),
            norm: LayerNormConfig::new(self.hidden_size).with_epsilon(self.layer_norm_eps).init(device),
        }
    }

    /// Loads `{prefix}.attention.*`, `{prefix}.intermediate.dense`, `{prefix}.output.dense` and
    /// `{prefix}.output.LayerNorm`.
    pub fn load(&self, checkpoint: &mut Checkpoint, prefix: &str, device: &Device) -> BertLayer {
        let attention = self.attention().load(checkpoint, &format!("{prefix}.attention"), device);
        let intermediate = weights::frozen_linear(
            checkpoint,
            &format!("{prefix}.intermediate.dense"),
            self.hidden_size,
            self.intermediate_size,
            device,
        );
        let output = weights::frozen_linear(
            checkpoint,
            &format!("{prefix}.output.dense"),
            self.intermediate_size,
            self.hidden_size,
            device,
        );
        let norm = weights::layer_norm(
            checkpoint,
            &format!("{prefix}.output.LayerNorm"),
            self.hidden_size,
            self.layer_norm_eps,
            device,
        );
        BertLayer { attention, intermediate, output, norm }
    }
}

/// `h = Attention(x); LN(h + W_2 GELU(W_1 h))`.
#[derive(Module, Debug)]
pub struct BertLayer {
    /// Self-attention block.
    pub attention: BertAttention,
    /// `d_t → intermediate`.
    pub intermediate: FrozenLinear,
    /// `intermediate → d_t`.
    pub output: FrozenLinear,
    /// Post-residual LayerNorm.
    pub norm: LayerNorm,
}

impl BertLayer {
    /// # Shapes
    /// - input: `[B, L, d_t]`
    /// - additive_mask: `[B, 1, 1, L]`
    /// - output: `[B, L, d_t]`
    pub fn forward(&self, input: Tensor<3>, additive_mask: Tensor<4>) -> Tensor<3> {
        let hidden = self.attention.forward(input, additive_mask);
        let expanded = gelu(self.intermediate.forward(hidden.clone()));
        self.norm.forward(self.output.forward(expanded) + hidden)
    }
}
