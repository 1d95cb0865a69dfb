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

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::FloatDType;
use sspa_config::{AblationSection, ModelSection, TrainSection};
use sspa_model::SspaLoss;

use crate::checkpoint::{CheckpointState, save_checkpoint};
use crate::ema::ModelEma;
use crate::error::TrainError;
use crate::evaluation::{HeadText, evaluate, write_outputs};
use crate::history::EpochLog;
use crate::model::SspaModel;
use crate::optim::{AdamWGroupsConfig, clip_grad_norm};
use crate::precision::{compute_dtype, to_compute, working_copy};
use crate::schedule::WarmupCosine;
use crate::source::{SourceBatch, TrainingSource};
use crate::start::{Start, fingerprint, model_config, start_or_resume};
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
    /// The image side: cached features ([`crate::CachedFeatures`]) or images for a trained
    /// image encoder ([`crate::FineTune`]).
    pub source: &'a dyn TrainingSource,
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
    let warm_identity = options.warm_start.as_ref().map(WarmStart::identity).transpose()?;
    let fingerprint = fingerprint(&config, &data, warm_identity.as_deref());
    let device = options.device.clone().autodiff();
    let text = HeadText::new(&config, &data, &device)?;
    let optimizer_config = AdamWGroupsConfig::from_section(&config.train);
    let Start { model, ema, optimizer, mut state, resumed_from } =
        start_or_resume(&config, &data, options, &fingerprint, &optimizer_config, &device)?;
    if let (None, Some(report)) = (resumed_from, &state.warm_start) {
        tracing::info!("{}", warm_start_line(report));
    }
    let recipe = Recipe::new(&config.train, &data, &text, device);
    let mut trained = Trained { model, ema, optimizer };
    let mut epochs_this_call = 0u32;
    while state.epochs_done < recipe.epochs {
        if options.max_epochs_this_call.is_some_and(|limit| epochs_this_call >= limit) {
            break;
        }
        let started = Instant::now();
        let run;
        (trained, run) = recipe.epoch(trained, &mut state, progress, cancel)?;
        let evaluation = evaluate(&trained.model, &trained.ema, &data, &text, options)?;
        let log = EpochLog {
            epoch: state.epochs_done,
            steps: state.global_step,
            train_loss: run.train_loss,
            lr: run.lr,
            val_map: evaluation.map,
            val_map_ema: evaluation.map_ema,
            seconds: started.elapsed().as_secs_f64(),
        };
        let (line, summary) = (epoch_line(&log, recipe.epochs), epoch_summary(&log));
        state.history.push(log);
        let Trained { model, ema, optimizer } = &trained;
        save_checkpoint(
            &options.checkpoint_dir,
            &config,
            model,
            ema.model(),
            optimizer,
            &state,
            options.keep_checkpoints,
        )?;
        epochs_this_call += 1;
        tracing::info!("{line}");
        progress(state.global_step, recipe.total_steps, &summary);
    }
    let finished = state.epochs_done >= recipe.epochs;
    if finished {
        write_outputs(&config, (&trained.model, &trained.ema), &data, &text, &state.history, options)?;
    }
    Ok(TrainOutcome {
        epochs_done: state.epochs_done,
        finished,
        resumed_from,
        history: state.history,
        warm_started: state.warm_start,
    })
}

/// What an epoch's steps measured: the mean training loss and the last learning rate.
struct EpochRun {
    train_loss: f64,
    lr: f64,
}

/// What a run trains: the model, its EMA and the optimiser.
struct Trained {
    model: SspaModel,
    ema: ModelEma<SspaModel>,
    optimizer: ModuleOptimizer,
}

/// What every step of a run reads.
struct Recipe<'a, 'd> {
    data: &'a TrainData<'d>,
    text: &'a HeadText,
    schedule: WarmupCosine,
    loss: SspaLoss,
    settings: StepSettings,
    batch_size: usize,
    epochs: u32,
    total_steps: u64,
    /// The training device, with autodiff.
    device: Device,
}

impl<'a, 'd> Recipe<'a, 'd> {
    fn new(train: &TrainSection, data: &'a TrainData<'d>, text: &'a HeadText, device: Device) -> Self {
        let batch_size = train.batch_size as usize;
        let steps_per_epoch = data.source.steps_per_epoch(batch_size);
        Self {
            data,
            text,
            schedule: WarmupCosine::from_section(train, steps_per_epoch),
            loss: SspaLoss::from_section(train),
            settings: StepSettings { grad_clip: train.grad_clip, compute: compute_dtype(train.precision) },
            batch_size,
            epochs: train.epochs,
            total_steps: steps_per_epoch as u64 * u64::from(train.epochs),
            device,
        }
    }

    /// Epoch `state.epochs_done`: every batch of the source's epoch, one optimiser step and one
    /// EMA update each; `state` counts the epoch and its steps.
    fn epoch(
        &self,
        mut trained: Trained,
        state: &mut CheckpointState,
        progress: Progress<'_>,
        cancel: Cancel<'_>,
    ) -> Result<(Trained, EpochRun), TrainError> {
        let epoch = state.epochs_done;
        let mut loss_sum = 0.0f64;
        let mut step = state.global_step;
        let mut steps_this_epoch = 0usize;
        let mut lr = 0.0;
        for batch in self.data.source.epoch(state.seed, epoch, self.batch_size, &self.device)? {
            if cancel() {
                return Err(TrainError::Cancelled { epochs_done: state.epochs_done });
            }
            lr = self.schedule.lr(step as usize);
            let loss;
            (trained.model, trained.optimizer, loss) = self.step(trained.model, trained.optimizer, batch?, lr)?;
            loss_sum += loss;
            trained.ema.update(&trained.model);
            step += 1;
            steps_this_epoch += 1;
            let message = format!("epoch {}/{} step {step}/{}", epoch + 1, self.epochs, self.total_steps);
            progress(step, self.total_steps, &message);
        }
        state.global_step = step;
        state.epochs_done += 1;
        Ok((trained, EpochRun { train_loss: loss_sum / steps_this_epoch.max(1) as f64, lr }))
    }

    /// One optimiser step; returns the updated model and optimiser and the batch's loss.
    ///
    /// The passes run on [`working_copy`]`(model, compute)` (the model itself when the types
    /// agree) with the inputs cast to `compute`; the loss casts the logits to f32; the gradients
    /// reach the master weights in their own type, where clipping and AdamW read them.
    fn step(
        &self,
        model: SspaModel,
        mut optimizer: ModuleOptimizer,
        batch: SourceBatch,
        lr: f64,
    ) -> Result<(SspaModel, ModuleOptimizer, f64), TrainError> {
        let compute = self.settings.compute;
        let working = working_copy(&model, compute);
        let (global, patches) = batch.inputs.to_compute(compute).encode(&working)?;
        let context = to_compute(self.text.context(&working, self.data), compute);
        let knowledge = to_compute(self.text.knowledge.clone(), compute);
        let output = working.head.forward(knowledge, context, global, patches);
        let loss = self.loss.forward(&output, batch.targets);
        drop(working);
        let value = f64::from(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let grads = if self.settings.grad_clip > 0.0 {
            clip_grad_norm(&model, grads, self.settings.grad_clip).0
        } else {
            grads
        };
        let model = optimizer.step(lr, model, grads);
        Ok((model, optimizer, value))
    }
}

/// What a step needs besides its batch.
#[derive(Debug, Clone, Copy)]
struct StepSettings {
    /// Global gradient-norm clip (0: none).
    grad_clip: f64,
    /// The float type of the forward and backward passes ([`compute_dtype`]).
    compute: FloatDType,
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

#[cfg(test)]
mod tests {
    use super::*;

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
