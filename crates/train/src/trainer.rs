//! The training loop (SSPA.md, "Training recipe"): seeded per-epoch shuffles, mini-batches, the
//! SSPA loss, optional global-norm clipping, grouped AdamW with warm-up + cosine learning rate,
//! an EMA of the weights updated every step, validation mAP of raw and EMA weights after every
//! epoch, and a checkpoint after every epoch from which an interrupted run resumes.
//!
//! Resuming is exact on CPU: the weights, EMA and AdamW state are stored bit for bit, parameter
//! ids are deterministic, and epoch `e`'s shuffle depends only on `(seed, e)`.
//!
//! `train.precision` ([`crate::precision`]) picks the type of the trained weights and of the
//! passes: under `mixed` the weights, AdamW state, EMA and checkpoints are f32 and every step runs
//! forward and backward on a bf16 copy of the model.
//!
//! A run starts from the seeded initialisation or, with [`TrainOptions::warm_start`], from a
//! trained model ([`crate::warm_start`]). Every finished epoch logs one `tracing` info line
//! (`train: epoch 3/8 loss 0.1234 val mAP 81.20 / EMA 80.90 lr 9.5e-4 55.2 s`).

use std::path::PathBuf;
use std::time::Instant;

use crate::ema::ModelEma;
use crate::optim::{AdamWGroupsConfig, clip_grad_norm};
use crate::precision::{cast_parameters, compute_dtype, master_dtype, to_compute, to_device_float, working_copy};
use crate::schedule::WarmupCosine;
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::FloatDType;
use sspa_config::{AblationSection, ModelSection, TrainSection};
use sspa_metrics::mean_average_precision;
use sspa_model::{SspaHeadConfig, SspaLoss};

use crate::backbone::{Backbone, BackboneSpec};
use crate::checkpoint::{CheckpointState, latest_checkpoint, load_checkpoint, save_checkpoint};
use crate::error::TrainError;
use crate::features::FeatureSet;
use crate::history::{EpochLog, write_history};
use crate::images::{ImageBatch, ImageSource};
use crate::model::{FORMAT_VERSION, ModelConfig, SspaModel, save_weights};
use crate::predict::{TextFeatures, expect, files, score_features};
use crate::text::{PromptTextEncoder, TextInputs};
use crate::warm_start::{WarmStart, WarmStartReport};

/// Progress callback: `(done_steps, total_steps, message)`.
pub type Progress<'a> = &'a (dyn Fn(u64, u64, &str) + Send + Sync);
/// Cancel check, polled before every step.
pub type Cancel<'a> = &'a (dyn Fn() -> bool + Send + Sync);

/// The domain config sections the loop reads.
#[derive(Debug, Clone, Copy)]
pub struct Sections<'a> {
    /// `[model]`: `embed_dim`, `prompt_tokens`.
    pub model: &'a ModelSection,
    /// `[ablation]`: head switches and `cap`.
    pub ablation: &'a AblationSection,
    /// `[train]`: epochs, batch size, lr, schedule, EMA, clip, loss, seed.
    pub train: &'a TrainSection,
}

/// What the loop trains on.
#[derive(Clone, Copy)]
pub struct TrainData<'a> {
    /// Label names and `T_k`.
    pub text: &'a TextInputs,
    /// The frozen text encoder producing `T_l` from the prompts (with `ablation.cap = false`, a
    /// [`crate::FixedTextEncoder`]; it is then called once, with zero prompts).
    pub encoder: &'a dyn PromptTextEncoder,
    /// Cached features (frozen image encoder) or images (trained image encoder).
    pub examples: Examples<'a>,
}

/// The image side of the training data.
#[derive(Clone, Copy)]
pub enum Examples<'a> {
    /// Features of a frozen image encoder, computed once.
    Features {
        /// Training features.
        train: &'a FeatureSet,
        /// Validation features (may be empty: mAP is then not reported).
        validation: &'a FeatureSet,
    },
    /// Images, encoded every step by an image encoder trained with the head.
    Images(FineTune<'a>),
}

/// Fine-tuning inputs: the images and the pretrained image encoder to start from.
#[derive(Clone, Copy)]
pub struct FineTune<'a> {
    /// Training and validation images.
    pub source: &'a dyn ImageSource,
    /// The pretrained encoder, on the training device with autodiff
    /// ([`TrainOptions::device`]`.autodiff()`); the model starts from a copy.
    pub backbone: &'a Backbone,
    /// Its architecture (recorded in `config.json`).
    pub spec: &'a BackboneSpec,
    /// Identifies the pretrained weights (part of the run's fingerprint).
    pub weights_hash: &'a str,
}

/// Where and how to run.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Checkpoints (`latest.json`, `epoch-XXXX/`); an existing checkpoint of the same run is resumed.
    pub checkpoint_dir: PathBuf,
    /// Final outputs (see [`crate::predict`]); written when the last epoch is done.
    pub output_dir: PathBuf,
    /// Stop (with a checkpoint) after this many epochs in this call; `None` runs to the end.
    pub max_epochs_this_call: Option<u32>,
    /// The device to train on (without autodiff; the loop adds it). Default: CPU `flex`.
    pub device: Device,
    /// Images per forward pass during validation.
    pub eval_batch_size: usize,
    /// Epoch checkpoints kept (at least 1).
    pub keep_checkpoints: usize,
    /// Start from a trained model instead of the seeded initialisation (ignored when a checkpoint
    /// of this run is resumed).
    ///
    /// Its identity (old `config.json` and weights file hash) is part of the checkpoint
    /// fingerprint: resuming needs the same, unchanged files, and a checkpoint of another start
    /// is refused.
    pub warm_start: Option<WarmStart>,
}

impl TrainOptions {
    /// Defaults: CPU, run to the end, validation batches of 256, keep 1 checkpoint, no warm start.
    pub fn new(checkpoint_dir: impl Into<PathBuf>, output_dir: impl Into<PathBuf>) -> Self {
        Self {
            checkpoint_dir: checkpoint_dir.into(),
            output_dir: output_dir.into(),
            max_epochs_this_call: None,
            device: Device::flex(),
            eval_batch_size: 256,
            keep_checkpoints: 1,
            warm_start: None,
        }
    }
}

/// What a call to [`train`] did.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// Epochs finished in total (earlier calls included).
    pub epochs_done: u32,
    /// All epochs of `train.epochs` are done and the final outputs are written.
    pub finished: bool,
    /// The epoch count of the checkpoint this call resumed from.
    pub resumed_from: Option<u32>,
    /// The whole log so far.
    pub history: Vec<EpochLog>,
    /// What the warm start of this run copied (also when this call resumed it); `None` for a run
    /// from the seeded initialisation.
    pub warm_started: Option<WarmStartReport>,
}

/// Builds the [`ModelConfig`] of a run and checks the data against it.
///
/// # Errors
/// [`TrainError`] for inconsistent sizes or out-of-range options.
pub fn model_config(sections: Sections<'_>, data: &TrainData<'_>) -> Result<ModelConfig, TrainError> {
    data.text.validate()?;
    let text_width = data.text.width;
    expect("encoder output width d_t", data.encoder.output_width(), text_width)?;
    let (image_width, patches_per_image, backbone) = match data.examples {
        Examples::Features { train, validation } => {
            train.validate()?;
            expect("C (train)", train.classes, data.text.classes())?;
            if !validation.is_empty() {
                validation.validate()?;
                expect("C (validation)", validation.classes, data.text.classes())?;
                expect("d (validation)", validation.width, train.width)?;
            }
            if train.is_empty() {
                return Err(TrainError::Option {
                    key: "train",
                    value: "0 images".into(),
                    reason: "nothing to train on",
                });
            }
            (train.width, train.patches_per_image, None)
        }
        Examples::Images(fine_tune) => {
            let source = fine_tune.source;
            expect("C (images)", source.classes(), data.text.classes())?;
            if source.train_batches() == 0 {
                return Err(TrainError::Option {
                    key: "train",
                    value: format!("{} images", source.train_len()),
                    reason: "not one full batch to train on",
                });
            }
            let spec = fine_tune.spec;
            (spec.width(), spec.patches_per_image(source.image_size()), Some(spec.clone()))
        }
    };
    let train = sections.train;
    if train.batch_size == 0 || train.epochs == 0 {
        return Err(TrainError::Option {
            key: "train.batch_size / train.epochs",
            value: format!("{} / {}", train.batch_size, train.epochs),
            reason: "must be positive",
        });
    }
    if !(0.0..1.0).contains(&train.ema_decay) {
        return Err(TrainError::Option {
            key: "train.ema_decay",
            value: train.ema_decay.to_string(),
            reason: "must be in [0, 1), as config validation checks",
        });
    }
    let head = SspaHeadConfig::from_sections(
        sections.model,
        sections.ablation,
        Some(text_width),
        image_width,
        data.text.classes(),
    )?;
    let prompt_tokens = if sections.ablation.cap { sections.model.prompt_tokens as usize } else { 0 };
    if data.encoder.prompt_width() == 0 {
        return Err(TrainError::Option {
            key: "encoder prompt width",
            value: "0".into(),
            reason: "prompt tokens need a positive width",
        });
    }
    Ok(ModelConfig {
        format_version: FORMAT_VERSION,
        head,
        model: sections.model.clone(),
        ablation: sections.ablation.clone(),
        train: train.clone(),
        labels: data.text.labels.clone(),
        text_width,
        prompt_tokens,
        prompt_width: data.encoder.prompt_width(),
        patches_per_image,
        backbone,
    })
}

/// BLAKE3 over the config, the text inputs, the examples (both feature sets, or the images and
/// the pretrained encoder's weights) and the warm start's [`WarmStart::identity`], if any (a run
/// without one keeps the fingerprint it had before warm starts existed).
fn fingerprint(config: &ModelConfig, data: &TrainData<'_>, warm_start: Option<&str>) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(config.canonical_json().as_bytes());
    hasher.update(&crate::features::le_bytes(&data.text.knowledge));
    match data.examples {
        Examples::Features { train, validation } => {
            hasher.update(train.content_hash().as_bytes());
            hasher.update(validation.content_hash().as_bytes());
        }
        Examples::Images(fine_tune) => {
            hasher.update(fine_tune.source.fingerprint().as_bytes());
            hasher.update(fine_tune.weights_hash.as_bytes());
        }
    }
    if let Some(identity) = warm_start {
        hasher.update(b"warm start\0");
        hasher.update(identity.as_bytes());
    }
    hasher.finalize().to_hex().to_string()
}

/// The order of epoch `epoch` (0-based): a Fisher–Yates shuffle seeded by `(seed, epoch)`, drawn
/// from the project's generator ([`sspa_rng::SplitMix64`]). Its draws are reduced modulo
/// `i + 1` (not by [`sspa_rng::SplitMix64::below`]): the orders, and so every trained model of a
/// seed, stay those of earlier versions.
pub fn epoch_permutation(seed: u64, epoch: u32, n: usize) -> Vec<usize> {
    let mut rng =
        sspa_rng::SplitMix64::new(seed ^ u64::from(epoch).wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// `T_l` for `model`: through the encoder with its prompts, or the fixed one. The frozen encoder
/// computes in its device's default float type: prompts of another type (the bf16 working copy
/// under `train.precision = "mixed"`) are cast to it on the way in.
fn context(model: &SspaModel, data: &TrainData<'_>, fixed: Option<&Tensor<2>>) -> Tensor<2> {
    match (&model.prompts, fixed) {
        (Some(prompts), _) => data.encoder.forward(to_device_float(prompts.val()), &data.text.labels),
        (None, Some(fixed)) => fixed.clone(),
        (None, None) => unreachable!("a run without prompts computes its fixed T_l up front"),
    }
}

struct Evaluation {
    map: Option<f64>,
    map_ema: Option<f64>,
}

/// Validation mAP of the raw and EMA weights.
fn evaluate(
    model: &SspaModel,
    ema: &ModelEma<SspaModel>,
    data: &TrainData<'_>,
    knowledge: &Tensor<2>,
    fixed: Option<&Tensor<2>>,
    options: &TrainOptions,
) -> Result<Evaluation, TrainError> {
    let plain = &options.device;
    let knowledge = knowledge.clone().without_autodiff();
    // Validation computes in the device's default float type: the weights as trained (f32 under
    // `mixed`, bf16 under `bf16` on its bf16 device); a no-op unless the two differ.
    let float = plain.settings().float_dtype;
    let ema_model = cast_parameters(ema.model().clone(), float);
    let ema = &ema_model;
    let model = &cast_parameters(model.clone(), float);
    match data.examples {
        Examples::Features { validation, .. } => {
            if validation.is_empty() {
                return Ok(Evaluation { map: None, map_ema: None });
            }
            let run = |candidate: &SspaModel| {
                let context = context(candidate, data, fixed).detach().without_autodiff();
                let head = candidate.head.valid();
                let scores = score_features(&head, &knowledge, &context, validation, options.eval_batch_size, plain);
                mean_average_precision(&scores, &validation.targets, validation.classes)
            };
            Ok(Evaluation { map: run(model), map_ema: run(ema) })
        }
        Examples::Images(fine_tune) => {
            if fine_tune.source.validation_len() == 0 {
                return Ok(Evaluation { map: None, map_ema: None });
            }
            let run = |candidate: &SspaModel| -> Result<Option<f64>, TrainError> {
                let context = context(candidate, data, fixed).detach().without_autodiff();
                let valid = candidate.valid();
                let (mut scores, mut targets) = (Vec::new(), Vec::new());
                for batch in fine_tune.source.validation()? {
                    let batch = batch?;
                    batch.validate(data.text.classes())?;
                    targets.extend_from_slice(&batch.targets);
                    let (images, _) = batch.into_tensors(plain);
                    let (global, patches) = encode(&valid, images)?;
                    let output = valid.head.forward(knowledge.clone(), context.clone(), global, patches);
                    scores.extend(output.scores.into_data().iter::<f32>());
                }
                Ok(mean_average_precision(&scores, &targets, data.text.classes()))
            };
            Ok(Evaluation { map: run(model)?, map_ema: run(ema)? })
        }
    }
}

/// The trained image encoder's global and patch features of `images`.
fn encode(model: &SspaModel, images: Tensor<4>) -> Result<(Tensor<2>, Tensor<3>), TrainError> {
    let backbone = model.backbone.as_ref().ok_or(TrainError::Option {
        key: "model.freeze_image_encoder",
        value: "true".into(),
        reason: "training on images needs the image encoder in the model",
    })?;
    let features = backbone.forward(images);
    Ok((features.global, features.patches))
}

/// One epoch's mini-batches: rows of the feature set, or image batches from the source.
enum EpochBatches<'a> {
    Rows { set: &'a FeatureSet, chunks: std::vec::IntoIter<Vec<usize>> },
    Images(crate::images::Batches<'a>),
}

/// One mini-batch (one at a time: the size difference of the variants does not matter).
#[allow(clippy::large_enum_variant)]
enum StepBatch {
    Features(crate::features::Batch),
    Images(ImageBatch),
}

impl<'a> EpochBatches<'a> {
    fn new(data: &TrainData<'a>, seed: u64, epoch: u32, batch_size: usize) -> Result<Self, TrainError> {
        Ok(match data.examples {
            Examples::Features { train, .. } => {
                let order = epoch_permutation(seed, epoch, train.len());
                let chunks = order.chunks(batch_size).map(<[usize]>::to_vec).collect::<Vec<_>>().into_iter();
                Self::Rows { set: train, chunks }
            }
            Examples::Images(fine_tune) => Self::Images(fine_tune.source.train_epoch(epoch)?),
        })
    }

    fn next(&mut self, device: &Device) -> Option<Result<StepBatch, TrainError>> {
        match self {
            Self::Rows { set, chunks } => chunks.next().map(|rows| Ok(StepBatch::Features(set.batch(&rows, device)))),
            Self::Images(batches) => batches.next().map(|batch| batch.map(StepBatch::Images)),
        }
    }
}

/// Grouped AdamW for `model`: weight matrices decay, the CAP prompt tokens do not.
fn optimizer(config: &AdamWGroupsConfig, model: &SspaModel) -> ModuleOptimizer {
    let prompts: Vec<_> = model.prompts.iter().map(|prompts| prompts.id).collect();
    config.init_excluding(model, &prompts)
}

/// Steps in one epoch.
fn steps_per_epoch(data: &TrainData<'_>, batch_size: usize) -> usize {
    match data.examples {
        Examples::Features { train, .. } => train.len().div_ceil(batch_size),
        Examples::Images(fine_tune) => fine_tune.source.train_batches(),
    }
}

/// Trains the model, resuming from `options.checkpoint_dir` when it holds a checkpoint of this
/// run, and writes the final outputs to `options.output_dir` when the last epoch is done.
///
/// `progress` is called after every step; `cancel` is polled before every step and ends the call
/// with [`TrainError::Cancelled`] (the epoch in progress is dropped; the last checkpoint stays).
///
/// # Errors
/// [`TrainError`] for inconsistent inputs, a checkpoint of another run, I/O failures, unreadable
/// training images, or a cancellation.
pub fn train(
    sections: Sections<'_>,
    data: TrainData<'_>,
    options: &TrainOptions,
    progress: Progress<'_>,
    cancel: Cancel<'_>,
) -> Result<TrainOutcome, TrainError> {
    let config = model_config(sections, &data)?;
    let train_section = &config.train;
    let warm_identity = options.warm_start.as_ref().map(WarmStart::identity).transpose()?;
    let fingerprint = fingerprint(&config, &data, warm_identity.as_deref());
    let device = options.device.clone().autodiff();
    let batch_size = train_section.batch_size as usize;
    let steps_per_epoch = steps_per_epoch(&data, batch_size);
    let total_steps = steps_per_epoch as u64 * u64::from(train_section.epochs);
    let schedule = WarmupCosine::from_section(train_section, steps_per_epoch);
    let loss_function = SspaLoss::from_section(train_section);
    let optimizer_config = AdamWGroupsConfig::from_section(train_section);
    let knowledge = data.text.knowledge_tensor(&device);
    let fixed_context = fixed_context(&config, &data, &device)?;
    let Start { mut model, mut ema, mut optimizer, mut state, resumed_from } =
        start_or_resume(&config, &data, options, &fingerprint, &optimizer_config, &device)?;
    if let (None, Some(report)) = (resumed_from, &state.warm_start) {
        tracing::info!("{}", warm_start_line(report));
    }

    let mut epochs_this_call = 0u32;
    while state.epochs_done < train_section.epochs {
        if options.max_epochs_this_call.is_some_and(|limit| epochs_this_call >= limit) {
            break;
        }
        let started = Instant::now();
        let epoch = state.epochs_done;
        let mut batches = EpochBatches::new(&data, state.seed, epoch, batch_size)?;
        let mut loss_sum = 0.0f64;
        let mut step = state.global_step;
        let mut steps_this_epoch = 0usize;
        let mut lr = 0.0;
        while let Some(batch) = batches.next(&device) {
            if cancel() {
                return Err(TrainError::Cancelled { epochs_done: state.epochs_done });
            }
            let batch = batch?;
            lr = schedule.lr(step as usize);
            (model, optimizer, loss_sum) = train_step(
                model,
                optimizer,
                StepInputs { data: &data, batch, knowledge: &knowledge, fixed: fixed_context.as_ref(), lr },
                &loss_function,
                StepSettings { grad_clip: train_section.grad_clip, compute: compute_dtype(train_section.precision) },
                &device,
                loss_sum,
            )?;
            ema.update(&model);
            step += 1;
            steps_this_epoch += 1;
            progress(
                step,
                total_steps,
                &format!("epoch {}/{} step {step}/{total_steps}", epoch + 1, train_section.epochs),
            );
        }
        drop(batches);
        let evaluation = evaluate(&model, &ema, &data, &knowledge, fixed_context.as_ref(), options)?;
        state.global_step = step;
        state.epochs_done += 1;
        state.history.push(EpochLog {
            epoch: state.epochs_done,
            steps: step,
            train_loss: loss_sum / steps_this_epoch.max(1) as f64,
            lr,
            val_map: evaluation.map,
            val_map_ema: evaluation.map_ema,
            seconds: started.elapsed().as_secs_f64(),
        });
        save_checkpoint(
            &options.checkpoint_dir,
            &config,
            &model,
            ema.model(),
            &optimizer,
            &state,
            options.keep_checkpoints,
        )?;
        epochs_this_call += 1;
        if let Some(log) = state.history.last() {
            tracing::info!("{}", epoch_line(log, train_section.epochs));
            progress(step, total_steps, &epoch_summary(log));
        }
    }

    let finished = state.epochs_done >= train_section.epochs;
    if finished {
        write_outputs(&config, &model, &ema, &data, &knowledge, fixed_context.as_ref(), &state.history, options)?;
    }
    Ok(TrainOutcome {
        epochs_done: state.epochs_done,
        finished,
        resumed_from,
        history: state.history,
        warm_started: state.warm_start,
    })
}

struct StepInputs<'a, 'd> {
    data: &'a TrainData<'d>,
    batch: StepBatch,
    knowledge: &'a Tensor<2>,
    fixed: Option<&'a Tensor<2>>,
    lr: f64,
}

/// The model, its EMA, the optimiser and the loop state to start from.
struct Start {
    model: SspaModel,
    ema: ModelEma<SspaModel>,
    optimizer: ModuleOptimizer,
    state: CheckpointState,
    /// Epochs done by the checkpoint resumed from, if any.
    resumed_from: Option<u32>,
}

/// Resumes from the latest checkpoint in `options.checkpoint_dir`, or starts from the seeded
/// initialisation (with the pretrained backbone when the image encoder is trained), warm-started
/// from [`TrainOptions::warm_start`] if given; a fresh start has a fresh EMA and optimiser.
fn start_or_resume(
    config: &ModelConfig,
    data: &TrainData<'_>,
    options: &TrainOptions,
    fingerprint: &str,
    optimizer_config: &AdamWGroupsConfig,
    device: &Device,
) -> Result<Start, TrainError> {
    let train_section = &config.train;
    Ok(match latest_checkpoint(&options.checkpoint_dir)? {
        Some(epoch_dir) => {
            let restored =
                load_checkpoint(&epoch_dir, config, fingerprint, |model| optimizer(optimizer_config, model), device)?;
            let ema = ModelEma::new(&restored.ema, train_section.ema_decay);
            let epochs = restored.state.epochs_done;
            Start {
                model: restored.model,
                ema,
                optimizer: restored.optimizer,
                state: restored.state,
                resumed_from: Some(epochs),
            }
        }
        None => {
            let model = match data.examples {
                Examples::Features { .. } => config.init(train_section.seed, device)?,
                Examples::Images(fine_tune) => {
                    config.init_with_backbone(train_section.seed, device, fine_tune.backbone.clone())?
                }
            };
            let (model, warm_start) = match &options.warm_start {
                Some(start) => {
                    let (model, report) = start.apply(model, config)?;
                    (model, Some(report))
                }
                None => (model, None),
            };
            // The master weights: f32 under `f32` and `mixed`, bf16 under `bf16`.
            let model = cast_parameters(model, master_dtype(train_section.precision));
            let ema = ModelEma::new(&model, train_section.ema_decay);
            let optimizer = optimizer(optimizer_config, &model);
            let state = CheckpointState {
                format_version: FORMAT_VERSION,
                epochs_done: 0,
                global_step: 0,
                seed: train_section.seed,
                fingerprint: fingerprint.to_owned(),
                history: Vec::new(),
                warm_start,
            };
            Start { model, ema, optimizer, state, resumed_from: None }
        }
    })
}

/// `T_l` without CAP: the text encoder's output for zero prompts, fixed for the whole run.
fn fixed_context(config: &ModelConfig, data: &TrainData<'_>, device: &Device) -> Result<Option<Tensor<2>>, TrainError> {
    if config.prompt_tokens != 0 {
        return Ok(None);
    }
    let zeros = Tensor::zeros([config.model.prompt_tokens.max(1) as usize, config.prompt_width], device);
    let fixed = data.encoder.forward(zeros, &data.text.labels).detach();
    expect("T_l rows", fixed.dims()[0], data.text.classes())?;
    expect("T_l width", fixed.dims()[1], data.text.width)?;
    Ok(Some(fixed))
}

/// `epoch 3 done: loss 1.2345, val mAP 80.00 / EMA 79.00`.
fn epoch_summary(log: &EpochLog) -> String {
    format!(
        "epoch {} done: loss {:.4}, val mAP {} / EMA {}",
        log.epoch,
        log.train_loss,
        log.val_map.map_or("-".into(), |m| format!("{m:.2}")),
        log.val_map_ema.map_or("-".into(), |m| format!("{m:.2}"))
    )
}

/// The log line of a finished epoch:
/// `train: epoch 3/8 loss 0.1234 val mAP 81.20 / EMA 80.90 lr 9.5e-4 55.2 s` (`-` without
/// validation mAP).
fn epoch_line(log: &EpochLog, epochs: u32) -> String {
    let map = |map: Option<f64>| map.map_or("-".into(), |map| format!("{map:.2}"));
    format!(
        "train: epoch {}/{epochs} loss {:.4} val mAP {} / EMA {} lr {:.1e} {:.1} s",
        log.epoch,
        log.train_loss,
        map(log.val_map),
        map(log.val_map_ema),
        log.lr,
        log.seconds
    )
}

/// The log line of a warm start: the file, what was copied, the label changes.
fn warm_start_line(report: &WarmStartReport) -> String {
    let labels = |labels: &[String]| if labels.is_empty() { "none".into() } else { labels.join(", ") };
    format!(
        "train: warm start from `{}`: {} tensor(s) copied, {} class tensor(s) remapped by label ({} row(s)), \
         {} kept their initialisation; labels added: {}; labels removed: {}",
        report.weights.display(),
        report.tensors_copied,
        report.tensors_remapped,
        report.rows_remapped,
        report.kept_init.len(),
        labels(&report.labels_added),
        labels(&report.labels_removed)
    )
}

/// What a step needs besides its batch.
#[derive(Debug, Clone, Copy)]
struct StepSettings {
    /// Global gradient-norm clip (0: none).
    grad_clip: f64,
    /// The float type of the forward and backward passes ([`compute_dtype`]).
    compute: FloatDType,
}

/// One optimiser step; returns the updated model and optimiser and `loss_sum` plus this loss.
///
/// The passes run on [`working_copy`]`(model, compute)` (the model itself when the types agree)
/// with the inputs cast to `compute`; the loss casts the logits to f32; the gradients reach the
/// master weights in their own type, where clipping and AdamW read them.
fn train_step(
    model: SspaModel,
    mut optimizer: ModuleOptimizer,
    inputs: StepInputs<'_, '_>,
    loss_function: &SspaLoss,
    settings: StepSettings,
    device: &Device,
    loss_sum: f64,
) -> Result<(SspaModel, ModuleOptimizer, f64), TrainError> {
    let compute = settings.compute;
    let working = working_copy(&model, compute);
    let (global, patches, targets) = match inputs.batch {
        StepBatch::Features(batch) => (batch.global, batch.patches, batch.targets),
        StepBatch::Images(batch) => {
            batch.validate(inputs.data.text.classes())?;
            let (images, targets) = batch.into_tensors(device);
            let (global, patches) = encode(&working, to_compute(images, compute))?;
            (global, patches, targets)
        }
    };
    let context = to_compute(context(&working, inputs.data, inputs.fixed), compute);
    let knowledge = to_compute(inputs.knowledge.clone(), compute);
    let output = working.head.forward(knowledge, context, to_compute(global, compute), to_compute(patches, compute));
    let loss = loss_function.forward(&output, targets);
    drop(working);
    let value = f64::from(loss.clone().into_scalar::<f32>());
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let grads = if settings.grad_clip > 0.0 { clip_grad_norm(&model, grads, settings.grad_clip).0 } else { grads };
    let model = optimizer.step(inputs.lr, model, grads);
    Ok((model, optimizer, loss_sum + value))
}

/// Writes `model.safetensors`, `model_ema.safetensors`, `text_features.safetensors`,
/// `config.json` and `history.json`.
#[allow(clippy::too_many_arguments)]
fn write_outputs(
    config: &ModelConfig,
    model: &SspaModel,
    ema: &ModelEma<SspaModel>,
    data: &TrainData<'_>,
    knowledge: &Tensor<2>,
    fixed: Option<&Tensor<2>>,
    history: &[EpochLog],
    options: &TrainOptions,
) -> Result<(), TrainError> {
    let dir = &options.output_dir;
    std::fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
    save_weights(model, &dir.join(files::MODEL))?;
    save_weights(ema.model(), &dir.join(files::MODEL_EMA))?;
    let text = TextFeatures::new(
        knowledge.clone(),
        context(model, data, fixed).detach(),
        context(ema.model(), data, fixed).detach(),
    );
    text.save(&dir.join(files::TEXT_FEATURES))?;
    config.save(&dir.join(files::CONFIG))?;
    write_history(&dir.join(files::HISTORY), history)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_permutations_are_seeded_permutations() {
        let order = epoch_permutation(7, 3, 100);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(order, epoch_permutation(7, 3, 100), "same seed and epoch, same order");
        assert_ne!(order, epoch_permutation(7, 4, 100), "epochs differ");
        assert_ne!(order, epoch_permutation(8, 3, 100), "seeds differ");
        assert_ne!(order, sorted, "shuffled");
        // The order earlier versions drew (their own SplitMix64 copy, modulo reduction): pinned,
        // so moving to the shared generator changed no trained model.
        assert_eq!(epoch_permutation(7, 3, 12), [0, 1, 7, 5, 3, 11, 8, 2, 9, 4, 6, 10]);
    }

    #[test]
    fn epoch_lines_for_cron_logs() {
        let log = EpochLog {
            epoch: 3,
            steps: 24,
            train_loss: 0.123_44,
            lr: 9.5e-4,
            val_map: Some(81.2),
            val_map_ema: Some(80.904),
            seconds: 55.23,
        };
        assert_eq!(epoch_line(&log, 8), "train: epoch 3/8 loss 0.1234 val mAP 81.20 / EMA 80.90 lr 9.5e-4 55.2 s");
        let unvalidated = EpochLog { val_map: None, val_map_ema: None, lr: 0.003, ..log };
        assert_eq!(epoch_line(&unvalidated, 8), "train: epoch 3/8 loss 0.1234 val mAP - / EMA - lr 3.0e-3 55.2 s");
    }

    #[test]
    fn warm_start_lines_name_the_file_and_the_label_changes() {
        let report = WarmStartReport {
            weights: "old/model_ema.safetensors".into(),
            tensors_copied: 40,
            tensors_remapped: 1,
            rows_remapped: 4,
            labels_added: vec!["fox".into(), "owl".into()],
            labels_removed: Vec::new(),
            kept_init: vec!["prompts".into()],
        };
        assert_eq!(
            warm_start_line(&report),
            "train: warm start from `old/model_ema.safetensors`: 40 tensor(s) copied, 1 class tensor(s) remapped \
             by label (4 row(s)), 1 kept their initialisation; labels added: fox, owl; labels removed: none"
        );
    }
}
