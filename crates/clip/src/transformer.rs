//! A stack of [`ResidualAttentionBlock`]s (OpenAI `Transformer`, HF `CLIPEncoder`).

use burn::prelude::*;
use sspa_encoders::weights::Checkpoint;

use crate::residual::{ResidualAttentionBlock, ResidualAttentionBlockConfig};
use crate::weights::KeyLayout;

/// Configuration of [`Transformer`].
#[derive(Config, Debug, PartialEq)]
pub struct TransformerConfig {
    /// The block shared by every layer.
    pub block: ResidualAttentionBlockConfig,
    /// Number of blocks.
    pub layers: usize,
}

impl TransformerConfig {
    /// Random initialisation.
    pub fn init(&self, device: &Device) -> Transformer {
        Transformer { blocks: (0..self.layers).map(|_| self.block.init(device)).collect() }
    }

    /// Blocks at `{prefix}.resblocks.{i}` (OpenAI) or `{prefix}.layers.{i}` (HF).
    pub fn load(&self, checkpoint: &mut Checkpoint, prefix: &str, layout: KeyLayout, device: &Device) -> Transformer {
        let list = match layout {
            KeyLayout::OpenAi => "resblocks",
            KeyLayout::Hf => "layers",
        };
        let blocks = (0..self.layers)
            .map(|index| self.block.load(checkpoint, &format!("{prefix}.{list}.{index}"), layout, device))
            .collect();
        Transformer { blocks }
    }
}

/// The residual attention blocks, applied in order.
#[derive(Module, Debug)]
pub struct Transformer {
    /// The blocks.
    pub blocks: Vec<ResidualAttentionBlock>,
}

impl Transformer {
    /// # Shapes
    /// - input: `[B, L, W]`
    /// - additive_mask: `[L, L]` or `None`
    /// - output: `[B, L, W]`
    pub fn forward(&self, input: Tensor<3>, additive_mask: Option<Tensor<2>>) -> Tensor<3> {
        self.blocks.iter().fold(input, |hidden, block| block.forward(hidden, additive_mask.clone()))
    }
}
