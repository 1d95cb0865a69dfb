//! Quaternion Semantic Modeling (SSPA Eqs. 6–10) and its Table VII ablations.
//!
//! `H = W_h [T_k ‖ T_c ‖ f_g] + b_h` (`3d → 4q`), `T_u = QL_2(ReLU(QL_1(H)))` with `QL_1: 4q → 4q`
//! and `QL_2: 4q → d`; no residual and no LN after `QL_2`. Ablations: `sum` (`T_k + T_c`),
//! `concat` (`W_h` alone, `3d → d`), `mlp` (dense layers of the same topology). Without KAP
//! (`ablation.kap = "off"`, Table VI) `T_k` is left out: `W_h` maps `[T_c ‖ f_g]` (`2d`), and `sum`
//! is `T_c` alone.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;
use sspa_config::Synthesis;

use crate::quaternion::{QuaternionLinear, QuaternionLinearConfig};

/// Configuration of [`Qsm`].
#[derive(Config, Debug)]
pub struct QsmConfig {
    /// Joint embedding width `d` (a multiple of 4).
    pub d_model: usize,
    /// Width `q` of each quaternion component of `H`; `None` means `d/4`.
    pub quaternion_width: Option<usize>,
    /// How `T_u` is synthesised.
    #[config(default = "Synthesis::Quaternion")]
    pub synthesis: Synthesis,
    /// Whether `T_k` is an input (`false`: KAP off).
    #[config(default = true)]
    pub knowledge: bool,
}

impl QsmConfig {
    /// `q`: the configured width or `d/4`.
    pub fn quaternion_width(&self) -> usize {
        self.quaternion_width.unwrap_or(self.d_model / 4)
    }

    /// Builds the layers the chosen synthesis needs (none for `sum`).
    pub fn init(&self, device: &Device) -> Qsm {
        let d = self.d_model;
        let hidden = 4 * self.quaternion_width();
        let inputs = if self.knowledge { 3 } else { 2 };
        let project = |out: usize| LinearConfig::new(inputs * d, out).init(device);
        let mut qsm = Qsm {
            project: None,
            quaternion_hidden: None,
            quaternion_out: None,
            dense_hidden: None,
            dense_out: None,
            synthesis: self.synthesis,
            knowledge: self.knowledge,
        };
        match self.synthesis {
            Synthesis::Quaternion => {
                qsm.project = Some(project(hidden));
                qsm.quaternion_hidden = Some(QuaternionLinearConfig::new(hidden, hidden).init(device));
                qsm.quaternion_out = Some(QuaternionLinearConfig::new(hidden, d).init(device));
            }
            Synthesis::Mlp => {
                qsm.project = Some(project(hidden));
                qsm.dense_hidden = Some(LinearConfig::new(hidden, hidden).init(device));
                qsm.dense_out = Some(LinearConfig::new(hidden, d).init(device));
            }
            Synthesis::Concat => qsm.project = Some(project(d)),
            Synthesis::Sum => {}
        }
        qsm
    }
}

/// Synthesises the unified text features `T_u` from KAP, filtered CAP and global image features.
#[derive(Module, Debug)]
pub struct Qsm {
    /// `W_h`: `3d → 4q` (`quaternion`, `mlp`) or `3d → d` (`concat`); `2d` wide without `T_k`.
    pub project: Option<Linear>,
    /// `QL_1`, `4q → 4q` (`quaternion` only).
    pub quaternion_hidden: Option<QuaternionLinear>,
    /// `QL_2`, `4q → d` (`quaternion` only).
    pub quaternion_out: Option<QuaternionLinear>,
    /// Dense stand-in for `QL_1` (`mlp` only).
    pub dense_hidden: Option<Linear>,
    /// Dense stand-in for `QL_2` (`mlp` only).
    pub dense_out: Option<Linear>,
    /// Which synthesis runs.
    #[module(skip)]
    pub synthesis: Synthesis,
    /// Whether `T_k` is used.
    #[module(skip)]
    pub knowledge: bool,
}

impl Qsm {
    /// `T_u`.
    ///
    /// # Shapes
    /// - knowledge (`T_k`, shared by every image): `[C, d]` (ignored without KAP)
    /// - context (`T_c`): `[B, C, d]`
    /// - global (`f_g`): `[B, d]`
    /// - output (`T_u`): `[B, C, d]`
    pub fn forward(&self, knowledge: Tensor<2>, context: Tensor<3>, global: Tensor<2>) -> Tensor<3> {
        let [batch, classes, d] = context.dims();
        let knowledge = self.knowledge.then(|| knowledge.unsqueeze::<3>().expand([batch, classes, d]));
        if self.synthesis == Synthesis::Sum {
            return match knowledge {
                Some(knowledge) => knowledge + context,
                None => context,
            };
        }
        let global = global.unsqueeze_dim::<3>(1).expand([batch, classes, d]);
        let joined = Tensor::cat(knowledge.into_iter().chain([context, global]).collect(), 2);
        let Some(project) = &self.project else { unreachable!("every synthesis but `sum` builds `W_h`") };
        let hidden = project.forward(joined);
        match (&self.quaternion_hidden, &self.quaternion_out, &self.dense_hidden, &self.dense_out) {
            (Some(first), Some(second), _, _) => second.forward(relu(first.forward(hidden))),
            (_, _, Some(first), Some(second)) => second.forward(relu(first.forward(hidden))),
            _ => hidden,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_close, device, random};

    fn inputs(device: &Device) -> (Tensor<2>, Tensor<3>, Tensor<2>) {
        (random([3, 8], device), random([2, 3, 8], device), random([2, 8], device))
    }

    fn joined(knowledge: Tensor<2>, context: Tensor<3>, global: Tensor<2>) -> Tensor<3> {
        let [b, c, d] = context.dims();
        Tensor::cat(
            vec![knowledge.unsqueeze::<3>().expand([b, c, d]), context, global.unsqueeze_dim::<3>(1).expand([b, c, d])],
            2,
        )
    }

    /// `H Kᵀ`-free reference: each output component as the sum of four component products.
    fn explicit_quaternion(layer: &QuaternionLinear, h: Tensor<3>) -> Tensor<3> {
        let [b, _, width] = h.dims();
        let q = width / 4;
        let part = |i: usize| h.clone().narrow(2, i * q, q);
        let (hr, hx, hy, hz) = (part(0), part(1), part(2), part(3));
        let w = |p: &burn::module::Param<Tensor<2>>| p.val().unsqueeze::<3>().expand([b, q, p.val().dims()[1]]);
        let (r, x, y, z) = (w(&layer.weight_r), w(&layer.weight_x), w(&layer.weight_y), w(&layer.weight_z));
        let mm = |a: &Tensor<3>, m: &Tensor<3>| a.clone().matmul(m.clone());
        let out = Tensor::cat(
            vec![
                mm(&hr, &r) - mm(&hx, &x) - mm(&hy, &y) - mm(&hz, &z),
                mm(&hr, &x) + mm(&hx, &r) - mm(&hy, &z) + mm(&hz, &y),
                mm(&hr, &y) + mm(&hx, &z) + mm(&hy, &r) - mm(&hz, &x),
                mm(&hr, &z) - mm(&hx, &y) + mm(&hy, &x) + mm(&hz, &r),
            ],
            2,
        );
        out + layer.bias.as_ref().expect("bias").val().unsqueeze::<3>()
    }

    #[test]
    fn quaternion_synthesis_equals_the_explicit_block_products() {
        let device = device();
        let qsm = QsmConfig::new(8).init(&device);
        let (knowledge, context, global) = inputs(&device);
        let h = qsm.project.as_ref().expect("W_h").forward(joined(knowledge.clone(), context.clone(), global.clone()));
        let hidden = explicit_quaternion(qsm.quaternion_hidden.as_ref().expect("QL_1"), h);
        let expected = explicit_quaternion(qsm.quaternion_out.as_ref().expect("QL_2"), relu(hidden));
        assert_close(qsm.forward(knowledge, context, global), expected, 1e-5);
    }

    #[test]
    fn sum_synthesis_is_knowledge_plus_context() {
        let device = device();
        let qsm = QsmConfig::new(8).with_synthesis(Synthesis::Sum).init(&device);
        assert_eq!(qsm.num_params(), 0);
        let (knowledge, context, global) = inputs(&device);
        let expected = knowledge.clone().unsqueeze::<3>().expand([2, 3, 8]) + context.clone();
        assert_close(qsm.forward(knowledge, context, global), expected, 0.0);
    }

    #[test]
    fn concat_synthesis_is_the_projection_alone() {
        let device = device();
        let qsm = QsmConfig::new(8).with_synthesis(Synthesis::Concat).init(&device);
        assert_eq!(qsm.num_params(), 3 * 8 * 8 + 8);
        let (knowledge, context, global) = inputs(&device);
        let expected =
            qsm.project.as_ref().expect("W_h").forward(joined(knowledge.clone(), context.clone(), global.clone()));
        assert_close(qsm.forward(knowledge, context, global), expected, 0.0);
    }

    #[test]
    fn mlp_synthesis_has_the_same_topology_with_dense_layers() {
        let device = device();
        let mlp = QsmConfig::new(16).with_synthesis(Synthesis::Mlp).init(&device);
        let quaternion = QsmConfig::new(16).init(&device);
        let projection = 3 * 16 * 16 + 16;
        assert_eq!(mlp.num_params(), projection + (16 * 16 + 16) * 2);
        assert_eq!(quaternion.num_params(), projection + (4 * 4 * 4 + 16) * 2);
        let (first, second) = (mlp.dense_hidden.as_ref().expect("dense 1"), mlp.dense_out.as_ref().expect("dense 2"));
        let (knowledge, context, global) =
            (random([3, 16], &device), random([2, 3, 16], &device), random([2, 16], &device));
        let h = mlp.project.as_ref().expect("W_h").forward(joined(knowledge.clone(), context.clone(), global.clone()));
        let expected = second.forward(relu(first.forward(h)));
        assert_close(mlp.forward(knowledge, context, global), expected, 1e-6);
    }

    #[test]
    fn the_quaternion_width_sets_the_hidden_size() {
        let device = device();
        let qsm = QsmConfig::new(8).with_quaternion_width(Some(3)).init(&device);
        assert_eq!(qsm.quaternion_hidden.as_ref().expect("QL_1").weight_r.dims(), [3, 3]);
        assert_eq!(qsm.quaternion_out.as_ref().expect("QL_2").weight_r.dims(), [3, 2]);
        let (knowledge, context, global) = inputs(&device);
        assert_eq!(qsm.forward(knowledge, context, global).dims(), [2, 3, 8]);
    }

    #[test]
    fn without_knowledge_the_projection_reads_context_and_global_only() {
        let device = device();
        let qsm = QsmConfig::new(8).with_synthesis(Synthesis::Concat).with_knowledge(false).init(&device);
        assert_eq!(qsm.num_params(), 2 * 8 * 8 + 8);
        let (knowledge, context, global) = inputs(&device);
        let [b, c, d] = context.dims();
        let expected = qsm
            .project
            .as_ref()
            .expect("W_h")
            .forward(Tensor::cat(vec![context.clone(), global.clone().unsqueeze_dim::<3>(1).expand([b, c, d])], 2));
        // T_k does not matter: any other knowledge gives the same T_u.
        assert_close(qsm.forward(knowledge.clone(), context.clone(), global.clone()), expected.clone(), 0.0);
        assert_close(qsm.forward(knowledge.neg(), context.clone(), global.clone()), expected, 0.0);
        let sum = QsmConfig::new(8).with_synthesis(Synthesis::Sum).with_knowledge(false).init(&device);
        let (knowledge, context, global) = inputs(&device);
        assert_close(sum.forward(knowledge, context.clone(), global), context, 0.0);
    }
}
