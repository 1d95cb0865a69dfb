//! The train stage's training loop for SSPA (SSPA.md, "Training recipe"), in two modes:
//! - frozen image encoder: global and patch features are computed once upstream and cached
//!   ([`features`]), the head and the CAP prompt tokens are trained on them ([`trainer`]);
//! - trained image encoder: the pretrained encoder ([`backbone`]) is part of the model and encodes
//!   every mini-batch of images ([`images`]) on the way to the head.
//!
//! - [`features`]: [`FeatureSet`] and its atomic, hash-checked cache file; [`mapped`]: the same
//!   file read through a memory map, batch by batch ([`MappedSource`]).
//! - [`text`]: `T_k` inputs and the [`PromptTextEncoder`] hook for CAP.
//! - [`backbone`]: the image encoder as a trained module; [`images`]: the image source hook.
//! - [`model`]: the trained module, `config.json`, deterministic init, safetensors weights.
//! - [`source`]: what the loop trains on, one [`TrainingSource`] trait over cached features
//!   ([`CachedFeatures`]) and images for a trained image encoder ([`FineTune`]).
//! - [`trainer`]: the loop ([`train`]); how a run starts or resumes (`start`) and the per-epoch
//!   validation mAP of raw and EMA weights (`evaluation`) are modules of their own.
//! - [`optim`], [`schedule`], [`ema`]: AdamW with SSPA's parameter groups and global-norm
//!   clipping, warm-up + cosine learning rate, exponential moving average of weights.
//! - [`precision`]: `train.precision`: f32 master weights with a bf16 working copy (`mixed`),
//!   or everything in one type (`f32`, `bf16`).
//! - [`checkpoint`]: per-epoch checkpoints and exact resume.
//! - [`history`]: the per-epoch log (validation mAP by [`sspa_metrics::mean_average_precision`],
//!   the evaluate stage's AP).
//! - [`predict`]: the [`Predictor`] that scores feature sets with the final weights.
//! - [`warm_start`]: a run that starts from a trained model ([`WarmStart`]), class rows remapped
//!   by label name.
//!
//! Modules are not generic over a backend: [`TrainOptions::device`] decides it (CPU `flex` by
//! default).

pub mod backbone;
pub mod checkpoint;
pub mod ema;
pub mod error;
mod evaluation;
pub mod features;
pub mod history;
pub mod images;
pub mod mapped;
pub mod model;
pub mod optim;
pub mod precision;
pub mod predict;
pub mod schedule;
pub mod source;
mod start;
pub mod text;
pub mod trainer;
pub mod warm_start;

pub use backbone::{Backbone, BackboneSpec};
pub use checkpoint::{CheckpointState, latest_checkpoint};
pub use ema::ModelEma;
pub use error::{TensorMismatch, TrainError};
pub use features::{Batch, FeatureSet, FeatureWriter, read_features, write_features, write_features_streamed};
pub use history::{EpochLog, read_history, write_history};
pub use images::{Batches, ImageBatch, ImageSource};
pub use mapped::{MappedFeatures, MappedRows, MappedSource};
pub use model::{ModelConfig, SspaModel, load_weights, match_device_float, save_weights, seeded};
pub use optim::{AdamWGroupsConfig, clip_grad_norm, decayed_parameter_ids, parameter_snapshot};
pub use predict::{Predictor, Weights, files};
pub use schedule::WarmupCosine;
pub use source::{
    CachedFeatures, FeatureRows, FeatureSource, FineTune, Inputs, SourceBatch, SourceBatches, SourceShape,
    TrainingSource, epoch_permutation,
};
/// What [`Predictor::explain`] returns.
pub use sspa_model::SspaOutput;
pub use start::model_config;
pub use text::{FixedTextEncoder, MeanPromptEncoder, PromptTextEncoder, TextInputs};
pub use trainer::{Cancel, Progress, Sections, TrainData, TrainOptions, TrainOutcome, train};
pub use warm_start::{WarmStart, WarmStartReport};
