//! CPU throughput of the frozen encoders against PyTorch, both measured by one command back to
//! back: this bench times burn, then runs `scripts/bench_encoders_torch.py` (the same layers in
//! plain PyTorch, random weights of the same shapes) on the same workloads and prints
//! `burn / PyTorch` for each.
//!
//! `cargo bench -p sspa-encoders --bench encoders` (`--profile dev` measures the build that
//! `scripts/demo` runs; needs `scripts/install-encoders`). Workloads:
//! - MiniLM-L6: 64 sentences in batches of 32 (the PyTorch side gets the tokenizer's word-piece
//!   counts);
//! - EfficientNet-Lite0: 8 images at 224 px in one batch, and the demo's features stage (64
//!   images at 112 px in batches of 32, `sspa_infer::features::ENCODE_BATCH`).
//!
//! Best of 3 timed passes after one untimed pass, outputs read back. `SSPA_BENCH_TORCH_PYTHON` is
//! the Python with torch (default: the venv of `scripts/install-torch`); without one, the
//! PyTorch timings stored by `scripts/reference/make_encoder_fixtures.py` are shown instead.

use std::path::Path;
use std::process::Command;
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
/// `(size, images, batch)` of the EfficientNet workloads.
const IMAGE_WORKLOADS: [(usize, usize, usize); 2] = [(224, 8, 8), (112, 64, 32)];

/// Items per second of the best of [`ROUNDS`] passes after one untimed pass.
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

fn main() -> Result<(), EncoderError> {
    let device = Device::flex();
    let minilm_dir = paths::minilm_dir();
    let efficientnet_dir = paths::efficientnet_dir();
    if !minilm_dir.join("model.safetensors").is_file() || !efficientnet_dir.join("model.safetensors").is_file() {
        eprintln!("encoders bench: weights not installed, run scripts/install-encoders");
        return Ok(());
    }
    let threads = std::thread::available_parallelism().map_or(1, usize::from);

    let minilm = MiniLm::load(&minilm_dir, &device)?;
    let corpus: Vec<&str> = (0..64).map(|i| SENTENCES[i % SENTENCES.len()]).collect();
    let tokens = minilm.tokenize(&SENTENCES)?;
    let lengths: Vec<String> =
        tokens.mask.chunks(tokens.length).map(|row| row.iter().filter(|&&m| m > 0.0).count().to_string()).collect();
    let mut failure = None;
    let minilm_rate = best_rate(corpus.len(), || {
        if let Err(error) = minilm.encode(&corpus).map(Tensor::into_data) {
            failure = Some(error);
        }
    });
    if let Some(error) = failure {
        return Err(error);
    }

    let model = EfficientNetLite0::load(&efficientnet_dir, &device)?;
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let photos = ["kafka_224.png", "chelsea_224.png"]
        .iter()
        .map(|name| ImagePreprocess::open(&fixtures.join(name)).map(|image| image.to_rgb8()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut image_rates = Vec::new();
    for (size, count, batch) in IMAGE_WORKLOADS {
        let resized: Vec<_> = (0..batch)
            .map(|i| {
                image::imageops::resize(&photos[i % photos.len()], size as u32, size as u32, image::imageops::Triangle)
            })
            .collect();
        let images = ImagePreprocess::default().batch_exact(&resized, &device)?;
        let rate = best_rate(count, || {
            for _ in 0..count / batch {
                let features = model.forward(images.clone());
                features.patches.into_data();
                features.global.into_data();
            }
        });
        image_rates.push((size, count, batch, rate));
    }

    let torch = torch_rates(&lengths.join(","));
    let ratio = |ours: f64, theirs: Option<f64>| match theirs {
        Some(theirs) => format!("PyTorch {theirs:.1}/s, burn / PyTorch {:.2}", ours / theirs),
        None => "no PyTorch timing".into(),
    };
    let source = torch.as_ref().map_or_else(
        || "stored PyTorch timings (tests/fixtures/reference_timings.json; no Python with torch)".to_owned(),
        |value| {
            format!(
                "PyTorch {} with {} threads, measured now",
                value["torch_version"].as_str().unwrap_or("?"),
                value["cpu_threads"]
            )
        },
    );
    println!("encoders bench, burn flex with {threads} threads vs {source}");
    let stored = |key: &str| stored_reference(key);
    let minilm_torch = torch
        .as_ref()
        .map_or_else(|| stored("minilm_sentences_per_second"), |value| value["minilm_sentences_per_second"].as_f64());
    println!(
        "MiniLM-L6, 64 sentences (batches of 32): {minilm_rate:.1} sentences/s, {}",
        ratio(minilm_rate, minilm_torch)
    );
    for (index, (size, count, batch, rate)) in image_rates.into_iter().enumerate() {
        let theirs = match &torch {
            Some(value) => value["efficientnet"][index]["images_per_second"].as_f64(),
            None if size == 224 => stored("efficientnet_lite0_images_per_second"),
            None => None,
        };
        println!(
            "EfficientNet-Lite0, {count} images at {size} px (batches of {batch}): {rate:.1} images/s, {}",
            ratio(rate, theirs)
        );
    }
    Ok(())
}

/// Runs `scripts/bench_encoders_torch.py` on the same workloads; `None` without a Python with torch.
fn torch_rates(lengths: &str) -> Option<serde_json::Value> {
    let python = paths::torch_python()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench_encoders_torch.py");
    let workloads: Vec<String> = IMAGE_WORKLOADS.iter().map(|(s, n, b)| format!("{s}:{n}:{b}")).collect();
    let output = Command::new(python)
        .arg(script)
        .args(["--lengths", lengths, "--sentences", "64", "--rounds", &ROUNDS.to_string()])
        .args(["--image-workloads", &workloads.join(",")])
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!("encoders bench: the PyTorch script failed: {}", String::from_utf8_lossy(&output.stderr));
        return None;
    }
    serde_json::from_slice(&output.stdout).ok()
}

fn stored_reference(key: &str) -> Option<f64> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference_timings.json");
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?.get(key)?.as_f64()
}
