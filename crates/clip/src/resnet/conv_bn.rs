//! A bias-free convolution followed by an inference-mode BatchNorm and an optional ReLU, with the
//! normalisation folded into the convolution — the unit of CLIP's stem and Bottleneck blocks.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;
use sspa_encoders::conv_bn::load_folded;
use sspa_encoders::weights::Checkpoint;

/// BatchNorm epsilon of PyTorch's `nn.BatchNorm2d` default, used by CLIP.
pub const BATCH_NORM_EPS: f64 = 1e-5;

/// Configuration of [`ConvBn`].
#[derive(Config, Debug)]
pub struct ConvBnConfig {
    /// Input channels.
    pub channels_in: usize,
    /// Output channels.
    pub channels_out: usize,
    /// Square kernel size (1 or 3 in CLIP); the padding is `kernel / 2` on every side.
    pub kernel: usize,
    /// Stride (both axes); only the first stem convolution uses 2.
    #[config(default = 1)]
    pub stride: usize,
    /// Whether a ReLU follows the normalisation.
    #[config(default = true)]
    pub relu: bool,
}

impl ConvBnConfig {
    fn conv(&self) -> Conv2dConfig {
        let pad = self.kernel / 2;
        Conv2dConfig::new([self.channels_in, self.channels_out], [self.kernel, self.kernel])
            .with_stride([self.stride, self.stride])
            // PyTorch's symmetric `padding=k//2`, not TensorFlow SAME: they differ for stride 2.
            .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
            .with_bias(true)
    }

    /// Random initialisation (the folded bias starts at zero).
    pub fn init(&self, device: &Device) -> ConvBn {
        ConvBn { conv: self.conv().init(device), relu: self.relu }
    }

    /// Loads `{conv}.weight` `[out, in, k, k]` and `{bn}.{weight,bias,running_mean,running_var}`
    /// (`{bn}.num_batches_tracked` is ignored) and folds the normalisation into the convolution:
    /// `w' = w·γ/√(σ²+ε)`, `b' = β − μ·γ/√(σ²+ε)`, computed in f64, ε = 1e-5.
    pub fn load(&self, checkpoint: &mut Checkpoint, conv: &str, bn: &str, device: &Device) -> ConvBn {
        let shape = [self.channels_out, self.channels_in, self.kernel, self.kernel];
        let mut layer = self.conv().init(device);
        (layer.weight, layer.bias) = load_folded(checkpoint, conv, bn, shape, BATCH_NORM_EPS, device);
        ConvBn { conv: layer, relu: self.relu }
    }
}

/// `ReLU(BN(conv(x)))` (or without the ReLU) with BN folded into `conv`.
#[derive(Module, Debug)]
pub struct ConvBn {
    /// The convolution carrying the folded BatchNorm as weight scale and bias.
    pub conv: Conv2d,
    /// Whether the ReLU is applied.
    pub relu: bool,
}

impl ConvBn {
    /// # Shapes
    /// - input: `[B, C_in, H, W]`
    /// - output: `[B, C_out, ⌊(H−1)/s⌋+1, ⌊(W−1)/s⌋+1]`
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let output = self.conv.forward(input);
        if self.relu { relu(output) } else { output }
    }
}
