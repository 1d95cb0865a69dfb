//! Training steps per second of the full SSPA head at demo size (d = 384, C = 10, N = 49, B = 64,
//! CAP with M = 4 prompt tokens through a small frozen encoder) on the CPU `flex` backend, and with
//! `--features tch` also on libtorch (`SSPA_BENCH_DEVICES=flex,libtorch,cuda:0` picks the devices).
//!
//! `SSPA_BENCH_PRECISION=f32,mixed,bf16` picks `train.precision` (default `f32`); the devices keep
//! f32 as their default float type (as `mixed` has it), so `bf16` runs with bf16 weights cast
//! from it and its inputs cast at the model's edge, unless it is the only precision asked for:
//! then the device is configured for bf16 as `train.precision = "bf16"` configures it.
//! `SSPA_BENCH_VARIANTS=N` runs the first `N` head variants only (default: all 3).
//!
//! `cargo bench -p sspa-train --bench train_steps` (release). Timing starts after the first two
//! steps (warm-up) and ends at the last step of the epoch, so validation and checkpoint writing
//! are not counted.

use std::time::Instant;

mod common;

use burn::prelude::*;
use common::{StepClock, device, pseudo_features, pseudo_random};
use sspa_config::{AblationSection, Alignment, Branches, ModelSection, Precision, TrainSection};
use sspa_train::{CachedFeatures, FeatureSet, MeanPromptEncoder, Sections, TextInputs, TrainData, TrainOptions, train};

const WIDTH: usize = 384;
const CLASSES: usize = 10;
const PATCHES: usize = 49;
const BATCH: usize = 64;
const STEPS: usize = 12;

fn main() {
    let images = BATCH * STEPS;
    let (features, empty) = pseudo_features(images, PATCHES, WIDTH, CLASSES, 0.4);
    let labels: Vec<String> = (0..CLASSES).map(|c| format!("label-{c}")).collect();
    let text = TextInputs { labels: labels.clone(), knowledge: pseudo_random(CLASSES * WIDTH, 4), width: WIDTH };
    let model = ModelSection { embed_dim: WIDTH as u32, prompt_tokens: 4, ..ModelSection::default() };
    let train_section =
        TrainSection { epochs: 1, batch_size: BATCH as u32, lr: 1e-4, grad_clip: 1.0, ..TrainSection::default() };
    let variants = [
        ("full SSPA + CAP (M=4)", AblationSection::default()),
        (
            "full SSPA without semantic-to-visual alignment",
            AblationSection { alignment: Alignment::VisualToSemantic, ..AblationSection::default() },
        ),
        (
            "global branch only + CAP (M=4)",
            AblationSection { branches: Branches::Global, ..AblationSection::default() },
        ),
    ];
    let wanted = std::env::var("SSPA_BENCH_DEVICES")
        .unwrap_or_else(|_| if cfg!(feature = "tch") { "flex,libtorch".into() } else { "flex".into() });
    let precisions: Vec<Precision> = std::env::var("SSPA_BENCH_PRECISION")
        .unwrap_or_else(|_| "f32".into())
        .split(',')
        .map(common::precision)
        .collect();
    let variant_count = std::env::var("SSPA_BENCH_VARIANTS")
        .map_or(variants.len(), |count| count.parse::<usize>().expect("SSPA_BENCH_VARIANTS=N"))
        .min(variants.len());
    for device_name in wanted.split(',').map(str::trim) {
        let mut device = device(device_name);
        if precisions == [Precision::Bf16] {
            device.configure(burn::tensor::FloatDType::BF16).expect("bf16 as the device's default float type");
        }
        let encoder = MeanPromptEncoder::new(labels.clone(), WIDTH, WIDTH, 5, &device.clone().autodiff());
        for &precision in &precisions {
            let train_section = TrainSection { precision, ..train_section.clone() };
            for (name, ablation) in &variants[..variant_count] {
                let name = format!("{device_name}, precision {precision}: {name}");
                run(&name, &model, ablation, &train_section, &text, &encoder, &features, &empty, &device);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run(
    name: &str,
    model: &ModelSection,
    ablation: &AblationSection,
    train_section: &TrainSection,
    text: &TextInputs,
    encoder: &MeanPromptEncoder,
    features: &FeatureSet,
    empty: &FeatureSet,
    device: &Device,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut options = TrainOptions::new(dir.path().join("checkpoints"), dir.path().join("out"));
    options.device = device.clone();

    let clock = StepClock::default();
    let progress = |done: u64, _total: u64, _message: &str| clock.mark(done);
    let started = Instant::now();
    train(
        Sections { model, ablation, train: train_section },
        TrainData { text, encoder, source: &CachedFeatures { train: features, validation: empty } },
        &options,
        &progress,
        &|| false,
    )
    .expect("training");
    let total = started.elapsed().as_secs_f64();

    let steps = (STEPS - 2) as f64;
    let seconds = clock.seconds(2, STEPS);
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "sspa-train bench: d={WIDTH} C={CLASSES} N={PATCHES} B={BATCH}, {name}, {threads} threads: \
         {:.2} steps/s ({:.1} ms/step, {:.0} images/s); whole call incl. init + checkpoint {total:.2} s",
        steps / seconds,
        1e3 * seconds / steps,
        steps * BATCH as f64 / seconds
    );
}
