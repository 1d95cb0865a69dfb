//! Scoring feature sets with a trained head: the [`Predictor`] that evaluate/predict load from a
//! train stage's output directory.
//!
//! Output directory files: `config.json` ([`ModelConfig`]), `model.safetensors` and
//! `model_ema.safetensors` (raw and EMA weights), `text_features.safetensors` (`T_k`, and the
//! final `T_l` of the raw and of the EMA prompts: the text encoder is frozen, so `T_l` is a
//! constant after training and prediction needs no text encoder), `history.json`.

use std::path::Path;

use burn::module::{Module, Param};
use burn::prelude::*;
use sspa_model::Head;

use crate::backbone::Backbone;
use crate::error::TrainError;
use crate::features::FeatureSet;
use crate::model::{ModelConfig, SspaModel, load_weights, save_weights};

/// File names of a train stage's outputs.
pub mod files {
    /// [`crate::ModelConfig`].
    pub const CONFIG: &str = "config.json";
    /// Raw weights.
    pub const MODEL: &str = "model.safetensors";
    /// EMA weights.
    pub const MODEL_EMA: &str = "model_ema.safetensors";
    /// `T_k` and the final `T_l` (raw and EMA).
    pub const TEXT_FEATURES: &str = "text_features.safetensors";
    /// Per-epoch log.
    pub const HISTORY: &str = "history.json";
}

/// Which weights to predict with: the trained weights as they are (`Raw`) or their exponential
/// moving average (`Ema`). The config's `promote.weights` type, so the raw/EMA choice has one home.
pub use sspa_config::ServedWeights as Weights;

/// The head's fixed text inputs after training.
#[derive(Module, Debug)]
pub(crate) struct TextFeatures {
    /// `T_k`, `[C, d_t]`.
    pub knowledge: Param<Tensor<2>>,
    /// `T_l` from the raw prompts, `[C, d_t]`.
    pub context: Param<Tensor<2>>,
    /// `T_l` from the EMA prompts, `[C, d_t]`.
    pub context_ema: Param<Tensor<2>>,
}

impl TextFeatures {
    pub(crate) fn new(knowledge: Tensor<2>, context: Tensor<2>, context_ema: Tensor<2>) -> Self {
        Self {
            knowledge: Param::from_tensor(knowledge.without_autodiff()),
            context: Param::from_tensor(context.without_autodiff()),
            context_ema: Param::from_tensor(context_ema.without_autodiff()),
        }
    }

    pub(crate) fn save(&self, path: &Path) -> Result<(), TrainError> {
        save_weights(self, path)
    }

    fn load(config: &ModelConfig, path: &Path, device: &Device) -> Result<Self, TrainError> {
        let zeros = || Tensor::zeros([config.labels.len(), config.text_width], device);
        load_weights(Self::new(zeros(), zeros(), zeros()), path)
    }
}

/// Probabilities `[n, C]` (row-major) of `n` rows, built by `batch` from row indices, under
/// `head` with text inputs `knowledge` and `context` (all without autodiff), in batches of
/// `batch_size`.
fn score_rows(
    head: &Head,
    (knowledge, context): (&Tensor<2>, &Tensor<2>),
    n: usize,
    batch_size: usize,
    batch: impl Fn(&[usize]) -> crate::features::Batch,
) -> Vec<f32> {
    let indices: Vec<usize> = (0..n).collect();
    let mut scores = Vec::new();
    for chunk in indices.chunks(batch_size.max(1)) {
        let batch = batch(chunk);
        let output = head.forward(knowledge.clone(), context.clone(), batch.global, batch.patches);
        scores.extend(output.scores.into_data().iter::<f32>());
    }
    scores
}

/// A trained head loaded for scoring.
#[derive(Debug)]
pub struct Predictor {
    config: ModelConfig,
    model: SspaModel,
    knowledge: Tensor<2>,
    context: Tensor<2>,
    device: Device,
    batch_size: usize,
}

impl Predictor {
    /// Loads the outputs of a training run from `dir`.
    ///
    /// # Errors
    /// [`TrainError`] when a file is missing, corrupt, or does not match `config.json`.
    pub fn load(dir: &Path, weights: Weights, device: &Device) -> Result<Self, TrainError> {
        let device = device.clone();
        let config = ModelConfig::load(&dir.join(files::CONFIG))?;
        let file = match weights {
            Weights::Raw => files::MODEL,
            Weights::Ema => files::MODEL_EMA,
        };
        let model = config.load_model(&dir.join(file), &device)?.valid();
        let text = TextFeatures::load(&config, &dir.join(files::TEXT_FEATURES), &device)?;
        let context = match weights {
            Weights::Raw => text.context.val(),
            Weights::Ema => text.context_ema.val(),
        };
        Ok(Self { knowledge: text.knowledge.val(), context, config, model, device, batch_size: 256 })
    }

    /// Images scored per forward pass (default 256).
    #[must_use]
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Label names, in the column order of [`Predictor::predict`].
    pub fn labels(&self) -> &[String] {
        &self.config.labels
    }

    /// The configuration the head was trained with.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The trained image encoder, when the run trained one (`model.freeze_image_encoder =
    /// false`): the features given to [`Predictor::predict`] must then come from it.
    pub fn backbone(&self) -> Option<&Backbone> {
        self.model.backbone.as_ref()
    }

    /// Probabilities `p = (σ(s^g) + σ(s^r)) / 2` (or the one branch's), `[n, C]` row-major.
    /// Targets of `features` are not used (they may be all −1) but must be `[n, C]`.
    ///
    /// # Errors
    /// [`TrainError::Mismatch`] when the image feature width or class count differs from the
    /// trained head's;
    /// validation errors of [`FeatureSet::validate`].
    pub fn predict(&self, features: &FeatureSet) -> Result<Vec<f32>, TrainError> {
        features.validate()?;
        expect("image feature width c", features.width, self.model.head.image_width())?;
        expect("C", features.classes, self.config.labels.len())?;
        self.predict_rows(features)
    }

    /// Probabilities of feature rows (in memory, or a mapped file's, read batch by batch), without
    /// checking their buffers or targets: only the image features are read, so the rows' targets
    /// may follow another label set (one that grew or shrank since the model was trained).
    ///
    /// # Errors
    /// [`TrainError::Mismatch`] when the image feature width differs from the trained head's.
    pub fn predict_rows(&self, rows: &impl crate::FeatureRows) -> Result<Vec<f32>, TrainError> {
        expect("image feature width c", rows.sizes().1, self.model.head.image_width())?;
        let text = (&self.knowledge, &self.context);
        Ok(score_rows(&self.model.head, text, rows.len(), self.batch_size, |positions| {
            rows.batch(positions, &self.device)
        }))
    }
}

pub(crate) fn expect(what: &'static str, actual: usize, expected: usize) -> Result<(), TrainError> {
    if actual == expected { Ok(()) } else { Err(TrainError::Mismatch { what, actual, expected }) }
}

impl Predictor {
    /// The head's whole output for the feature rows `rows`, in one forward pass: scores and the
    /// maps behind them (aggregator patch weights `[b, N, C]`, S→V patch gate `[b, N, d]`, V→S
    /// text gate `[b, C, d]`; `None` where the configured head has no such block). For the
    /// attention and gate maps of a few images (SSPA Figs. 7–8).
    ///
    /// # Errors
    /// As [`Predictor::predict`]; [`TrainError::Option`] for an empty `rows` or a row outside
    /// `features`.
    pub fn explain(&self, features: &FeatureSet, rows: &[usize]) -> Result<sspa_model::SspaOutput, TrainError> {
        features.validate()?;
        expect("image feature width c", features.width, self.model.head.image_width())?;
        expect("C", features.classes, self.config.labels.len())?;
        if rows.is_empty() {
            return Err(TrainError::Option { key: "rows", value: "[]".into(), reason: "no feature row to explain" });
        }
        if let Some(row) = rows.iter().find(|&&row| row >= features.len()) {
            return Err(TrainError::Option { key: "rows", value: row.to_string(), reason: "outside the feature set" });
        }
        let batch = features.batch(rows, &self.device);
        Ok(self.model.head.forward(self.knowledge.clone(), self.context.clone(), batch.global, batch.patches))
    }
}
