//! Parity of the text and ViT towers with HF `transformers.CLIPModel` on a tiny random model
//! (fixture from scripts/reference/make_clip_fixtures.py), through both loaders: the HF
//! directory and the same weights under OpenAI key names.
#![allow(clippy::unwrap_used)]

use crate::common;

use burn::prelude::*;
use burn::tensor::TensorData;
use sspa_clip::load::{load_openai_file, tensor_shapes};
use sspa_clip::{Clip, ClipConfig, ClipTokens, VisionConfig, Visual};

const TOLERANCE: f32 = 1e-4;

fn tokens(fixture: &serde_json::Value) -> ClipTokens {
    let rows = fixture["tokens"].as_array().unwrap();
    let ids: Vec<i64> =
        rows.iter().flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_i64().unwrap())).collect();
    let eot_positions =
        rows.iter().map(|row| row.as_array().unwrap().iter().position(|v| v.as_i64() == Some(255)).unwrap()).collect();
    ClipTokens { ids, batch: rows.len(), context_length: 77, eot_positions }
}

fn check(name: &str, got: Vec<f32>, expected: &serde_json::Value) -> f32 {
    let diff = common::max_abs_diff(&got, &common::floats(expected));
    eprintln!("{name}: max abs diff {diff:.2e}");
    assert!(diff <= TOLERANCE, "{name}: max abs diff {diff}");
    diff
}

/// Every expectation of the fixture against one loaded model.
fn check_all(clip: &Clip, label: &str) {
    let fixture = common::fixture_json("clip_tiny.json");
    let device = clip.device().clone();
    let tokens = tokens(&fixture);
    assert!((clip.logit_scale() - fixture["logit_scale"].as_f64().unwrap() as f32).abs() < 1e-6);

    let text = clip.text_tower().forward(tokens.tensor(&device));
    assert_eq!(text.dims(), [3, 16]);
    check(&format!("{label} text"), common::values(text), &fixture["text"]);

    let images = common::pattern::<4>(&fixture["patterns"]["images"], &device);
    let features = clip.encode_image(images);
    assert_eq!((features.global.dims(), features.patches.dims()), ([2, 16], [2, 16, 16]));
    check(&format!("{label} image global"), common::values(features.global), &fixture["image_global"]);
    check(&format!("{label} image patches"), common::values(features.patches), &fixture["image_patches"]);

    // 40 × 48 input: a 5 × 6 patch grid, positional embedding resampled bicubically.
    let wide = common::pattern::<4>(&fixture["patterns"]["wide"], &device);
    let features = clip.encode_image(wide);
    assert_eq!(features.patches.dims(), [1, 30, 16]);
    check(&format!("{label} 40x48 global"), common::values(features.global), &fixture["wide_global"]);
    check(&format!("{label} 40x48 patches"), common::values(features.patches), &fixture["wide_patches"]);

    let prompts = common::pattern::<2>(&fixture["patterns"]["prompts"], &device);
    let cap = clip.text_tower().forward_with_prompts(prompts, &tokens).unwrap();
    check(&format!("{label} CAP"), common::values(cap), &fixture["cap"]);
}

#[test]
fn hf_directory_matches_transformers() {
    let dir = common::fixtures().join("clip_tiny_hf");
    // The directory has no tokenizer files: the installed OpenAI BPE is used.
    common::installed("bpe_simple_vocab_16e6.txt.gz");
    let clip = Clip::load(&dir, &Device::flex()).unwrap();
    assert_eq!((clip.width(), clip.embed_dim(), clip.image_size()), (16, 16, 32));
    assert!(matches!(clip.visual(), Visual::Vit(_)));
    check_all(&clip, "HF");
    // The real tokenizer's ids do not fit the 256-token toy vocabulary: a clear error.
    let error = clip.encode_text(&["a photo of a cat"]).unwrap_err();
    assert!(error.to_string().contains("outside the text tower's vocabulary"), "{error}");
}

#[test]
fn openai_state_dict_matches_transformers() {
    let path = common::fixtures().join("clip_tiny_openai.safetensors");
    common::installed("bpe_simple_vocab_16e6.txt.gz");
    let buffer = std::fs::read(&path).unwrap();
    let inferred = ClipConfig::infer_openai(&tensor_shapes(&buffer, &path).unwrap()).unwrap();
    let VisionConfig::Vit(vision) = &inferred.vision else { panic!("a ViT state dict") };
    assert_eq!(
        (vision.image_size, vision.patch_size, vision.width, vision.layers, vision.mlp_width),
        (32, 8, 24, 2, 48)
    );
    let text = &inferred.text;
    assert_eq!((text.vocab_size, text.context_length, text.width, text.layers, text.mlp_width), (256, 77, 16, 2, 32));
    // OpenAI's convention of 64-wide heads gives 1 head at these widths; the toy model has 2.
    assert_eq!((text.heads, vision.heads, inferred.embed_dim), (1, 1, 16));
    let clip = load_openai_file(&path, Some(inferred.with_heads(2, 2)), &Device::flex()).unwrap();
    check_all(&clip, "OpenAI");
}

#[test]
fn eot_pooling_uses_the_highest_id() {
    let clip = Clip::load(&common::fixtures().join("clip_tiny_hf"), &Device::flex()).unwrap();
    let device = Device::flex();
    // Same prefix, EOT at 3; what follows EOT is invisible to it (causal mask).
    let row = |tail: i64| {
        let mut ids = vec![254_i64, 5, 6, 255, tail, tail];
        ids.resize(77, 0);
        ids
    };
    let ids: Vec<i64> = [row(0), row(7)].concat();
    let out = clip.text_tower().forward(Tensor::from_data(TensorData::new(ids, [2, 77]), &device));
    let values = common::values(out);
    assert!(common::max_abs_diff(&values[..16], &values[16..]) < 1e-6);
}

#[test]
fn encode_text_tokenises_batches_and_projects() {
    use sspa_clip::{ClipTokenizer, TextTransformerConfig, VisionTransformerConfig};
    let device = Device::flex();
    let tokenizer = ClipTokenizer::from_bpe_gz(&common::installed("bpe_simple_vocab_16e6.txt.gz")).unwrap();
    // A random model with the real vocabulary (49408 ids), narrow enough to be cheap.
    let text_config = TextTransformerConfig::new(49408, 77, 8, 2, 1, 16, 4);
    let vision_config = VisionTransformerConfig::new(16, 8, 8, 2, 1, 16, 4);
    let text = text_config.init(&device);
    let visual = Visual::Vit(vision_config.init(&device));
    let config = ClipConfig { embed_dim: 4, text: text_config, vision: VisionConfig::Vit(vision_config) };
    let clip = Clip::from_parts(text, visual, tokenizer, 4.6, config, &device);
    let labels: Vec<String> = (0..40).map(|i| format!("a photo of {i} cats")).collect();
    let texts: Vec<&str> = labels.iter().map(String::as_str).collect();
    let encoded = clip.encode_text(&texts).unwrap();
    assert_eq!(encoded.dims(), [40, 4]);
    // Same as one forward over the whole batch (encode_text runs batches of 32).
    let tokens = clip.tokenize(&texts).unwrap();
    let direct = clip.text_tower().forward(tokens.tensor(&device));
    assert!(common::max_abs_diff(&common::values(encoded), &common::values(direct)) < 1e-5);
    assert!(clip.encode_text(&[]).is_err());
    let prompts = Tensor::<2>::zeros([4, 8], &device);
    assert_eq!(clip.forward_with_prompts(prompts, &texts[..3]).unwrap().dims(), [3, 4]);
}
