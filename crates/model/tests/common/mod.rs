//! Helpers shared by the integration tests: fixtures made by `scripts/reference/*.py`, a tiny
//! batch, and the gradient check.
#![allow(dead_code)]

use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::nn::Linear;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::Distribution;
use serde_json::Value;
use sspa_norm::LayerNorm;

/// A fixture of `tests/fixtures`, parsed.
pub fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    let text = std::fs::read_to_string(&path).expect("fixture exists");
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// A nested JSON array as (flat values, shape).
pub fn flatten(value: &Value) -> (Vec<f32>, Vec<usize>) {
    match value {
        Value::Array(items) => {
            let mut flat = Vec::new();
            let mut inner = Vec::new();
            for item in items {
                let (values, shape) = flatten(item);
                flat.extend(values);
                inner = shape;
            }
            let mut shape = vec![items.len()];
            shape.extend(inner);
            (flat, shape)
        }
        Value::Number(number) => (vec![number.as_f64().expect("a number") as f32], vec![]),
        other => panic!("not a numeric array: {other}"),
    }
}

/// A JSON array as a tensor of rank `D`.
pub fn tensor<const D: usize>(value: &Value, device: &Device) -> Tensor<D> {
    let (values, shape) = flatten(value);
    let shape: [usize; D] = shape.try_into().expect("rank matches");
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// A JSON number.
pub fn scalar(value: &Value) -> f64 {
    value.as_f64().expect("a number")
}

/// A tensor's f32 values.
pub fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().try_to_vec::<f32>().expect("f32 data")
}

/// `|a − b| ≤ tolerance · max(1, |b|)` element-wise; returns the largest `|a − b|`.
#[track_caller]
pub fn assert_matches<const D: usize>(actual: Tensor<D>, expected: &Value, tolerance: f32) -> f32 {
    let (expected, shape) = flatten(expected);
    assert_eq!(actual.dims().to_vec(), shape, "shape");
    let mut largest = 0.0_f32;
    for (index, (a, b)) in values(actual).iter().zip(&expected).enumerate() {
        assert!((a - b).abs() <= tolerance * b.abs().max(1.0), "element {index}: {a} vs reference {b}");
        largest = largest.max((a - b).abs());
    }
    largest
}

/// Sets a linear layer's weight (burn layout `[in, out]`) and bias.
pub fn set_linear(linear: &mut Linear, params: &Value, device: &Device) {
    linear.weight = Param::from_tensor(tensor(&params["weight"], device));
    linear.bias = Some(Param::from_tensor(tensor(&params["bias"], device)));
}

/// Sets a LayerNorm's `γ` and `β`.
pub fn set_layer_norm(norm: &mut LayerNorm, gamma: &Value, beta: &Value, device: &Device) {
    norm.gamma = Param::from_tensor(tensor(gamma, device));
    norm.beta = Some(Param::from_tensor(tensor(beta, device)));
}

/// A tiny batch of SSPA head inputs and targets (`B = 8`, `C = 4`, `N = 9`, `d = 16`).
pub struct Batch {
    pub knowledge: Tensor<2>,
    pub context: Tensor<2>,
    pub global: Tensor<2>,
    pub patches: Tensor<3>,
    pub targets: Tensor<2>,
}

/// Fixed random features and targets where every class has positives and negatives, and one
/// target is ignored.
pub fn tiny_batch(device: &Device) -> (Batch, Vec<f32>) {
    let (b, c, n, d) = (8, 4, 9, 16);
    let normal = Distribution::Normal(0.0, 1.0);
    let mut targets: Vec<f32> = (0..b * c).map(|i| ((i * 7 + i / 3) % 3 == 0) as u8 as f32).collect();
    for class in 0..c {
        targets[class] = 1.0; // image 0 is positive for everything
        targets[c + class] = 0.0; // image 1 is negative for everything
    }
    targets[2 * c + 1] = -1.0;
    let batch = Batch {
        knowledge: Tensor::random([c, d], normal, device),
        context: Tensor::random([c, d], normal, device),
        global: Tensor::random([b, d], normal, device),
        patches: Tensor::random([b, n, d], normal, device),
        targets: Tensor::from_data(TensorData::new(targets.clone(), [b, c]), device),
    };
    (batch, targets)
}

/// mAP as a fraction, by the metrics crate (targets as floats `1`, `0`, `−1`).
pub fn mean_average_precision(scores: &[f32], targets: &[f32], classes: usize) -> f64 {
    let targets: Vec<i8> = targets.iter().map(|&t| t as i8).collect();
    sspa_metrics::mean_average_precision(scores, &targets, classes).expect("positives") / 100.0
}

/// Every float parameter of `module` has a gradient in `grads`, and a non-zero one; there are more
/// than `at_least` of them.
#[track_caller]
pub fn assert_every_parameter_learns<M: Module>(module: &M, grads: &GradientsParams, at_least: usize) {
    struct Check<'a> {
        grads: &'a GradientsParams,
        missing: Vec<ParamId>,
        zero: Vec<ParamId>,
        count: usize,
    }
    impl ModuleVisitor for Check<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.count += 1;
            match self.grads.get::<D>(param.id) {
                None => self.missing.push(param.id),
                Some(grad) => {
                    if values(grad.abs().max())[0] == 0.0 {
                        self.zero.push(param.id);
                    }
                }
            }
        }
    }
    let mut check = Check { grads, missing: Vec::new(), zero: Vec::new(), count: 0 };
    module.visit(&mut check);
    assert!(check.count > at_least, "{} parameters", check.count);
    assert!(check.missing.is_empty(), "{} of {} parameters have no gradient", check.missing.len(), check.count);
    assert!(check.zero.is_empty(), "{} of {} parameters have a zero gradient", check.zero.len(), check.count);
}
