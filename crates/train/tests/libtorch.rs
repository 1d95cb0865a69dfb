//! The libtorch backend (burn-tch, CPU) against the pure-Rust `flex` backend: the same trained
//! weights give the same scores and gradients, and a head trains on libtorch as it does on flex.
//! Built only with `--features tch` (CI: `scripts/test` builds it against PyPI's torch 2.9.0).
#![cfg(feature = "tch")]
#![allow(deprecated)] // burn-tch is deprecated upstream; it is this project's libtorch/CUDA path.

use burn::prelude::*;
use sspa_config::{AblationSection, ModelSection};
use sspa_model::SspaHeadConfig;
use sspa_train::{ModelConfig, SspaModel, save_weights};

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().convert::<f32>().to_vec::<f32>().expect("f32 values")
}

fn deterministic(shape: &[usize], salt: u32) -> Vec<f32> {
    let n: usize = shape.iter().product();
    (0..n).map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(salt) % 2001) as f32 / 1000.0 - 1.0).collect()
}

#[test]
fn libtorch_cpu_scores_and_gradients_match_flex() {
    let model = ModelSection { embed_dim: 16, prompt_tokens: 2, ..ModelSection::default() };
    let ablation = AblationSection::default();
    let config = ModelConfig {
        format_version: sspa_train::model::FORMAT_VERSION,
        head: SspaHeadConfig::from_sections(&model, &ablation, Some(12), 20).expect("head"),
        model,
        ablation,
        train: Default::default(),
        labels: (0..5).map(|c| format!("class-{c}")).collect(),
        text_width: 12,
        prompt_tokens: 2,
        prompt_width: 6,
        patches_per_image: 9,
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let weights = dir.path().join("model.safetensors");
    save_weights(&config.init(3, &Device::flex()), &weights).expect("save");

    let run = |device: &Device| -> (Vec<f32>, Vec<f32>) {
        let device = device.clone().autodiff();
        let model: SspaModel = config.load_model(&weights, &device).expect("load");
        let tensor = |shape: [usize; 2], salt| {
            Tensor::<2>::from_data(TensorData::new(deterministic(&shape, salt), shape), &device)
        };
        let knowledge = tensor([5, 12], 1);
        let context = tensor([5, 12], 2);
        let global = tensor([3, 20], 3);
        let patches = Tensor::<3>::from_data(TensorData::new(deterministic(&[3, 9, 20], 4), [3, 9, 20]), &device);
        let output = model.head.forward(knowledge, context, global, patches);
        let loss = output.scores.clone().sum();
        let grads = loss.backward();
        let projection = &model.head.image_projection.as_ref().expect("image projection").linear.weight;
        let gradient = projection.grad(&grads).expect("projection gradient");
        (values(output.scores), values(gradient))
    };
    let (flex_scores, flex_grad) = run(&Device::flex());
    let (torch_scores, torch_grad) = run(&Device::libtorch());
    let largest = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert_eq!(flex_scores.len(), 15);
    assert!(largest(&flex_scores, &torch_scores) < 1e-5, "scores differ by {}", largest(&flex_scores, &torch_scores));
    let scale = flex_grad.iter().map(|g| g.abs()).fold(0.0f32, f32::max).max(1e-6);
    assert!(scale > 1e-6, "the projection receives a gradient");
    assert!(
        largest(&flex_grad, &torch_grad) < 1e-4 * scale.max(1.0),
        "gradients differ by {} (scale {scale})",
        largest(&flex_grad, &torch_grad)
    );
}
