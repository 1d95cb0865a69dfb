//! [`LayerNormBackend`] for `Autodiff<B, C>`: `B`'s forward as one tracked op whose backward is
//! `B`'s [`LayerNormBackend::fused_layer_norm_backward`]. State: the checkpointed input, `γ`
//! (a parameter: its primitive) and `ε`; no intermediate of the input's size.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::tensor::FloatTensor;

use crate::backend::LayerNormBackend;

impl<B: LayerNormBackend, C: CheckpointStrategy> LayerNormBackend for Autodiff<B, C> {
    fn fused_layer_norm(
        input: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        match LayerNormBackward.prepare::<C>([input.node(), gamma.node(), beta.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let state =
                    LayerNormState { input: prep.checkpoint(&input), gamma: gamma.primitive().clone(), epsilon };
                let output =
                    B::fused_layer_norm(input.into_primitive(), gamma.into_primitive(), beta.into_primitive(), epsilon);
                prep.finish(state, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_layer_norm(
                input.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                epsilon,
            )),
        }
    }

    fn fused_layer_norm_backward(
        _input: FloatTensor<Self>,
        _gamma: FloatTensor<Self>,
        _grad: FloatTensor<Self>,
        _epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        unreachable!("the backward runs on the inner backend (LayerNormBackward), never on Autodiff")
    }
}

/// What the backward step keeps.
#[derive(Debug, Clone)]
pub struct LayerNormState<T> {
    /// Checkpointed input.
    pub input: NodeId,
    /// `γ`.
    pub gamma: T,
    /// `ε`.
    pub epsilon: f64,
}

/// The backward step.
#[derive(Debug)]
struct LayerNormBackward;

impl<B: LayerNormBackend> Backward<B, 3> for LayerNormBackward {
    type State = LayerNormState<FloatTensor<B>>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_input, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let state = ops.state;
        let input: FloatTensor<B> = checkpointer.retrieve_node_output(state.input);
        let (grad_input, grad_gamma, grad_beta) = B::fused_layer_norm_backward(input, state.gamma, grad, state.epsilon);
        for (node, grad) in [(node_input, grad_input), (node_gamma, grad_gamma), (node_beta, grad_beta)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}
