//! CPU throughput of the encoders against the PyTorch references timed by
//! `scripts/reference/make_encoder_fixtures.py` (`tests/fixtures/reference_timings.json`).
//!
//! `cargo bench -p sspa-encoders --bench encoders` (needs `scripts/install-encoders`). Same
//! workload as the references: 64 sentences in batches of 32; 8 images at 224×224.

use std::path::Path;
use std::time::Instant;

use burn::prelude::*;
use sspa_encoders::{EfficientNetLite0, EncoderError, ImagePreprocess, MiniLm, paths};

const SENTENCES: [&str; 4] = [
    "A photo of a cat.",
    "A tabby cat sleeping on a sunny windowsill, next to a potted plant.",
    "Pedestrians waiting at a crosswalk in the rain, holding umbrellas.",
    "Satellite image of farmland with irrigation circles.",
];
const ROUNDS: usize = 3;

fn reference(key: &str) -> Option<f64> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference_timings.json");
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?.get(key)?.as_f64()
}

fn report(name: &str, unit: &str, rate: f64, key: &str) {
    match reference(key) {
        Some(torch) => {
            println!("{name}: {rate:.1} {unit}/s, PyTorch {torch:.1} {unit}/s, ratio burn/torch {:.2}", rate / torch)
        }
        None => println!("{name}: {rate:.1} {unit}/s (no reference timing)"),
    }
}

fn main() -> Result<(), EncoderError> {
    let device = Device::flex();
    let minilm_dir = paths::minilm_dir();
    let efficientnet_dir = paths::efficientnet_dir();
    if !minilm_dir.join("model.safetensors").is_file() || !efficientnet_dir.join("model.safetensors").is_file() {
        eprintln!("encoders bench: weights not installed, run scripts/install-encoders");
        return Ok(());
    }

    let minilm = MiniLm::load(&minilm_dir, &device)?;
    let corpus: Vec<&str> = (0..64).map(|i| SENTENCES[i % SENTENCES.len()]).collect();
    minilm.encode(&corpus[..8])?.into_data();
    let start = Instant::now();
    for _ in 0..ROUNDS {
        minilm.encode(&corpus)?.into_data();
    }
    let rate = (ROUNDS * corpus.len()) as f64 / start.elapsed().as_secs_f64();
    report("MiniLM-L6", "sentences", rate, "minilm_sentences_per_second");

    let model = EfficientNetLite0::load(&efficientnet_dir, &device)?;
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let photos = ["kafka_224.png", "chelsea_224.png"]
        .iter()
        .map(|name| ImagePreprocess::open(&fixtures.join(name)).map(|image| image.to_rgb8()))
        .collect::<Result<Vec<_>, _>>()?;
    let batch: Vec<_> = (0..8).map(|i| photos[i % photos.len()].clone()).collect();
    let images = ImagePreprocess::default().batch_exact(&batch, &device)?;
    model.forward(images.clone()).global.into_data();
    let start = Instant::now();
    for _ in 0..ROUNDS {
        model.forward(images.clone()).global.into_data();
    }
    let rate = (ROUNDS * batch.len()) as f64 / start.elapsed().as_secs_f64();
    report("EfficientNet-Lite0", "images", rate, "efficientnet_lite0_images_per_second");
    Ok(())
}
