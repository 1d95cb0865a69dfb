//! Quaternion linear layer via the Hamilton product (SSPA Eq. 9; Parcollet et al.,
//! *Quaternion Recurrent Neural Networks*, ICLR 2019, `QuaternionLinear`).
//!
//! Input and output are laid out as four equal slices `[r, x, y, z]`. The weight is a quaternion
//! `W = W_r + W_x i + W_y j + W_z k` of four real `[q_in, q_out]` matrices; the Hamilton product
//! `W ⊗ h` is one real block matrix `K` of shape `[4·q_in, 4·q_out]` in burn's `[in, out]` layout
//! (`y = h K`), the transpose of SSPA.md's `(out, in)` table:
//!
//! ```text
//!             out: r     x     y     z
//! in r:  [  W_r   W_x   W_y   W_z ]
//! in x:  [ -W_x   W_r   W_z  -W_y ]
//! in y:  [ -W_y  -W_z   W_r   W_x ]
//! in z:  [ -W_z   W_y  -W_x   W_r ]
//! ```
//!
//! so that `r' = W_r h_r − W_x h_x − W_y h_y − W_z h_z`, `x' = W_x h_r + W_r h_x − W_z h_y +
//! W_y h_z`, and so on (Parcollet's sign pattern). Four matrices of `q_in·q_out` replace one of
//! `16·q_in·q_out`: a quarter of the dense layer's weights.

use std::f64::consts::PI;

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::module::linear;

/// Configuration of [`QuaternionLinear`].
#[derive(Config, Debug)]
pub struct QuaternionLinearConfig {
    /// Input width (a multiple of 4).
    pub d_input: usize,
    /// Output width (a multiple of 4).
    pub d_output: usize,
    /// Whether a real bias (zero-initialised) is added after the product.
    #[config(default = true)]
    pub bias: bool,
}

impl QuaternionLinearConfig {
    /// Builds the layer with Parcollet's quaternion Glorot initialisation and a zero bias.
    ///
    /// Each weight quaternion is `modulus · (cos φ + u sin φ)`, with `modulus ~ χ₄` scaled by
    /// `σ = 1/√(2 (q_in + q_out))`, `φ ~ U(−π, π)` and `u` a unit purely imaginary quaternion drawn
    /// from `U(−1, 1)³` and normalised (with Parcollet's `+1e-4` under the square root).
    ///
    /// # Panics
    /// If either width is not a positive multiple of 4 (the head validates this first).
    pub fn init(&self, device: &Device) -> QuaternionLinear {
        assert!(
            self.d_input.is_multiple_of(4) && self.d_output.is_multiple_of(4) && self.d_input > 0 && self.d_output > 0,
            "quaternion widths must be positive multiples of 4, got {} → {}",
            self.d_input,
            self.d_output
        );
        let (q_in, q_out) = (self.d_input / 4, self.d_output / 4);
        let sigma = 1.0 / (2.0 * (q_in + q_out) as f64).sqrt();

        let gaussians = Tensor::<3>::random([4, q_in, q_out], Distribution::Normal(0.0, 1.0), device);
        let modulus = gaussians.square().sum_dim(0).sqrt().mul_scalar(sigma);
        let axis = Tensor::<3>::random([3, q_in, q_out], Distribution::Uniform(-1.0, 1.0), device);
        let axis_norm = axis.clone().square().sum_dim(0).add_scalar(1e-4).sqrt();
        let axis = axis / axis_norm;
        let phase = Tensor::<3>::random([1, q_in, q_out], Distribution::Uniform(-PI, PI), device);

        let real = (modulus.clone() * phase.clone().cos()).squeeze_dim::<2>(0);
        let imaginary = modulus * phase.sin() * axis;
        let component = |index: usize| imaginary.clone().narrow(0, index, 1).squeeze_dim::<2>(0);

        QuaternionLinear {
            weight_r: Param::from_tensor(real),
            weight_x: Param::from_tensor(component(0)),
            weight_y: Param::from_tensor(component(1)),
            weight_z: Param::from_tensor(component(2)),
            bias: self.bias.then(|| Param::from_tensor(Tensor::zeros([self.d_output], device))),
        }
    }
}

/// `QL(h) = W ⊗ h + b`.
#[derive(Module, Debug)]
pub struct QuaternionLinear {
    /// Real part `W_r`, `[q_in, q_out]`.
    pub weight_r: Param<Tensor<2>>,
    /// `i` part `W_x`, `[q_in, q_out]`.
    pub weight_x: Param<Tensor<2>>,
    /// `j` part `W_y`, `[q_in, q_out]`.
    pub weight_y: Param<Tensor<2>>,
    /// `k` part `W_z`, `[q_in, q_out]`.
    pub weight_z: Param<Tensor<2>>,
    /// Real bias `[4·q_out]`.
    pub bias: Option<Param<Tensor<1>>>,
}

impl QuaternionLinear {
    /// The Hamilton product as one real matrix in `[in, out]` layout (see the module docs).
    ///
    /// # Shapes
    /// - output: `[4·q_in, 4·q_out]`
    pub fn block_matrix(&self) -> Tensor<2> {
        let (r, x, y, z) = (self.weight_r.val(), self.weight_x.val(), self.weight_y.val(), self.weight_z.val());
        let row = |blocks: [Tensor<2>; 4]| Tensor::cat(blocks.to_vec(), 1);
        Tensor::cat(
            vec![
                row([r.clone(), x.clone(), y.clone(), z.clone()]),
                row([x.clone().neg(), r.clone(), z.clone(), y.clone().neg()]),
                row([y.clone().neg(), z.clone().neg(), r.clone(), x.clone()]),
                row([z.neg(), y, x.neg(), r]),
            ],
            0,
        )
    }

    /// # Shapes
    /// - input: `[..., 4·q_in]` as `[h_r ‖ h_x ‖ h_y ‖ h_z]`
    /// - output: `[..., 4·q_out]` as `[r' ‖ x' ‖ y' ‖ z']`
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        linear(input, self.block_matrix(), self.bias.as_ref().map(Param::val))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_close, device, random, values};
    use burn::nn::LinearConfig;

    /// `y = h Mᵀ` with `M` written row by row as SSPA.md's `(out, in)` table, from the four
    /// components (each block `W_cᵀ`, `[q_out, q_in]`).
    fn explicit_product(layer: &QuaternionLinear, h: Tensor<2>) -> Tensor<2> {
        let t = |p: &Param<Tensor<2>>| p.val().transpose();
        let (r, x, y, z) = (t(&layer.weight_r), t(&layer.weight_x), t(&layer.weight_y), t(&layer.weight_z));
        let row = |blocks: Vec<Tensor<2>>| Tensor::cat(blocks, 1);
        let table = Tensor::cat(
            vec![
                row(vec![r.clone(), x.clone().neg(), y.clone().neg(), z.clone().neg()]),
                row(vec![x.clone(), r.clone(), z.clone().neg(), y.clone()]),
                row(vec![y.clone(), z.clone(), r.clone(), x.clone().neg()]),
                row(vec![z, y.neg(), x, r]),
            ],
            0,
        );
        h.matmul(table.transpose())
    }

    #[test]
    fn forward_equals_the_explicit_four_by_four_block_product() {
        let device = device();
        let mut layer = QuaternionLinearConfig::new(8, 12).init(&device);
        layer.bias = Some(Param::from_tensor(random([12], &device)));
        let h = random([5, 8], &device);
        let bias = layer.bias.as_ref().expect("bias").val().unsqueeze::<2>();
        assert_close(layer.forward(h.clone()), explicit_product(&layer, h) + bias, 1e-5);
    }

    #[test]
    fn component_outputs_follow_the_hamilton_product() {
        // One input quaternion h = (1, 0, 0, 0) returns the weight quaternion itself, and
        // h = (0, 1, 0, 0) returns W ⊗ i = (−W_x, W_r, W_z, −W_y).
        let device = device();
        let layer = QuaternionLinearConfig::new(4, 4).with_bias(false).init(&device);
        let w = |p: &Param<Tensor<2>>| values(p.val())[0];
        let (r, x, y, z) = (w(&layer.weight_r), w(&layer.weight_x), w(&layer.weight_y), w(&layer.weight_z));
        let one = Tensor::<2>::from_floats([[1.0, 0.0, 0.0, 0.0]], &device);
        let i = Tensor::<2>::from_floats([[0.0, 1.0, 0.0, 0.0]], &device);
        assert_close(layer.forward(one), Tensor::from_floats([[r, x, y, z]], &device), 1e-6);
        assert_close(layer.forward(i), Tensor::from_floats([[-x, r, z, -y]], &device), 1e-6);
    }

    #[test]
    fn a_quaternion_layer_has_a_quarter_of_the_dense_weights() {
        let device = device();
        let quaternion = QuaternionLinearConfig::new(32, 64).with_bias(false).init(&device);
        let dense = LinearConfig::new(32, 64).with_bias(false).init(&device);
        assert_eq!(quaternion.num_params() * 4, dense.num_params());
        // With biases (same size on both sides) the ratio is (4·8·16 + 64) / (32·64 + 64).
        let quaternion = QuaternionLinearConfig::new(32, 64).init(&device);
        let dense = LinearConfig::new(32, 64).init(&device);
        assert_eq!((quaternion.num_params(), dense.num_params()), (512 + 64, 2048 + 64));
    }

    #[test]
    fn glorot_init_has_the_quaternion_variance_and_a_zero_bias() {
        // E[|W|²] over the four components is E[χ₄²] σ² = 4σ², σ² = 1 / (2 (q_in + q_out)).
        let device = device();
        let layer = QuaternionLinearConfig::new(256, 256).init(&device);
        let energy: f32 = [&layer.weight_r, &layer.weight_x, &layer.weight_y, &layer.weight_z]
            .iter()
            .map(|p| values(p.val().square().sum())[0])
            .sum::<f32>()
            / (64.0 * 64.0);
        let expected = 4.0 / (2.0 * 128.0);
        assert!((energy / expected - 1.0).abs() < 0.1, "{energy} vs {expected}");
        // The real part carries half of it on average (E[cos²φ] = 1/2).
        let real = values(layer.weight_r.val().square().sum())[0] / (64.0 * 64.0);
        assert!((real / (expected / 2.0) - 1.0).abs() < 0.15, "{real}");
        let bias = values(layer.bias.as_ref().expect("bias").val());
        assert!(bias.iter().all(|&b| b == 0.0));
    }
}
