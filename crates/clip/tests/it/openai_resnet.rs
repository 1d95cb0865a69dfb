//! An OpenAI-layout state dict with a ModifiedResNet image tower loads as `Visual::ResNet`: the
//! ResNet keys of the resnet fixture plus the text keys of the tiny ViT fixture, in one file.
#![allow(clippy::unwrap_used)]

use crate::common;

use burn::prelude::*;
use safetensors::SafeTensors;
use safetensors::tensor::TensorView;
use sspa_clip::load::{load_openai_file, tensor_shapes};
use sspa_clip::{Clip, ClipConfig, VisionConfig, Visual, resnet};

#[test]
fn a_resnet_state_dict_loads_through_clip() {
    common::installed("bpe_simple_vocab_16e6.txt.gz");
    let resnet_path = common::fixtures().join("resnet/tiny_rn.safetensors");
    let resnet_bytes = std::fs::read(&resnet_path).unwrap();
    let text_bytes = std::fs::read(common::fixtures().join("clip_tiny_openai.safetensors")).unwrap();
    let resnet_tensors = SafeTensors::deserialize(&resnet_bytes).unwrap();
    let text_tensors = SafeTensors::deserialize(&text_bytes).unwrap();
    let mut views: Vec<(String, TensorView<'_>)> = Vec::new();
    for (name, view) in resnet_tensors.iter() {
        views.push((name.to_string(), TensorView::new(view.dtype(), view.shape().to_vec(), view.data()).unwrap()));
    }
    for (name, view) in text_tensors.iter().filter(|(name, _)| !name.starts_with("visual.")) {
        views.push((name.to_string(), TensorView::new(view.dtype(), view.shape().to_vec(), view.data()).unwrap()));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rn.safetensors");
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();

    let buffer = std::fs::read(&path).unwrap();
    let config = ClipConfig::infer_openai(&tensor_shapes(&buffer, &path).unwrap()).unwrap();
    let VisionConfig::ResNet(resnet_config) = config.vision.clone() else { panic!("a ResNet state dict") };
    let device = Device::flex();
    let clip = Clip::load(&path, &device).unwrap();
    assert!(matches!(clip.visual(), Visual::ResNet(_)));
    assert_eq!(clip.embed_dim(), 16);

    // Same image features as the ResNet loader alone.
    let reference = resnet::load_file(&resnet_path, "visual.", &resnet_config, &device).unwrap();
    let side = resnet_config.image_size;
    let images = Tensor::<4>::random([1, 3, side, side], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let got = clip.encode_image(images.clone());
    let expected = reference.forward(images);
    assert_eq!(got.global.dims(), [1, 16]);
    let diff = common::max_abs_diff(&common::values(got.patches), &common::values(expected.patches));
    assert!(diff < 1e-6, "patches differ by {diff}");

    // And the text tower still matches HF with the right head count.
    let clip = load_openai_file(&path, Some(config.with_heads(2, resnet_config.heads)), &device).unwrap();
    let fixture = common::fixture_json("clip_tiny.json");
    let rows = fixture["tokens"].as_array().unwrap();
    let ids: Vec<i64> = rows.iter().flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_i64().unwrap())).collect();
    let tokens = Tensor::<2, Int>::from_data(burn::tensor::TensorData::new(ids, [rows.len(), 77]), &device);
    let text = common::values(clip.text_tower().forward(tokens));
    assert!(common::max_abs_diff(&text, &common::floats(&fixture["text"])) < 1e-4);
}
