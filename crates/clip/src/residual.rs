//! The pre-LN residual attention block of CLIP's transformers.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use sspa_encoders::weights::Checkpoint;
use sspa_gelu::gelu;
use sspa_norm::{LayerNorm, LayerNormConfig};

use crate::attention::{Attention, AttentionConfig};
use crate::weights::{self, KeyLayout};

/// Configuration of [`ResidualAttentionBlock`].
#[derive(Config, Debug, PartialEq)]
pub struct ResidualAttentionBlockConfig {
    /// Model width `W`.
    pub width: usize,
    /// Number of attention heads.
    pub heads: usize,
    /// Hidden width of the MLP (`4W` in every OpenAI model).
    pub mlp_width: usize,
    /// LayerNorm epsilon.
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
    /// QuickGELU `x · σ(1.702 x)` (OpenAI, HF `quick_gelu`) when true, exact GELU otherwise
    /// (OpenCLIP's LAION models, HF `gelu`).
    #[config(default = true)]
    pub quick_gelu: bool,
}

impl ResidualAttentionBlockConfig {
    fn attention(&self) -> AttentionConfig {
        AttentionConfig::new(self.width, self.heads)
    }

    /// Random initialisation.
    pub fn init(&self, device: &Device) -> ResidualAttentionBlock {
        let norm = || LayerNormConfig::new(self.width).with_epsilon(self.layer_norm_eps).init(device);
        ResidualAttentionBlock {
            ln_1: norm(),
            attn: self.attention().init(device),
            ln_2: norm(),
            c_fc: LinearConfig::new(self.width, self.mlp_width).init(device),
            c_proj: LinearConfig::new(self.mlp_width, self.width).init(device),
            quick_gelu: self.quick_gelu,
        }
    }

    /// Loads one block at `prefix`:
    ///
    /// | field | OpenAI key | HF key |
    /// |---|---|---|
    /// | `ln_1` | `ln_1` | `layer_norm1` |
    /// | `attn` | `attn.in_proj_{weight,bias}`, `attn.out_proj` | `self_attn.{q,k,v}_proj` (fused), `self_attn.out_proj` |
    /// | `ln_2` | `ln_2` | `layer_norm2` |
    /// | `c_fc` | `mlp.c_fc` | `mlp.fc1` |
    /// | `c_proj` | `mlp.c_proj` | `mlp.fc2` |
    pub fn load(
        &self,
        checkpoint: &mut Checkpoint,
        prefix: &str,
        layout: KeyLayout,
        device: &Device,
    ) -> ResidualAttentionBlock {
        let [norm_1, attention, norm_2, fc, proj] = match layout {
            KeyLayout::OpenAi => ["ln_1", "attn", "ln_2", "mlp.c_fc", "mlp.c_proj"],
            KeyLayout::Hf => ["layer_norm1", "self_attn", "layer_norm2", "mlp.fc1", "mlp.fc2"],
        };
        let key = |name: &str| format!("{prefix}.{name}");
        let eps = self.layer_norm_eps;
        let ln_1 = weights::layer_norm(checkpoint, &key(norm_1), self.width, eps, device);
        let attn = match layout {
            KeyLayout::OpenAi => self.attention().load_openai(checkpoint, &key(attention), device),
            KeyLayout::Hf => self.attention().load_hf(checkpoint, &key(attention), device),
        };
        let ln_2 = weights::layer_norm(checkpoint, &key(norm_2), self.width, eps, device);
        let c_fc = weights::linear(checkpoint, &key(fc), self.width, self.mlp_width, device);
        let c_proj = weights::linear(checkpoint, &key(proj), self.mlp_width, self.width, device);
        ResidualAttentionBlock { ln_1, attn, ln_2, c_fc, c_proj, quick_gelu: self.quick_gelu }
    }
}

/// `x + attn(ln_1(x))`, then `x + c_proj(act(c_fc(ln_2(x))))`.
#[derive(Module, Debug)]
pub struct ResidualAttentionBlock {
    /// LayerNorm before attention.
    pub ln_1: LayerNorm,
    /// Self-attention.
    pub attn: Attention,
    /// LayerNorm before the MLP.
    pub ln_2: LayerNorm,
    /// MLP expansion `W → mlp_width`.
    pub c_fc: Linear,
    /// MLP contraction `mlp_width → W`.
    pub c_proj: Linear,
    /// QuickGELU (true) or exact GELU.
    pub quick_gelu: bool,
}

impl ResidualAttentionBlock {
    /// # Shapes
    /// - input: `[B, L, W]`
    /// - additive_mask: `[L, L]` (the causal mask of the text tower) or `None`
    /// - output: `[B, L, W]`
    pub fn forward(&self, input: Tensor<3>, additive_mask: Option<Tensor<2>>) -> Tensor<3> {
        let hidden = input.clone() + self.attn.forward(self.ln_1.forward(input), additive_mask);
        let expanded = self.c_fc.forward(self.ln_2.forward(hidden.clone()));
        let activated = if self.quick_gelu { expanded.clone() * sigmoid(expanded * 1.702) } else { gelu(expanded) };
        hidden + self.c_proj.forward(activated)
    }
}
