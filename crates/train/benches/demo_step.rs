//! The demo's training step (domains/demo.toml) through the real training loop on the default CPU
//! backend, then the same step in PyTorch (`scripts/bench_demo_step_torch.py`, run by this bench
//! right after), and `burn / PyTorch`.
//!
//! Shapes: B = 64 frozen EfficientNet-Lite0 features at 112 px (N = 16 patches + the global
//! feature, c = 1280), C = 10 Fashion-MNIST labels, d = 192, CAP with M = 4 prompt tokens through
//! the frozen MiniLM (the installed weights and tokenizer, `scripts/install-encoders`), ASL on both
//! branches, grouped AdamW, EMA 0.997, the loss read back every step. The PyTorch script gets the
//! tokenizer's word-piece counts of the same labels.
//!
//! `cargo bench -p sspa-train --bench demo_step` (`--profile dev` measures the build `scripts/demo`
//! runs). `SSPA_BENCH_STEPS` (default 30) steps are timed after 2 warm-up steps;
//! `SSPA_BENCH_TORCH_PYTHON` is the Python with torch (default: the venv of
//! `scripts/install-torch`); without one the PyTorch side is skipped and said so.

use std::path::Path;
use std::process::Command;

mod common;

use burn::prelude::*;
use common::{StepClock, device, pseudo_features, pseudo_random};
use sspa_config::{AblationSection, ModelSection, TrainSection};
use sspa_encoders::MiniLm;
use sspa_train::{CachedFeatures, PromptTextEncoder, Sections, TextInputs, TrainData, TrainOptions, train};

const LABELS: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];
const IMAGE_WIDTH: usize = 1280;
const TEXT_WIDTH: usize = 384;
const EMBED_DIM: u32 = 192;
const PATCHES: usize = 16;
const BATCH: usize = 64;
const PROMPTS: u32 = 4;
const WARMUP: usize = 2;

/// MiniLM with CAP's prompt hook, as the train stage wires it.
struct Prompted(MiniLm);

impl PromptTextEncoder for Prompted {
    fn prompt_width(&self) -> usize {
        self.0.width()
    }

    fn output_width(&self) -> usize {
        self.0.width()
    }

    fn forward(&self, prompts: Tensor<2>, labels: &[String]) -> Tensor<2> {
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        self.0.forward_with_prompts(prompts, &labels).expect("MiniLM takes the demo's prompts")
    }
}

fn main() {
    let steps: usize = std::env::var("SSPA_BENCH_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let device = device("flex");
    let minilm_dir = sspa_encoders::paths::minilm_dir();
    let minilm = MiniLm::load(&minilm_dir, &device.clone().autodiff())
        .unwrap_or_else(|error| panic!("MiniLM from {} (run scripts/install-encoders): {error}", minilm_dir.display()));
    let tokens = minilm.tokenize(&LABELS).expect("tokenize the labels");
    let lengths: Vec<usize> =
        tokens.mask.chunks(tokens.length).map(|row| row.iter().filter(|&&m| m > 0.0).count()).collect();
    let encoder = Prompted(minilm);

    let images = BATCH * (WARMUP + steps);
    let classes = LABELS.len();
    let (features, validation) = pseudo_features(images, PATCHES, IMAGE_WIDTH, classes, 0.5);
    let labels: Vec<String> = LABELS.iter().map(|l| (*l).to_owned()).collect();
    let text = TextInputs { labels, knowledge: pseudo_random(classes * TEXT_WIDTH, 4), width: TEXT_WIDTH };
    let model =
        ModelSection { embed_dim: EMBED_DIM, prompt_tokens: PROMPTS, image_size: 112, ..ModelSection::default() };
    let train_section = TrainSection {
        epochs: 1,
        batch_size: BATCH as u32,
        lr: 1e-3,
        weight_decay: 1e-4,
        ema_decay: 0.997,
        grad_clip: 0.0,
        ..TrainSection::default()
    };
    let ablation = AblationSection::default();

    let dir = tempfile::tempdir().expect("temp dir");
    let options = TrainOptions::new(dir.path().join("checkpoints"), dir.path().join("out"));
    let clock = StepClock::default();
    let progress = |done: u64, _total: u64, _message: &str| clock.mark(done);
    train(
        Sections { model: &model, ablation: &ablation, train: &train_section },
        TrainData {
            text: &text,
            encoder: &encoder,
            source: &CachedFeatures { train: &features, validation: &validation },
        },
        &options,
        &progress,
        &|| false,
    )
    .expect("training");
    let burn_steps = steps as f64 / clock.seconds(WARMUP, WARMUP + steps);
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let rss = peak_rss_mib();
    println!(
        "demo step, burn flex ({threads} threads): {burn_steps:.2} steps/s ({:.1} ms/step), peak RSS {rss:.0} MiB \
         (B={BATCH} C={classes} N={PATCHES} c={IMAGE_WIDTH} d={EMBED_DIM} M={PROMPTS}, MiniLM tokens {lengths:?})",
        1e3 / burn_steps
    );

    let Some(python) = sspa_encoders::paths::torch_python() else {
        println!(
            "demo step, PyTorch: skipped (no Python with torch: set SSPA_BENCH_TORCH_PYTHON or run scripts/install-torch)"
        );
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench_demo_step_torch.py");
    let lengths_arg = lengths.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    let output = Command::new(&python)
        .arg(&script)
        .args(["--lengths", &lengths_arg, "--steps", &steps.to_string(), "--batch", &BATCH.to_string()])
        .args(["--patches", &PATCHES.to_string(), "--image-width", &IMAGE_WIDTH.to_string()])
        .args(["--embed-dim", &EMBED_DIM.to_string(), "--prompt-tokens", &PROMPTS.to_string()])
        .output()
        .expect("run the PyTorch script");
    assert!(output.status.success(), "PyTorch script failed: {}", String::from_utf8_lossy(&output.stderr));
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).expect("PyTorch script JSON");
    let torch_steps = result["steps_per_second"].as_f64().expect("steps_per_second");
    println!(
        "demo step, PyTorch {} ({} threads): {torch_steps:.2} steps/s ({:.1} ms/step), peak RSS {:.0} MiB",
        result["torch_version"].as_str().unwrap_or("?"),
        result["cpu_threads"],
        1e3 / torch_steps,
        result["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
    );
    println!("demo step, burn / PyTorch: {:.2}", burn_steps / torch_steps);
}

/// This process's peak resident set (`VmHWM`), MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}
