//! Convolution + BatchNorm (inference mode, folded into the convolution) + an optional
//! activation: the unit of EfficientNet-Lite (TensorFlow `SAME` padding, ReLU6, ε = 1e-3) and of
//! CLIP's ModifiedResNet stem and Bottleneck blocks (PyTorch `k/2` padding, ReLU, ε = 1e-5).

use burn::module::Param;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::activation::relu;
use serde::{Deserialize, Serialize};

use crate::weights::Checkpoint;

/// How the convolution pads its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Padding {
    /// TensorFlow `SAME`: output `⌈i/s⌉`, the odd padding pixel at the bottom/right, as
    /// EfficientNet's `Conv2dStaticSamePadding`.
    Same,
    /// PyTorch's symmetric `padding = k / 2` (CLIP). Differs from `Same` for stride 2.
    Symmetric,
}

/// The activation after the normalisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    None,
    Relu,
    Relu6,
}

/// BatchNorm epsilon of PyTorch's `nn.BatchNorm2d` default (CLIP).
pub const TORCH_BATCH_NORM_EPS: f64 = 1e-5;

/// Configuration of [`ConvBn`]. The defaults are EfficientNet-Lite's; [`ConvBnConfig::torch`]
/// gives CLIP's.
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
    /// The activation after the normalisation.
    #[config(default = "Activation::Relu6")]
    pub activation: Activation,
    /// The padding rule.
    #[config(default = "Padding::Same")]
    pub padding: Padding,
    /// BatchNorm epsilon (1e-3 in the TensorFlow-trained EfficientNets).
    #[config(default = 1e-3)]
    pub batch_norm_eps: f64,
}

impl ConvBnConfig {
    /// A PyTorch-style unit: symmetric `k/2` padding, ReLU, ε = 1e-5 (CLIP's ResNets).
    pub fn torch(channels_in: usize, channels_out: usize, kernel: usize) -> Self {
        Self::new(channels_in, channels_out, kernel)
            .with_padding(Padding::Symmetric)
            .with_activation(Activation::Relu)
            .with_batch_norm_eps(TORCH_BATCH_NORM_EPS)
    }

    fn conv(&self) -> Conv2dConfig {
        let padding = match self.padding {
            Padding::Same => PaddingConfig2d::Same,
            Padding::Symmetric => {
                let pad = self.kernel / 2;
                PaddingConfig2d::Explicit(pad, pad, pad, pad)
            }
        };
        Conv2dConfig::new([self.channels_in, self.channels_out], [self.kernel, self.kernel])
            .with_stride([self.stride, self.stride])
            .with_groups(self.groups)
            .with_padding(padding)
            .with_bias(true)
    }

    /// Random initialisation (the folded bias starts at zero).
    pub fn init(&self, device: &Device) -> ConvBn {
        ConvBn { conv: self.conv().init(device), activation: self.activation }
    }

    /// Loads the bias-free convolution `{conv}.weight` `[out, in/groups, k, k]` and the
    /// BatchNorm `{bn}.{weight,bias,running_mean,running_var}` (`{bn}.num_batches_tracked` is
    /// ignored), folding the normalisation into the convolution:
    /// `w' = w·γ/√(σ²+ε)`, `b' = β − μ·γ/√(σ²+ε)` (computed in f64).
    pub fn load(&self, checkpoint: &mut Checkpoint, conv: &str, bn: &str, device: &Device) -> ConvBn {
        let shape = [self.channels_out, self.channels_in / self.groups, self.kernel, self.kernel];
        let mut layer = self.conv().init(device);
        (layer.weight, layer.bias) = load_folded(checkpoint, conv, bn, shape, self.batch_norm_eps, device);
        ConvBn { conv: layer, activation: self.activation }
    }
}

/// Reads a bias-free convolution `{conv}.weight` of `shape` (`[out, in/groups, k, k]`) and the
/// inference-mode BatchNorm `{bn}.{weight,bias,running_mean,running_var}` after it
/// (`{bn}.num_batches_tracked` is ignored), and folds the normalisation into the convolution:
/// `w' = w·γ/√(σ²+ε)`, `b' = β − μ·γ/√(σ²+ε)`, computed in f64. Returns the folded weight and bias
/// as parameters. Missing or mis-shaped tensors are recorded in `checkpoint` (zeros are returned
/// in their place) and reported by its `finish`.
fn load_folded(
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

/// `activation(BN(conv(x)))` with BN folded into `conv`.
#[derive(Module, Debug)]
pub struct ConvBn {
    /// The convolution with the folded BatchNorm as weight scale and bias.
    pub conv: Conv2d,
    /// The activation after it.
    #[module(skip)]
    pub activation: Activation,
}

impl ConvBn {
    /// # Shapes
    /// - input: `[B, C_in, H, W]`
    /// - output: `[B, C_out, H', W']`, `H' = ⌈H/s⌉` with `Same` padding, `⌊(H−1)/s⌋+1` with
    ///   `Symmetric` (odd kernels)
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let output = self.conv.forward(input);
        match self.activation {
            Activation::None => output,
            Activation::Relu => relu(output),
            Activation::Relu6 => sspa_gelu::relu6(output),
        }
    }
}
