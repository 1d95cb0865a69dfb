//! The libtorch backend (burn-tch) against the pure-Rust `flex` backend: the same trained weights
//! give the same scores and gradients, for the head and for a trained image encoder.
//! Built only with `--features tch` (CI: `scripts/test` builds it against PyPI's torch 2.9.0 and
//! runs it on libtorch's CPU device). `SSPA_TEST_TORCH_DEVICE=cuda:0` runs the same checks on a
//! GPU; `SSPA_TEST_BF16=1` adds the bf16 check, which configures that device's float type for the
//! whole process (run it alone: `… libtorch bf16`).
#![cfg(feature = "tch")]
#![allow(deprecated)] // burn-tch is deprecated upstream; it is this project's libtorch/CUDA path.

use burn::prelude::*;
use sspa_clip::VisionTransformerConfig;
use sspa_config::{AblationSection, ModelSection};
use sspa_model::SspaHeadConfig;
use sspa_train::{BackboneSpec, ModelConfig, SspaModel, save_weights};

/// The libtorch device under test: `SSPA_TEST_TORCH_DEVICE` (`libtorch` = CPU, or `cuda:N`).
fn test_device() -> Device {
    match std::env::var("SSPA_TEST_TORCH_DEVICE").as_deref() {
        Ok(cuda) if cuda.starts_with("cuda:") => Device::libtorch_cuda(cuda[5..].parse::<usize>().expect("cuda:N")),
        Ok("libtorch") | Err(_) => Device::libtorch(),
        Ok(other) => panic!("SSPA_TEST_TORCH_DEVICE=`{other}`: expected `libtorch` or `cuda:N`"),
    }
}

fn largest(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max)
}

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().convert::<f32>().to_vec::<f32>().expect("f32 values")
}

fn deterministic(shape: &[usize], salt: u32) -> Vec<f32> {
    let n: usize = shape.iter().product();
    (0..n).map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(salt) % 2001) as f32 / 1000.0 - 1.0).collect()
}

#[test]
fn libtorch_cpu_scores_and_gradients_match_flex() {
    let config = model_config(None, 20, 9);
    let dir = tempfile::tempdir().expect("temp dir");
    let weights = dir.path().join("model.safetensors");
    save_weights(&config.init(3, &Device::flex()).expect("init"), &weights).expect("save");

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
        let projection = &model
            .head
            .as_sspa()
            .expect("an SSPA head")
            .image_projection
            .as_ref()
            .expect("image projection")
            .linear
            .weight;
        let gradient = projection.grad(&grads).expect("projection gradient");
        (values(output.scores), values(gradient))
    };
    let (flex_scores, flex_grad) = run(&Device::flex());
    let (torch_scores, torch_grad) = run(&test_device());
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

/// A model with a tiny CLIP ViT as its trained image encoder (16 px inputs at a 32 px training
/// grid, so the positional table is resampled on the way), saved once.
fn fine_tune_config() -> ModelConfig {
    let spec = BackboneSpec::ClipVit { config: VisionTransformerConfig::new(32, 8, 16, 2, 2, 32, 12) };
    let (width, patches) = (spec.width(), spec.patches_per_image(24));
    model_config(Some(spec), width, patches)
}

/// d = 16, C = 5, d_t = 12, M = 2 prompt tokens of width 6; image features of width `image_width`.
fn model_config(backbone: Option<BackboneSpec>, image_width: usize, patches_per_image: usize) -> ModelConfig {
    let model = ModelSection {
        embed_dim: 16,
        prompt_tokens: 2,
        freeze_image_encoder: backbone.is_none(),
        ..ModelSection::default()
    };
    let ablation = AblationSection::default();
    ModelConfig {
        format_version: sspa_train::model::FORMAT_VERSION,
        head: sspa_model::HeadConfig::Sspa(
            SspaHeadConfig::from_sections(&model, &ablation, Some(12), image_width, 4).expect("head"),
        ),
        model,
        ablation,
        train: Default::default(),
        labels: (0..5).map(|c| format!("class-{c}")).collect(),
        text_width: 12,
        prompt_tokens: 2,
        prompt_width: 6,
        patches_per_image,
        backbone,
    }
}

/// Loss of the fine-tuning forward pass on `device` and the gradient of the encoder's patch
/// embedding and positional table.
fn fine_tune_pass(config: &ModelConfig, weights: &std::path::Path, device: &Device) -> (f32, Vec<f32>, Vec<f32>) {
    let device = device.clone().autodiff();
    let model: SspaModel = config.load_model(weights, &device).expect("load");
    let text = |salt| Tensor::<2>::from_data(TensorData::new(deterministic(&[5, 12], salt), [5, 12]), &device);
    let images = Tensor::<4>::from_data(TensorData::new(deterministic(&[2, 3, 24, 24], 5), [2, 3, 24, 24]), &device);
    let backbone = model.backbone.as_ref().expect("backbone");
    let features = backbone.forward(images);
    let output = model.head.forward(text(1), text(2), features.global, features.patches);
    let targets = Tensor::<2>::from_data(
        TensorData::new((0..10).map(|i| f32::from(u8::from(i % 3 == 0))).collect::<Vec<_>>(), [2, 5]),
        &device,
    );
    let loss = sspa_model::SspaLoss::from_section(&Default::default()).forward(&output, targets);
    let value = values(loss.clone().reshape([1]))[0];
    let grads = loss.backward();
    let sspa_train::Backbone::ClipVit(tower) = backbone else { panic!("a ViT") };
    let conv = values(tower.conv1.weight.grad(&grads).expect("patch-embedding gradient"));
    let positions = values(tower.positional_embedding.grad(&grads).expect("positional gradient"));
    (value, conv, positions)
}

#[test]
fn trained_image_encoder_gradients_match_flex() {
    let config = fine_tune_config();
    let dir = tempfile::tempdir().expect("temp dir");
    let weights = dir.path().join("model.safetensors");
    save_weights(&config.init(7, &Device::flex()).expect("init"), &weights).expect("save");
    let (flex_loss, flex_conv, flex_positions) = fine_tune_pass(&config, &weights, &Device::flex());
    let (loss, conv, positions) = fine_tune_pass(&config, &weights, &test_device());
    assert!(flex_loss.is_finite() && flex_loss > 0.0, "loss {flex_loss}");
    assert!((loss - flex_loss).abs() < 1e-4 * flex_loss.max(1.0), "loss {loss} vs flex {flex_loss}");
    for (name, a, b) in [("conv1", &flex_conv, &conv), ("positional_embedding", &flex_positions, &positions)] {
        let scale = a.iter().map(|g| g.abs()).fold(0.0f32, f32::max);
        assert!(scale > 1e-8, "{name} receives a gradient");
        assert!(largest(a, b) < 1e-3 * scale, "{name} gradients differ by {} (scale {scale})", largest(a, b));
    }
}

#[test]
fn bf16_fine_tuning_pass_stays_close_to_f32() {
    if std::env::var("SSPA_TEST_BF16").as_deref() != Ok("1") {
        eprintln!("SSPA_TEST_BF16 is not 1: skipped (it configures the device for the whole process)");
        return;
    }
    let config = fine_tune_config();
    let dir = tempfile::tempdir().expect("temp dir");
    let weights = dir.path().join("model.safetensors");
    save_weights(&config.init(7, &Device::flex()).expect("init"), &weights).expect("save");
    let (reference, reference_conv, _) = fine_tune_pass(&config, &weights, &Device::flex());
    let mut device = test_device();
    device.configure(burn::tensor::FloatDType::BF16).expect("bf16 on the device under test");
    let (loss, conv, _) = fine_tune_pass(&config, &weights, &device);
    assert!((loss - reference).abs() < 0.03 * reference, "bf16 loss {loss} vs f32 {reference}");
    // Relative L2 error of the patch-embedding gradient (bf16 keeps ~3 significant digits per
    // value; through two transformer blocks the error compounds).
    let norm = |values: &[f32]| values.iter().map(|v| v * v).sum::<f32>().sqrt();
    let difference: Vec<f32> = reference_conv.iter().zip(&conv).map(|(a, b)| a - b).collect();
    let relative = norm(&difference) / norm(&reference_conv);
    eprintln!("bf16 vs f32: loss {loss} vs {reference}, patch-embedding gradient relative L2 error {relative}");
    assert!(relative < 0.05, "bf16 gradient relative L2 error {relative}");
}
