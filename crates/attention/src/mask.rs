//! The additive attention mask.

use burn::prelude::*;

/// An additive mask on the attention scores: 0 where a key is attended, a large negative value
/// (e.g. `-1e4`, `f32::MIN`) where it is not. Constant: it receives no gradient.
///
/// # Shapes
/// Broadcastable to the scores `[B, H, L_q, L_k]`: each dimension full or 1.
#[derive(Debug, Clone)]
pub struct AttentionMask {
    bias: Tensor<4>,
}

impl AttentionMask {
    /// Wraps an additive mask.
    ///
    /// # Shapes
    /// - bias: broadcastable to `[B, H, L_q, L_k]`, e.g. `[B, 1, 1, L_k]` or `[1, 1, L_q, L_k]`
    pub fn additive(bias: Tensor<4>) -> Self {
        Self { bias: bias.detach() }
    }

    /// Causal mask (query `i` attends keys `j ≤ i`), the lowest finite `f32` above the diagonal.
    ///
    /// # Shapes
    /// - output mask: `[1, 1, length, length]`
    pub fn causal(length: usize, device: &Device) -> Self {
        let rows = Tensor::<1, Int>::arange(0..length as i64, device).reshape([length, 1]);
        let columns = Tensor::<1, Int>::arange(0..length as i64, device).reshape([1, length]);
        let future = columns.greater(rows);
        let bias = Tensor::<2>::zeros([length, length], device).mask_fill(future, f32::MIN);
        Self::additive(bias.unsqueeze::<4>())
    }

    /// The mask tensor.
    pub fn tensor(&self) -> &Tensor<4> {
        &self.bias
    }

    /// The mask tensor, by value.
    pub fn into_tensor(self) -> Tensor<4> {
        self.bias
    }
}

impl From<Tensor<4>> for AttentionMask {
    fn from(bias: Tensor<4>) -> Self {
        Self::additive(bias)
    }
}
