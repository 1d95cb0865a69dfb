//! The LayerNorm backward over rows of width `d`, in one pass per row:
//!
//! `μ, σ² = mean, biased variance of the row; r = 1/√(σ² + ε); x̂ = (x − μ) r; g = γ ⊙ ∂y`
//! `∂x = r (g − mean(g) − x̂ mean(g ⊙ x̂))`, `∂γ = Σ_rows ∂y ⊙ x̂`, `∂β = Σ_rows ∂y`.
//!
//! Rows are split into blocks that run on rayon's threads, each accumulating its own `∂γ`, `∂β`,
//! summed at the end (all in `f32`, as flex's forward).

use rayon::prelude::*;

/// Rows per parallel task.
const ROWS_PER_TASK: usize = 64;

/// Where [`backward_rows`] writes.
pub struct Outputs<'a> {
    /// `∂x`, the input's shape.
    pub grad_input: &'a mut [f32],
    /// `∂γ`, `[d]`.
    pub grad_gamma: &'a mut [f32],
    /// `∂β`, `[d]`.
    pub grad_beta: &'a mut [f32],
}

/// The backward of `LayerNorm` for `input` `[rows, d]` (row-major), `gamma` `[d]`, `grad` like
/// `input`.
pub fn backward_rows(input: &[f32], gamma: &[f32], grad: &[f32], epsilon: f32, out: Outputs<'_>) {
    let width = gamma.len();
    assert!(width > 0 && input.len().is_multiple_of(width), "input is not [rows, {width}]");
    assert_eq!(input.len(), grad.len(), "input and gradient sizes differ");
    let chunk = ROWS_PER_TASK * width;
    let partials: Vec<(Vec<f32>, Vec<f32>)> = out
        .grad_input
        .par_chunks_mut(chunk)
        .zip(input.par_chunks(chunk).zip(grad.par_chunks(chunk)))
        .map(|(grad_input, (input, grad))| {
            let mut grad_gamma = vec![0.0f32; width];
            let mut grad_beta = vec![0.0f32; width];
            let mut normalised = vec![0.0f32; width];
            let rows = input.chunks_exact(width).zip(grad.chunks_exact(width)).zip(grad_input.chunks_exact_mut(width));
            for ((x, dy), dx) in rows {
                row(x, dy, gamma, epsilon, &mut normalised, dx);
                for i in 0..width {
                    grad_gamma[i] += dy[i] * normalised[i];
                    grad_beta[i] += dy[i];
                }
            }
            (grad_gamma, grad_beta)
        })
        .collect();
    out.grad_gamma.fill(0.0);
    out.grad_beta.fill(0.0);
    for (grad_gamma, grad_beta) in partials {
        for i in 0..width {
            out.grad_gamma[i] += grad_gamma[i];
            out.grad_beta[i] += grad_beta[i];
        }
    }
}

/// One row: writes `x̂` into `normalised` and `∂x` into `dx`.
fn row(x: &[f32], dy: &[f32], gamma: &[f32], epsilon: f32, normalised: &mut [f32], dx: &mut [f32]) {
    let width = x.len() as f32;
    let mean = x.iter().sum::<f32>() / width;
    let variance = x.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / width;
    let rstd = 1.0 / (variance + epsilon).sqrt();
    let (mut sum_g, mut sum_gx) = (0.0f32, 0.0f32);
    for i in 0..x.len() {
        let xhat = (x[i] - mean) * rstd;
        normalised[i] = xhat;
        let g = gamma[i] * dy[i];
        sum_g += g;
        sum_gx += g * xhat;
    }
    let (mean_g, mean_gx) = (sum_g / width, sum_gx / width);
    for i in 0..x.len() {
        dx[i] = rstd * (gamma[i] * dy[i] - mean_g - normalised[i] * mean_gx);
    }
}
