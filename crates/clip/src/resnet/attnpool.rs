//! CLIP's attention pooling (`AttentionPool2d`): the spatial mean of the last feature map is
//! prepended as a query token, a learned positional embedding is added to every token, and one
//! multi-head attention step of the mean token over all tokens (itself included) gives the
//! global feature, projected into the joint image–text space by `c_proj`.
//!
//! Dense patch features follow MaskCLIP (Zhou et al., ECCV 2022, "Extract Free Dense Labels
//! from CLIP"): each spatial token goes through the value and output projections only,
//! `c_proj(v_proj(x_i))`, without query/key and without the positional embedding, so that the
//! patches live in the same joint space as the global feature and the text embeddings.
//!
//! The positional embedding is learned for a `g × g` grid (`g = image_size / 32`, 7 for RN50 at
//! 224). For another feature-map size `h × w` its spatial part is resized bicubically (PyTorch's
//! `F.interpolate(mode="bicubic", align_corners=False)`, cubic coefficient −0.75, border
//! clamped) and the mean token's embedding is kept; OpenAI's reference only accepts `h = w = g`.

use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use sspa_encoders::weights::Checkpoint;

/// Configuration of [`AttentionPool2d`].
#[derive(Config, Debug)]
pub struct AttentionPool2dConfig {
    /// Side `g` of the grid the positional embedding was learned for (`image_size / 32`).
    pub grid: usize,
    /// Channels of the feature map (`32 · width`, 2048 for RN50).
    pub embed_dim: usize,
    /// Attention heads; must divide `embed_dim`.
    pub heads: usize,
    /// Width of the joint embedding space (1024 for RN50).
    pub output_dim: usize,
}

impl AttentionPool2dConfig {
    /// Random initialisation, as OpenAI's: projections `N(0, 1/embed_dim)`, positional
    /// embedding `N(0, 1/embed_dim)`.
    pub fn init(&self, device: &Device) -> AttentionPool2d {
        let std = (self.embed_dim as f64).sqrt().recip();
        let linear = |d_output: usize| {
            let mut layer = LinearConfig::new(self.embed_dim, d_output).init(device);
            layer.weight = Param::from_tensor(Tensor::random(
                [self.embed_dim, d_output],
                burn::tensor::Distribution::Normal(0.0, std),
                device,
            ));
            layer
        };
        let tokens = self.grid * self.grid + 1;
        AttentionPool2d {
            positional_embedding: Param::from_tensor(Tensor::random(
                [tokens, self.embed_dim],
                burn::tensor::Distribution::Normal(0.0, std),
                device,
            )),
            q_proj: linear(self.embed_dim),
            k_proj: linear(self.embed_dim),
            v_proj: linear(self.embed_dim),
            c_proj: linear(self.output_dim),
            heads: self.heads,
            grid: self.grid,
        }
    }

    /// Loads `{prefix}positional_embedding` `[g²+1, embed_dim]` and
    /// `{prefix}{q,k,v,c}_proj.{weight,bias}` (PyTorch `[out, in]` weights, transposed).
    pub fn load(&self, checkpoint: &mut Checkpoint, prefix: &str, device: &Device) -> AttentionPool2d {
        let tokens = self.grid * self.grid + 1;
        let mut linear = |name: &str, d_output: usize| {
            sspa_encoders::weights::linear(checkpoint, &format!("{prefix}{name}"), self.embed_dim, d_output, device)
        };
        let q_proj = linear("q_proj", self.embed_dim);
        let k_proj = linear("k_proj", self.embed_dim);
        let v_proj = linear("v_proj", self.embed_dim);
        let c_proj = linear("c_proj", self.output_dim);
        let positional_embedding =
            checkpoint.take(&format!("{prefix}positional_embedding"), [tokens, self.embed_dim], device);
        AttentionPool2d {
            positional_embedding: Param::from_tensor(positional_embedding),
            q_proj,
            k_proj,
            v_proj,
            c_proj,
            heads: self.heads,
            grid: self.grid,
        }
    }
}

/// Attention pooling with dense value features.
#[derive(Module, Debug)]
pub struct AttentionPool2d {
    /// `[g²+1, embed_dim]`: the mean token's, then the grid's row-major.
    pub positional_embedding: Param<Tensor<2>>,
    /// Query projection (only the mean token's query is needed).
    pub q_proj: Linear,
    /// Key projection.
    pub k_proj: Linear,
    /// Value projection.
    pub v_proj: Linear,
    /// Output projection into the joint space.
    pub c_proj: Linear,
    /// Attention heads.
    pub heads: usize,
    /// Side of the grid the positional embedding was learned for.
    pub grid: usize,
}

impl AttentionPool2d {
    /// The positional embedding for an `height × width` feature map, resized bicubically when it
    /// differs from the learned grid (see the module documentation).
    ///
    /// # Shapes
    /// - output: `[height·width + 1, embed_dim]`
    pub fn positional_embedding_for(&self, height: usize, width: usize) -> Tensor<2> {
        let embedding = self.positional_embedding.val();
        if height == self.grid && width == self.grid {
            return embedding;
        }
        let [tokens, channels] = embedding.dims();
        let mean_token = embedding.clone().slice([0..1, 0..channels]);
        let grid = embedding
            .slice([1..tokens, 0..channels])
            .reshape([1, self.grid, self.grid, channels])
            .permute([0, 3, 1, 2]);
        let options = InterpolateOptions::new(InterpolateMode::Bicubic)
            .with_align_corners(false)
            .with_output_size([height, width]);
        let resized = interpolate(grid, options).reshape([channels, height * width]).transpose();
        Tensor::cat(vec![mean_token, resized], 0)
    }

    /// Global feature (the attention-pooled mean token) and MaskCLIP patch features.
    ///
    /// # Shapes
    /// - input: `[B, embed_dim, h, w]`
    /// - output: global `[B, output_dim]`, patches `[B, h·w, output_dim]` (row-major over `h, w`)
    pub fn forward(&self, input: Tensor<4>) -> (Tensor<2>, Tensor<3>) {
        let [batch, channels, height, width] = input.dims();
        let cells = height * width;
        let tokens = input.reshape([batch, channels, cells]).swap_dims(1, 2);
        let mean = tokens.clone().mean_dim(1);
        let sequence = Tensor::cat(vec![mean, tokens.clone()], 1)
            + self.positional_embedding_for(height, width).unsqueeze_dim::<3>(0);

        let head_dim = channels / self.heads;
        let length = cells + 1;
        let query = self
            .q_proj
            .forward(sequence.clone().slice([0..batch, 0..1, 0..channels]))
            .reshape([batch, 1, self.heads, head_dim])
            .swap_dims(1, 2);
        let split = |x: Tensor<3>| x.reshape([batch, length, self.heads, head_dim]).swap_dims(1, 2);
        let key = split(self.k_proj.forward(sequence.clone()));
        let value = split(self.v_proj.forward(sequence));
        let scores = query.matmul(key.swap_dims(2, 3)).div_scalar((head_dim as f64).sqrt());
        let pooled = softmax(scores, 3).matmul(value).swap_dims(1, 2).reshape([batch, channels]);
        let global = self.c_proj.forward(pooled);

        let patches = self.c_proj.forward(self.v_proj.forward(tokens));
        (global, patches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn positional_embedding_is_unchanged_on_its_grid_and_resized_elsewhere() {
        let device = Device::flex();
        let pool = AttentionPool2dConfig::new(2, 8, 2, 4).init(&device);
        let same = pool.positional_embedding_for(2, 2);
        assert_eq!(same.dims(), [5, 8]);
        let values = (0..5 * 8).map(|i| i as f32).collect::<Vec<_>>();
        let mut constant = pool.clone();
        constant.positional_embedding = Param::from_tensor(Tensor::from_data(TensorData::new(values, [5, 8]), &device));
        let resized = constant.positional_embedding_for(3, 4);
        assert_eq!(resized.dims(), [13, 8]);
        let data = resized.into_data().try_to_vec::<f32>().expect("f32");
        // The mean token's embedding is kept as it is.
        assert_eq!(&data[..8], &(0..8).map(|i| i as f32).collect::<Vec<_>>()[..]);
    }
}
