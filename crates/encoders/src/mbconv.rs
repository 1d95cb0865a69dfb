//! EfficientNet-Lite's inverted residual block (MBConv) without squeeze-excitation.

use burn::prelude::*;

use crate::conv_bn::{Activation, ConvBn, ConvBnConfig};
use crate::weights::Checkpoint;

/// Configuration of [`MbConv`].
#[derive(Config, Debug)]
pub struct MbConvConfig {
    /// Input channels.
    pub channels_in: usize,
    /// Output channels.
    pub channels_out: usize,
    /// Depthwise kernel size (3 or 5).
    pub kernel: usize,
    /// Depthwise stride (1 or 2).
    pub stride: usize,
    /// Expansion ratio (1 skips the expansion convolution).
    pub expand_ratio: usize,
}

impl MbConvConfig {
    fn expanded(&self) -> usize {
        self.channels_in * self.expand_ratio
    }

    fn expand(&self) -> Option<ConvBnConfig> {
        (self.expand_ratio != 1).then(|| ConvBnConfig::new(self.channels_in, self.expanded(), 1))
    }

    fn depthwise(&self) -> ConvBnConfig {
        let width = self.expanded();
        ConvBnConfig::new(width, width, self.kernel).with_stride(self.stride).with_groups(width)
    }

    fn project(&self) -> ConvBnConfig {
        ConvBnConfig::new(self.expanded(), self.channels_out, 1).with_activation(Activation::None)
    }

    fn residual(&self) -> bool {
        self.stride == 1 && self.channels_in == self.channels_out
    }

    /// Random initialisation.
    pub fn init(&self, device: &Device) -> MbConv {
        MbConv {
            expand: self.expand().map(|config| config.init(device)),
            depthwise: self.depthwise().init(device),
            project: self.project().init(device),
            residual: self.residual(),
        }
    }

    /// Loads `{prefix}._expand_conv`/`._bn0` (when expanding), `._depthwise_conv`/`._bn1` and
    /// `._project_conv`/`._bn2`.
    pub fn load(&self, checkpoint: &mut Checkpoint, prefix: &str, device: &Device) -> MbConv {
        let expand = self.expand().map(|config| {
            config.load(checkpoint, &format!("{prefix}._expand_conv"), &format!("{prefix}._bn0"), device)
        });
        let depthwise =
            self.depthwise().load(checkpoint, &format!("{prefix}._depthwise_conv"), &format!("{prefix}._bn1"), device);
        let project =
            self.project().load(checkpoint, &format!("{prefix}._project_conv"), &format!("{prefix}._bn2"), device);
        MbConv { expand, depthwise, project, residual: self.residual() }
    }
}

/// `x + project(depthwise(expand(x)))` (the residual only when shapes agree; drop-connect is a
/// training device and is off).
#[derive(Module, Debug)]
pub struct MbConv {
    /// 1×1 expansion + BN + ReLU6, absent when the ratio is 1.
    pub expand: Option<ConvBn>,
    /// k×k depthwise + BN + ReLU6.
    pub depthwise: ConvBn,
    /// 1×1 projection + BN, linear.
    pub project: ConvBn,
    /// Whether the input is added back.
    pub residual: bool,
}

impl MbConv {
    /// # Shapes
    /// - input: `[B, C_in, H, W]`
    /// - output: `[B, C_out, ⌈H/s⌉, ⌈W/s⌉]`
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let mut x = input.clone();
        if let Some(expand) = &self.expand {
            x = expand.forward(x);
        }
        let x = self.project.forward(self.depthwise.forward(x));
        if self.residual { x + input } else { x }
    }
}
