//! End-to-end tests of the training loop on the CPU `flex` backend with synthetic features.

use std::sync::atomic::{AtomicU64, Ordering};

use burn::optim::GradientsParams;
use burn::prelude::*;
use sspa_config::{AblationSection, ModelSection, TrainSection};
use sspa_metrics::mean_average_precision;
use sspa_model::SspaLoss;
use sspa_train::{
    CachedFeatures, FeatureSet, FixedTextEncoder, MeanPromptEncoder, Predictor, Sections, TextInputs, TrainData,
    TrainError, TrainOptions, Weights as Which, files, model_config, read_history, train,
};

pub(crate) const CLASSES: usize = 4;
pub(crate) const PATCHES: usize = 9;
pub(crate) const WIDTH: usize = 16;
pub(crate) const TEXT_WIDTH: usize = 12;
pub(crate) const PROMPT_WIDTH: usize = 6;

pub(crate) struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform().max(1e-7), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f32::consts::PI * v).cos()
    }
}

/// Images whose labels are encoded by which patches carry which class prototype: every positive
/// class puts its prototype (plus noise) on its own random patch, the other patches are noise.
fn synthetic(images: usize, seed: u64) -> FeatureSet {
    synthetic_classes(CLASSES, images, seed)
}

/// [`synthetic`] with `classes` classes (at most [`PATCHES`]); class `c`'s prototype is the same
/// for every class count.
pub(crate) fn synthetic_classes(classes: usize, images: usize, seed: u64) -> FeatureSet {
    let mut rng = Rng(0xC0FFEE);
    let prototypes: Vec<Vec<f32>> = (0..classes).map(|_| (0..WIDTH).map(|_| 2.0 * rng.normal()).collect()).collect();
    let mut rng = Rng(seed);
    let mut set = FeatureSet {
        ids: Vec::new(),
        global: Vec::new(),
        patches: Vec::new(),
        targets: Vec::new(),
        patches_per_image: PATCHES,
        width: WIDTH,
        classes,
    };
    for image in 0..images {
        let mut patches: Vec<f32> = (0..PATCHES * WIDTH).map(|_| 0.5 * rng.normal()).collect();
        let mut free: Vec<usize> = (0..PATCHES).collect();
        for prototype in &prototypes {
            let positive = rng.uniform() < 0.4;
            set.targets.push(i8::from(positive));
            if positive {
                let slot = free.swap_remove((rng.next_u64() % free.len() as u64) as usize);
                for (k, value) in prototype.iter().enumerate() {
                    patches[slot * WIDTH + k] += value;
                }
            }
        }
        let global: Vec<f32> =
            (0..WIDTH).map(|k| (0..PATCHES).map(|p| patches[p * WIDTH + k]).sum::<f32>() / PATCHES as f32).collect();
        set.ids.push(format!("img-{seed}-{image}"));
        set.global.extend(global);
        set.patches.extend(patches);
    }
    set
}

fn text_inputs() -> TextInputs {
    text_inputs_classes(CLASSES)
}

/// Labels `class-0 …` and their `T_k`; class `c`'s row is the same for every class count.
pub(crate) fn text_inputs_classes(classes: usize) -> TextInputs {
    let mut rng = Rng(99);
    TextInputs {
        labels: (0..classes).map(|c| format!("class-{c}")).collect(),
        knowledge: (0..classes * TEXT_WIDTH).map(|_| rng.normal()).collect(),
        width: TEXT_WIDTH,
    }
}

fn prompt_encoder(text: &TextInputs) -> MeanPromptEncoder {
    MeanPromptEncoder::new(text.labels.clone(), PROMPT_WIDTH, TEXT_WIDTH, 11, &Device::flex().autodiff())
}

pub(crate) struct Setup {
    pub(crate) model: ModelSection,
    pub(crate) ablation: AblationSection,
    pub(crate) train: TrainSection,
}

pub(crate) fn setup(epochs: u32, batch_size: u32) -> Setup {
    Setup {
        model: ModelSection { embed_dim: WIDTH as u32, prompt_tokens: 2, ..ModelSection::default() },
        ablation: AblationSection::default(),
        train: TrainSection {
            epochs,
            batch_size,
            lr: 3e-3,
            warmup_epochs: 0.5,
            ema_decay: 0.9,
            grad_clip: 5.0,
            seed: 5,
            ..TrainSection::default()
        },
    }
}

impl Setup {
    pub(crate) fn sections(&self) -> Sections<'_> {
        Sections { model: &self.model, ablation: &self.ablation, train: &self.train }
    }
}

pub(crate) fn quiet(_: u64, _: u64, _: &str) {}
pub(crate) fn never() -> bool {
    false
}

#[test]
fn learns_separable_features_and_reports_ema() {
    let (text, train_set, validation) = (text_inputs(), synthetic(256, 1), synthetic(128, 2));
    let encoder = prompt_encoder(&text);
    let setup = setup(16, 32);
    let data = TrainData {
        text: &text,
        encoder: &encoder,
        source: &CachedFeatures { train: &train_set, validation: &validation },
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let options = TrainOptions::new(dir.path().join("checkpoints"), dir.path().join("out"));

    // mAP of the untrained head, through the same predictor path.
    let untrained = {
        let config = model_config(setup.sections(), &data).expect("config");
        let once = TrainOptions { max_epochs_this_call: Some(0), ..options.clone() };
        let outcome = train(setup.sections(), data, &once, &quiet, &never).expect("zero epochs");
        assert_eq!((outcome.epochs_done, outcome.finished), (0, false));
        assert_eq!(config.labels.len(), CLASSES);
        mean_average_precision(&vec![0.5; validation.targets.len()], &validation.targets, CLASSES).expect("positives")
    };

    let started = std::time::Instant::now();
    let steps = AtomicU64::new(0);
    let progress = |done: u64, total: u64, _: &str| {
        assert!(done <= total);
        steps.store(done, Ordering::Relaxed);
    };
    let outcome = train(setup.sections(), data, &options, &progress, &never).expect("train");
    assert!(outcome.finished);
    assert_eq!(steps.load(Ordering::Relaxed), 16 * 8);
    let history = read_history(&options.output_dir.join(files::HISTORY)).expect("history");
    assert_eq!(history.len(), outcome.history.len());
    for (read, kept) in history.iter().zip(&outcome.history) {
        assert_eq!((read.epoch, read.steps), (kept.epoch, kept.steps));
        assert!((read.train_loss - kept.train_loss).abs() < 1e-9 && (read.lr - kept.lr).abs() < 1e-12);
    }
    assert_eq!(history.len(), 16);
    let first = history.first().expect("epoch 1");
    let last = history.last().expect("last epoch");
    let (raw, ema) = (last.val_map.expect("raw mAP"), last.val_map_ema.expect("EMA mAP"));
    eprintln!(
        "untrained (constant) mAP {untrained:.1}; epoch 1 mAP {:.1}; final raw {raw:.1}, EMA {ema:.1}; loss {:.3} -> {:.3}; {:.1} s",
        first.val_map.unwrap_or(f64::NAN),
        first.train_loss,
        last.train_loss,
        started.elapsed().as_secs_f64()
    );
    assert!(last.train_loss < 0.5 * first.train_loss, "loss {} -> {}", first.train_loss, last.train_loss);
    assert!(raw > 95.0 && raw > untrained + 30.0, "raw mAP {raw}");
    assert!(ema > untrained + 20.0, "EMA mAP {ema}");
    assert_eq!(history.iter().map(|log| log.epoch).collect::<Vec<_>>(), (1..=16).collect::<Vec<_>>());
    assert!(history.windows(2).all(|w| w[1].lr <= w[0].lr), "cosine decay after warm-up");

    // The predictor reproduces the logged validation mAP from the written outputs.
    for (weights, logged) in [(Which::Raw, raw), (Which::Ema, ema)] {
        let predictor = Predictor::load(&options.output_dir, weights, &Device::flex()).expect("predictor");
        let scores = predictor.predict(&validation).expect("scores");
        assert_eq!(scores.len(), validation.len() * CLASSES);
        assert!(scores.iter().all(|p| (0.0..=1.0).contains(p)));
        let map = mean_average_precision(&scores, &validation.targets, CLASSES).expect("positives");
        assert!((map - logged).abs() < 1e-3, "{weights:?}: predicted {map} vs logged {logged}");
        assert_eq!(predictor.labels(), text.labels.as_slice());
    }
}

pub(crate) type Weights = Vec<(u64, Vec<u32>)>;

/// Final raw and EMA weights of a run, as bit patterns by parameter id.
pub(crate) fn final_weights(dir: &std::path::Path) -> (Weights, Weights) {
    let config = sspa_train::ModelConfig::load(&dir.join(files::CONFIG)).expect("config");
    let read = |name: &str| {
        let model = config.load_model(&dir.join(name), &Device::flex()).expect("weights");
        let mut values: Weights = sspa_train::parameter_snapshot(&model)
            .into_iter()
            .map(|(id, tensor)| (id.val(), tensor.into_data().iter::<f32>().map(f32::to_bits).collect()))
            .collect();
        values.sort();
        values
    };
    (read(files::MODEL), read(files::MODEL_EMA))
}

#[track_caller]
pub(crate) fn assert_same_weights(actual: &(Weights, Weights), expected: &(Weights, Weights), run: &str) {
    for (which, a, b) in [("raw", &actual.0, &expected.0), ("EMA", &actual.1, &expected.1)] {
        assert_eq!(a.len(), b.len(), "{run}: {which} parameter count");
        for ((id, x), (other, y)) in a.iter().zip(b) {
            assert_eq!(id, other, "{run}: {which} parameter ids");
            let differing = x.iter().zip(y).filter(|(p, q)| p != q).count();
            let largest =
                x.iter().zip(y).map(|(p, q)| (f32::from_bits(*p) - f32::from_bits(*q)).abs()).fold(0.0f32, f32::max);
            assert!(
                differing == 0,
                "{run}: {which} parameter {id:#x} differs in {differing}/{} values, by up to {largest}",
                x.len()
            );
        }
    }
}

#[test]
fn interrupted_runs_resume_to_the_same_weights() {
    let (text, train_set, validation) = (text_inputs(), synthetic(48, 3), synthetic(16, 4));
    let encoder = prompt_encoder(&text);
    let run = setup(3, 16);
    let data = TrainData {
        text: &text,
        encoder: &encoder,
        source: &CachedFeatures { train: &train_set, validation: &validation },
    };
    let dir = tempfile::tempdir().expect("temp dir");

    let straight = TrainOptions::new(dir.path().join("a-ckpt"), dir.path().join("a-out"));
    let reference = train(run.sections(), data, &straight, &quiet, &never).expect("uninterrupted");
    assert!(reference.finished && reference.resumed_from.is_none());

    // Stopped after one epoch by the epoch limit, then resumed to the end.
    let limited = TrainOptions {
        max_epochs_this_call: Some(1),
        ..TrainOptions::new(dir.path().join("b-ckpt"), dir.path().join("b-out"))
    };
    let first = train(run.sections(), data, &limited, &quiet, &never).expect("first part");
    assert_eq!((first.epochs_done, first.finished), (1, false));
    assert!(!limited.output_dir.join(files::MODEL).exists(), "no final outputs before the last epoch");
    let rest = TrainOptions { max_epochs_this_call: None, ..limited.clone() };
    let resumed = train(run.sections(), data, &rest, &quiet, &never).expect("resumed");
    assert_eq!((resumed.resumed_from, resumed.finished), (Some(1), true));

    // Cancelled in the middle of epoch 3 (step 7 of 9), then resumed.
    let cancelled_dir = TrainOptions::new(dir.path().join("c-ckpt"), dir.path().join("c-out"));
    let calls = AtomicU64::new(0);
    let cancel = || calls.fetch_add(1, Ordering::Relaxed) >= 7;
    let error = train(run.sections(), data, &cancelled_dir, &quiet, &cancel).expect_err("cancelled");
    assert!(matches!(error, TrainError::Cancelled { epochs_done: 2 }), "{error}");
    let finished = train(run.sections(), data, &cancelled_dir, &quiet, &never).expect("after cancel");
    assert_eq!(finished.resumed_from, Some(2));

    // One epoch directory is kept next to `latest.json`; no partial directory is left.
    let mut entries: Vec<String> = std::fs::read_dir(&straight.checkpoint_dir)
        .expect("checkpoint dir")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    entries.sort();
    assert_eq!(entries, ["epoch-0003", "latest.json"]);

    let expected = final_weights(&straight.output_dir);
    assert_same_weights(&final_weights(&limited.output_dir), &expected, "epoch-limited run");
    assert_same_weights(&final_weights(&cancelled_dir.output_dir), &expected, "cancelled run");
    // Epochs before a resume come back from JSON: equal up to float printing.
    for history in [&resumed.history, &finished.history] {
        assert_eq!(history.len(), reference.history.len());
        for (a, b) in history.iter().zip(&reference.history) {
            let close = |x: f64, y: f64| (x - y).abs() <= 1e-9 * y.abs().max(1.0);
            assert!(close(a.train_loss, b.train_loss), "loss {} vs {}", a.train_loss, b.train_loss);
            let (map, map_ema) = (a.val_map.zip(b.val_map), a.val_map_ema.zip(b.val_map_ema));
            assert!(map.is_some_and(|(x, y)| close(x, y)) && map_ema.is_some_and(|(x, y)| close(x, y)));
        }
        assert_eq!(history.last().map(|log| log.train_loss), reference.history.last().map(|log| log.train_loss));
    }

    // A checkpoint only resumes its own run.
    let mut other = setup(3, 16);
    other.train.lr = 1e-2;
    let error = train(other.sections(), data, &limited, &quiet, &never).expect_err("other config");
    assert!(matches!(error, TrainError::Checkpoint { .. }), "{error}");
}

#[test]
fn prompt_tokens_get_gradients_and_frozen_encoder_weights_do_not() {
    let (text, train_set) = (text_inputs(), synthetic(8, 6));
    let encoder = prompt_encoder(&text);
    let setup = setup(1, 8);
    let data = TrainData {
        text: &text,
        encoder: &encoder,
        source: &CachedFeatures { train: &train_set, validation: &train_set },
    };
    let config = model_config(setup.sections(), &data).expect("config");
    let device = Device::flex().autodiff();
    let model = config.init(1, &device).expect("init");
    let prompts = model.prompts.as_ref().expect("CAP prompts").val();

    let batch = train_set.batch(&(0..8).collect::<Vec<_>>(), &device);
    let context = sspa_train::PromptTextEncoder::forward(&encoder, prompts.clone(), &text.labels);
    let output = model.head.forward(text.knowledge_tensor(&device), context, batch.global, batch.patches);
    let loss = SspaLoss::from_section(&setup.train).forward(&output, batch.targets);
    let grads = loss.backward();

    let prompt_grad = prompts.grad(&grads).expect("prompt tokens receive a gradient");
    let norm: f32 = prompt_grad.square().sum().into_scalar();
    assert!(norm > 0.0 && norm.is_finite(), "prompt gradient norm {norm}");
    assert!(encoder.projection.weight.val().grad(&grads).is_none(), "frozen projection got a gradient");
    assert!(encoder.projection.bias.as_ref().expect("bias").val().grad(&grads).is_none());
    assert!(encoder.label_embeddings.grad(&grads).is_none(), "frozen label embeddings got a gradient");

    // And through the optimiser: one training step moves the prompts.
    let params = GradientsParams::from_grads(grads, &model);
    assert!(params.get::<2>(model.prompts.as_ref().expect("prompts").id).is_some());
    let dir = tempfile::tempdir().expect("temp dir");
    let options = TrainOptions::new(dir.path().join("ckpt"), dir.path().join("out"));
    train(setup.sections(), data, &options, &quiet, &never).expect("train");
    let trained = config.load_model(&options.output_dir.join(files::MODEL), &Device::flex()).expect("load");
    let initial = config.init(setup.train.seed, &Device::flex()).expect("init");
    let values = |model: &sspa_train::SspaModel| {
        model.prompts.as_ref().expect("prompts").val().into_data().iter::<f32>().collect::<Vec<_>>()
    };
    assert_ne!(values(&trained), values(&initial), "training left the prompts unchanged");
}

#[test]
fn without_cap_a_fixed_context_is_used_and_no_prompts_are_learned() {
    let (text, train_set, validation) = (text_inputs(), synthetic(32, 7), synthetic(16, 8));
    let encoder = FixedTextEncoder::knowledge(&text).expect("fixed T_l");
    let mut setup = setup(1, 16);
    setup.ablation.cap = false;
    let data = TrainData {
        text: &text,
        encoder: &encoder,
        source: &CachedFeatures { train: &train_set, validation: &validation },
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let options = TrainOptions::new(dir.path().join("ckpt"), dir.path().join("out"));
    let outcome = train(setup.sections(), data, &options, &quiet, &never).expect("train");
    assert!(outcome.finished);
    let predictor = Predictor::load(&options.output_dir, Which::Raw, &Device::flex()).expect("predictor");
    assert_eq!(predictor.config().prompt_tokens, 0);
    let scores = predictor.predict(&validation).expect("scores");
    let map = mean_average_precision(&scores, &validation.targets, CLASSES);
    assert_eq!(map.map(|m| (m * 1e3).round()), outcome.history[0].val_map.map(|m| (m * 1e3).round()));

    // Features of another width are refused with the sizes named.
    let mut narrow = validation.clone();
    narrow.width = 8;
    narrow.global.truncate(narrow.len() * 8);
    narrow.patches.truncate(narrow.len() * PATCHES * 8);
    let error = predictor.predict(&narrow).expect_err("width");
    assert!(
        matches!(error, TrainError::Mismatch { what: "image feature width c", actual: 8, expected: 16 }),
        "{error}"
    );
}

/// mAP with ties ranked in input order (the rule sspa-metrics does not use): only to show that a
/// test's scores have ties where the rule matters.
fn input_order_map(scores: &[f32], targets: &[i8], classes: usize) -> f64 {
    let mut aps = Vec::new();
    for class in 0..classes {
        let mut column: Vec<(f32, i8)> =
            scores.iter().zip(targets).skip(class).step_by(classes).map(|(&s, &t)| (s, t)).collect();
        column.sort_by(|a, b| b.0.total_cmp(&a.0)); // stable: ties keep input order
        let positives = column.iter().filter(|(_, t)| *t == 1).count();
        let (mut hits, mut sum) = (0usize, 0.0);
        for (rank, _) in column.iter().enumerate().filter(|(_, (_, t))| *t == 1) {
            hits += 1;
            sum += hits as f64 / (rank + 1) as f64;
        }
        if positives > 0 {
            aps.push(100.0 * sum / positives as f64);
        }
    }
    aps.iter().sum::<f64>() / aps.len() as f64
}

#[test]
fn validation_map_is_the_metrics_crates_map_of_the_predictors_scores_ties_included() {
    let (text, train_set) = (text_inputs(), synthetic(48, 9));
    // Every validation image twice, the copy with class 0 flipped: a copy scores exactly like its
    // original, so each class-0 positive ties with a negative.
    let original = synthetic(12, 10);
    let mut validation = original.clone();
    for row in 0..original.len() {
        validation.ids.push(format!("{}-copy", original.ids[row]));
        validation.global.extend_from_slice(&original.global[row * WIDTH..(row + 1) * WIDTH]);
        let stride = PATCHES * WIDTH;
        validation.patches.extend_from_slice(&original.patches[row * stride..(row + 1) * stride]);
        let targets = &original.targets[row * CLASSES..(row + 1) * CLASSES];
        validation.targets.push(1 - targets[0]);
        validation.targets.extend_from_slice(&targets[1..]);
    }
    let encoder = prompt_encoder(&text);
    let setup = setup(2, 16);
    let data = TrainData {
        text: &text,
        encoder: &encoder,
        source: &CachedFeatures { train: &train_set, validation: &validation },
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let options = TrainOptions::new(dir.path().join("ckpt"), dir.path().join("out"));
    let outcome = train(setup.sections(), data, &options, &quiet, &never).expect("train");
    let last = outcome.history.last().expect("an epoch");
    let n = original.len();
    for (weights, logged) in [(Which::Raw, last.val_map), (Which::Ema, last.val_map_ema)] {
        let predictor = Predictor::load(&options.output_dir, weights, &Device::flex()).expect("predictor");
        let scores = predictor.predict(&validation).expect("scores");
        assert_eq!(scores[..n * CLASSES], scores[n * CLASSES..], "{weights:?}: copies score like their originals");
        let expected = mean_average_precision(&scores, &validation.targets, CLASSES).expect("positives");
        let logged = logged.expect("validation mAP");
        assert_eq!(logged.to_bits(), expected.to_bits(), "{weights:?}: logged {logged} vs sspa-metrics {expected}");
        let in_input_order = input_order_map(&scores, &validation.targets, CLASSES);
        assert!((in_input_order - expected).abs() > 1e-6, "{weights:?}: the ties do not matter here");
    }
}
