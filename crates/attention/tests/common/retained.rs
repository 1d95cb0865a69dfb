//! What autodiff keeps between forward and backward, measured with a counting global allocator.
//!
//! The including binary installs the allocator:
//! `#[global_allocator] static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;`.
//! Only Rust heap allocations are counted (flex tensors; not libtorch's).

use burn::prelude::*;
use stats_alloc::INSTRUMENTED_SYSTEM;

use super::seeded;

/// Live heap bytes now.
pub fn live_bytes() -> isize {
    let stats = INSTRUMENTED_SYSTEM.stats();
    stats.bytes_allocated as isize - stats.bytes_deallocated as isize
}

/// An attention function under measurement (fused or decomposed, no mask).
pub type AttentionFn = fn(Tensor<4>, Tensor<4>, Tensor<4>, Option<sspa_attention::AttentionMask>, f64) -> Tensor<4>;

/// Heap bytes that stay allocated after the forward pass of `attention` on flex + autodiff, beyond
/// the output itself: what the graph keeps for backward (the least over a few runs).
///
/// # Shapes
/// - shape: `[B, H, L_q, L_k, d]` for query `[B, H, L_q, d]`, key and value `[B, H, L_k, d]`
pub fn retained_bytes(attention: AttentionFn, shape: [usize; 5]) -> isize {
    let [batch, heads, length_q, length_k, width] = shape;
    let device = Device::flex().autodiff();
    let query = seeded([batch, heads, length_q, width], 1, 1.0, &device).require_grad();
    let key = seeded([batch, heads, length_k, width], 2, 1.0, &device).require_grad();
    let value = seeded([batch, heads, length_k, width], 3, 1.0, &device).require_grad();
    let scale = 1.0 / (width as f64).sqrt();
    let output_bytes = (batch * heads * length_q * width * size_of::<f32>()) as isize;
    // Lazy one-time allocations (thread pools, per-thread gemm workspaces that a worker first
    // touches in a later run) would count as retained: the minimum over a few runs excludes them.
    (0..4)
        .map(|_| {
            let before = live_bytes();
            let output = attention(query.clone(), key.clone(), value.clone(), None, scale);
            let after = live_bytes();
            let _ = output.sum().backward();
            after - before - output_bytes
        })
        .min()
        .unwrap_or(isize::MAX)
}
