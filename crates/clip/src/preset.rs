//! OpenAI CLIP presets and architecture inference.
//!
//! | preset | image tower | image size | text (width/heads/layers) | joint `D` |
//! |---|---|---|---|---|
//! | `RN50` | ModifiedResNet `[3, 4, 6, 3]`, width 64 | 224 | 512 / 8 / 12 | 1024 |
//! | `RN101` | ModifiedResNet `[3, 4, 23, 3]`, width 64 | 224 | 512 / 8 / 12 | 512 |
//! | `ViT-B/32` | ViT width 768, 12 layers, 12 heads, patch 32 | 224 | 512 / 8 / 12 | 512 |
//! | `ViT-B/16` | ViT width 768, 12 layers, 12 heads, patch 16 | 224 | 512 / 8 / 12 | 512 |
//!
//! All text towers: vocabulary 49408, context 77, MLP `4W`, QuickGELU.
//!
//! [`ClipConfig::infer_openai`] reads the architecture from tensor shapes as OpenAI's
//! `build_model` does. Head counts are not stored in a checkpoint: like `build_model` it assumes
//! 64-wide heads (`W / 64`, at least 1); use [`ClipConfig::with_heads`] for other models.

use std::collections::BTreeMap;

use crate::resnet::ModifiedResNetConfig;
use crate::text::TextTransformerConfig;
use crate::vit::VisionTransformerConfig;

/// The four OpenAI CLIP models the pipeline offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipPreset {
    /// ResNet-50 image tower.
    Rn50,
    /// ResNet-101 image tower.
    Rn101,
    /// ViT-B/32 image tower.
    VitB32,
    /// ViT-B/16 image tower.
    VitB16,
}

impl ClipPreset {
    /// Every preset.
    pub const ALL: [Self; 4] = [Self::Rn50, Self::Rn101, Self::VitB32, Self::VitB16];

    /// OpenAI's model name (`RN50`, `RN101`, `ViT-B/32`, `ViT-B/16`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Rn50 => "RN50",
            Self::Rn101 => "RN101",
            Self::VitB32 => "ViT-B/32",
            Self::VitB16 => "ViT-B/16",
        }
    }

    /// Accepts OpenAI names and the config's `clip-rn50`-style names, case-insensitively.
    pub fn from_name(name: &str) -> Option<Self> {
        let key: String = name.to_ascii_lowercase().chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        let key = key.strip_prefix("clip").unwrap_or(&key);
        match key {
            "rn50" => Some(Self::Rn50),
            "rn101" => Some(Self::Rn101),
            "vitb32" => Some(Self::VitB32),
            "vitb16" => Some(Self::VitB16),
            _ => None,
        }
    }

    /// The architecture.
    pub fn config(self) -> ClipConfig {
        let embed_dim = if self == Self::Rn50 { 1024 } else { 512 };
        let text = TextTransformerConfig::new(49408, 77, 512, 8, 12, 2048, embed_dim);
        let vit = |patch: usize| VisionTransformerConfig::new(224, patch, 768, 12, 12, 3072, embed_dim);
        let vision = match self {
            Self::Rn50 => VisionConfig::ResNet(ModifiedResNetConfig::rn50()),
            Self::Rn101 => VisionConfig::ResNet(ModifiedResNetConfig::rn101()),
            Self::VitB32 => VisionConfig::Vit(vit(32)),
            Self::VitB16 => VisionConfig::Vit(vit(16)),
        };
        ClipConfig { embed_dim, text, vision }
    }
}

/// The image tower's architecture.
#[derive(Debug, Clone, PartialEq)]
pub enum VisionConfig {
    /// Vision transformer.
    Vit(VisionTransformerConfig),
    /// ModifiedResNet with attention pooling.
    ResNet(ModifiedResNetConfig),
}

impl VisionConfig {
    /// The input side the tower was trained at.
    pub fn image_size(&self) -> usize {
        match self {
            Self::Vit(config) => config.image_size,
            Self::ResNet(config) => config.image_size,
        }
    }

    /// Width of the tower's output (the joint space).
    pub fn embed_dim(&self) -> usize {
        match self {
            Self::Vit(config) => config.embed_dim,
            Self::ResNet(config) => config.output_dim,
        }
    }
}

/// A whole CLIP architecture.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    /// Joint embedding width `D`.
    pub embed_dim: usize,
    /// The text tower.
    pub text: TextTransformerConfig,
    /// The image tower.
    pub vision: VisionConfig,
}

impl ClipConfig {
    /// Overrides the attention head counts (the ResNet's attention pooling keeps its own).
    pub fn with_heads(mut self, text_heads: usize, vision_heads: usize) -> Self {
        self.text.heads = text_heads;
        match &mut self.vision {
            VisionConfig::Vit(config) => config.heads = vision_heads,
            VisionConfig::ResNet(config) => config.heads = vision_heads,
        }
        self
    }

    /// Checks the widths the towers depend on, listing every problem.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let mut check = |tower: &str, width: usize, heads: usize| {
            if heads == 0 || !width.is_multiple_of(heads) {
                problems.push(format!("{tower} width `{width}` is not divisible by `{heads}` heads"));
            }
        };
        check("text", self.text.width, self.text.heads);
        if let VisionConfig::Vit(config) = &self.vision {
            check("vision", config.width, config.heads);
            if config.patch_size == 0 || config.image_size < config.patch_size {
                problems.push(format!("patch `{}` does not fit image `{}`", config.patch_size, config.image_size));
            }
        }
        if self.text.embed_dim != self.vision.embed_dim() {
            problems.push(format!(
                "text projection width `{}` differs from the image tower's `{}`",
                self.text.embed_dim,
                self.vision.embed_dim()
            ));
        }
        if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
    }

    /// The architecture of an OpenAI / OpenCLIP state dict from its tensor shapes (OpenAI
    /// `build_model`); a ViT when `visual.proj` exists, else a ModifiedResNet.
    pub fn infer_openai(shapes: &BTreeMap<String, Vec<usize>>) -> Result<Self, String> {
        let dim = |key: &str, axis: usize| -> Result<usize, String> {
            let shape = shapes.get(key).ok_or_else(|| format!("no tensor `{key}`"))?;
            let index = if axis == usize::MAX { shape.len().wrapping_sub(1) } else { axis };
            shape.get(index).copied().ok_or_else(|| format!("`{key}` has shape `{shape:?}`"))
        };
        let layers = |prefix: &str| {
            shapes
                .keys()
                .filter_map(|key| key.strip_prefix(prefix)?.split('.').next()?.parse::<usize>().ok())
                .max()
                .map_or(0, |last| last + 1)
        };
        let embed_dim = dim("text_projection", 1)?;
        let width = dim("ln_final.weight", 0)?;
        let text = TextTransformerConfig::new(
            dim("token_embedding.weight", 0)?,
            dim("positional_embedding", 0)?,
            width,
            (width / 64).max(1),
            layers("transformer.resblocks."),
            dim("transformer.resblocks.0.mlp.c_fc.weight", 0)?,
            embed_dim,
        );
        let vision = if shapes.contains_key("visual.proj") {
            let vision_width = dim("visual.conv1.weight", 0)?;
            let patch = dim("visual.conv1.weight", usize::MAX)?;
            let tokens = dim("visual.positional_embedding", 0)?;
            let grid = ((tokens.saturating_sub(1)) as f64).sqrt().round() as usize;
            if grid * grid + 1 != tokens {
                return Err(format!("`visual.positional_embedding` has `{tokens}` rows, not a square grid plus one"));
            }
            VisionConfig::Vit(VisionTransformerConfig::new(
                patch * grid,
                patch,
                vision_width,
                (vision_width / 64).max(1),
                layers("visual.transformer.resblocks."),
                dim("visual.transformer.resblocks.0.mlp.c_fc.weight", 0)?,
                dim("visual.proj", 1)?,
            ))
        } else if shapes.contains_key("visual.attnpool.c_proj.weight") {
            VisionConfig::ResNet(ModifiedResNetConfig::infer(shapes, "visual.").map_err(|error| error.to_string())?)
        } else {
            return Err("neither `visual.proj` (ViT) nor `visual.attnpool.c_proj.weight` (ResNet) is present".into());
        };
        let config = Self { embed_dim, text, vision };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for preset in ClipPreset::ALL {
            assert_eq!(ClipPreset::from_name(preset.name()), Some(preset));
            assert!(preset.config().validate().is_ok(), "{}", preset.name());
        }
        assert_eq!(ClipPreset::from_name("clip-vit-b16"), Some(ClipPreset::VitB16));
        assert_eq!(ClipPreset::from_name("clip-rn101"), Some(ClipPreset::Rn101));
        assert_eq!(ClipPreset::from_name("vit-l/14"), None);
    }

    #[test]
    fn presets_have_openai_sizes() {
        let vit = ClipPreset::VitB16.config();
        let VisionConfig::Vit(vision) = &vit.vision else { panic!("ViT-B/16 is a ViT") };
        assert_eq!(
            (vision.width, vision.layers, vision.heads, vision.patch_size, vision.grid()),
            (768, 12, 12, 16, 14)
        );
        assert_eq!((vit.text.width, vit.text.heads, vit.text.layers, vit.embed_dim), (512, 8, 12, 512));
        let rn50 = ClipPreset::Rn50.config();
        let VisionConfig::ResNet(resnet) = &rn50.vision else { panic!("RN50 is a ResNet") };
        assert_eq!((resnet.layers, resnet.width, resnet.output_dim, rn50.embed_dim), ([3, 4, 6, 3], 64, 1024, 1024));
    }

    /// The shapes of a ViT-B/32 state dict (one block a tower is enough for the counts).
    #[test]
    fn inference_reads_a_vit_b32_inventory() {
        let mut shapes = BTreeMap::new();
        let mut put = |key: &str, shape: &[usize]| shapes.insert(key.to_string(), shape.to_vec());
        put("text_projection", &[512, 512]);
        put("ln_final.weight", &[512]);
        put("token_embedding.weight", &[49408, 512]);
        put("positional_embedding", &[77, 512]);
        for block in 0..12 {
            put(&format!("transformer.resblocks.{block}.mlp.c_fc.weight"), &[2048, 512]);
            put(&format!("visual.transformer.resblocks.{block}.mlp.c_fc.weight"), &[3072, 768]);
        }
        put("visual.proj", &[768, 512]);
        put("visual.conv1.weight", &[768, 3, 32, 32]);
        put("visual.positional_embedding", &[50, 768]);
        assert_eq!(ClipConfig::infer_openai(&shapes), Ok(ClipPreset::VitB32.config()));
        shapes.insert("visual.positional_embedding".into(), vec![51, 768]);
        let error = ClipConfig::infer_openai(&shapes).expect_err("51 rows are no square grid");
        assert!(error.contains("51"), "{error}");
    }
}
