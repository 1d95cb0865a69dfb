//! The whole CLIP model: tokenizer, text tower, image tower.

use std::path::Path;

use burn::module::Module;
use burn::prelude::*;
use sspa_encoders::ImageFeatures;

use crate::error::ClipError;
use crate::preset::{ClipConfig, VisionConfig};
use crate::resnet::ModifiedResNet;
use crate::text::TextTransformer;
use crate::tokenizer::{ClipTokenizer, ClipTokens};
use crate::vit::VisionTransformer;

/// Texts per forward pass in [`Clip::encode_text`].
const BATCH: usize = 32;

/// CLIP's image tower.
// One instance per model: the size difference of the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Visual {
    /// Vision transformer (ViT-B/32, ViT-B/16, …).
    Vit(VisionTransformer),
    /// ModifiedResNet (RN50, RN101, …).
    ResNet(ModifiedResNet),
}

impl Visual {
    /// Global and patch features in the joint space (not normalised).
    ///
    /// # Shapes
    /// - images: `[B, 3, H, W]`, CLIP-normalised
    /// - output: global `[B, D]`, patches `[B, N, D]`
    pub fn forward(&self, images: Tensor<4>) -> ImageFeatures {
        match self {
            Self::Vit(tower) => tower.forward(images),
            Self::ResNet(tower) => tower.forward(images),
        }
    }

    fn frozen(self) -> Self {
        match self {
            Self::Vit(tower) => Self::Vit(tower.set_require_grad(false)),
            Self::ResNet(tower) => Self::ResNet(tower.set_require_grad(false)),
        }
    }
}

/// A loaded CLIP model. Its parameters do not require gradients (CLIP is frozen in SSPA); the
/// CAP prompts passed to [`Clip::forward_with_prompts`] may.
#[derive(Debug)]
pub struct Clip {
    text: TextTransformer,
    visual: Visual,
    tokenizer: ClipTokenizer,
    logit_scale: f32,
    config: ClipConfig,
    device: Device,
}

impl Clip {
    /// Loads a model: a directory is read as an HF `CLIPModel` directory, a file as an OpenAI /
    /// OpenCLIP state dict in safetensors (architecture inferred from shapes). See [`crate::load`]
    /// for the key mappings and where the tokenizer is looked for.
    pub fn load(path: &Path, device: &Device) -> Result<Self, ClipError> {
        if path.is_dir() {
            crate::load::load_hf_dir(path, device)
        } else {
            crate::load::load_openai_file(path, None, device)
        }
    }

    /// Assembles a model from its parts (the towers are frozen here).
    pub fn from_parts(
        text: TextTransformer,
        visual: Visual,
        tokenizer: ClipTokenizer,
        logit_scale: f32,
        config: ClipConfig,
        device: &Device,
    ) -> Self {
        Self {
            text: text.set_require_grad(false),
            visual: visual.frozen(),
            tokenizer,
            logit_scale,
            config,
            device: device.clone(),
        }
    }

    /// The text tower.
    pub fn text_tower(&self) -> &TextTransformer {
        &self.text
    }

    /// The image tower.
    pub fn visual(&self) -> &Visual {
        &self.visual
    }

    /// The tokenizer found next to the weights.
    pub fn tokenizer(&self) -> &ClipTokenizer {
        &self.tokenizer
    }

    /// The architecture.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Text transformer width `W` (the width of CAP prompt vectors; 512 for OpenAI models).
    pub fn width(&self) -> usize {
        self.text.width()
    }

    /// Joint embedding width `D` (1024 for RN50, 512 for the others).
    pub fn embed_dim(&self) -> usize {
        self.text.embed_dim()
    }

    /// The input side the image tower was trained at (224).
    pub fn image_size(&self) -> usize {
        match &self.config.vision {
            VisionConfig::Vit(config) => config.image_size,
            VisionConfig::ResNet(config) => config.image_size,
        }
    }

    /// The learned log temperature (`ln(1/0.07)` at initialisation): logits are
    /// `exp(logit_scale) · cos`.
    pub fn logit_scale(&self) -> f32 {
        self.logit_scale
    }

    /// Tokenises to the text tower's context length (77), checking every id against its
    /// vocabulary.
    pub fn tokenize(&self, texts: &[&str]) -> Result<ClipTokens, ClipError> {
        let tokens = self.tokenizer.tokenize(texts, self.text.context_length())?;
        let vocabulary = self.text.vocab_size() as i64;
        if let Some(id) = tokens.ids.iter().find(|&&id| id >= vocabulary) {
            return Err(ClipError::Input(format!(
                "token id `{id}` of tokenizer `{}` is outside the text tower's vocabulary of `{vocabulary}`",
                self.tokenizer.source().display()
            )));
        }
        Ok(tokens)
    }

    /// Projected text features, in batches of 32. NOT L2-normalised: normalise (as CLIP does
    /// before its cosine logits) where needed.
    ///
    /// # Shapes
    /// - output: `[texts.len(), D]`
    pub fn encode_text(&self, texts: &[&str]) -> Result<Tensor<2>, ClipError> {
        if texts.is_empty() {
            return Err(ClipError::Input("no texts to encode".into()));
        }
        let mut parts = Vec::new();
        for chunk in texts.chunks(BATCH) {
            let tokens = self.tokenize(chunk)?;
            parts.push(self.text.forward(tokens.tensor(&self.device)));
        }
        Ok(Tensor::cat(parts, 0))
    }

    /// The CAP hook on label names: `[SOT][V_1 … V_M][label][EOT]` (see
    /// [`TextTransformer::forward_with_prompts`]). Not normalised.
    ///
    /// # Shapes
    /// - prompts: `[M, W]`
    /// - output: `[labels.len(), D]`
    pub fn forward_with_prompts(&self, prompts: Tensor<2>, labels: &[&str]) -> Result<Tensor<2>, ClipError> {
        let tokens = self.tokenize(labels)?;
        self.text.forward_with_prompts(prompts, &tokens)
    }

    /// Global and patch image features in the joint space, NOT normalised.
    ///
    /// # Shapes
    /// - images: `[B, 3, H, W]`, preprocessed by [`crate::preprocess::ClipPreprocess`]
    /// - output: global `[B, D]`; patches `[B, N, D]` (`N = 49` for ViT-B/32 and RN50 at 224,
    ///   196 for ViT-B/16)
    pub fn encode_image(&self, images: Tensor<4>) -> ImageFeatures {
        self.visual.forward(images)
    }
}
