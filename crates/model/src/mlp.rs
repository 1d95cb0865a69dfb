//! The feed-forward block used by DSF and GDMA: `Linear(d, 4d) → GELU → Linear(4d, d)`.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use sspa_gelu::gelu;

/// Configuration of [`Mlp`].
#[derive(Config, Debug)]
pub struct MlpConfig {
    /// Input and output width `d`.
    pub d_model: usize,
    /// Hidden width as a multiple of `d` (SSPA.md fixes 4).
    #[config(default = 4)]
    pub expansion: usize,
}

impl MlpConfig {
    /// Builds the block with burn's default (PyTorch-like uniform) linear initialisation.
    pub fn init(&self, device: &Device) -> Mlp {
        let hidden = self.d_model * self.expansion;
        Mlp {
            expand: LinearConfig::new(self.d_model, hidden).init(device),
            contract: LinearConfig::new(hidden, self.d_model).init(device),
        }
    }
}

/// `Linear(d, 4d) → GELU (exact, erf) → Linear(4d, d)`; no dropout.
#[derive(Module, Debug)]
pub struct Mlp {
    /// `d → 4d`.
    pub expand: Linear,
    /// `4d → d`.
    pub contract: Linear,
}

impl Mlp {
    /// # Shapes
    /// - input: `[..., d]`
    /// - output: `[..., d]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.contract.forward(gelu(self.expand.forward(x)))
    }
}
