//! infer: the models a config names, on the device it names — the library the stages and the CLI
//! both load models through.
//!
//! - [`device`]: the one place the tensor backend is chosen (`train.device`, `train.precision`,
//!   the build's `tch` feature).
//! - [`encoders`]: the frozen text and image encoders of a `model.preset` (or of a path given to
//!   `sspa-pipe encode`), their weight files and hashes.
//! - [`features`]: an image encoder over a shard split, and the `features.json` manifest that
//!   records which encoder made a feature set.
//! - [`encode`]: texts and image files → rows of `sspa-table` (`sspa-pipe encode`).
//! - [`predict`]: image files → label probabilities with a trained run, wrapping sspa-train's
//!   [`sspa_train::Predictor`] (`sspa-pipe predict`).
//! - [`score`]: a trained model's scores on a split of the current shards (the promotion gate).

pub mod device;
pub mod encode;
pub mod encoders;
pub mod features;
pub mod predict;
pub mod score;

pub use device::{DeviceError, DeviceSettings};
pub use encoders::{EncoderChoice, EncoderError, ModelKind, TextModel};
pub use features::{FeatureManifest, SplitFeatures};
pub use predict::{ImagePredictor, PredictError};
