//! Parity of the ModifiedResNet tower with OpenCLIP's reference on a tiny seeded model
//! (`scripts/reference/make_clip_resnet_fixtures.py`), and the loader's error reporting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::TensorData;
use safetensors::SafeTensors;
use safetensors::tensor::TensorView;
use sspa_clip::resnet::{self, ModifiedResNetConfig, ResnetError};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resnet")
}

fn fixture() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("tiny_rn.json")).expect("read tiny_rn.json");
    serde_json::from_str(&text).expect("parse tiny_rn.json")
}

fn floats(value: &serde_json::Value) -> Vec<f32> {
    value.as_array().expect("array").iter().map(|v| v.as_f64().expect("number") as f32).collect()
}

fn usize_of(value: &serde_json::Value) -> usize {
    value.as_u64().expect("integer") as usize
}

/// The script's input formula, in f64 then cast to f32 as numpy does.
fn formula_input(batch: usize, height: usize, width: usize, device: &Device) -> Tensor<4> {
    let mut values = Vec::with_capacity(batch * 3 * height * width);
    for b in 0..batch {
        for c in 0..3 {
            for h in 0..height {
                for w in 0..width {
                    let (b, c, h, w) = (b as f64, c as f64, h as f64, w as f64);
                    let value = (0.37 * h + 0.23 * w + 1.3 * c + 2.1 * b).sin()
                        + 0.5 * (0.013 * h * w + 0.7 * c - 0.4 * b).cos();
                    values.push(value as f32);
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(values, [batch, 3, height, width]), device)
}

fn fixture_config(json: &serde_json::Value) -> ModifiedResNetConfig {
    let config = &json["config"];
    let layers: Vec<usize> = config["layers"].as_array().expect("layers").iter().map(usize_of).collect();
    ModifiedResNetConfig::new([layers[0], layers[1], layers[2], layers[3]])
        .with_width(usize_of(&config["width"]))
        .with_heads(usize_of(&config["heads"]))
        .with_output_dim(usize_of(&config["output_dim"]))
        .with_image_size(usize_of(&config["image_size"]))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn shapes(path: &Path) -> BTreeMap<String, Vec<usize>> {
    let bytes = std::fs::read(path).expect("read safetensors");
    let parsed = SafeTensors::deserialize(&bytes).expect("parse safetensors");
    parsed.tensors().into_iter().map(|(name, view)| (name, view.shape().to_vec())).collect()
}

#[test]
fn tiny_modified_resnet_matches_open_clip_at_two_input_sizes() {
    let device = Device::flex();
    let json = fixture();
    let config = fixture_config(&json);
    let model = resnet::load_file(&fixtures().join("tiny_rn.safetensors"), "visual.", &config, &device)
        .expect("load the tiny model");
    assert_eq!(model.output_dim(), 16);
    for case in json["cases"].as_array().expect("cases") {
        let (batch, height, width) = (usize_of(&case["batch"]), usize_of(&case["height"]), usize_of(&case["width"]));
        let grid: Vec<usize> = case["feature_map"].as_array().expect("feature_map").iter().map(usize_of).collect();
        let features = model.forward(formula_input(batch, height, width, &device));
        assert_eq!(features.global.dims(), [batch, config.output_dim]);
        assert_eq!(features.patches.dims(), [batch, grid[0] * grid[1], config.output_dim]);
        let global = features.global.into_data().try_to_vec::<f32>().expect("f32");
        let patches = features.patches.into_data().try_to_vec::<f32>().expect("f32");
        let global_diff = max_abs_diff(&global, &floats(&case["global"]));
        let patch_diff = max_abs_diff(&patches, &floats(&case["patches"]));
        eprintln!("{height}x{width}: max |Δ| global {global_diff:.2e}, patches {patch_diff:.2e}");
        assert!(global_diff <= 1e-4, "{height}x{width}: global differs by {global_diff}");
        assert!(patch_diff <= 1e-4, "{height}x{width}: patches differ by {patch_diff}");
    }
}

#[test]
fn configuration_is_inferred_from_checkpoint_shapes() {
    let json = fixture();
    let inferred = ModifiedResNetConfig::infer(&shapes(&fixtures().join("tiny_rn.safetensors")), "visual.")
        .expect("infer the tiny model");
    // The head count is not in a checkpoint: OpenAI's `32 · width / 64` convention gives 1 here.
    assert_eq!(inferred, fixture_config(&json).with_heads(1));

    let mut rn101 = BTreeMap::new();
    rn101.insert("visual.layer1.0.conv1.weight".to_string(), vec![64, 64, 1, 1]);
    for (stage, blocks) in [(1, 3), (2, 4), (3, 23), (4, 3)] {
        rn101.insert(format!("visual.layer{stage}.{}.conv3.weight", blocks - 1), vec![1]);
    }
    rn101.insert("visual.attnpool.c_proj.weight".into(), vec![512, 2048]);
    rn101.insert("visual.attnpool.positional_embedding".into(), vec![50, 2048]);
    assert_eq!(ModifiedResNetConfig::infer(&rn101, "visual.").expect("infer RN101"), ModifiedResNetConfig::rn101());

    rn101.insert("visual.attnpool.positional_embedding".into(), vec![48, 2048]);
    let error = ModifiedResNetConfig::infer(&rn101, "visual.").expect_err("48 tokens are no grid");
    assert!(error.to_string().contains("48 tokens"), "{error}");
    let error = ModifiedResNetConfig::infer(&rn101, "model.visual.").expect_err("wrong prefix");
    assert!(error.to_string().contains("`model.visual.layer1.0.conv1.weight`"), "{error}");
}

#[test]
fn wrong_and_missing_tensors_are_all_reported_in_one_error() {
    let device = Device::flex();
    let bytes = std::fs::read(fixtures().join("tiny_rn.safetensors")).expect("read");
    let parsed = SafeTensors::deserialize(&bytes).expect("parse");
    let wrong_shape = vec![0_u8; 4 * 16 * 32];
    let extra = vec![0_u8; 4 * 3];
    let mut tensors: Vec<(String, TensorView<'_>)> = parsed
        .tensors()
        .into_iter()
        .filter(|(name, _)| name != "visual.layer2.0.bn2.running_var" && name != "visual.attnpool.k_proj.bias")
        .map(|(name, view)| {
            if name == "visual.attnpool.c_proj.weight" {
                let view = TensorView::new(safetensors::Dtype::F32, vec![16, 32], &wrong_shape).expect("view");
                (name, view)
            } else {
                (name, view)
            }
        })
        .collect();
    tensors.push(("visual.proj".to_string(), TensorView::new(safetensors::Dtype::F32, vec![3], &extra).expect("view")));
    let broken = safetensors::serialize(tensors, None).expect("serialize");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("broken.safetensors");
    std::fs::write(&path, broken).expect("write");

    let config = fixture_config(&fixture());
    let error = resnet::load_file(&path, "visual.", &config, &device).expect_err("broken checkpoint");
    assert!(matches!(error, ResnetError::Weights(_)), "{error:?}");
    let message = error.to_string();
    for expected in [
        "(4 problems)",
        "missing `visual.layer2.0.bn2.running_var` (expected shape `[4]`)",
        "missing `visual.attnpool.k_proj.bias` (expected shape `[64]`)",
        "`visual.attnpool.c_proj.weight` has shape `[16, 32]`, expected `[16, 64]`",
        "unexpected `visual.proj` (shape `[3]`)",
    ] {
        assert!(message.contains(expected), "`{expected}` not in:\n{message}");
    }
}

#[test]
fn any_input_size_gives_one_patch_per_feature_map_cell() {
    let device = Device::flex();
    let config =
        ModifiedResNetConfig::new([1, 1, 1, 1]).with_width(2).with_heads(2).with_output_dim(8).with_image_size(64);
    let model = config.init(&device).expect("init");
    // 70 → conv 35 → pool 17 → 8 → 4 → 2; 50 → 25 → 12 → 6 → 3 → 1.
    let features = model.forward(Tensor::random([2, 3, 70, 50], burn::tensor::Distribution::Default, &device));
    assert_eq!(features.global.dims(), [2, 8]);
    assert_eq!(features.patches.dims(), [2, 2, 8]);
    let values = features.global.into_data().try_to_vec::<f32>().expect("f32");
    assert!(values.iter().all(|v| v.is_finite()));
}

#[test]
fn invalid_configurations_are_rejected_with_every_reason() {
    let device = Device::flex();
    let error = ModifiedResNetConfig::new([1, 0, 1, 1]).with_width(3).with_heads(5).init(&device).expect_err("invalid");
    let message = error.to_string();
    assert!(message.contains("width `3`"), "{message}");
    assert!(message.contains("every stage needs a block"), "{message}");
    assert!(message.contains("heads `5`"), "{message}");
    assert_eq!(ModifiedResNetConfig::rn50().validate().ok(), Some(()));
    assert_eq!(ModifiedResNetConfig::rn50().embed_dim(), 2048);
}
