//! The `mlp` peer head: a two-layer MLP on the global feature joined with the mean patch feature,
//! `s = GELU([f_g ‖ mean_i f_i] W_1 + b_1) W_2 + b_2`.
//!
//! The mean of the patch features gives the MLP the same pooled spatial evidence a global-average
//! pooled backbone would, so it sees everything the SSPA head sees except *where* things are.
//! GELU (exact, erf), not ReLU: every MLP of the SSPA head uses it (SSPA.md), so the comparison
//! does not also change the activation; no dropout, as in the SSPA head.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use sspa_gelu::gelu;

/// Configuration of [`MlpHead`].
#[derive(Config, Debug)]
pub struct MlpHeadConfig {
    /// Width `c` of the image encoder's global and patch features (the MLP reads `2c`).
    pub image_width: usize,
    /// Hidden width `h` (`HeadConfig::from_sections` uses the joint width `d = model.embed_dim`,
    /// the width the SSPA head computes in).
    pub hidden_width: usize,
    /// Number of labels `C`.
    pub classes: usize,
}

impl MlpHeadConfig {
    /// Builds both layers with burn's default (PyTorch `nn.Linear`-like uniform) initialisation.
    pub fn init(&self, device: &Device) -> MlpHead {
        MlpHead {
            hidden: LinearConfig::new(2 * self.image_width, self.hidden_width).init(device),
            classifier: LinearConfig::new(self.hidden_width, self.classes).init(device),
        }
    }
}

/// `Linear(2c, h) → GELU → Linear(h, C)` on `[f_g ‖ mean_i f_i]`.
#[derive(Module, Debug)]
pub struct MlpHead {
    /// `W_1` `[2c, h]`, `b_1` `[h]`; rows `0..c` read `f_g`, rows `c..2c` the mean patch.
    pub hidden: Linear,
    /// `W_2` `[h, C]`, `b_2` `[C]`.
    pub classifier: Linear,
}

impl MlpHead {
    /// Width `c` of the image features this head takes.
    pub fn image_width(&self) -> usize {
        self.hidden.weight.dims()[0] / 2
    }

    /// Number of labels `C`.
    pub fn classes(&self) -> usize {
        self.classifier.weight.dims()[1]
    }

    /// Logits of every label.
    ///
    /// # Shapes
    /// - global (`f_g`): `[B, c]`
    /// - patches (`F_p`): `[B, N, c]`
    /// - output: `[B, C]`
    pub fn forward(&self, global: Tensor<2>, patches: Tensor<3>) -> Tensor<2> {
        let [batch, _, width] = patches.dims();
        let mean_patch = patches.mean_dim(1).reshape([batch, width]);
        let joined = Tensor::cat(vec![global, mean_patch], 1);
        self.classifier.forward(gelu(self.hidden.forward(joined)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_close, device, random};

    #[test]
    fn only_the_mean_of_the_patches_matters() {
        let device = device();
        let head = MlpHeadConfig::new(6, 10, 4).init(&device);
        assert_eq!((head.image_width(), head.classes()), (6, 4));
        let global = random([2, 6], &device);
        let patches = random([2, 5, 6], &device);
        let logits = head.forward(global.clone(), patches.clone());
        assert_eq!(logits.dims(), [2, 4]);
        // Reversing the patch order, or replacing every patch by the mean patch, changes nothing.
        let reversed = patches.clone().flip([1]);
        assert_close(head.forward(global.clone(), reversed), logits.clone(), 1e-5);
        let mean = patches.clone().mean_dim(1).expand([2, 5, 6]);
        assert_close(head.forward(global.clone(), mean), logits.clone(), 1e-5);
        // The global feature does matter.
        let moved = head.forward(global.add_scalar(1.0), patches);
        assert!(crate::test_util::max_difference(moved, logits) > 1e-3);
    }
}
