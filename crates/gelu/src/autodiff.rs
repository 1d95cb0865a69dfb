//! [`GeluBackend`] for `Autodiff<B, C>`: `B`'s forward as one tracked op whose backward is `B`'s
//! [`GeluBackend::fast_gelu_backward`] (or `fast_relu6_backward`). State: the checkpointed input.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::tensor::FloatTensor;

use crate::backend::GeluBackend;

impl<B: GeluBackend, C: CheckpointStrategy> GeluBackend for Autodiff<B, C> {
    fn fast_gelu(input: FloatTensor<Self>) -> FloatTensor<Self> {
        elementwise::<B, C>(input, B::fast_gelu, B::fast_gelu_backward)
    }

    fn fast_relu6(input: FloatTensor<Self>) -> FloatTensor<Self> {
        elementwise::<B, C>(input, B::fast_relu6, B::fast_relu6_backward)
    }

    fn fast_relu6_backward(_input: FloatTensor<Self>, _grad: FloatTensor<Self>) -> FloatTensor<Self> {
        unreachable!("the backward runs on the inner backend (ElementwiseBackward), never on Autodiff")
    }
}

/// `forward(x)` as one tracked op whose backward is `derivative(x, grad)`.
fn elementwise<B: GeluBackend, C: CheckpointStrategy>(
    input: FloatTensor<Autodiff<B, C>>,
    forward: fn(FloatTensor<B>) -> FloatTensor<B>,
    derivative: fn(FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>> {
    match (ElementwiseBackward { derivative }).prepare::<C>([input.node()]).compute_bound().stateful() {
        OpsKind::Tracked(mut prep) => {
            let state = prep.checkpoint(&input);
            prep.finish(state, forward(input.into_primitive()))
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(input.into_primitive())),
    }
}

/// The backward step of an elementwise op: `derivative(x, grad)` from the checkpointed `x`
/// (`grad · GELU'(x)`, or `grad` where `0 < x < 6` for ReLU6).
struct ElementwiseBackward<B: GeluBackend> {
    derivative: fn(FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>,
}

impl<B: GeluBackend> std::fmt::Debug for ElementwiseBackward<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ElementwiseBackward")
    }
}

impl<B: GeluBackend> Backward<B, 1> for ElementwiseBackward<B> {
    type State = NodeId;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(parent) = parent {
            let input: FloatTensor<B> = checkpointer.retrieve_node_output(ops.state);
            grads.register::<B>(parent.id, (self.derivative)(input, grad));
        }
    }
}
