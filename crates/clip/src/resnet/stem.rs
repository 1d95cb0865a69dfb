//! The three-convolution stem of CLIP's ModifiedResNet (in place of ResNet's 7×7 convolution and
//! max pool): 3×3 stride 2 → 3×3 → 3×3, each BN + ReLU, then a 2×2 average pool.

use burn::prelude::*;
use sspa_encoders::weights::Checkpoint;

use super::pool::avg_pool;
use sspa_encoders::conv_bn::{ConvBn, ConvBnConfig};

/// Configuration of [`Stem`].
#[derive(Config, Debug)]
pub struct StemConfig {
    /// Channels of the output, the ResNet width (64 for RN50); the first two convolutions have
    /// half as many.
    pub width: usize,
}

impl StemConfig {
    fn convs(&self) -> [ConvBnConfig; 3] {
        let half = self.width / 2;
        [
            ConvBnConfig::torch(3, half, 3).with_stride(2),
            ConvBnConfig::torch(half, half, 3),
            ConvBnConfig::torch(half, self.width, 3),
        ]
    }

    /// Random initialisation.
    pub fn init(&self, device: &Device) -> Stem {
        let [conv1, conv2, conv3] = self.convs().map(|conv| conv.init(device));
        Stem { conv1, conv2, conv3 }
    }

    /// Loads `{prefix}conv{1,2,3}.weight` and `{prefix}bn{1,2,3}.*` (BN folded).
    pub fn load(&self, checkpoint: &mut Checkpoint, prefix: &str, device: &Device) -> Stem {
        let [c1, c2, c3] = self.convs();
        let load = |config: ConvBnConfig, index: usize, checkpoint: &mut Checkpoint| {
            config.load(checkpoint, &format!("{prefix}conv{index}"), &format!("{prefix}bn{index}"), device)
        };
        let conv1 = load(c1, 1, checkpoint);
        let conv2 = load(c2, 2, checkpoint);
        let conv3 = load(c3, 3, checkpoint);
        Stem { conv1, conv2, conv3 }
    }
}

/// The stem: overall stride 4.
#[derive(Module, Debug)]
pub struct Stem {
    /// 3×3 stride 2, 3 → width/2.
    pub conv1: ConvBn,
    /// 3×3, width/2 → width/2.
    pub conv2: ConvBn,
    /// 3×3, width/2 → width.
    pub conv3: ConvBn,
}

impl Stem {
    /// # Shapes
    /// - input: `[B, 3, H, W]`
    /// - output: `[B, width, ⌊⌈H/2⌉/2⌋, ⌊⌈W/2⌉/2⌋]` (`[B, 64, 56, 56]` for RN50 at 224)
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let x = self.conv1.forward(input);
        let x = self.conv2.forward(x);
        let x = self.conv3.forward(x);
        avg_pool(x, 2)
    }
}
