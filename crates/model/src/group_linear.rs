//! Group fully-connected output (ML-Decoder's "group FC", Ridnik et al., WACV 2023): each of the `K`
//! decoded queries goes through its own small linear map to `g` logits; the `K·g` logits, in query
//! order, are cut to the first `C` and a per-class bias is added.
//!
//! Class `j` is output `j mod g` of query `⌊j / g⌋`. With one query per class (`K = C`, `g = 1`)
//! each class has its own `D → 1` map; with fewer queries than classes (`g = ⌈C / K⌉`) one query
//! scores a group of `g` consecutive classes, and the last group may be partly unused.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::Distribution;

/// Configuration of [`GroupLinear`].
#[derive(Config, Debug)]
pub struct GroupLinearConfig {
    /// Number of queries `K` (groups).
    pub groups: usize,
    /// Width `D` of each query's embedding.
    pub d_model: usize,
    /// Number of classes `C` (at most `K·g`; the outputs past `C` are dropped).
    pub classes: usize,
}

impl GroupLinearConfig {
    /// Logits per group, `g = ⌈C / K⌉`.
    pub fn per_group(&self) -> usize {
        self.classes.div_ceil(self.groups.max(1))
    }

    /// Builds `W ∈ R^{K×D×g}` with PyTorch's `xavier_normal_` of that 3-d tensor
    /// (std `√(2 / (D·g + K·g))`, as ML-Decoder) and a zero bias `[C]`.
    pub fn init(&self, device: &Device) -> GroupLinear {
        let per_group = self.per_group();
        let (fan_in, fan_out) = (self.d_model * per_group, self.groups * per_group);
        let std = (2.0 / (fan_in + fan_out) as f64).sqrt();
        GroupLinear {
            weight: Param::from_tensor(Tensor::random(
                [self.groups, self.d_model, per_group],
                Distribution::Normal(0.0, std),
                device,
            )),
            bias: Param::from_tensor(Tensor::zeros([self.classes], device)),
        }
    }
}

/// `K` independent `D → g` maps and a per-class bias.
#[derive(Module, Debug)]
pub struct GroupLinear {
    /// `W`, `[K, D, g]`: `W[k]` maps query `k`'s embedding to its `g` logits.
    pub weight: Param<Tensor<3>>,
    /// Per-class bias, `[C]`.
    pub bias: Param<Tensor<1>>,
}

impl GroupLinear {
    /// Number of classes `C`.
    pub fn classes(&self) -> usize {
        self.bias.dims()[0]
    }

    /// # Shapes
    /// - decoded queries: `[B, K, D]`
    /// - output: `[B, C]`
    pub fn forward(&self, decoded: Tensor<3>) -> Tensor<2> {
        let [batch, groups, _] = decoded.dims();
        let [_, _, per_group] = self.weight.dims();
        // `[K, B, D] × [K, D, g]`: one matmul per query, batched over the queries.
        let grouped = decoded.swap_dims(0, 1).matmul(self.weight.val()).swap_dims(0, 1);
        let flat = grouped.reshape([batch, groups * per_group]);
        let classes = self.classes();
        flat.slice([0..batch, 0..classes]) + self.bias.val().unsqueeze::<2>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_close, device, random};

    #[test]
    fn class_j_is_output_j_mod_g_of_query_j_div_g() {
        let device = device();
        // 7 classes over 3 queries: g = 3, the last query's third output is dropped.
        let config = GroupLinearConfig::new(3, 4, 7);
        assert_eq!(config.per_group(), 3);
        let mut layer = config.init(&device);
        layer.bias = Param::from_tensor(random([7], &device));
        let decoded = random([2, 3, 4], &device);
        let logits = layer.forward(decoded.clone());
        assert_eq!(logits.dims(), [2, 7]);
        for class in 0..7 {
            let (query, slot) = (class / 3, class % 3);
            let embedding = decoded.clone().slice([0..2, query..query + 1, 0..4]).reshape([2, 4]);
            let weights = layer.weight.val().slice([query..query + 1, 0..4, slot..slot + 1]).reshape([4, 1]);
            let bias = layer.bias.val().narrow(0, class, 1).unsqueeze::<2>();
            let expected = embedding.matmul(weights) + bias;
            assert_close(logits.clone().slice([0..2, class..class + 1]), expected, 1e-5);
        }
    }

    #[test]
    fn one_query_per_class_is_a_per_class_dot_product() {
        let device = device();
        let layer = GroupLinearConfig::new(5, 4, 5).init(&device);
        assert_eq!(layer.weight.dims(), [5, 4, 1]);
        let decoded = random([3, 5, 4], &device);
        let expected = (decoded.clone() * layer.weight.val().reshape([1, 5, 4])).sum_dim(2).reshape([3, 5]);
        assert_close(layer.forward(decoded), expected, 1e-5);
    }
}
