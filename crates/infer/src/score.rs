//! A trained model's scores on a split of the current shards: how the promotion gate re-scores
//! the registry's current model on the same images as the candidate.
//!
//! A model trained on frozen features is scored on the features stage's cached features of the
//! split, which must come from the encoder it was trained with (same name, weights BLAKE3 and
//! input size); a model that trained its image encoder encodes the split with that encoder.

use std::path::Path;

use burn::prelude::*;
use sspa_train::{Predictor, Weights};

use crate::features::{FeatureError, FeatureManifest, score_split_streamed};

/// Row-major `images × labels` probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitScores {
    pub images: Vec<String>,
    pub labels: Vec<String>,
    pub scores: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// The model's image features cannot be produced from what the current run computed.
    #[error("the model in `{dir}` cannot be scored on the current split: {reason}")]
    Incomparable { dir: std::path::PathBuf, reason: String },
    #[error(transparent)]
    Features(#[from] FeatureError),
    #[error(transparent)]
    Train(#[from] sspa_train::TrainError),
    #[error(transparent)]
    Data(#[from] sspa_data::DataError),
}

/// Scores `split` with the `weights` of the trained model in `train_dir`, reading the current
/// run's features stage output `features_dir` (frozen encoder) or its shards `shard_dir` (an
/// encoder trained with the head).
///
/// # Errors
/// [`ScoreError::Incomparable`] when the model was trained on another encoder's features, or
/// reading/scoring failures naming their file.
pub fn score_split(
    train_dir: &Path,
    weights: Weights,
    features_dir: &Path,
    shard_dir: &Path,
    split: &str,
    device: &Device,
    cancelled: &dyn Fn() -> bool,
) -> Result<SplitScores, ScoreError> {
    let predictor = Predictor::load(train_dir, weights, device)?;
    let trained_on = FeatureManifest::read(train_dir)?;
    let (images, scores) = if trained_on.fine_tuned {
        let backbone = predictor.backbone().ok_or_else(|| ScoreError::Incomparable {
            dir: train_dir.to_owned(),
            reason: "features.json says the image encoder was trained, but the weights hold none".into(),
        })?;
        let shards = sspa_data::open_shards(shard_dir)?;
        let info = predictor.config().model.preset.info();
        // Scoring reads only the image features: the split's targets follow the current label
        // set, which may have grown or shrunk since the model was trained. Batch by batch, so
        // only the scores are held.
        score_split_streamed(
            backbone,
            &shards,
            split,
            trained_on.image_size,
            (info.mean, info.std),
            device,
            cancelled,
            &|batch| Ok(predictor.predict_rows(batch)?),
        )?
    } else {
        let current = FeatureManifest::read(features_dir)?;
        let same = !current.fine_tuned
            && current.encoder == trained_on.encoder
            && current.weights_hash == trained_on.weights_hash
            && current.image_size == trained_on.image_size;
        if !same {
            return Err(ScoreError::Incomparable {
                dir: train_dir.to_owned(),
                reason: format!(
                    "it was trained on features of {} (weights {}, {} px), the current run's are {}",
                    trained_on.encoder,
                    short(&trained_on.weights_hash),
                    trained_on.image_size,
                    if current.fine_tuned {
                        "computed inside training (the image encoder is trained)".to_owned()
                    } else {
                        format!(
                            "of {} (weights {}, {} px)",
                            current.encoder,
                            short(&current.weights_hash),
                            current.image_size
                        )
                    }
                ),
            });
        }
        // Read through the memory map, batch by batch.
        let mapped = current.open(features_dir, split)?;
        let scores = predictor.predict_rows(&mapped.all_rows())?;
        (mapped.ids.clone(), scores)
    };
    Ok(SplitScores { images, labels: predictor.labels().to_vec(), scores })
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}
