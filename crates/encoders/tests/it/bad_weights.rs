//! Wrong, truncated and mis-shaped weight files give one clear error, never a panic.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use burn::prelude::*;
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use sspa_encoders::weights::WeightProblem;
use sspa_encoders::{BertConfig, EfficientNetLite0Config, EncoderError};

fn tiny() -> BertConfig {
    BertConfig::new(10, 8, 1, 2, 12, 6, 2)
}

/// The key → shape inventory of [`tiny`], in HF naming.
fn tiny_keys() -> Vec<(String, Vec<usize>)> {
    let mut keys = vec![
        ("embeddings.word_embeddings.weight".to_string(), vec![10, 8]),
        ("embeddings.position_embeddings.weight".into(), vec![6, 8]),
        ("embeddings.token_type_embeddings.weight".into(), vec![2, 8]),
        ("embeddings.LayerNorm.weight".into(), vec![8]),
        ("embeddings.LayerNorm.bias".into(), vec![8]),
    ];
    let layer = "encoder.layer.0";
    for name in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"] {
        keys.push((format!("{layer}.{name}.weight"), vec![8, 8]));
        keys.push((format!("{layer}.{name}.bias"), vec![8]));
    }
    for name in ["attention.output.LayerNorm", "output.LayerNorm"] {
        keys.push((format!("{layer}.{name}.weight"), vec![8]));
        keys.push((format!("{layer}.{name}.bias"), vec![8]));
    }
    keys.push((format!("{layer}.intermediate.dense.weight"), vec![12, 8]));
    keys.push((format!("{layer}.intermediate.dense.bias"), vec![12]));
    keys.push((format!("{layer}.output.dense.weight"), vec![8, 12]));
    keys.push((format!("{layer}.output.dense.bias"), vec![8]));
    keys
}

fn write(path: &Path, keys: &[(String, Vec<usize>)]) {
    let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = keys
        .iter()
        .map(|(key, shape)| {
            let count: usize = shape.iter().product();
            let bytes = (0..count).flat_map(|i| (i as f32 * 0.01).to_le_bytes()).collect();
            (key.clone(), shape.clone(), bytes)
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = buffers
        .iter()
        .map(|(key, shape, bytes)| (key.clone(), TensorView::new(Dtype::F32, shape.clone(), bytes).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn problems(error: EncoderError) -> Vec<WeightProblem> {
    match error {
        EncoderError::Weights { problems, .. } => problems,
        other => panic!("expected a weights error, got {other}"),
    }
}

#[test]
fn a_matching_file_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let mut keys = tiny_keys();
    keys.push(("pooler.dense.weight".into(), vec![8, 8])); // documented as ignored
    write(&path, &keys);
    let bert = tiny().load(&path, &Device::flex()).unwrap();
    // PyTorch [out, in] weights are transposed for burn's [in, out].
    assert_eq!(bert.layers[0].intermediate.weight.dims(), [8, 12]);
}

#[test]
fn wrong_shapes_missing_and_unexpected_keys_are_listed_together() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let mut keys = tiny_keys();
    keys.retain(|(key, _)| key != "encoder.layer.0.attention.self.key.bias");
    for (key, shape) in &mut keys {
        if key == "encoder.layer.0.intermediate.dense.weight" {
            *shape = vec![8, 12];
        }
    }
    keys.push(("encoder.layer.1.output.dense.weight".into(), vec![8, 12]));
    write(&path, &keys);
    let error = tiny().load(&path, &Device::flex()).unwrap_err();
    let message = error.to_string();
    let problems = problems(error);
    assert_eq!(problems.len(), 3, "{message}");
    assert!(problems.contains(&WeightProblem::Missing {
        key: "encoder.layer.0.attention.self.key.bias".into(),
        expected: vec![8]
    }));
    assert!(problems.contains(&WeightProblem::Shape {
        key: "encoder.layer.0.intermediate.dense.weight".into(),
        found: vec![8, 12],
        expected: vec![12, 8]
    }));
    assert!(problems.contains(&WeightProblem::Unexpected {
        key: "encoder.layer.1.output.dense.weight".into(),
        shape: vec![8, 12]
    }));
    assert!(message.contains("`encoder.layer.0.attention.self.key.bias`"), "{message}");
}

#[test]
fn wrong_dtype_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let keys = tiny_keys();
    let bytes: Vec<Vec<u8>> = keys.iter().map(|(_, shape)| vec![0_u8; shape.iter().product::<usize>() * 8]).collect();
    let views: Vec<(String, TensorView<'_>)> = keys
        .iter()
        .zip(&bytes)
        .map(|((key, shape), bytes)| (key.clone(), TensorView::new(Dtype::F64, shape.clone(), bytes).unwrap()))
        .collect();
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    let problems = problems(tiny().load(&path, &Device::flex()).unwrap_err());
    assert_eq!(problems.len(), keys.len());
    assert!(problems.iter().all(|p| matches!(p, WeightProblem::Dtype { found, .. } if found == "F64")));
}

#[test]
fn truncated_and_foreign_files_are_checkpoint_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    write(&path, &tiny_keys());
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let error = tiny().load(&path, &Device::flex()).unwrap_err();
    assert!(matches!(error, EncoderError::Checkpoint { .. }), "{error}");

    let png = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kafka_224.png");
    let error = EfficientNetLite0Config::new().load(&png, &Device::flex()).unwrap_err();
    assert!(matches!(error, EncoderError::Checkpoint { .. }), "{error}");

    let error = tiny().load(&dir.path().join("absent.safetensors"), &Device::flex()).unwrap_err();
    assert!(matches!(error, EncoderError::Io { .. }), "{error}");
}

#[test]
fn a_bert_file_is_not_an_efficientnet() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    write(&path, &tiny_keys());
    let problems = problems(EfficientNetLite0Config::new().load(&path, &Device::flex()).unwrap_err());
    let missing = problems.iter().filter(|p| matches!(p, WeightProblem::Missing { .. })).count();
    let unexpected = problems.iter().filter(|p| matches!(p, WeightProblem::Unexpected { .. })).count();
    // 5 BN-folded convolutions a block at most: every EfficientNet tensor is missing.
    assert!(missing > 200, "{missing} missing");
    assert_eq!(unexpected, tiny_keys().len());
}
