//! CLIP's ViT image tower: patch convolution, class token, positional embedding (bicubically
//! resampled for other input sizes, as HF `interpolate_pos_encoding=True`), `ln_pre`,
//! transformer, then `ln_post` and the projection on EVERY token, so that the class token gives
//! the usual image embedding and the patch tokens dense features in the same joint space.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;
use burn::tensor::Distribution;
use sspa_encoders::ImageFeatures;
use sspa_encoders::weights::Checkpoint;
use sspa_norm::{LayerNorm, LayerNormConfig};

use crate::interpolate::resize_grid;
use crate::residual::ResidualAttentionBlockConfig;
use crate::transformer::{Transformer, TransformerConfig};
use crate::weights::{self, KeyLayout};

/// Configuration of [`VisionTransformer`].
#[derive(Config, Debug, PartialEq)]
pub struct VisionTransformerConfig {
    /// Training resolution (224); the positional grid is `image_size / patch_size` square.
    pub image_size: usize,
    /// Patch side (32 for ViT-B/32, 16 for ViT-B/16).
    pub patch_size: usize,
    /// Transformer width `W`.
    pub width: usize,
    /// Number of attention heads.
    pub heads: usize,
    /// Number of residual blocks.
    pub layers: usize,
    /// MLP hidden width (`4W` in OpenAI models).
    pub mlp_width: usize,
    /// Joint embedding width `D`.
    pub embed_dim: usize,
    /// LayerNorm epsilon.
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
    /// QuickGELU (OpenAI) rather than exact GELU.
    #[config(default = true)]
    pub quick_gelu: bool,
}

impl VisionTransformerConfig {
    /// Patches a side at the training resolution.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    fn transformer(&self) -> TransformerConfig {
        let block = ResidualAttentionBlockConfig::new(self.width, self.heads, self.mlp_width)
            .with_layer_norm_eps(self.layer_norm_eps)
            .with_quick_gelu(self.quick_gelu);
        TransformerConfig::new(block, self.layers)
    }

    fn conv(&self) -> Conv2dConfig {
        let patch = [self.patch_size, self.patch_size];
        Conv2dConfig::new([3, self.width], patch).with_stride(patch).with_bias(false)
    }

    fn norm(&self, device: &Device) -> LayerNorm {
        LayerNormConfig::new(self.width).with_epsilon(self.layer_norm_eps).init(device)
    }

    /// Random initialisation.
    pub fn init(&self, device: &Device) -> VisionTransformer {
        let scale = (self.width as f64).powf(-0.5);
        let positions = self.grid() * self.grid() + 1;
        VisionTransformer {
            conv1: self.conv().init(device),
            class_embedding: Param::from_tensor(Tensor::random([self.width], Distribution::Normal(0.0, scale), device)),
            positional_embedding: Param::from_tensor(Tensor::random(
                [positions, self.width],
                Distribution::Normal(0.0, scale),
                device,
            )),
            ln_pre: self.norm(device),
            transformer: self.transformer().init(device),
            ln_post: self.norm(device),
            proj: Param::from_tensor(Tensor::random(
                [self.width, self.embed_dim],
                Distribution::Normal(0.0, scale),
                device,
            )),
        }
    }

    /// Loads the image tower (`G = image_size / patch_size`, `P = patch_size`):
    ///
    /// | field | OpenAI key | HF key |
    /// |---|---|---|
    /// | `conv1` (no bias) | `visual.conv1.weight` `[W, 3, P, P]` | `vision_model.embeddings.patch_embedding.weight` |
    /// | `class_embedding` | `visual.class_embedding` `[W]` | `vision_model.embeddings.class_embedding` |
    /// | `positional_embedding` | `visual.positional_embedding` `[G² + 1, W]` | `vision_model.embeddings.position_embedding.weight` |
    /// | `ln_pre` | `visual.ln_pre` | `vision_model.pre_layrnorm` (sic) |
    /// | `transformer` | `visual.transformer.resblocks.{i}.*` | `vision_model.encoder.layers.{i}.*` |
    /// | `ln_post` | `visual.ln_post` | `vision_model.post_layernorm` |
    /// | `proj` `[W, D]` | `visual.proj` `[W, D]` | `visual_projection.weight` `[D, W]` (transposed) |
    ///
    /// HF's `vision_model.embeddings.position_ids` buffer is ignored.
    pub fn load(&self, checkpoint: &mut Checkpoint, layout: KeyLayout, device: &Device) -> VisionTransformer {
        let keys: [&str; 7] = match layout {
            KeyLayout::OpenAi => [
                "visual.conv1.weight",
                "visual.class_embedding",
                "visual.positional_embedding",
                "visual.ln_pre",
                "visual.transformer",
                "visual.ln_post",
                "visual.proj",
            ],
            KeyLayout::Hf => [
                "vision_model.embeddings.patch_embedding.weight",
                "vision_model.embeddings.class_embedding",
                "vision_model.embeddings.position_embedding.weight",
                "vision_model.pre_layrnorm",
                "vision_model.encoder",
                "vision_model.post_layernorm",
                "visual_projection.weight",
            ],
        };
        if layout == KeyLayout::Hf {
            checkpoint.ignore("vision_model.embeddings.position_ids");
        }
        let width = self.width;
        let mut conv1 = self.conv().init(device);
        conv1.weight =
            Param::from_tensor(checkpoint.take(keys[0], [width, 3, self.patch_size, self.patch_size], device));
        let positions = self.grid() * self.grid() + 1;
        VisionTransformer {
            conv1,
            class_embedding: Param::from_tensor(checkpoint.take(keys[1], [width], device)),
            positional_embedding: Param::from_tensor(checkpoint.take(keys[2], [positions, width], device)),
            ln_pre: weights::layer_norm(checkpoint, keys[3], width, self.layer_norm_eps, device),
            transformer: self.transformer().load(checkpoint, keys[4], layout, device),
            ln_post: weights::layer_norm(checkpoint, keys[5], width, self.layer_norm_eps, device),
            proj: weights::projection(checkpoint, keys[6], width, self.embed_dim, layout == KeyLayout::Hf, device),
        }
    }
}

/// The CLIP vision transformer.
#[derive(Module, Debug)]
pub struct VisionTransformer {
    /// Patch embedding, stride = kernel = patch size, no bias.
    pub conv1: Conv2d,
    /// The class token `[W]`.
    pub class_embedding: Param<Tensor<1>>,
    /// Positions `[G² + 1, W]`: the class token's first, then the patch grid row-major.
    pub positional_embedding: Param<Tensor<2>>,
    /// LayerNorm before the transformer.
    pub ln_pre: LayerNorm,
    /// Pre-LN transformer (no mask).
    pub transformer: Transformer,
    /// LayerNorm after the transformer, applied to every token.
    pub ln_post: LayerNorm,
    /// Projection into the joint space `[W, D]`, applied to every token.
    pub proj: Param<Tensor<2>>,
}

impl VisionTransformer {
    /// Transformer width `W`.
    pub fn width(&self) -> usize {
        self.class_embedding.dims()[0]
    }

    /// Joint embedding width `D`.
    pub fn embed_dim(&self) -> usize {
        self.proj.dims()[1]
    }

    /// Patch side.
    pub fn patch_size(&self) -> usize {
        self.conv1.weight.dims()[3]
    }

    /// Side of the training positional grid.
    pub fn grid(&self) -> usize {
        let patches = self.positional_embedding.dims()[0] - 1;
        (patches as f64).sqrt().round() as usize
    }

    /// Positional embeddings for a `height × width` patch grid: the trained ones when the grid
    /// is the training grid, else the patch part resampled bicubically (class position kept).
    ///
    /// # Shapes
    /// - output: `[height · width + 1, W]`
    pub fn positions(&self, height: usize, width: usize) -> Tensor<2> {
        let grid = self.grid();
        let table = self.positional_embedding.val();
        if height == grid && width == grid {
            return table;
        }
        let [count, channels] = table.dims();
        let class = table.clone().narrow(0, 0, 1);
        let patches = resize_grid(table.narrow(0, 1, count - 1), grid, grid, height, width);
        debug_assert_eq!(patches.dims(), [height * width, channels]);
        Tensor::cat(vec![class, patches], 0)
    }

    /// Projected class token (`global`) and patch tokens (`patches`, row-major over the patch
    /// grid), not normalised. Any input size works; sides are floored to whole patches.
    ///
    /// # Shapes
    /// - images: `[B, 3, H, W]`, normalised with CLIP's mean/std
    /// - output: global `[B, D]`, patches `[B, (H/P)·(W/P), D]`
    pub fn forward(&self, images: Tensor<4>) -> ImageFeatures {
        let patches = self.conv1.forward(images);
        let [batch, width, grid_height, grid_width] = patches.dims();
        let count = grid_height * grid_width;
        let patches = patches.reshape([batch, width, count]).swap_dims(1, 2);
        let class = self.class_embedding.val().reshape([1, 1, width]).expand([batch, 1, width]);
        let positions = self.positions(grid_height, grid_width).reshape([1, count + 1, width]);
        let tokens = Tensor::cat(vec![class, patches], 1) + positions;
        let hidden = self.transformer.forward(self.ln_pre.forward(tokens), None);
        let hidden = self.ln_post.forward(hidden).reshape([batch * (count + 1), width]);
        let embed = self.embed_dim();
        let projected = hidden.matmul(self.proj.val()).reshape([batch, count + 1, embed]);
        ImageFeatures {
            global: projected.clone().narrow(1, 0, 1).reshape([batch, embed]),
            patches: projected.narrow(1, 1, count),
        }
    }
}
