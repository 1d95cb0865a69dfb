//! How a run starts: the [`ModelConfig`] its data implies, the fingerprint a checkpoint must
//! carry to be resumed, and the model, EMA, optimiser and loop state to start from (the latest
//! checkpoint of this run, or the seeded initialisation, warm-started if asked).

use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use sspa_model::HeadConfig;

use crate::checkpoint::{CheckpointState, latest_checkpoint, load_checkpoint};
use crate::ema::ModelEma;
use crate::error::TrainError;
use crate::model::{FORMAT_VERSION, ModelConfig, SspaModel};
use crate::optim::AdamWGroupsConfig;
use crate::precision::{cast_parameters, master_dtype};
use crate::predict::expect;
use crate::trainer::{Sections, TrainData, TrainOptions};

/// Builds the [`ModelConfig`] of a run and checks the data against it.
///
/// # Errors
/// [`TrainError`] for inconsistent sizes or out-of-range options.
pub fn model_config(sections: Sections<'_>, data: &TrainData<'_>) -> Result<ModelConfig, TrainError> {
    data.text.validate()?;
    let text_width = data.text.width;
    expect("encoder output width d_t", data.encoder.output_width(), text_width)?;
    let shape = data.source.check(data.text.classes())?;
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
    let head = HeadConfig::from_sections(
        sections.model.head,
        sections.model,
        sections.ablation,
        Some(text_width),
        shape.image_width,
        data.text.classes(),
    )?;
    // CAP's prompt tokens feed SSPA's text side; a peer reads no text, so it has none.
    let cap = sections.ablation.cap && head.kind() == sspa_model::HeadKind::Sspa;
    let prompt_tokens = if cap { sections.model.prompt_tokens as usize } else { 0 };
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
        patches_per_image: shape.patches_per_image,
        backbone: shape.backbone,
    })
}

/// BLAKE3 over the config, the text inputs, the training source
/// ([`crate::TrainingSource::fingerprint`]: both feature sets, or the images and the pretrained
/// encoder's weights) and the warm start's [`crate::WarmStart::identity`], if any (a run without
/// one keeps the fingerprint it had before warm starts existed).
pub(crate) fn fingerprint(config: &ModelConfig, data: &TrainData<'_>, warm_start: Option<&str>) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(config.canonical_json().as_bytes());
    hasher.update(&crate::features::le_bytes(&data.text.knowledge));
    data.source.fingerprint(&mut hasher);
    if let Some(identity) = warm_start {
        hasher.update(b"warm start\0");
        hasher.update(identity.as_bytes());
    }
    hasher.finalize().to_hex().to_string()
}

/// The model, its EMA, the optimiser and the loop state to start from.
pub(crate) struct Start {
    pub model: SspaModel,
    pub ema: ModelEma<SspaModel>,
    pub optimizer: ModuleOptimizer,
    pub state: CheckpointState,
    /// Epochs done by the checkpoint resumed from, if any.
    pub resumed_from: Option<u32>,
}

/// Resumes from the latest checkpoint in `options.checkpoint_dir`, or starts from the source's
/// seeded initialisation ([`crate::TrainingSource::init`]), warm-started from
/// [`TrainOptions::warm_start`] if given; a fresh start has a fresh EMA and optimiser.
pub(crate) fn start_or_resume(
    config: &ModelConfig,
    data: &TrainData<'_>,
    options: &TrainOptions,
    fingerprint: &str,
    optimizer_config: &AdamWGroupsConfig,
    device: &Device,
) -> Result<Start, TrainError> {
    let train_section = &config.train;
    if let Some(epoch_dir) = latest_checkpoint(&options.checkpoint_dir)? {
        let restored =
            load_checkpoint(&epoch_dir, config, fingerprint, |model| optimizer(optimizer_config, model), device)?;
        let ema = ModelEma::new(&restored.ema, train_section.ema_decay);
        let epochs = restored.state.epochs_done;
        return Ok(Start {
            model: restored.model,
            ema,
            optimizer: restored.optimizer,
            state: restored.state,
            resumed_from: Some(epochs),
        });
    }
    let model = data.source.init(config, train_section.seed, device)?;
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
    Ok(Start { model, ema, optimizer, state, resumed_from: None })
}

/// Grouped AdamW for `model`: weight matrices decay, the CAP prompt tokens do not.
fn optimizer(config: &AdamWGroupsConfig, model: &SspaModel) -> ModuleOptimizer {
    let prompts: Vec<_> = model.prompts.iter().map(|prompts| prompts.id).collect();
    config.init_excluding(model, &prompts)
}
