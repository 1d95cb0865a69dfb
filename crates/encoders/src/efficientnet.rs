//! EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variant of the TensorFlow TPU repository, as
//! ported to PyTorch by `efficientnet_lite_pytorch`): no squeeze-excitation, ReLU6, stem (32)
//! and head (1280) not scaled, BatchNorm ε = 1e-3, TensorFlow `SAME` padding.
//!
//! The last feature map (after the 1×1 head convolution, `[B, 1280, H/32, W/32]`) is exposed as
//! patch tokens `[B, N, 1280]` and its spatial mean as the global feature `[B, 1280]` — the
//! input of the ImageNet classifier. There is no projection inside the encoder: the SSPA head's
//! own projection maps global and patch features alike.
//!
//! # Weight key mapping (`efficientnet-lite0-57934424.pth`, converted to safetensors)
//!
//! | checkpoint key | field | note |
//! |---|---|---|
//! | `_conv_stem.weight` `[32, 3, 3, 3]`, `_bn0.*` | `stem` | BN folded |
//! | `_blocks.{i}._expand_conv.weight`, `_blocks.{i}._bn0.*` | `blocks[i].expand` | only when expand ratio ≠ 1 (i ≥ 1) |
//! | `_blocks.{i}._depthwise_conv.weight`, `_blocks.{i}._bn1.*` | `blocks[i].depthwise` | BN folded |
//! | `_blocks.{i}._project_conv.weight`, `_blocks.{i}._bn2.*` | `blocks[i].project` | BN folded, no activation |
//! | `_conv_head.weight` `[1280, 320, 1, 1]`, `_bn1.*` | `head` | BN folded |
//! | `_fc.{weight,bias}` `[1000, 1280]`, `[1000]` | `classifier` | weight transposed |
//!
//! `*` is `weight`, `bias`, `running_mean`, `running_var`; every `num_batches_tracked` is ignored.

use std::path::Path;

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use crate::conv_bn::{ConvBn, ConvBnConfig};
use crate::error::EncoderError;
use crate::mbconv::{MbConv, MbConvConfig};
use crate::preprocess::ImagePreprocess;
use crate::weights::{self, Checkpoint};

/// One stage of identical blocks: `(repeats, kernel, stride, expand ratio, in, out)`.
type Stage = (usize, usize, usize, usize, usize, usize);

/// The Lite0 stages (width and depth multipliers 1.0).
const LITE0_STAGES: [Stage; 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

/// Configuration of [`EfficientNetLite0`].
#[derive(Config, Debug)]
pub struct EfficientNetLite0Config {
    /// Classes of the classifier (1000 for ImageNet-1k).
    #[config(default = 1000)]
    pub num_classes: usize,
    /// Width of the last feature map (1280).
    #[config(default = 1280)]
    pub head_channels: usize,
}

impl EfficientNetLite0Config {
    fn blocks(&self) -> Vec<MbConvConfig> {
        let mut blocks = Vec::new();
        for (repeats, kernel, stride, expand, channels_in, channels_out) in LITE0_STAGES {
            for index in 0..repeats {
                let (input, stride) = if index == 0 { (channels_in, stride) } else { (channels_out, 1) };
                blocks.push(MbConvConfig::new(input, channels_out, kernel, stride, expand));
            }
        }
        blocks
    }

    fn stem(&self) -> ConvBnConfig {
        ConvBnConfig::new(3, 32, 3).with_stride(2)
    }

    fn head(&self) -> ConvBnConfig {
        ConvBnConfig::new(320, self.head_channels, 1)
    }

    /// Random initialisation.
    pub fn init(&self, device: &Device) -> EfficientNetLite0 {
        EfficientNetLite0 {
            stem: self.stem().init(device),
            blocks: self.blocks().iter().map(|block| block.init(device)).collect(),
            head: self.head().init(device),
            classifier: LinearConfig::new(self.head_channels, self.num_classes).init(device),
        }
    }

    /// Loads a safetensors file following the key table of this module; every mismatch is
    /// reported in one [`EncoderError::Weights`].
    pub fn load(&self, path: &Path, device: &Device) -> Result<EfficientNetLite0, EncoderError> {
        self.load_checkpoint(Checkpoint::open(path, "EfficientNet-Lite0")?, device)
    }

    /// [`load`](Self::load) from an opened checkpoint.
    pub fn load_checkpoint(
        &self,
        mut checkpoint: Checkpoint,
        device: &Device,
    ) -> Result<EfficientNetLite0, EncoderError> {
        let stem = self.stem().load(&mut checkpoint, "_conv_stem", "_bn0", device);
        let blocks = self
            .blocks()
            .iter()
            .enumerate()
            .map(|(index, block)| block.load(&mut checkpoint, &format!("_blocks.{index}"), device))
            .collect();
        let head = self.head().load(&mut checkpoint, "_conv_head", "_bn1", device);
        let classifier = weights::linear(&mut checkpoint, "_fc", self.head_channels, self.num_classes, device);
        checkpoint.finish()?;
        Ok(EfficientNetLite0 { stem, blocks, head, classifier })
    }
}

/// Image features: the pooled global feature and the patch tokens it averages.
#[derive(Debug, Clone)]
pub struct ImageFeatures {
    /// `[B, C]`, the spatial mean of `patches`.
    pub global: Tensor<2>,
    /// `[B, N, C]`, the last feature map, row-major over `(H/32, W/32)`.
    pub patches: Tensor<3>,
}

/// EfficientNet-Lite0 with its ImageNet classifier.
#[derive(Module, Debug)]
pub struct EfficientNetLite0 {
    /// 3×3 stride-2 stem, 3 → 32.
    pub stem: ConvBn,
    /// 16 MBConv blocks.
    pub blocks: Vec<MbConv>,
    /// 1×1 head, 320 → 1280.
    pub head: ConvBn,
    /// ImageNet classifier (dropout is off), 1280 → 1000.
    pub classifier: Linear,
}

impl EfficientNetLite0 {
    /// Loads `model.safetensors` from a directory (see [`crate::paths::efficientnet_dir`]); the
    /// parameters do not require gradients.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, EncoderError> {
        Ok(EfficientNetLite0Config::new().load(&dir.join("model.safetensors"), device)?.set_require_grad(false))
    }

    /// Channels of the feature map (1280).
    pub fn width(&self) -> usize {
        self.head.conv.weight.dims()[0]
    }

    /// The last feature map.
    ///
    /// # Shapes
    /// - images: `[B, 3, H, W]`, normalised (see [`crate::preprocess`])
    /// - output: `[B, 1280, ⌈H/32⌉, ⌈W/32⌉]`
    pub fn feature_map(&self, images: Tensor<4>) -> Tensor<4> {
        let mut x = self.stem.forward(images);
        for block in &self.blocks {
            x = block.forward(x);
        }
        self.head.forward(x)
    }

    /// Global feature and patch tokens.
    ///
    /// # Shapes
    /// - images: `[B, 3, H, W]`
    /// - output: global `[B, 1280]`, patches `[B, N, 1280]` with `N = ⌈H/32⌉·⌈W/32⌉`
    pub fn forward(&self, images: Tensor<4>) -> ImageFeatures {
        let map = self.feature_map(images);
        let [batch, channels, height, width] = map.dims();
        let patches = map.reshape([batch, channels, height * width]).swap_dims(1, 2);
        let global = patches.clone().mean_dim(1).reshape([batch, channels]);
        ImageFeatures { global, patches }
    }

    /// Preprocesses decoded images (resize, crop, normalise) and encodes them.
    ///
    /// # Shapes
    /// - output: global `[images.len(), 1280]`, patches `[images.len(), 49, 1280]` at 224
    pub fn encode_images(
        &self,
        images: &[image::DynamicImage],
        preprocess: &ImagePreprocess,
    ) -> Result<ImageFeatures, EncoderError> {
        let device = self.stem.conv.weight.device();
        Ok(self.forward(preprocess.batch(images, &device)?))
    }

    /// ImageNet logits of a global feature.
    ///
    /// # Shapes
    /// - global: `[B, 1280]`
    /// - output: `[B, 1000]`
    pub fn classify(&self, global: Tensor<2>) -> Tensor<2> {
        self.classifier.forward(global)
    }
}
