//! Wrong, truncated, foreign and mis-shaped weight files give one clear error, never a panic.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::{Path, PathBuf};

use burn::prelude::*;
use safetensors::SafeTensors;
use safetensors::tensor::TensorView;
use sspa_clip::load::{load_openai_file, tensor_shapes};
use sspa_clip::{Clip, ClipConfig, ClipError};
use sspa_encoders::EncoderError;
use sspa_encoders::weights::WeightProblem;

fn openai_fixture() -> PathBuf {
    common::fixtures().join("clip_tiny_openai.safetensors")
}

fn tiny_config() -> ClipConfig {
    let buffer = std::fs::read(openai_fixture()).unwrap();
    ClipConfig::infer_openai(&tensor_shapes(&buffer, &openai_fixture()).unwrap()).unwrap().with_heads(2, 2)
}

/// Rewrites `source` without `drop`, with `reshape` given a new (same-size) shape, plus `extra`.
fn rewrite(source: &Path, target: &Path, drop: &str, reshape: (&str, Vec<usize>), extra: (&str, Vec<usize>)) {
    let bytes = std::fs::read(source).unwrap();
    let parsed = SafeTensors::deserialize(&bytes).unwrap();
    let extra_bytes = vec![0_u8; extra.1.iter().product::<usize>() * 4];
    let mut views: Vec<(String, TensorView<'_>)> = parsed
        .iter()
        .filter(|(name, _)| *name != drop)
        .map(|(name, view)| {
            let shape = if name == reshape.0 { reshape.1.clone() } else { view.shape().to_vec() };
            (name.to_string(), TensorView::new(view.dtype(), shape, view.data()).unwrap())
        })
        .collect();
    views.push((extra.0.to_string(), TensorView::new(safetensors::Dtype::F32, extra.1.clone(), &extra_bytes).unwrap()));
    std::fs::write(target, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn problems(error: ClipError) -> Vec<WeightProblem> {
    match error {
        ClipError::Weights(EncoderError::Weights { problems, .. }) => problems,
        other => panic!("expected a weights error, got {other}"),
    }
}

#[test]
fn openai_file_problems_are_listed_together() {
    common::installed("bpe_simple_vocab_16e6.txt.gz");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.safetensors");
    // visual.proj [24, 16] stored as [16, 24]; ln_1 bias of block 0 missing; an unknown tensor.
    rewrite(
        &openai_fixture(),
        &path,
        "transformer.resblocks.0.ln_1.bias",
        ("visual.proj", vec![16, 24]),
        ("transformer.resblocks.5.attn.in_proj_weight", vec![48, 16]),
    );
    let error = load_openai_file(&path, Some(tiny_config()), &Device::flex()).unwrap_err();
    let message = error.to_string();
    let problems = problems(error);
    assert_eq!(problems.len(), 3, "{message}");
    assert!(
        problems
            .contains(&WeightProblem::Missing { key: "transformer.resblocks.0.ln_1.bias".into(), expected: vec![16] })
    );
    assert!(problems.contains(&WeightProblem::Shape {
        key: "visual.proj".into(),
        found: vec![16, 24],
        expected: vec![24, 16]
    }));
    assert!(problems.contains(&WeightProblem::Unexpected {
        key: "transformer.resblocks.5.attn.in_proj_weight".into(),
        shape: vec![48, 16]
    }));
    assert!(message.contains("`visual.proj`"), "{message}");
}

#[test]
fn hf_directory_problems_are_listed_together() {
    common::installed("bpe_simple_vocab_16e6.txt.gz");
    let dir = tempfile::tempdir().unwrap();
    let source = common::fixtures().join("clip_tiny_hf");
    std::fs::copy(source.join("config.json"), dir.path().join("config.json")).unwrap();
    rewrite(
        &source.join("model.safetensors"),
        &dir.path().join("model.safetensors"),
        "vision_model.encoder.layers.1.self_attn.k_proj.bias",
        ("text_projection.weight", vec![8, 32]),
        ("vision_model.encoder.layers.2.mlp.fc1.weight", vec![48, 24]),
    );
    let problems = problems(Clip::load(dir.path(), &Device::flex()).unwrap_err());
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems.iter().any(
            |p| matches!(p, WeightProblem::Missing { key, .. } if key.ends_with("layers.1.self_attn.k_proj.bias"))
        )
    );
    assert!(problems.iter().any(|p| matches!(p, WeightProblem::Shape { key, .. } if key == "text_projection.weight")));
}

#[test]
fn truncated_foreign_and_absent_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(openai_fixture()).unwrap();
    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    let error = Clip::load(&truncated, &Device::flex()).unwrap_err();
    assert!(matches!(error, ClipError::Weights(EncoderError::Checkpoint { .. })), "{error}");

    let foreign = common::fixtures().join("clip_tiny.json");
    let error = Clip::load(&foreign, &Device::flex()).unwrap_err();
    assert!(matches!(error, ClipError::Weights(EncoderError::Checkpoint { .. })), "{error}");
    assert!(error.to_string().contains("clip_tiny.json"), "{error}");

    let error = Clip::load(&dir.path().join("absent.safetensors"), &Device::flex()).unwrap_err();
    assert!(matches!(error, ClipError::Weights(EncoderError::Io { .. })), "{error}");

    // A directory without config.json.
    let error = Clip::load(dir.path(), &Device::flex()).unwrap_err();
    assert!(matches!(error, ClipError::Io { .. }), "{error}");
}

#[test]
fn a_state_dict_without_clip_keys_cannot_be_inferred() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.safetensors");
    let data = vec![0_u8; 16];
    let views =
        vec![("encoder.weight".to_string(), TensorView::new(safetensors::Dtype::F32, vec![2, 2], &data).unwrap())];
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    let error = Clip::load(&path, &Device::flex()).unwrap_err();
    assert!(matches!(&error, ClipError::Config { reason, .. } if reason.contains("text_projection")), "{error}");
}

#[test]
fn unsupported_hf_configurations_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let source = common::fixtures().join("clip_tiny_hf/config.json");
    let text = std::fs::read_to_string(source).unwrap().replacen("\"quick_gelu\"", "\"relu\"", 1);
    std::fs::write(dir.path().join("config.json"), text).unwrap();
    let error = Clip::load(dir.path(), &Device::flex()).unwrap_err();
    assert!(error.to_string().contains("`relu`"), "{error}");
    let text = r#"{"model_type": "siglip", "text_config": {}, "vision_config": {}}"#;
    std::fs::write(dir.path().join("config.json"), text).unwrap();
    let error = Clip::load(dir.path(), &Device::flex()).unwrap_err();
    assert!(error.to_string().contains("siglip"), "{error}");
}
