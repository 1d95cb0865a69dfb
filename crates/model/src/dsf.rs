//! Dynamic Semantic Filtering (SSPA Eq. 5, pre-norm residual choice).
//!
//! `T̂ = T_l + CMA(T_l, F_p)`, `T_c = T̂ + MLP(LN(T̂))`: the CAP text features attend to the
//! image's patches and are refined per image.

use burn::prelude::*;
use sspa_norm::{LayerNorm, LayerNormConfig};

use crate::cma::{CrossModalAttention, CrossModalAttentionConfig};
use crate::mlp::{Mlp, MlpConfig};

/// Configuration of [`DynamicSemanticFilter`].
#[derive(Config, Debug)]
pub struct DynamicSemanticFilterConfig {
    /// Joint embedding width `d`.
    pub d_model: usize,
    /// LayerNorm epsilon (CMA's and the block's own).
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
}

impl DynamicSemanticFilterConfig {
    /// Builds the block (own CMA, LN and MLP).
    pub fn init(&self, device: &Device) -> DynamicSemanticFilter {
        DynamicSemanticFilter {
            attention: CrossModalAttentionConfig::new(self.d_model)
                .with_layer_norm_eps(self.layer_norm_eps)
                .init(device),
            norm: LayerNormConfig::new(self.d_model).with_epsilon(self.layer_norm_eps).init(device),
            mlp: MlpConfig::new(self.d_model).init(device),
        }
    }
}

/// Per-image refinement of the CAP text features by the patch features.
#[derive(Module, Debug)]
pub struct DynamicSemanticFilter {
    /// `CMA(T_l, F_p)`.
    pub attention: CrossModalAttention,
    /// The LN before the MLP.
    pub norm: LayerNorm,
    /// The residual MLP.
    pub mlp: Mlp,
}

impl DynamicSemanticFilter {
    /// `T_c` from `T_l` and `F_p`.
    ///
    /// # Shapes
    /// - text (`T_l`, broadcast over the batch): `[B, C, d]`
    /// - patches (`F_p`): `[B, N, d]`
    /// - output (`T_c`): `[B, C, d]`
    pub fn forward(&self, text: Tensor<3>, patches: Tensor<3>) -> Tensor<3> {
        let filtered = text.clone() + self.attention.forward(text, patches);
        filtered.clone() + self.mlp.forward(self.norm.forward(filtered))
    }
}
