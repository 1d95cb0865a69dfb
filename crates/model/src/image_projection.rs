//! The learnable image projection "backbone + projection" (SSPA.md, Notation): a backbone whose
//! output width `c` is not the joint width `d` (EfficientNet-Lite0: `c = 1280`) gets one
//! `Linear(c, d)` shared by the global feature and every patch feature, so that
//! `F = [f_g; f_1 … f_N]` all live in the same space ("patch features go through the same final
//! projection as `f_g`"). CLIP towers already project into their joint space and can skip it
//! (`model.image_projection = "none"`).

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

/// Configuration of [`ImageProjection`].
#[derive(Config, Debug)]
pub struct ImageProjectionConfig {
    /// Backbone output width `c`.
    pub input_width: usize,
    /// Joint embedding width `d`.
    pub d_model: usize,
}

impl ImageProjectionConfig {
    /// Builds the projection (PyTorch's `nn.Linear` initialisation).
    pub fn init(&self, device: &Device) -> ImageProjection {
        ImageProjection { linear: LinearConfig::new(self.input_width, self.d_model).init(device) }
    }
}

/// `Linear(c, d)` applied to `f_g` and to each `f_i`.
#[derive(Module, Debug)]
pub struct ImageProjection {
    /// Weight `[c, d]` and bias `[d]`.
    pub linear: Linear,
}

impl ImageProjection {
    /// Backbone width `c` this projection expects.
    pub fn input_width(&self) -> usize {
        self.linear.weight.dims()[0]
    }

    /// Projects the global feature.
    ///
    /// # Shapes
    /// - global: `[B, c]`
    /// - output: `[B, d]`
    pub fn forward_global(&self, global: Tensor<2>) -> Tensor<2> {
        self.linear.forward(global)
    }

    /// Projects every patch feature with the same weights.
    ///
    /// # Shapes
    /// - patches: `[B, N, c]`
    /// - output: `[B, N, d]`
    pub fn forward_patches(&self, patches: Tensor<3>) -> Tensor<3> {
        self.linear.forward(patches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_close, device, random};

    #[test]
    fn global_and_patches_share_one_projection() {
        let device = device();
        let projection = ImageProjectionConfig::new(12, 8).init(&device);
        assert_eq!(projection.input_width(), 12);
        let patches = random([2, 5, 12], &device);
        let projected = projection.forward_patches(patches.clone());
        assert_eq!(projected.dims(), [2, 5, 8]);
        // Row 3 of image 1 projected alone equals its row of the batched projection.
        let row = patches.clone().slice([1..2, 3..4, 0..12]).reshape([1, 12]);
        let alone = projection.forward_global(row);
        assert_close(alone.reshape([8]), projected.clone().slice([1..2, 3..4, 0..8]).reshape([8]), 1e-6);
        // Linear: projecting the mean patch equals the mean of the projected patches.
        let mean_first = projection.forward_global(patches.mean_dim(1).reshape([2, 12]));
        let mean_after = projected.mean_dim(1).reshape([2, 8]);
        assert_close(mean_first, mean_after, 1e-5);
    }
}
