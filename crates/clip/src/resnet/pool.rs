//! Non-overlapping average pooling, PyTorch's `nn.AvgPool2d(k)` (stride `k`, no padding, floor).

use burn::prelude::*;
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;

/// Averages each `k × k` window; `k = 1` is the identity.
///
/// # Shapes
/// - input: `[B, C, H, W]`
/// - output: `[B, C, ⌊H/k⌋, ⌊W/k⌋]`
pub fn avg_pool(input: Tensor<4>, k: usize) -> Tensor<4> {
    if k <= 1 { input } else { avg_pool2d(input, AvgPoolOptions::new([k, k])) }
}
