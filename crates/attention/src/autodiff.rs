//! [`FusedAttentionBackend`] for `Autodiff<B, C>`: the inner backend's fused forward, registered
//! as one tracked op whose backward is [`attention_backward`].
//!
//! Saved state: the graph ids of `Q`, `K`, `V` (checkpointed, so under gradient checkpointing they
//! may be recomputed instead of kept), the mask primitive and the scale. Nothing of size
//! `L_q × L_k` (unless the mask itself is that big, e.g. a `[1, 1, L, L]` causal mask, shared by
//! every layer and batch).

use burn::backend::Backend;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::tensor::FloatTensor;

use crate::backend::FusedAttentionBackend;
use crate::backward::{Wanted, attention_backward};

impl<B: FusedAttentionBackend, C: CheckpointStrategy> FusedAttentionBackend for Autodiff<B, C> {
    fn fused_attention(
        query: FloatTensor<Self>,
        key: FloatTensor<Self>,
        value: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        tracked::<B, C>(query, key, value, None, scale)
    }

    fn fused_attention_masked(
        query: FloatTensor<Self>,
        key: FloatTensor<Self>,
        value: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        // The mask is a constant: its primitive only, no graph node.
        tracked::<B, C>(query, key, value, Some(mask.into_primitive()), scale)
    }
}

/// What the backward step keeps from the forward pass.
#[derive(Debug, Clone)]
pub struct AttentionState<T> {
    /// Checkpointed `Q`.
    pub query: NodeId,
    /// Checkpointed `K`.
    pub key: NodeId,
    /// Checkpointed `V`.
    pub value: NodeId,
    /// The additive mask (constant).
    pub mask: Option<T>,
    /// The score scale `s`.
    pub scale: f64,
}

/// The backward step of the fused attention op.
#[derive(Debug)]
struct AttentionBackward;

impl<B: Backend> Backward<B, 3> for AttentionBackward {
    type State = AttentionState<FloatTensor<B>>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_query, node_key, node_value] = ops.parents;
        let grad_output = grads.consume::<B>(&ops.node);
        let state = ops.state;
        let query: FloatTensor<B> = checkpointer.retrieve_node_output(state.query);
        let key: FloatTensor<B> = checkpointer.retrieve_node_output(state.key);
        let value: FloatTensor<B> = checkpointer.retrieve_node_output(state.value);
        let wanted = Wanted { query: node_query.is_some(), key: node_key.is_some(), value: node_value.is_some() };

        let gradients = attention_backward::<B>(query, key, value, state.mask, state.scale, grad_output, wanted);
        for (node, grad) in [(node_query, gradients.query), (node_key, gradients.key), (node_value, gradients.value)] {
            if let (Some(node), Some(grad)) = (node, grad) {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

/// Registers the op: fused forward of `B`, state for [`AttentionBackward`].
fn tracked<B: FusedAttentionBackend, C: CheckpointStrategy>(
    query: FloatTensor<Autodiff<B, C>>,
    key: FloatTensor<Autodiff<B, C>>,
    value: FloatTensor<Autodiff<B, C>>,
    mask: Option<FloatTensor<B>>,
    scale: f64,
) -> FloatTensor<Autodiff<B, C>> {
    let forward = |query, key, value, mask: Option<FloatTensor<B>>| match mask {
        Some(mask) => B::fused_attention_masked(query, key, value, mask, scale),
        None => B::fused_attention(query, key, value, scale),
    };
    match AttentionBackward.prepare::<C>([query.node(), key.node(), value.node()]).compute_bound().stateful() {
        OpsKind::Tracked(mut prep) => {
            let state = AttentionState {
                query: prep.checkpoint(&query),
                key: prep.checkpoint(&key),
                value: prep.checkpoint(&value),
                mask: mask.clone(),
                scale,
            };
            let output = forward(query.into_primitive(), key.into_primitive(), value.into_primitive(), mask);
            prep.finish(state, output)
        }
        OpsKind::UnTracked(prep) => {
            prep.finish(forward(query.into_primitive(), key.into_primitive(), value.into_primitive(), mask))
        }
    }
}
