//! One gated alignment direction of GDMA (SSPA Eq. 12 or Eq. 13).
//!
//! `X' = Gate(X, CMA(X, Y))`, `X* = X' + MLP(LN(X'))`. Visual-to-semantic is `X = T_u`,
//! `Y = F_p`; semantic-to-visual is `X = F_p`, `Y = T_u`.

use burn::prelude::*;
use sspa_norm::{LayerNorm, LayerNormConfig};

use crate::cma::{CrossModalAttention, CrossModalAttentionConfig};
use crate::gate::{Gate, GateConfig};
use crate::mlp::{Mlp, MlpConfig};

/// Configuration of [`GatedAlignment`].
#[derive(Config, Debug)]
pub struct GatedAlignmentConfig {
    /// Joint embedding width `d`.
    pub d_model: usize,
    /// `false` replaces the gate by `X + A`.
    #[config(default = true)]
    pub gate: bool,
    /// LayerNorm epsilon.
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
}

impl GatedAlignmentConfig {
    /// Builds the direction's own CMA, gate, LN and MLP.
    pub fn init(&self, device: &Device) -> GatedAlignment {
        GatedAlignment {
            attention: CrossModalAttentionConfig::new(self.d_model)
                .with_layer_norm_eps(self.layer_norm_eps)
                .init(device),
            gate: GateConfig::new(self.d_model).with_enabled(self.gate).init(device),
            norm: LayerNormConfig::new(self.d_model).with_epsilon(self.layer_norm_eps).init(device),
            mlp: MlpConfig::new(self.d_model).init(device),
        }
    }
}

/// One direction: attend, gate, refine.
#[derive(Module, Debug)]
pub struct GatedAlignment {
    /// `CMA(X, Y)`.
    pub attention: CrossModalAttention,
    /// `Gate(X, A)`.
    pub gate: Gate,
    /// The LN before the MLP.
    pub norm: LayerNorm,
    /// The residual MLP.
    pub mlp: Mlp,
}

impl GatedAlignment {
    /// `X*` and the gate values.
    ///
    /// # Shapes
    /// - query (`X`): `[B, n, d]`
    /// - context (`Y`): `[B, m, d]`
    /// - output (`X*`): `[B, n, d]`; gate: `[B, n, d]` (`None` when the gate is off)
    pub fn forward(&self, query: Tensor<3>, context: Tensor<3>) -> (Tensor<3>, Option<Tensor<3>>) {
        let attended = self.attention.forward(query.clone(), context);
        let gated = self.gate.forward(query, attended);
        let aligned = gated.output.clone() + self.mlp.forward(self.norm.forward(gated.output));
        (aligned, gated.gate)
    }
}
