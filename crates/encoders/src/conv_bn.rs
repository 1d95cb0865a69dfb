//! Convolution + BatchNorm (eval mode, folded into the convolution) + optional ReLU6, with
//! TensorFlow `SAME` padding — the unit every EfficientNet-Lite layer is made of.

use burn::module::Param;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::activation::relu6;

use crate::weights::Checkpoint;

/// Configuration of [`ConvBn`].
#[derive(Config, Debug)]
pub struct ConvBnConfig {
    /// Input channels.
    pub channels_in: usize,
    /// Output channels.
    pub channels_out: usize,
    /// Square kernel size.
    pub kernel: usize,
    /// Stride (both axes).
    #[config(default = 1)]
    pub stride: usize,
    /// Groups (`channels_in` for a depthwise convolution).
    #[config(default = 1)]
    pub groups: usize,
    /// Whether ReLU6 follows the normalisation.
    #[config(default = true)]
    pub relu6: bool,
    /// BatchNorm epsilon (1e-3 in the TensorFlow-trained EfficientNets).
    #[config(default = 1e-3)]
    pub batch_norm_eps: f64,
}

impl ConvBnConfig {
    fn conv(&self) -> Conv2dConfig {
        Conv2dConfig::new([self.channels_in, self.channels_out], [self.kernel, self.kernel])
            .with_stride([self.stride, self.stride])
            .with_groups(self.groups)
            // TensorFlow SAME: output ⌈i/s⌉, the odd padding pixel at the bottom/right, as the
            // reference's Conv2dStaticSamePadding.
            .with_padding(PaddingConfig2d::Same)
            .with_bias(true)
    }

    /// Random initialisation (the folded bias starts at zero).
    pub fn init(&self, device: &Device) -> ConvBn {
        ConvBn { conv: self.conv().init(device), relu6: self.relu6 }
    }

    /// Loads the bias-free convolution `{conv}.weight` `[out, in/groups, k, k]` and the
    /// BatchNorm `{bn}.{weight,bias,running_mean,running_var}` (`{bn}.num_batches_tracked` is
    /// ignored), folding the normalisation into the convolution:
    /// `w' = w·γ/√(σ²+ε)`, `b' = β − μ·γ/√(σ²+ε)` (computed in f64).
    pub fn load(&self, checkpoint: &mut Checkpoint, conv: &str, bn: &str, device: &Device) -> ConvBn {
        let shape = [self.channels_out, self.channels_in / self.groups, self.kernel, self.kernel];
        let mut layer = self.conv().init(device);
        (layer.weight, layer.bias) = load_folded(checkpoint, conv, bn, shape, self.batch_norm_eps, device);
        ConvBn { conv: layer, relu6: self.relu6 }
    }
}

/// Reads a bias-free convolution `{conv}.weight` of `shape` (`[out, in/groups, k, k]`) and the
/// inference-mode BatchNorm `{bn}.{weight,bias,running_mean,running_var}` after it
/// (`{bn}.num_batches_tracked` is ignored), and folds the normalisation into the convolution:
/// `w' = w·γ/√(σ²+ε)`, `b' = β − μ·γ/√(σ²+ε)`, computed in f64. Returns the folded weight and bias
/// as parameters. Missing or mis-shaped tensors are recorded in `checkpoint` (zeros are returned
/// in their place) and reported by its `finish`.
pub fn load_folded(
    checkpoint: &mut Checkpoint,
    conv: &str,
    bn: &str,
    shape: [usize; 4],
    eps: f64,
    device: &Device,
) -> (Param<Tensor<4>>, Option<Param<Tensor<1>>>) {
    let out = shape[0];
    let weight = checkpoint.take_values(&format!("{conv}.weight"), &shape);
    let gamma = checkpoint.take_values(&format!("{bn}.weight"), &[out]);
    let beta = checkpoint.take_values(&format!("{bn}.bias"), &[out]);
    let mean = checkpoint.take_values(&format!("{bn}.running_mean"), &[out]);
    let variance = checkpoint.take_values(&format!("{bn}.running_var"), &[out]);
    checkpoint.ignore(&format!("{bn}.num_batches_tracked"));

    let scale: Vec<f64> =
        gamma.iter().zip(&variance).map(|(&g, &v)| f64::from(g) / (f64::from(v) + eps).sqrt()).collect();
    let per_channel = shape[1] * shape[2] * shape[3];
    let folded: Vec<f32> =
        weight.iter().enumerate().map(|(index, &w)| (f64::from(w) * scale[index / per_channel]) as f32).collect();
    let bias: Vec<f32> = (0..out).map(|c| (f64::from(beta[c]) - f64::from(mean[c]) * scale[c]) as f32).collect();
    (
        Param::from_tensor(Tensor::from_data(TensorData::new(folded, shape), device)),
        Some(Param::from_tensor(Tensor::from_data(TensorData::new(bias, [out]), device))),
    )
}

/// `ReLU6(BN(conv(x)))` with BN folded into `conv`.
#[derive(Module, Debug)]
pub struct ConvBn {
    /// The convolution with the folded BatchNorm as weight scale and bias.
    pub conv: Conv2d,
    /// Whether ReLU6 is applied.
    pub relu6: bool,
}

impl ConvBn {
    /// # Shapes
    /// - input: `[B, C_in, H, W]`
    /// - output: `[B, C_out, ⌈H/s⌉, ⌈W/s⌉]`
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let output = self.conv.forward(input);
        if self.relu6 { relu6(output) } else { output }
    }
}
