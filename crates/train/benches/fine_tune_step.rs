//! Training steps per second with the image encoder trained (`model.freeze_image_encoder =
//! false`): a CLIP ViT-B/16-sized image tower (W = 768, 12 layers, 12 heads, patch 16) at 448 px
//! (N = 784 patch tokens), CAP with M = 4 prompt tokens through a frozen CLIP text tower (W = 512,
//! 12 layers, 77 tokens, C = 80 labels), the full SSPA head at d = 512, ASL, global-norm clipping,
//! grouped AdamW and the EMA: the training loop's own step (`sspa_train::train`), random weights.
//! `scripts/bench_finetune_torch.py` is the same computation in PyTorch.
//!
//! ```text
//! cargo bench -p sspa-train --bench fine_tune_step --features tch          # cuda:0, f32
//! SSPA_BENCH_DEVICE=cuda:0 SSPA_BENCH_PRECISION=mixed …                     # bf16 compute, f32 master weights
//! SSPA_BENCH_DEVICE=cuda:0 SSPA_BENCH_PRECISION=bf16 …                      # libtorch bf16
//! SSPA_BENCH_TINY=1 SSPA_BENCH_DEVICE=flex cargo bench -p sspa-train --bench fine_tune_step
//! ```
//!
//! Other knobs: `SSPA_BENCH_BATCH` (32), `SSPA_BENCH_IMAGE` (448), `SSPA_BENCH_STEPS` (timed, 10),
//! `SSPA_BENCH_WARMUP` (3). Timing runs from the end of the last warm-up step to the end of the
//! last step; every step reads its loss back, so each mark is after the GPU finished it. Input
//! batches are built on the host before the loop and uploaded every step, as the loader's are.
//! One JSON line (`{"bench": "fine_tune_step", …}`) follows the text line.

use std::sync::Mutex;
use std::time::Instant;

use burn::module::Module;
mod common;

use burn::prelude::*;
use common::{StepClock, device, pseudo_random};
use sspa_clip::tokenizer::ClipTokens;
use sspa_clip::{TextTransformer, TextTransformerConfig, VisionTransformerConfig};
use sspa_config::{AblationSection, ModelSection, Precision, TrainSection};
use sspa_train::{
    Backbone, BackboneSpec, Batches, FineTune, ImageBatch, ImageSource, PromptTextEncoder, Sections, TextInputs,
    TrainData, TrainError, TrainOptions, train,
};

const CLASSES: usize = 80;
const PROMPTS: u32 = 4;
const SOT: i64 = 49_406;
const EOT: i64 = 49_407;
const PERIOD: i64 = 269;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    image: usize,
    batch: usize,
    vision_width: usize,
    vision_layers: usize,
    vision_heads: usize,
    text_width: usize,
    text_layers: usize,
    text_heads: usize,
    vocab: usize,
    embed: usize,
    classes: usize,
}

impl Sizes {
    fn new(tiny: bool) -> Self {
        if tiny {
            Self {
                image: env("SSPA_BENCH_IMAGE", 64),
                batch: env("SSPA_BENCH_BATCH", 2),
                vision_width: 64,
                vision_layers: 2,
                vision_heads: 2,
                text_width: 64,
                text_layers: 2,
                text_heads: 2,
                vocab: 49_408,
                embed: 64,
                classes: 5,
            }
        } else {
            Self {
                image: env("SSPA_BENCH_IMAGE", 448),
                batch: env("SSPA_BENCH_BATCH", 32),
                vision_width: 768,
                vision_layers: 12,
                vision_heads: 12,
                text_width: 512,
                text_layers: 12,
                text_heads: 8,
                vocab: 49_408,
                embed: 512,
                classes: CLASSES,
            }
        }
    }
}

/// Prebuilt batches handed out in order, each once (moved, not copied).
struct Prebuilt {
    batches: Mutex<Vec<ImageBatch>>,
    count: usize,
    size: usize,
    classes: usize,
}

impl ImageSource for Prebuilt {
    fn classes(&self) -> usize {
        self.classes
    }
    fn image_size(&self) -> usize {
        self.size
    }
    fn train_len(&self) -> usize {
        self.count * self.batches.lock().map_or(0, |b| b.first().map_or(0, ImageBatch::len))
    }
    fn train_batches(&self) -> usize {
        self.count
    }
    fn validation_len(&self) -> usize {
        0
    }
    fn fingerprint(&self) -> String {
        "bench".into()
    }
    fn train_epoch(&self, _epoch: u32) -> Result<Batches<'_>, TrainError> {
        let batches = std::mem::take(&mut *self.batches.lock().expect("batches"));
        Ok(Box::new(batches.into_iter().map(Ok)))
    }
    fn validation(&self) -> Result<Batches<'_>, TrainError> {
        Ok(Box::new(std::iter::empty()))
    }
}

/// CAP through a frozen CLIP text tower, with fixed token rows `[SOT] words . [EOT]`.
struct ClipPrompts {
    tower: TextTransformer,
    tokens: ClipTokens,
}

impl PromptTextEncoder for ClipPrompts {
    fn prompt_width(&self) -> usize {
        self.tower.width()
    }
    fn output_width(&self) -> usize {
        self.tower.embed_dim()
    }
    fn forward(&self, prompts: Tensor<2>, _labels: &[String]) -> Tensor<2> {
        self.tower.forward_with_prompts(prompts, &self.tokens).expect("prompts fit the context")
    }
}

/// `C` rows of 1–3 random word ids and a period.
fn label_tokens(classes: usize, vocab: usize) -> ClipTokens {
    let length = 77;
    let mut ids = vec![0i64; classes * length];
    let mut eot_positions = Vec::with_capacity(classes);
    let mut state = 7u64;
    for row in 0..classes {
        let start = row * length;
        ids[start] = SOT;
        let words = 1 + row % 3;
        for word in 0..words {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ids[start + 1 + word] = 300 + (state >> 33) as i64 % (vocab as i64 - 400);
        }
        ids[start + 1 + words] = PERIOD;
        ids[start + 2 + words] = EOT;
        eot_positions.push(2 + words);
    }
    ClipTokens { ids, batch: classes, context_length: length, eot_positions }
}

fn main() {
    let tiny = env("SSPA_BENCH_TINY", 0u8) == 1;
    let default_device = if cfg!(feature = "tch") && !tiny { "cuda:0" } else { "flex" };
    let device_name: String = env("SSPA_BENCH_DEVICE", default_device.to_string());
    let precision: String = env("SSPA_BENCH_PRECISION", "f32".to_string());
    let (steps, warmup) = (env("SSPA_BENCH_STEPS", if tiny { 2 } else { 10 }), env("SSPA_BENCH_WARMUP", 3usize));
    let sizes = Sizes::new(tiny);
    let mut plain = device(&device_name);
    // `train.precision`: f32, mixed (bf16 compute on a copy, f32 master weights and AdamW state)
    // or bf16 (everything bf16, the device's float type).
    let train_precision = common::precision(&precision);
    if train_precision == Precision::Bf16 {
        plain.configure(burn::tensor::FloatDType::BF16).expect("bf16 on this device");
    }
    let autodiff = plain.clone().autodiff();

    let vision = VisionTransformerConfig::new(
        224,
        16,
        sizes.vision_width,
        sizes.vision_heads,
        sizes.vision_layers,
        4 * sizes.vision_width,
        sizes.embed,
    );
    let spec = BackboneSpec::ClipVit { config: vision };
    let backbone: Backbone = sspa_train::seeded(&autodiff, 1, || spec.init(&autodiff)).expect("image tower");
    let text_config = TextTransformerConfig::new(
        sizes.vocab,
        77,
        sizes.text_width,
        sizes.text_heads,
        sizes.text_layers,
        4 * sizes.text_width,
        sizes.embed,
    );
    let tower = sspa_train::seeded(&autodiff, 2, || text_config.init(&autodiff)).set_require_grad(false);
    let encoder = ClipPrompts { tower, tokens: label_tokens(sizes.classes, sizes.vocab) };
    let labels: Vec<String> = (0..sizes.classes).map(|c| format!("label-{c}")).collect();
    let text = TextInputs { labels, knowledge: pseudo_random(sizes.classes * sizes.embed, 4), width: sizes.embed };

    let total_steps = warmup + steps;
    let pixels = pseudo_random(sizes.batch * 3 * sizes.image * sizes.image, 5);
    let targets: Vec<i8> =
        pseudo_random(sizes.batch * sizes.classes, 6).into_iter().map(|v| i8::from(v > 0.9)).collect();
    let batches: Vec<ImageBatch> = (0..total_steps)
        .map(|_| ImageBatch {
            images: pixels.clone(),
            shape: [sizes.batch, 3, sizes.image, sizes.image],
            targets: targets.clone(),
        })
        .collect();
    let source =
        Prebuilt { batches: Mutex::new(batches), count: total_steps, size: sizes.image, classes: sizes.classes };

    let model = ModelSection {
        preset: sspa_config::Preset::ClipVitB16,
        embed_dim: sizes.embed as u32,
        prompt_tokens: PROMPTS,
        freeze_image_encoder: false,
        image_size: sizes.image as u32,
        ..ModelSection::default()
    };
    let train_section = TrainSection {
        epochs: 1,
        batch_size: sizes.batch as u32,
        lr: 5e-5,
        weight_decay: 1e-4,
        grad_clip: 1.0,
        ema_decay: 0.9997,
        precision: train_precision,
        ..TrainSection::default()
    };
    let ablation = AblationSection::default();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut options = TrainOptions::new(dir.path().join("checkpoints"), dir.path().join("out"));
    options.device = plain;
    let clock = StepClock::default();
    let progress = |done: u64, _total: u64, _message: &str| clock.mark(done);
    let started = Instant::now();
    let outcome = train(
        Sections { model: &model, ablation: &ablation, train: &train_section },
        TrainData {
            text: &text,
            encoder: &encoder,
            source: &FineTune { source: &source, backbone: &backbone, spec: &spec, weights_hash: "random" },
        },
        &options,
        &progress,
        &|| false,
    )
    .expect("training");
    let total = started.elapsed().as_secs_f64();
    let loss = outcome.history.last().map_or(f64::NAN, |log| log.train_loss);

    let seconds = clock.seconds(warmup, total_steps);
    let (steps_per_s, images_per_s) = (steps as f64 / seconds, (steps * sizes.batch) as f64 / seconds);
    println!(
        "sspa-train fine_tune_step: ViT W={} L={} at {} px (N = {}), text W={} L={}, C={}, d={}, B={}, {device_name} \
         {precision}: {steps_per_s:.3} steps/s ({:.1} ms/step, {images_per_s:.1} images/s) over {steps} steps after \
         {warmup} warm-up; mean loss {loss:.4}; whole call incl. init, outputs and checkpoint {total:.1} s",
        sizes.vision_width,
        sizes.vision_layers,
        sizes.image,
        (sizes.image / 16).pow(2),
        sizes.text_width,
        sizes.text_layers,
        sizes.classes,
        sizes.embed,
        sizes.batch,
        1e3 * seconds / steps as f64,
    );
    println!(
        "{}",
        serde_json::json!({
            "bench": "fine_tune_step", "framework": "burn", "device": device_name, "precision": precision,
            "image_size": sizes.image, "batch": sizes.batch, "steps": steps, "warmup": warmup,
            "steps_per_s": steps_per_s, "images_per_s": images_per_s, "ms_per_step": 1e3 * seconds / steps as f64,
            "mean_loss": loss, "whole_call_s": total,
        })
    );
}
