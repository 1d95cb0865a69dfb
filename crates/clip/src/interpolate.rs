//! Bicubic resampling of positional-embedding grids, as PyTorch's
//! `F.interpolate(mode="bicubic", align_corners=False)` (cubic convolution with `A = −0.75`,
//! border indices clamped), written as two interpolation matrices so that it runs on any device
//! and passes gradients.

use burn::prelude::*;
use burn::tensor::TensorData;

const A: f64 = -0.75;

fn near(x: f64) -> f64 {
    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
}

fn far(x: f64) -> f64 {
    ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
}

/// `[output, input]`: row `d` holds the weights PyTorch gives the input samples for output `d`.
pub fn bicubic_matrix(input: usize, output: usize) -> Vec<f32> {
    let mut matrix = vec![0.0_f64; output * input];
    let scale = input as f32 / output as f32;
    for destination in 0..output {
        // PyTorch computes the source coordinate in `float`.
        let source = f64::from(scale * (destination as f32 + 0.5) - 0.5);
        let floor = source.floor();
        let t = source - floor;
        let weights = [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)];
        for (offset, weight) in weights.into_iter().enumerate() {
            let index = (floor as i64 - 1 + offset as i64).clamp(0, input as i64 - 1) as usize;
            matrix[destination * input + index] += weight;
        }
    }
    matrix.into_iter().map(|weight| weight as f32).collect()
}

/// Resamples a row-major grid of vectors to `height × width`.
///
/// # Shapes
/// - grid: `[grid_height · grid_width, C]`
/// - output: `[height · width, C]`
pub fn resize_grid(grid: Tensor<2>, grid_height: usize, grid_width: usize, height: usize, width: usize) -> Tensor<2> {
    let [_, channels] = grid.dims();
    let device = grid.device();
    let dtype = grid.dtype();
    // In the grid's float type (bf16 under mixed precision), not the device default.
    let matrix = |input: usize, output: usize| {
        Tensor::<2>::from_data(TensorData::new(bicubic_matrix(input, output), [output, input]), &device).cast(dtype)
    };
    // Along the width: [gh, gw, C] → [gh, w, C].
    let along_width =
        matrix(grid_width, width).reshape([1, width, grid_width]).expand([grid_height, width, grid_width]);
    let rows = along_width.matmul(grid.reshape([grid_height, grid_width, channels]));
    // Along the height: [gh, w·C] → [h, w·C].
    let resized = matrix(grid_height, height).matmul(rows.reshape([grid_height, width * channels]));
    resized.reshape([height * width, channels])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_the_identity_and_rows_sum_to_one() {
        let identity = bicubic_matrix(4, 4);
        for (index, weight) in identity.iter().enumerate() {
            let expected = if index % 5 == 0 { 1.0 } else { 0.0 };
            assert!((weight - expected).abs() < 1e-6, "{index}: {weight}");
        }
        let up = bicubic_matrix(4, 7);
        for row in up.chunks(4) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        // torch.nn.functional.interpolate(torch.tensor([[[[0., 1., 2., 3.]]]]), size=(1, 6),
        // mode="bicubic", align_corners=False) on the last axis.
        let values = [0.0_f32, 1.0, 2.0, 3.0];
        let resized: Vec<f32> =
            bicubic_matrix(4, 6).chunks(4).map(|row| row.iter().zip(&values).map(|(w, v)| w * v).sum()).collect();
        let expected = [-0.086806, 0.40625, 1.212963, 1.787037, 2.59375, 3.086806];
        for (got, want) in resized.iter().zip(expected) {
            assert!((got - want).abs() < 1e-5, "{resized:?}");
        }
    }
}
