//! Helpers shared by the unit tests (CPU `flex` backend, f32).

use burn::prelude::*;
use burn::tensor::Distribution;

pub fn device() -> Device {
    let device = Device::flex();
    device.seed(7);
    device
}

pub fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

pub fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().try_to_vec::<f32>().expect("an f32 tensor")
}

/// `|a − b| ≤ tolerance · max(1, |b|)` element-wise.
#[track_caller]
pub fn assert_close<const D: usize>(actual: Tensor<D>, expected: Tensor<D>, tolerance: f32) {
    assert_eq!(actual.dims(), expected.dims(), "shapes differ");
    let (actual, expected) = (values(actual), values(expected));
    for (index, (a, b)) in actual.iter().zip(&expected).enumerate() {
        assert!((a - b).abs() <= tolerance * b.abs().max(1.0), "element {index}: {a} vs {b} (tolerance {tolerance})");
    }
}

/// Largest absolute element-wise difference.
pub fn max_difference<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    values((a - b).abs()).into_iter().fold(0.0, f32::max)
}
