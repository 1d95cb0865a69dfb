//! The `linear` peer head: a linear probe on the global image feature, `s = f_g W + b`.
//!
//! The simplest head a user compares against: no patches, no text, one `Linear(c, C)` on the raw
//! encoder feature (no image projection first: a projection followed by a linear map is still one
//! linear map, so it would only add parameters).

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

/// Configuration of [`LinearHead`].
#[derive(Config, Debug)]
pub struct LinearHeadConfig {
    /// Width `c` of the image encoder's global feature.
    pub image_width: usize,
    /// Number of labels `C`.
    pub classes: usize,
}

impl LinearHeadConfig {
    /// Builds the probe with burn's default (PyTorch `nn.Linear`-like uniform) initialisation.
    pub fn init(&self, device: &Device) -> LinearHead {
        LinearHead { classifier: LinearConfig::new(self.image_width, self.classes).init(device) }
    }
}

/// `Linear(c, C)` on `f_g`.
#[derive(Module, Debug)]
pub struct LinearHead {
    /// Weight `[c, C]` (burn's `[in, out]` layout) and bias `[C]`.
    pub classifier: Linear,
}

impl LinearHead {
    /// Width `c` of the global feature this head takes.
    pub fn image_width(&self) -> usize {
        self.classifier.weight.dims()[0]
    }

    /// Number of labels `C`.
    pub fn classes(&self) -> usize {
        self.classifier.weight.dims()[1]
    }

    /// Logits of every label.
    ///
    /// # Shapes
    /// - global (`f_g`): `[B, c]`
    /// - output: `[B, C]`
    pub fn forward(&self, global: Tensor<2>) -> Tensor<2> {
        self.classifier.forward(global)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_close, device, random};

    #[test]
    fn it_is_one_affine_map_of_the_global_feature() {
        let device = device();
        let head = LinearHeadConfig::new(12, 5).init(&device);
        assert_eq!((head.image_width(), head.classes()), (12, 5));
        let (a, b) = (random([3, 12], &device), random([3, 12], &device));
        let forward = |x: Tensor<2>| head.forward(x);
        assert_eq!(forward(a.clone()).dims(), [3, 5]);
        // Affine: f(a) + f(b) − f(0) = f(a + b).
        let zero = forward(Tensor::zeros([3, 12], &device));
        assert_close(forward(a.clone()) + forward(b.clone()) - zero, forward(a + b), 1e-5);
    }
}
