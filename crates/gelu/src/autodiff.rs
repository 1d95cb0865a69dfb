//! [`GeluBackend`] for `Autodiff<B, C>`: `B`'s forward as one tracked op whose backward is `B`'s
//! [`GeluBackend::fast_gelu_backward`]. State: the checkpointed input.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::tensor::FloatTensor;

use crate::backend::GeluBackend;

impl<B: GeluBackend, C: CheckpointStrategy> GeluBackend for Autodiff<B, C> {
    fn fast_gelu(input: FloatTensor<Self>) -> FloatTensor<Self> {
        match GeluBackward.prepare::<C>([input.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let state = prep.checkpoint(&input);
                prep.finish(state, B::fast_gelu(input.into_primitive()))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fast_gelu(input.into_primitive())),
        }
    }

    fn fast_relu6(input: FloatTensor<Self>) -> FloatTensor<Self> {
        match Relu6Backward.prepare::<C>([input.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let state = prep.checkpoint(&input);
                prep.finish(state, B::fast_relu6(input.into_primitive()))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fast_relu6(input.into_primitive())),
        }
    }

    fn fast_relu6_backward(_input: FloatTensor<Self>, _grad: FloatTensor<Self>) -> FloatTensor<Self> {
        unreachable!("the backward runs on the inner backend (Relu6Backward), never on Autodiff")
    }
}

/// The backward step of ReLU6: `grad` where `0 < x < 6`, from the checkpointed `x`.
#[derive(Debug)]
struct Relu6Backward;

impl<B: GeluBackend> Backward<B, 1> for Relu6Backward {
    type State = NodeId;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(parent) = parent {
            let input: FloatTensor<B> = checkpointer.retrieve_node_output(ops.state);
            grads.register::<B>(parent.id, B::fast_relu6_backward(input, grad));
        }
    }
}

/// The backward step: `grad · GELU'(x)` from the checkpointed `x`.
#[derive(Debug)]
struct GeluBackward;

impl<B: GeluBackend> Backward<B, 1> for GeluBackward {
    type State = NodeId;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(parent) = parent {
            let input: FloatTensor<B> = checkpointer.retrieve_node_output(ops.state);
            grads.register::<B>(parent.id, B::fast_gelu_backward(input, grad));
        }
    }
}
