//! The train stage's training loop for the SSPA head (SSPA.md, "Training recipe"), in the
//! frozen-image-encoder mode: global and patch features are computed once upstream and cached
//! ([`features`]), the head and the CAP prompt tokens are trained on them ([`trainer`]).
//!
//! - [`features`]: [`FeatureSet`] and its atomic, hash-checked cache file.
//! - [`text`]: `T_k` inputs and the [`PromptTextEncoder`] hook for CAP.
//! - [`model`]: the trained module, `config.json`, deterministic init, safetensors weights.
//! - [`trainer`]: the loop ([`train`]), per-epoch validation mAP of raw and EMA weights.
//! - [`checkpoint`]: per-epoch checkpoints and exact resume.
//! - [`history`]: the per-epoch log; [`metrics`]: AP / mAP for it.
//! - [`predict`]: the [`Predictor`] that scores feature sets with the final weights.
//!
//! Modules are not generic over a backend: [`TrainOptions::device`] decides it (CPU `flex` by
//! default).

pub mod checkpoint;
pub mod error;
pub mod features;
pub mod history;
pub mod metrics;
pub mod model;
pub mod predict;
pub mod text;
pub mod trainer;

pub use checkpoint::{CheckpointState, latest_checkpoint};
pub use error::TrainError;
pub use features::{Batch, CacheHeader, FeatureSet, feature_cache_path, read_feature_cache, write_feature_cache};
pub use history::{EpochLog, read_history, write_history};
pub use metrics::{average_precision, mean_average_precision};
pub use model::{ModelConfig, SspaModel, load_weights, save_weights, seeded};
pub use predict::{Predictor, Weights, files};
pub use text::{FixedTextEncoder, MeanPromptEncoder, PromptTextEncoder, TextInputs};
pub use trainer::{
    Cancel, Progress, Sections, TrainData, TrainOptions, TrainOutcome, epoch_permutation, model_config, train,
};
