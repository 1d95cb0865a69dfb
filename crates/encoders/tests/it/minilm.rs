//! MiniLM-L6 parity against sentence-transformers (fixture from
//! scripts/reference/make_encoder_fixtures.py) on the installed real weights.
#![allow(clippy::unwrap_used)]

use crate::common;

use burn::prelude::*;
use sspa_encoders::{MiniLm, paths};

fn load() -> Option<MiniLm> {
    let dir = common::installed(paths::minilm_dir(), "model.safetensors")?;
    Some(MiniLm::load(&dir, &Device::flex()).unwrap())
}

#[test]
fn tokens_pooled_embeddings_and_cap_hook_match_the_references() {
    let Some(model) = load() else { return };
    let fixture = common::fixture_json("minilm.json");
    let sentences: Vec<&str> = fixture["sentences"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();

    // Tokenisation: every id of every sentence, truncation to 256 included.
    let tokens = model.tokenize(&sentences).unwrap();
    for (row, expected) in fixture["token_ids"].as_array().unwrap().iter().enumerate() {
        let expected: Vec<i64> = expected.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        let real = tokens.mask[row * tokens.length..(row + 1) * tokens.length].iter().filter(|&&m| m > 0.0).count();
        assert_eq!(&tokens.ids[row * tokens.length..row * tokens.length + real], expected.as_slice(), "sentence {row}");
    }

    // Pooled, normalised embeddings.
    let embeddings = model.encode(&sentences).unwrap();
    assert_eq!(embeddings.dims(), [sentences.len(), 384]);
    let values = embeddings.into_data().try_to_vec::<f32>().unwrap();
    let mut worst = 0.0_f32;
    for (row, expected) in fixture["embeddings"].as_array().unwrap().iter().enumerate() {
        let diff = common::max_abs_diff(&values[row * 384..(row + 1) * 384], &common::floats(expected));
        worst = worst.max(diff);
    }
    eprintln!("MiniLM max abs diff vs sentence-transformers: {worst:e}");
    assert!(worst <= 1e-4, "max abs diff {worst}");

    // CAP hook vs HF BertModel(inputs_embeds=…) with the same prompts spliced after [CLS].
    let cap = &fixture["cap"];
    let count = cap["prompts"].as_u64().unwrap() as usize;
    let prompts: Vec<f32> = (0..count)
        .flat_map(|m| (0..384).map(move |k| 0.02 * (0.37 * (m * 384 + k) as f64 + 0.5).sin()))
        .map(|v| v as f32)
        .collect();
    let prompts = Tensor::<2>::from_data(burn::tensor::TensorData::new(prompts, [count, 384]), model.device());
    let labels: Vec<&str> = cap["labels"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    let out = model.forward_with_prompts(prompts, &labels).unwrap().into_data().try_to_vec::<f32>().unwrap();
    let mut worst = 0.0_f32;
    for (row, expected) in cap["embeddings"].as_array().unwrap().iter().enumerate() {
        worst = worst.max(common::max_abs_diff(&out[row * 384..(row + 1) * 384], &common::floats(expected)));
    }
    eprintln!("MiniLM CAP hook max abs diff vs transformers: {worst:e}");
    assert!(worst <= 1e-4, "CAP max abs diff {worst}");
}
