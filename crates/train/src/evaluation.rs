//! The head's text side during a run, validation mAP of the raw and EMA weights after every
//! epoch, and the final outputs of a finished run.

use burn::module::Module;
use burn::prelude::*;
use sspa_metrics::mean_average_precision;

use crate::ema::ModelEma;
use crate::error::TrainError;
use crate::history::{EpochLog, write_history};
use crate::model::{ModelConfig, SspaModel, save_weights};
use crate::precision::{cast_parameters, to_device_float};
use crate::predict::{TextFeatures, expect, files};
use crate::trainer::{TrainData, TrainOptions};

/// The head's text inputs: `T_k`, and `T_l` fixed for the whole run when CAP is off.
pub(crate) struct HeadText {
    /// `T_k`, `[C, d_t]`, on the training device.
    pub knowledge: Tensor<2>,
    /// `T_l` without CAP: the text encoder's output for zero prompts; `None` with CAP.
    fixed: Option<Tensor<2>>,
}

impl HeadText {
    /// `T_k` of `data` on `device`, and the fixed `T_l` when `config` has no prompt tokens.
    pub fn new(config: &ModelConfig, data: &TrainData<'_>, device: &Device) -> Result<Self, TrainError> {
        let knowledge = data.text.knowledge_tensor(device);
        if config.prompt_tokens != 0 {
            return Ok(Self { knowledge, fixed: None });
        }
        let zeros = Tensor::zeros([config.model.prompt_tokens.max(1) as usize, config.prompt_width], device);
        let fixed = data.encoder.forward(zeros, &data.text.labels).detach();
        expect("T_l rows", fixed.dims()[0], data.text.classes())?;
        expect("T_l width", fixed.dims()[1], data.text.width)?;
        Ok(Self { knowledge, fixed: Some(fixed) })
    }

    /// `T_l` for `model`: through the encoder with its prompts, or the fixed one. The frozen
    /// encoder computes in its device's default float type: prompts of another type (the bf16
    /// working copy under `train.precision = "mixed"`) are cast to it on the way in.
    pub fn context(&self, model: &SspaModel, data: &TrainData<'_>) -> Tensor<2> {
        match (&model.prompts, &self.fixed) {
            (Some(prompts), _) => data.encoder.forward(to_device_float(prompts.val()), &data.text.labels),
            (None, Some(fixed)) => fixed.clone(),
            (None, None) => unreachable!("a run without prompts computes its fixed T_l up front"),
        }
    }
}

/// Validation mAP of the raw and EMA weights (`None` without validation data).
pub(crate) struct Evaluation {
    pub map: Option<f64>,
    pub map_ema: Option<f64>,
}

/// Validation mAP of the raw and EMA weights, computed in the device's default float type: the
/// weights as trained (f32 under `mixed`, bf16 under `bf16` on its bf16 device).
pub(crate) fn evaluate(
    model: &SspaModel,
    ema: &ModelEma<SspaModel>,
    data: &TrainData<'_>,
    text: &HeadText,
    options: &TrainOptions,
) -> Result<Evaluation, TrainError> {
    let float = options.device.settings().float_dtype;
    let map = |candidate: &SspaModel| validation_map(&cast_parameters(candidate.clone(), float), data, text, options);
    Ok(Evaluation { map: map(model)?, map_ema: map(ema.model())? })
}

/// `candidate`'s mAP over the validation split.
fn validation_map(
    candidate: &SspaModel,
    data: &TrainData<'_>,
    text: &HeadText,
    options: &TrainOptions,
) -> Result<Option<f64>, TrainError> {
    let Some(batches) = data.source.validation(options.eval_batch_size, &options.device)? else {
        return Ok(None);
    };
    let knowledge = text.knowledge.clone().without_autodiff();
    let context = text.context(candidate, data).detach().without_autodiff();
    let valid = candidate.valid();
    let (mut scores, mut targets) = (Vec::new(), Vec::new());
    for batch in batches {
        let batch = batch?;
        targets.extend(batch.targets.into_data().iter::<f32>().map(|target| target as i8));
        let (global, patches) = batch.inputs.encode(&valid)?;
        let output = valid.head.forward(knowledge.clone(), context.clone(), global, patches);
        scores.extend(output.scores.into_data().iter::<f32>());
    }
    Ok(mean_average_precision(&scores, &targets, data.text.classes()))
}

/// Writes `model.safetensors`, `model_ema.safetensors`, `text_features.safetensors`,
/// `config.json` and `history.json` to `options.output_dir`.
pub(crate) fn write_outputs(
    config: &ModelConfig,
    (model, ema): (&SspaModel, &ModelEma<SspaModel>),
    data: &TrainData<'_>,
    text: &HeadText,
    history: &[EpochLog],
    options: &TrainOptions,
) -> Result<(), TrainError> {
    let dir = &options.output_dir;
    std::fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
    save_weights(model, &dir.join(files::MODEL))?;
    save_weights(ema.model(), &dir.join(files::MODEL_EMA))?;
    let features = TextFeatures::new(
        text.knowledge.clone(),
        text.context(model, data).detach(),
        text.context(ema.model(), data).detach(),
    );
    features.save(&dir.join(files::TEXT_FEATURES))?;
    config.save(&dir.join(files::CONFIG))?;
    write_history(&dir.join(files::HISTORY), history)
}
