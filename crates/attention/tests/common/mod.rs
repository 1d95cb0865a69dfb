//! Helpers shared by the integration tests: seeded inputs and tensor comparisons.

#![allow(dead_code)]

pub mod retained;

use burn::prelude::*;

/// A seeded tensor with values uniform in `[-scale, scale)` (xorshift64*, no global RNG state).
pub fn seeded<const D: usize>(shape: [usize; D], seed: u64, scale: f32, device: &Device) -> Tensor<D> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let count = shape.iter().product();
    let values: Vec<f32> = (0..count)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let bits = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
            (bits as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// The values of a tensor.
pub fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 tensor data")
}

/// `max |a − b| / max |b|`, the error of `a` relative to the scale of `b`.
pub fn relative_error<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let (a, b) = (values(a), values(b));
    let scale = b.iter().fold(0f32, |max, value| max.max(value.abs()));
    let error = a.iter().zip(&b).fold(0f32, |max, (a, b)| max.max((a - b).abs()));
    assert!(scale > 0.0, "reference is all zeros");
    error / scale
}

/// Panics unless `actual` is within `tolerance` of `expected`, relative to `expected`'s scale.
pub fn assert_close<const D: usize>(actual: Tensor<D>, expected: Tensor<D>, tolerance: f32, what: &str) {
    let error = relative_error(actual, expected);
    assert!(error <= tolerance, "{what}: relative error {error:e} > {tolerance:e}");
}

/// A padding mask `[B, 1, 1, L_k]`: `f32::MIN` on the last `padded[b]` keys of batch `b`.
pub fn padding_mask(padded: &[usize], length_k: usize, device: &Device) -> Tensor<4> {
    let values: Vec<f32> = padded
        .iter()
        .flat_map(|&padded| (0..length_k).map(move |key| if key + padded >= length_k { f32::MIN } else { 0.0 }))
        .collect();
    Tensor::from_data(TensorData::new(values, [padded.len(), 1, 1, length_k]), device)
}
