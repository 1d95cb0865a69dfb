//! The encoders on libtorch (burn-tch, CPU) against the PyTorch references: the same parity
//! fixtures as on the pure-Rust backend. Built only with `--features tch`.
#![cfg(feature = "tch")]
#![allow(clippy::unwrap_used, deprecated)] // burn-tch is deprecated upstream; it is the libtorch path.

use crate::common;

use burn::prelude::*;
use sspa_encoders::{EfficientNetLite0, ImagePreprocess, MiniLm, paths};

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

#[test]
fn minilm_on_libtorch_matches_sentence_transformers() {
    let Some(dir) = common::installed(paths::minilm_dir(), "model.safetensors") else { return };
    let model = MiniLm::load(&dir, &Device::libtorch()).unwrap();
    let fixture = common::fixture_json("minilm.json");
    let sentences: Vec<&str> = fixture["sentences"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    let embeddings = values(model.encode(&sentences).unwrap());
    let mut worst = 0.0_f32;
    for (row, expected) in fixture["embeddings"].as_array().unwrap().iter().enumerate() {
        worst = worst.max(common::max_abs_diff(&embeddings[row * 384..(row + 1) * 384], &common::floats(expected)));
    }
    eprintln!("MiniLM on libtorch: max abs diff vs sentence-transformers {worst:e}");
    assert!(worst <= 1e-4, "max abs diff {worst}");
}

#[test]
fn efficientnet_on_libtorch_matches_the_torch_reference() {
    let Some(dir) = common::installed(paths::efficientnet_dir(), "model.safetensors") else { return };
    let device = Device::libtorch();
    let model = EfficientNetLite0::load(&dir, &device).unwrap();
    let fixture = common::fixture_json("efficientnet_lite0.json");
    let names = ["kafka", "chelsea"];
    let images = common::fixture_photos(&fixture, &names);
    let batch = ImagePreprocess::default().batch_exact(&images, &device).unwrap();
    let global = values(model.forward(batch).global);
    let mut worst = 0.0_f32;
    for (index, name) in names.iter().enumerate() {
        let expected = common::floats(&fixture["images"][name]["global"]);
        worst = worst.max(common::max_abs_diff(&global[index * 1280..(index + 1) * 1280], &expected));
    }
    eprintln!("EfficientNet-Lite0 on libtorch: global max abs diff vs torch {worst:e}");
    assert!(worst <= 1e-4, "max abs diff {worst}");
}
