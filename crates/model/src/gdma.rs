//! Gated Dual-Modal Alignments (SSPA Eqs. 11–13): visual-to-semantic and semantic-to-visual
//! directions run in parallel from the un-updated `T_u` and `F_p`.
//!
//! Ablations (Tables VIII, IX): one direction only, neither (then `T* = T_u`, `F* = F_p`), and no
//! gate (`X + A`) inside every direction that runs.

use burn::prelude::*;
use sspa_config::Alignment;

use crate::alignment::{GatedAlignment, GatedAlignmentConfig};

/// Configuration of [`Gdma`].
#[derive(Config, Debug)]
pub struct GdmaConfig {
    /// Joint embedding width `d`.
    pub d_model: usize,
    /// Which directions run.
    #[config(default = "Alignment::Both")]
    pub alignment: Alignment,
    /// `false` replaces each gate by `X + A`.
    #[config(default = true)]
    pub gate: bool,
    /// LayerNorm epsilon.
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
}

impl GdmaConfig {
    /// Builds the directions the alignment switch asks for.
    pub fn init(&self, device: &Device) -> Gdma {
        let direction =
            GatedAlignmentConfig::new(self.d_model).with_gate(self.gate).with_layer_norm_eps(self.layer_norm_eps);
        let (to_semantic, to_visual) = match self.alignment {
            Alignment::Both => (true, true),
            Alignment::VisualToSemantic => (true, false),
            Alignment::SemanticToVisual => (false, true),
            Alignment::None => (false, false),
        };
        Gdma {
            visual_to_semantic: to_semantic.then(|| direction.init(device)),
            semantic_to_visual: to_visual.then(|| direction.init(device)),
        }
    }
}

/// Both alignment directions.
#[derive(Module, Debug)]
pub struct Gdma {
    /// Eq. 12: text queries attend to patches (`T* = …`).
    pub visual_to_semantic: Option<GatedAlignment>,
    /// Eq. 13: patch queries attend to text (`F* = …`).
    pub semantic_to_visual: Option<GatedAlignment>,
}

/// What [`Gdma::forward`] returns.
#[derive(Debug, Clone)]
pub struct GdmaOutput {
    /// Category centres `T*`, `[B, C, d]`.
    pub text: Tensor<3>,
    /// Aligned patches `F*`, `[B, N, d]`.
    pub patches: Tensor<3>,
    /// Gate values of the visual-to-semantic direction, `[B, C, d]`.
    pub text_gate: Option<Tensor<3>>,
    /// Gate values of the semantic-to-visual direction, `[B, N, d]`.
    pub patch_gate: Option<Tensor<3>>,
}

impl Gdma {
    /// # Shapes
    /// - text (`T_u`): `[B, C, d]`
    /// - patches (`F_p`): `[B, N, d]`
    /// - output: see [`GdmaOutput`]
    pub fn forward(&self, text: Tensor<3>, patches: Tensor<3>) -> GdmaOutput {
        let (aligned_text, text_gate) = match &self.visual_to_semantic {
            Some(direction) => direction.forward(text.clone(), patches.clone()),
            None => (text.clone(), None),
        };
        let (aligned_patches, patch_gate) = match &self.semantic_to_visual {
            Some(direction) => direction.forward(patches, text),
            None => (patches, None),
        };
        GdmaOutput { text: aligned_text, patches: aligned_patches, text_gate, patch_gate }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_close, device, random};

    fn run(alignment: Alignment, gate: bool) -> (Gdma, Tensor<3>, Tensor<3>, GdmaOutput) {
        let device = device();
        let gdma = GdmaConfig::new(8).with_alignment(alignment).with_gate(gate).init(&device);
        let (text, patches) = (random([2, 4, 8], &device), random([2, 9, 8], &device));
        let out = gdma.forward(text.clone(), patches.clone());
        (gdma, text, patches, out)
    }

    #[test]
    fn both_directions_read_the_unupdated_inputs() {
        let (gdma, text, patches, out) = run(Alignment::Both, true);
        let to_semantic = gdma.visual_to_semantic.as_ref().expect("V→S");
        let to_visual = gdma.semantic_to_visual.as_ref().expect("S→V");
        assert_close(out.text, to_semantic.forward(text.clone(), patches.clone()).0, 1e-6);
        assert_close(out.patches, to_visual.forward(patches, text).0, 1e-6);
        assert_eq!(out.text_gate.expect("text gate").dims(), [2, 4, 8]);
        assert_eq!(out.patch_gate.expect("patch gate").dims(), [2, 9, 8]);
    }

    #[test]
    fn one_direction_leaves_the_other_modality_alone() {
        let (_, text, patches, out) = run(Alignment::VisualToSemantic, true);
        assert_close(out.patches, patches, 0.0);
        assert!(crate::test_util::max_difference(out.text, text) > 1e-3);
        assert!(out.patch_gate.is_none());

        let (_, text, patches, out) = run(Alignment::SemanticToVisual, true);
        assert_close(out.text, text, 0.0);
        assert!(crate::test_util::max_difference(out.patches, patches) > 1e-3);
        assert!(out.text_gate.is_none());
    }

    #[test]
    fn neither_direction_is_the_identity() {
        let (gdma, text, patches, out) = run(Alignment::None, true);
        assert_eq!(gdma.num_params(), 0);
        assert_close(out.text, text, 0.0);
        assert_close(out.patches, patches, 0.0);
    }

    #[test]
    fn without_gates_each_direction_adds_the_attended_signal() {
        let (gdma, text, patches, out) = run(Alignment::Both, false);
        assert!(out.text_gate.is_none() && out.patch_gate.is_none());
        let direction = gdma.visual_to_semantic.as_ref().expect("V→S");
        let residual = text.clone() + direction.attention.forward(text, patches);
        let expected = residual.clone() + direction.mlp.forward(direction.norm.forward(residual));
        assert_close(out.text, expected, 1e-6);
    }
}
