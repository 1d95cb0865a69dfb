//! The ModifiedResNet image tower: configuration, presets, shape inference, forward.

use std::collections::BTreeMap;

use burn::prelude::*;
use sspa_encoders::ImageFeatures;

use super::attnpool::{AttentionPool2d, AttentionPool2dConfig};
use super::bottleneck::{Bottleneck, BottleneckConfig, EXPANSION};
use super::error::ResnetError;
use super::stem::{Stem, StemConfig};

/// Configuration of [`ModifiedResNet`].
#[derive(Config, Debug, PartialEq)]
pub struct ModifiedResNetConfig {
    /// Bottleneck blocks in each of the four stages (`[3, 4, 6, 3]` for RN50).
    pub layers: [usize; 4],
    /// Stem width; stage `i` has `width · 2^i` planes and `4 · width · 2^i` output channels, the
    /// attention pooling `32 · width` (64 → 2048).
    #[config(default = 64)]
    pub width: usize,
    /// Attention heads of the pooling (OpenAI: `32 · width / 64`).
    #[config(default = 32)]
    pub heads: usize,
    /// Width of the joint image–text space (1024 for RN50, 512 for RN101).
    #[config(default = 1024)]
    pub output_dim: usize,
    /// Input side the positional embedding was learned for (224); other sizes interpolate it.
    #[config(default = 224)]
    pub image_size: usize,
}

impl ModifiedResNetConfig {
    /// OpenAI's RN50: stages `[3, 4, 6, 3]`, width 64, 32 heads, 1024-d output, 224 px.
    pub fn rn50() -> Self {
        Self::new([3, 4, 6, 3])
    }

    /// OpenAI's RN101: stages `[3, 4, 23, 3]`, width 64, 32 heads, 512-d output, 224 px.
    pub fn rn101() -> Self {
        Self::new([3, 4, 23, 3]).with_output_dim(512)
    }

    /// Channels of the last feature map (`32 · width`).
    pub fn embed_dim(&self) -> usize {
        self.width * 8 * EXPANSION
    }

    /// Side of the positional embedding's grid (`image_size / 32`).
    pub fn grid(&self) -> usize {
        self.image_size / 32
    }

    /// Checks the values the architecture depends on.
    pub fn validate(&self) -> Result<(), ResnetError> {
        let mut problems = Vec::new();
        if self.width < 2 || !self.width.is_multiple_of(2) {
            problems.push(format!("width `{}` must be even and at least 2", self.width));
        }
        if self.layers.contains(&0) {
            problems.push(format!("every stage needs a block, got `{:?}`", self.layers));
        }
        if self.heads == 0 || !self.embed_dim().is_multiple_of(self.heads) {
            problems.push(format!("heads `{}` must divide the pooling width `{}`", self.heads, self.embed_dim()));
        }
        if self.output_dim == 0 {
            problems.push("output_dim must be positive".into());
        }
        if self.image_size < 32 {
            problems.push(format!("image_size `{}` is below 32", self.image_size));
        }
        if problems.is_empty() { Ok(()) } else { Err(ResnetError::Config(problems.join("; "))) }
    }

    /// The Bottleneck configurations of each stage, in order.
    pub fn stages(&self) -> [Vec<BottleneckConfig>; 4] {
        let mut channels = self.width;
        std::array::from_fn(|stage| {
            let planes = self.width << stage;
            let stride = if stage == 0 { 1 } else { 2 };
            (0..self.layers[stage])
                .map(|index| {
                    let block = if index == 0 {
                        BottleneckConfig::new(channels, planes).with_stride(stride)
                    } else {
                        BottleneckConfig::new(planes * EXPANSION, planes)
                    };
                    channels = planes * EXPANSION;
                    block
                })
                .collect()
        })
    }

    pub(crate) fn stem(&self) -> StemConfig {
        StemConfig::new(self.width)
    }

    pub(crate) fn attnpool(&self) -> AttentionPool2dConfig {
        AttentionPool2dConfig::new(self.grid(), self.embed_dim(), self.heads, self.output_dim)
    }

    /// Random initialisation (as a benchmark or a training start).
    pub fn init(&self, device: &Device) -> Result<ModifiedResNet, ResnetError> {
        self.validate()?;
        let [layer1, layer2, layer3, layer4] =
            self.stages().map(|stage| stage.iter().map(|block| block.init(device)).collect());
        Ok(ModifiedResNet {
            stem: self.stem().init(device),
            layer1,
            layer2,
            layer3,
            layer4,
            attnpool: self.attnpool().init(device),
        })
    }

    /// Infers the architecture from the tensor shapes of an OpenAI/OpenCLIP state dict, the way
    /// OpenAI's `build_model` does: stage depths from the `{prefix}layer{i}.{j}.` keys, width from
    /// `{prefix}layer1.0.conv1.weight`, output width from `{prefix}attnpool.c_proj.weight`, image
    /// size from the positional embedding (`32 · √(tokens − 1)`). The head count is not stored in
    /// a checkpoint: OpenAI's convention `32 · width / 64` is used (`prefix` is e.g. `visual.`).
    pub fn infer(shapes: &BTreeMap<String, Vec<usize>>, prefix: &str) -> Result<Self, ResnetError> {
        let fail = |reason: String| ResnetError::Infer { prefix: prefix.to_string(), reason };
        let shape =
            |key: &str| shapes.get(&format!("{prefix}{key}")).ok_or_else(|| fail(format!("no tensor `{prefix}{key}`")));
        let mut layers = [0; 4];
        for (stage, count) in layers.iter_mut().enumerate() {
            let stage_prefix = format!("{prefix}layer{}.", stage + 1);
            let blocks = shapes
                .keys()
                .filter_map(|key| key.strip_prefix(&stage_prefix)?.split('.').next()?.parse::<usize>().ok())
                .max();
            *count = blocks.map_or(0, |last| last + 1);
        }
        let conv1 = shape("layer1.0.conv1.weight")?;
        let width = *conv1.first().ok_or_else(|| fail("`layer1.0.conv1.weight` has rank 0".into()))?;
        let output_dim = *shape("attnpool.c_proj.weight")?
            .first()
            .ok_or_else(|| fail("`attnpool.c_proj.weight` has rank 0".into()))?;
        let tokens = *shape("attnpool.positional_embedding")?
            .first()
            .ok_or_else(|| fail("`attnpool.positional_embedding` has rank 0".into()))?;
        let grid = (1..=tokens).find(|g| g * g + 1 >= tokens).unwrap_or(0);
        if grid * grid + 1 != tokens {
            return Err(fail(format!("positional embedding of {tokens} tokens is not a square grid plus one")));
        }
        let config = Self::new(layers)
            .with_width(width)
            .with_heads((width * 32 / 64).max(1))
            .with_output_dim(output_dim)
            .with_image_size(grid * 32);
        config.validate().map_err(|error| fail(error.to_string()))?;
        Ok(config)
    }
}

/// CLIP's ModifiedResNet image tower.
#[derive(Module, Debug)]
pub struct ModifiedResNet {
    /// Three-convolution stem + 2×2 average pool (stride 4).
    pub stem: Stem,
    /// Stage 1: stride 1, `4 · width` channels.
    pub layer1: Vec<Bottleneck>,
    /// Stage 2: stride 2, `8 · width` channels.
    pub layer2: Vec<Bottleneck>,
    /// Stage 3: stride 2, `16 · width` channels.
    pub layer3: Vec<Bottleneck>,
    /// Stage 4: stride 2, `32 · width` channels.
    pub layer4: Vec<Bottleneck>,
    /// Attention pooling into the joint space.
    pub attnpool: AttentionPool2d,
}

impl ModifiedResNet {
    /// Width of the joint space (the output features).
    pub fn output_dim(&self) -> usize {
        self.attnpool.c_proj.weight.dims()[1]
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.attnpool.positional_embedding.val().device()
    }

    /// The last feature map, before attention pooling.
    ///
    /// # Shapes
    /// - images: `[B, 3, H, W]`, CLIP-normalised
    /// - output: `[B, 32·width, ≈H/32, ≈W/32]` (`[B, 2048, 7, 7]` for RN50 at 224)
    pub fn feature_map(&self, images: Tensor<4>) -> Tensor<4> {
        let mut x = self.stem.forward(images);
        for block in self.layer1.iter().chain(&self.layer2).chain(&self.layer3).chain(&self.layer4) {
            x = block.forward(x);
        }
        x
    }

    /// Global feature (attention pooling) and dense patch features (MaskCLIP, see
    /// [`super::attnpool`]), both in the joint space and not normalised.
    ///
    /// # Shapes
    /// - images: `[B, 3, H, W]`
    /// - output: global `[B, output_dim]`, patches `[B, h·w, output_dim]` with `h × w` the
    ///   feature map's size (`7 × 7` at 224)
    pub fn forward(&self, images: Tensor<4>) -> ImageFeatures {
        let (global, patches) = self.attnpool.forward(self.feature_map(images));
        ImageFeatures { global, patches }
    }
}
