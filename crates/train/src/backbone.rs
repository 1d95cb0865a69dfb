//! The image encoder as a trained part of the model (`model.freeze_image_encoder = false`, SSPA.md
//! "Training recipe": the image encoder is trainable, the text encoder frozen).
//!
//! [`Backbone`] is a burn module, so it takes part in everything the head does: AdamW (with the
//! same decay groups), gradient clipping, the EMA, checkpoints and `model.safetensors`.
//! [`BackboneSpec`] is what `config.json` records to rebuild its skeleton before its trained
//! weights are loaded.

use burn::module::Module;
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use sspa_clip::resnet::{ModifiedResNet, ModifiedResNetConfig};
use sspa_clip::{VisionTransformer, VisionTransformerConfig};
use sspa_encoders::{EfficientNetLite0, EfficientNetLite0Config, ImageFeatures};

use crate::error::TrainError;

/// A trainable image encoder producing the global feature and the patch tokens.
// One instance per model: the size difference of the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Backbone {
    /// EfficientNet-Lite0 (BatchNorm folded into the convolutions, so it trains as an affine map).
    EfficientNet(EfficientNetLite0),
    /// CLIP's vision transformer.
    ClipVit(VisionTransformer),
    /// CLIP's ModifiedResNet.
    ClipResNet(ModifiedResNet),
}

/// The architecture of a [`Backbone`], as `config.json` records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum BackboneSpec {
    /// EfficientNet-Lite0 (fixed architecture).
    EfficientnetLite0,
    /// A CLIP vision transformer.
    ClipVit {
        /// Its configuration.
        config: VisionTransformerConfig,
    },
    /// A CLIP ModifiedResNet.
    ClipResnet {
        /// Its configuration.
        config: ModifiedResNetConfig,
    },
}

impl BackboneSpec {
    /// A backbone of this architecture with random weights (the skeleton trained weights are
    /// loaded into), every parameter drawn before returning.
    ///
    /// # Errors
    /// [`TrainError::Option`] for an invalid ResNet configuration.
    pub fn init(&self, device: &Device) -> Result<Backbone, TrainError> {
        let backbone = match self {
            Self::EfficientnetLite0 => Backbone::EfficientNet(EfficientNetLite0Config::new().init(device)),
            Self::ClipVit { config } => Backbone::ClipVit(config.init(device)),
            Self::ClipResnet { config } => Backbone::ClipResNet(config.init(device).map_err(|error| {
                TrainError::Option { key: "backbone", value: error.to_string(), reason: "invalid ModifiedResNet" }
            })?),
        };
        // burn initialises parameters lazily, at first use: draw them now, so that a caller holding
        // a seed (`crate::seeded`) gets the same weights whatever other threads draw later.
        drop(crate::optim::parameter_snapshot(&backbone));
        Ok(backbone)
    }

    /// Short name for logs and records.
    pub fn name(&self) -> &'static str {
        match self {
            Self::EfficientnetLite0 => "efficientnet-lite0",
            Self::ClipVit { .. } => "clip-vit",
            Self::ClipResnet { .. } => "clip-resnet",
        }
    }

    /// Width `c` of the features.
    pub fn width(&self) -> usize {
        match self {
            Self::EfficientnetLite0 => 1280,
            Self::ClipVit { config } => config.embed_dim,
            Self::ClipResnet { config } => config.output_dim,
        }
    }

    /// Patch tokens `N` for square inputs of side `image_size`.
    pub fn patches_per_image(&self, image_size: usize) -> usize {
        let side = match self {
            // Five stride-2 stages with "same" padding: ⌈S / 32⌉.
            Self::EfficientnetLite0 => image_size.div_ceil(32),
            Self::ClipVit { config } => image_size / config.patch_size,
            Self::ClipResnet { .. } => image_size / 32,
        };
        side * side
    }
}

impl Backbone {
    /// A pretrained EfficientNet-Lite0, made trainable, with its spec.
    pub fn efficientnet(encoder: EfficientNetLite0) -> (Self, BackboneSpec) {
        (Self::EfficientNet(encoder.set_require_grad(true)), BackboneSpec::EfficientnetLite0)
    }

    /// CLIP's pretrained image tower, made trainable, with its spec.
    ///
    /// # Errors
    /// [`TrainError::Option`] when the model's tower and its config disagree.
    pub fn clip(clip: &sspa_clip::Clip) -> Result<(Self, BackboneSpec), TrainError> {
        Ok(match (clip.visual(), &clip.config().vision) {
            (sspa_clip::Visual::Vit(tower), sspa_clip::VisionConfig::Vit(config)) => {
                (Self::ClipVit(tower.clone().set_require_grad(true)), BackboneSpec::ClipVit { config: config.clone() })
            }
            (sspa_clip::Visual::ResNet(tower), sspa_clip::VisionConfig::ResNet(config)) => (
                Self::ClipResNet(tower.clone().set_require_grad(true)),
                BackboneSpec::ClipResnet { config: config.clone() },
            ),
            _ => {
                return Err(TrainError::Option {
                    key: "CLIP image tower",
                    value: format!("{:?}", clip.config().vision),
                    reason: "the tower's kind differs from its config's",
                });
            }
        })
    }

    /// Global and patch features.
    ///
    /// # Shapes
    /// - images: `[B, 3, S, S]`, normalised with the encoder's mean/std
    /// - output: global `[B, c]`, patches `[B, N, c]`
    pub fn forward(&self, images: Tensor<4>) -> ImageFeatures {
        match self {
            Self::EfficientNet(encoder) => encoder.forward(images),
            Self::ClipVit(tower) => tower.forward(images),
            Self::ClipResNet(tower) => tower.forward(images),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_vit() -> VisionTransformerConfig {
        VisionTransformerConfig::new(32, 16, 16, 2, 1, 32, 8)
    }

    #[test]
    fn spec_round_trips_through_json_and_predicts_shapes() {
        let device = Device::flex();
        let spec = BackboneSpec::ClipVit { config: tiny_vit() };
        let json = serde_json::to_string(&spec).expect("json");
        assert!(json.contains("\"kind\":\"clip-vit\""), "{json}");
        let back: BackboneSpec = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, spec);

        // Under the process-wide seed lock: other tests seed and draw concurrently.
        let backbone = crate::model::seeded(&device, 0, || {
            spec.init(&device).inspect(|backbone| drop(crate::optim::parameter_snapshot(backbone)))
        })
        .expect("init");
        let features = backbone.forward(Tensor::zeros([2, 3, 48, 48], &device));
        assert_eq!(features.global.dims(), [2, spec.width()]);
        assert_eq!(features.patches.dims(), [2, spec.patches_per_image(48), spec.width()]);

        let efficientnet = BackboneSpec::EfficientnetLite0;
        assert_eq!(efficientnet.patches_per_image(224), 49);
        assert_eq!(efficientnet.patches_per_image(64), 4);
    }
}
