//! CLIP's anti-aliased Bottleneck block: every convolution has stride 1; a stride-`s` block
//! average-pools after the 3×3 convolution and before the downsampling 1×1 convolution instead.

use burn::prelude::*;
use burn::tensor::activation::relu;
use sspa_encoders::weights::Checkpoint;

use super::pool::avg_pool;
use sspa_encoders::conv_bn::{Activation, ConvBn, ConvBnConfig};

/// Channels of a Bottleneck's output per "plane" of its inner width.
pub const EXPANSION: usize = 4;

/// Configuration of [`Bottleneck`].
#[derive(Config, Debug)]
pub struct BottleneckConfig {
    /// Input channels.
    pub channels_in: usize,
    /// Inner width; the output has `4 · planes` channels.
    pub planes: usize,
    /// Spatial reduction (1 or 2), done by average pooling.
    #[config(default = 1)]
    pub stride: usize,
}

impl BottleneckConfig {
    /// Whether the identity path needs pooling and a projection.
    pub fn has_downsample(&self) -> bool {
        self.stride > 1 || self.channels_in != self.planes * EXPANSION
    }

    fn convs(&self) -> [ConvBnConfig; 3] {
        [
            ConvBnConfig::torch(self.channels_in, self.planes, 1),
            ConvBnConfig::torch(self.planes, self.planes, 3),
            ConvBnConfig::torch(self.planes, self.planes * EXPANSION, 1).with_activation(Activation::None),
        ]
    }

    fn downsample(&self) -> ConvBnConfig {
        ConvBnConfig::torch(self.channels_in, self.planes * EXPANSION, 1).with_activation(Activation::None)
    }

    /// Random initialisation.
    pub fn init(&self, device: &Device) -> Bottleneck {
        let [conv1, conv2, conv3] = self.convs().map(|conv| conv.init(device));
        let downsample = self.has_downsample().then(|| self.downsample().init(device));
        Bottleneck { conv1, conv2, conv3, downsample, stride: self.stride }
    }

    /// Loads `{prefix}conv{1,2,3}.weight`, `{prefix}bn{1,2,3}.*` and, when the block
    /// downsamples, `{prefix}downsample.0.weight` and `{prefix}downsample.1.*` (BN folded).
    pub fn load(&self, checkpoint: &mut Checkpoint, prefix: &str, device: &Device) -> Bottleneck {
        let [c1, c2, c3] = self.convs();
        let mut load = |config: ConvBnConfig, conv: &str, bn: &str| {
            config.load(checkpoint, &format!("{prefix}{conv}"), &format!("{prefix}{bn}"), device)
        };
        let conv1 = load(c1, "conv1", "bn1");
        let conv2 = load(c2, "conv2", "bn2");
        let conv3 = load(c3, "conv3", "bn3");
        let downsample = self.has_downsample().then(|| load(self.downsample(), "downsample.0", "downsample.1"));
        Bottleneck { conv1, conv2, conv3, downsample, stride: self.stride }
    }
}

/// `ReLU(conv3(pool(conv2(conv1(x)))) + downsample(x))`.
#[derive(Module, Debug)]
pub struct Bottleneck {
    /// 1×1, in → planes, BN + ReLU.
    pub conv1: ConvBn,
    /// 3×3, planes → planes, BN + ReLU.
    pub conv2: ConvBn,
    /// 1×1, planes → 4·planes, BN.
    pub conv3: ConvBn,
    /// Average pool (stride) + 1×1 in → 4·planes + BN, when the shape changes.
    pub downsample: Option<ConvBn>,
    /// Spatial reduction.
    pub stride: usize,
}

impl Bottleneck {
    /// # Shapes
    /// - input: `[B, C_in, H, W]`
    /// - output: `[B, 4·planes, ⌊H/s⌋, ⌊W/s⌋]`
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let x = self.conv1.forward(input.clone());
        let x = self.conv2.forward(x);
        let x = self.conv3.forward(avg_pool(x, self.stride));
        let identity = match &self.downsample {
            Some(projection) => projection.forward(avg_pool(input, self.stride)),
            None => input,
        };
        relu(x + identity)
    }
}
