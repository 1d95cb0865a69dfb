//! Multi-head cross-attention with projected queries, keys and values (Vaswani et al.; PyTorch's
//! `nn.MultiheadAttention` without dropout), the attention of the `query-decoder` peer head.
//!
//! `MHA(X, Y) = concat_h( softmax( (X W_q^h + b_q^h)(Y W_k^h + b_k^h)ᵀ / √(D/H) ) (Y W_v^h + b_v^h) ) W_o + b_o`:
//! unlike SSPA's CMA ([`crate::cma`]), keys and values are projected, there are `H` heads and an
//! output projection. No mask, no normalisation inside (the caller's layer norms wrap it).

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use sspa_attention::{attention, default_scale};

/// Configuration of [`MultiHeadCrossAttention`].
#[derive(Config, Debug)]
pub struct MultiHeadCrossAttentionConfig {
    /// Width `D` of queries, keys, values and output.
    pub d_model: usize,
    /// Number of heads `H` (must divide `D`); each head is `D/H` wide.
    pub heads: usize,
}

impl MultiHeadCrossAttentionConfig {
    /// Builds the four `D → D` projections, all with bias, with burn's default (PyTorch
    /// `nn.Linear`-like uniform) initialisation.
    ///
    /// # Panics
    /// If `H` is zero or does not divide `D` (callers validate first).
    pub fn init(&self, device: &Device) -> MultiHeadCrossAttention {
        assert!(
            self.heads > 0 && self.d_model.is_multiple_of(self.heads),
            "{} heads do not divide width {}",
            self.heads,
            self.d_model
        );
        let linear = || LinearConfig::new(self.d_model, self.d_model).init(device);
        MultiHeadCrossAttention { query: linear(), key: linear(), value: linear(), output: linear(), heads: self.heads }
    }
}

/// `H`-head attention of queries over a set of keys (= values before projection).
#[derive(Module, Debug)]
pub struct MultiHeadCrossAttention {
    /// `W_q`, `b_q` (`D → D`, burn's `[in, out]` layout; columns `h·D/H..(h+1)·D/H` feed head `h`).
    pub query: Linear,
    /// `W_k`, `b_k` (`D → D`).
    pub key: Linear,
    /// `W_v`, `b_v` (`D → D`).
    pub value: Linear,
    /// `W_o`, `b_o` (`D → D`) on the concatenated heads.
    pub output: Linear,
    /// `H`.
    pub heads: usize,
}

impl MultiHeadCrossAttention {
    /// # Shapes
    /// - x (queries): `[B, n, D]`
    /// - y (keys and values): `[B, m, D]`
    /// - output: `[B, n, D]`
    pub fn forward(&self, x: Tensor<3>, y: Tensor<3>) -> Tensor<3> {
        let [batch, queries, width] = x.dims();
        let head_width = width / self.heads;
        let split = |t: Tensor<3>| {
            let [_, length, _] = t.dims();
            t.reshape([batch, length, self.heads, head_width]).swap_dims(1, 2)
        };
        let query = split(self.query.forward(x));
        let key = split(self.key.forward(y.clone()));
        let value = split(self.value.forward(y));
        // Fused forward; the backward recomputes the `n × m` weights (`sspa-attention`).
        let attended = attention(query, key, value, None, default_scale(head_width));
        self.output.forward(attended.swap_dims(1, 2).reshape([batch, queries, width]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_close, device, random};
    use burn::tensor::activation::softmax;

    #[test]
    fn each_head_attends_over_its_own_slice() {
        let device = device();
        let attention = MultiHeadCrossAttentionConfig::new(8, 2).init(&device);
        let (x, y) = (random([2, 3, 8], &device), random([2, 5, 8], &device));
        let output = attention.forward(x.clone(), y.clone());
        assert_eq!(output.dims(), [2, 3, 8]);
        // Head by head, written out.
        let (q, k, v) = (attention.query.forward(x), attention.key.forward(y.clone()), attention.value.forward(y));
        let heads: Vec<Tensor<3>> = (0..2)
            .map(|h| {
                let slice = |t: Tensor<3>, length: usize| t.slice([0..2, 0..length, 4 * h..4 * h + 4]);
                let scores = slice(q.clone(), 3).matmul(slice(k.clone(), 5).swap_dims(1, 2)).div_scalar(2.0);
                softmax(scores, 2).matmul(slice(v.clone(), 5))
            })
            .collect();
        assert_close(output, attention.output.forward(Tensor::cat(heads, 2)), 1e-5);
    }
}
