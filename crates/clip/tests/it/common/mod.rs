//! Shared test helpers: fixtures, installed files, comparisons.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::TensorData;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures")
}

pub fn fixture_json(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn floats(value: &serde_json::Value) -> Vec<f32> {
    value.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()
}

/// A file installed by `scripts/install-encoders` under the CLIP directory; fails the test with
/// instructions when it is absent.
pub fn installed(name: &str) -> PathBuf {
    let path = sspa_clip::paths::clip_dir().join(name);
    assert!(
        path.is_file(),
        "`{}` not found: run scripts/install-encoders (or set SSPA_CLIP_DIR / SSPA_ENCODERS_DIR)",
        path.display()
    );
    path
}

/// `scale · sin(step · i + phase)` over the flat index, as `pattern()` in
/// scripts/reference/make_clip_fixtures.py.
pub fn pattern<const D: usize>(spec: &serde_json::Value, device: &Device) -> Tensor<D> {
    let shape: Vec<usize> = spec["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let (scale, step, phase) =
        (spec["scale"].as_f64().unwrap(), spec["step"].as_f64().unwrap(), spec["phase"].as_f64().unwrap());
    let count: usize = shape.iter().product();
    let values: Vec<f32> = (0..count).map(|i| (scale * (step * i as f64 + phase).sin()) as f32).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

pub fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}
