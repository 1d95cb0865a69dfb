//! CPU throughput of the CLIP towers with random weights, against the PyTorch (OpenCLIP)
//! timings of `scripts/bench_clip_torch.py` (`benches/torch_timings.json`, same workloads).
//!
//! `cargo bench -p sspa-clip --bench clip`. Workloads: RN50 image tower at 224×224 in batches of
//! 4 (global feature and dense patches); ViT-B/32 image tower at 224×224 in batches of 4; the
//! ViT-B/32 text tower on 32 sentences of 77 tokens (SOT, 8–20 word ids, EOT, zero padding).
//! One warm-up, best rate of 2 rounds, as the script.

use std::path::Path;
use std::time::Instant;

use burn::prelude::*;
use burn::tensor::{Distribution, TensorData};
use sspa_clip::resnet::{ModifiedResNetConfig, ResnetError};
use sspa_clip::{TextTransformerConfig, VisionTransformerConfig};

const ROUNDS: usize = 2;
const IMAGES: usize = 4;
const SENTENCES: usize = 32;
const CONTEXT: usize = 77;
const VOCAB: usize = 49408;

fn reference(key: &str) -> Option<f64> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/torch_timings.json");
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?.get(key)?.as_f64()
}

fn report(name: &str, unit: &str, rate: f64, key: &str) {
    match reference(key) {
        Some(torch) => {
            println!("{name}: {rate:.2} {unit}/s, PyTorch {torch:.2} {unit}/s, ratio burn/torch {:.2}", rate / torch)
        }
        None => println!("{name}: {rate:.2} {unit}/s (no PyTorch timing: run scripts/bench_clip_torch.py)"),
    }
}

/// Best items per second over [`ROUNDS`] runs after one warm-up.
fn best_rate(items: usize, mut run: impl FnMut()) -> f64 {
    run();
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            run();
            items as f64 / start.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

/// `[SOT, 8–20 pseudo-random word ids, EOT, 0…]` rows, as the script's (ids differ, cost not).
fn tokens(device: &Device) -> Tensor<2, Int> {
    let mut ids = vec![0_i64; SENTENCES * CONTEXT];
    let mut state = 12345_u64;
    for row in 0..SENTENCES {
        let words = 8 + row % 13;
        ids[row * CONTEXT] = (VOCAB - 2) as i64;
        for word in 0..words {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ids[row * CONTEXT + 1 + word] = 1 + ((state >> 33) % (VOCAB as u64 - 3)) as i64;
        }
        ids[row * CONTEXT + 1 + words] = (VOCAB - 1) as i64;
    }
    Tensor::from_data(TensorData::new(ids, [SENTENCES, CONTEXT]), device)
}

fn main() -> Result<(), ResnetError> {
    let device = Device::flex();
    let images = Tensor::<4>::random([IMAGES, 3, 224, 224], Distribution::Normal(0.0, 1.0), &device);

    let rn50 = ModifiedResNetConfig::rn50().init(&device)?;
    let rate = best_rate(IMAGES, || {
        let features = rn50.forward(images.clone());
        features.global.into_data();
        features.patches.into_data();
    });
    report("CLIP RN50 image tower", "images", rate, "rn50_images_per_second");
    drop(rn50);

    let vit = VisionTransformerConfig::new(224, 32, 768, 12, 12, 3072, 512).init(&device);
    let rate = best_rate(IMAGES, || {
        vit.forward(images.clone()).global.into_data();
    });
    report("CLIP ViT-B/32 image tower", "images", rate, "vit_b32_images_per_second");
    drop(vit);

    let text = TextTransformerConfig::new(VOCAB, CONTEXT, 512, 8, 12, 2048, 512).init(&device);
    let tokens = tokens(&device);
    let rate = best_rate(SENTENCES, || {
        text.forward(tokens.clone()).into_data();
    });
    report("CLIP ViT-B/32 text tower", "sentences", rate, "text_b32_sentences_per_second");
    Ok(())
}
