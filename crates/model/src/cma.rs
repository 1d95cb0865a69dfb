//! Cross-modal attention with query-only projection (SSPA Eq. 3).
//!
//! `CMA(X, Y) = softmax(LN_q(X) W_q LN_kv(Y)ᵀ / √d) · LN_kv(Y)`: keys and values keep their
//! original semantics (normalised, never projected); one head, `W_q` without bias, no output
//! projection, no mask, softmax over the keys.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use sspa_attention::{attention, default_scale};
use sspa_norm::{LayerNorm, LayerNormConfig};

/// Configuration of [`CrossModalAttention`].
#[derive(Config, Debug)]
pub struct CrossModalAttentionConfig {
    /// Width `d` of queries, keys and values; also the `√d` of the scale.
    pub d_model: usize,
    /// LayerNorm epsilon.
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
}

impl CrossModalAttentionConfig {
    /// Builds the block: two LayerNorms (γ = 1, β = 0) and `W_q` without bias.
    pub fn init(&self, device: &Device) -> CrossModalAttention {
        CrossModalAttention {
            norm_query: LayerNormConfig::new(self.d_model).with_epsilon(self.layer_norm_eps).init(device),
            norm_key_value: LayerNormConfig::new(self.d_model).with_epsilon(self.layer_norm_eps).init(device),
            query: LinearConfig::new(self.d_model, self.d_model).with_bias(false).init(device),
            d_model: self.d_model,
        }
    }
}

/// Single-head attention where only the query is projected.
#[derive(Module, Debug)]
pub struct CrossModalAttention {
    /// `LN_q`, applied to the queries.
    pub norm_query: LayerNorm,
    /// `LN_kv`, applied to `Y`, which is then both key and value.
    pub norm_key_value: LayerNorm,
    /// `W_q`, `d → d`, no bias (burn's `[in, out]` layout).
    pub query: Linear,
    /// `d`, for the `1/√d` scale.
    pub d_model: usize,
}

impl CrossModalAttention {
    /// `CMA(x, y)`.
    ///
    /// # Shapes
    /// - x (queries): `[B, n, d]`
    /// - y (keys = values): `[B, m, d]`
    /// - output: `[B, n, d]`
    pub fn forward(&self, x: Tensor<3>, y: Tensor<3>) -> Tensor<3> {
        let query = self.query.forward(self.norm_query.forward(x));
        let key_value = self.norm_key_value.forward(y);
        // One head: `[B, 1, n, d]` against `[B, 1, m, d]`. Fused forward, backward recomputing the
        // `n × m` weights instead of keeping them (`sspa-attention`).
        let key_value = key_value.unsqueeze_dim::<4>(1);
        let output = attention(query.unsqueeze_dim(1), key_value.clone(), key_value, None, self.scale());
        output.squeeze_dim(1)
    }

    /// `CMA(x, y)` and the attention weights (rows sum to 1 over the `m` keys).
    ///
    /// # Shapes
    /// - x (queries): `[B, n, d]`
    /// - y (keys = values): `[B, m, d]`
    /// - output: `[B, n, d]`, attention `[B, n, m]`
    pub fn forward_with_attention(&self, x: Tensor<3>, y: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
        let query = self.query.forward(self.norm_query.forward(x));
        let key_value = self.norm_key_value.forward(y);
        let scores = query.matmul(key_value.clone().swap_dims(1, 2)).div_scalar((self.d_model as f64).sqrt());
        let attention = softmax(scores, 2);
        (attention.clone().matmul(key_value), attention)
    }

    /// `1 / √d`.
    fn scale(&self) -> f64 {
        default_scale(self.d_model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeded values in `[-1, 1)`.
    fn seeded<const D: usize>(shape: [usize; D], seed: u32, device: &Device) -> Tensor<D> {
        let count: usize = shape.iter().product();
        let values: Vec<f32> = (0..count as u32)
            .map(|index| ((index.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) % 2001) as f32 / 1000.0 - 1.0)
            .collect();
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    fn max_abs_difference<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    #[test]
    fn the_fused_forward_equals_the_explicit_one_in_value_and_gradient() {
        let device = Device::flex().autodiff();
        let cma = CrossModalAttentionConfig::new(12).init(&device);
        let x = seeded([3, 5, 12], 1, &device).require_grad();
        let y = seeded([3, 7, 12], 2, &device).require_grad();
        let upstream = seeded([3, 5, 12], 3, &device);

        let fused = cma.forward(x.clone(), y.clone());
        let explicit = cma.forward_with_attention(x.clone(), y.clone()).0;
        assert!(max_abs_difference(fused.clone(), explicit.clone()) < 1e-5);

        let grads_fused = (fused * upstream.clone()).sum().backward();
        let grads_explicit = (explicit * upstream).sum().backward();
        for (name, input) in [("x", &x), ("y", &y)] {
            let fused = input.grad(&grads_fused).expect("gradient through the fused op");
            let explicit = input.grad(&grads_explicit).expect("gradient through the explicit op");
            let difference = max_abs_difference(fused, explicit);
            assert!(difference < 1e-5, "{name}: {difference}");
        }
        let weight = cma.query.weight.val();
        let fused = weight.grad(&grads_fused).expect("W_q gradient through the fused op");
        let explicit = weight.grad(&grads_explicit).expect("W_q gradient through the explicit op");
        assert!(max_abs_difference(fused, explicit) < 1e-5);
    }
}
