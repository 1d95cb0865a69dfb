//! Image features of shard splits, and the manifest that says which encoder made them.
//!
//! The `features` stage runs a frozen image encoder ([`crate::encoders::image_encoder`]) over
//! every split of the shard stage's output with [`encode_split_into`] and publishes one safetensors
//! file per split (sspa-train's [`sspa_train::write_features`]: tensors `global`, `patches`,
//! `targets`, the image ids in the metadata) and `features.json` ([`FeatureManifest`]). The train
//! stage's output carries the same manifest without splits, so `predict` can check the encoder a
//! run was trained on. Every path in a manifest is relative to the directory holding it: a
//! published result can move to another workspace or machine.

use crate::encoders::EncoderError;
use serde::{Deserialize, Serialize};
use sspa_data::{Loader, LoaderConfig, ShardSet};
use sspa_train::{Backbone, FeatureSet};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;

/// `features.json`, in the features stage's and the train stage's outputs.
pub const FEATURES_FILE: &str = "features.json";
/// Images per encoder forward pass.
pub const ENCODE_BATCH: usize = 32;

/// One split's feature file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitFeatures {
    /// File name, relative to the manifest's directory.
    pub file: String,
    pub images: usize,
}

/// What `features.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureManifest {
    /// The preset table's image-encoder name (`efficientnet-lite0`, `clip-image`).
    pub encoder: String,
    /// BLAKE3 of the pretrained encoder weights.
    pub weights_hash: String,
    pub image_size: u32,
    /// Feature width `c` of the encoder.
    pub width: usize,
    pub patches_per_image: usize,
    /// The image encoder is trained with the head (`model.freeze_image_encoder = false`): features
    /// come from the run's own weights (raw and EMA differ) and nothing is cached.
    pub fine_tuned: bool,
    /// Split name → its feature file (empty when `fine_tuned`, and in the train stage's copy).
    #[serde(default)]
    pub splits: BTreeMap<String, SplitFeatures>,
}

/// Why features could not be computed or read.
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error("reading `{path}`: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("`{path}` has no features of split `{split}` (it has: {available})")]
    NoSplit { path: PathBuf, split: String, available: String },
    #[error("{0}")]
    Inconsistent(String),
    #[error("cancelled")]
    Cancelled,
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    #[error(transparent)]
    Train(#[from] sspa_train::TrainError),
    #[error(transparent)]
    Data(#[from] sspa_data::DataError),
}

impl FeatureManifest {
    /// Reads `dir/features.json`.
    ///
    /// # Errors
    /// [`FeatureError::Manifest`] naming the file.
    pub fn read(dir: &Path) -> Result<Self, FeatureError> {
        let path = dir.join(FEATURES_FILE);
        let manifest = |message: String| FeatureError::Manifest { path: path.clone(), message };
        let text = std::fs::read_to_string(&path).map_err(|e| manifest(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| manifest(e.to_string()))
    }

    /// The same record without the split files (what the train stage publishes).
    pub fn without_splits(&self) -> Self {
        Self { splits: BTreeMap::new(), ..self.clone() }
    }

    /// Reads the features of `split` from the manifest's directory `dir`.
    ///
    /// # Errors
    /// An unknown split, an unreadable file, or a file that disagrees with the manifest.
    pub fn load(&self, dir: &Path, split: &str) -> Result<FeatureSet, FeatureError> {
        Ok(self.open(dir, split)?.to_feature_set())
    }

    /// The features of `split` through a memory map ([`sspa_train::MappedFeatures`]): checked like
    /// [`FeatureManifest::load`], read batch by batch.
    ///
    /// # Errors
    /// As [`FeatureManifest::load`].
    pub fn open(&self, dir: &Path, split: &str) -> Result<sspa_train::MappedFeatures, FeatureError> {
        let entry = self.splits.get(split).ok_or_else(|| FeatureError::NoSplit {
            path: dir.join(FEATURES_FILE),
            split: split.to_owned(),
            available: self.splits.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "),
        })?;
        let path = dir.join(&entry.file);
        let (set, _) = sspa_train::MappedFeatures::open(&path)?;
        if set.len() != entry.images || set.width != self.width || set.patches_per_image != self.patches_per_image {
            return Err(FeatureError::Inconsistent(format!(
                "`{}` holds {} images, N = {}, c = {}; `{FEATURES_FILE}` says {}, N = {}, c = {}",
                path.display(),
                set.len(),
                set.patches_per_image,
                set.width,
                entry.images,
                self.patches_per_image,
                self.width
            )));
        }
        Ok(set)
    }
}

/// One encoded batch: consecutive images of the split in [`split_ids`] order.
pub struct EncodedBatch<'a> {
    /// `[b, c]`, row-major.
    pub global: &'a [f32],
    /// `[b, N, c]`, row-major.
    pub patches: &'a [f32],
    /// `[b, C]`: 1, 0, −1.
    pub targets: &'a [i8],
    /// `N`.
    pub patches_per_image: usize,
    /// `c`.
    pub width: usize,
}

/// A split and its evaluation loader's settings (no augmentation, shard order).
fn eval_loader(
    shards: &ShardSet,
    split_name: &str,
    image_size: u32,
    mean_std: ([f32; 3], [f32; 3]),
) -> Result<(sspa_data::SplitReader, LoaderConfig), FeatureError> {
    let split = shards.split(split_name)?;
    let config = LoaderConfig::eval(ENCODE_BATCH, image_size, mean_std.0, mean_std.1);
    Ok((split, config))
}

/// The ids of the split's images in the order [`encode_split_into`] encodes them.
///
/// # Errors
/// An unreadable shard index.
pub fn split_ids(shards: &ShardSet, split_name: &str) -> Result<Vec<String>, FeatureError> {
    let (split, config) = eval_loader(shards, split_name, 1, ([0.0; 3], [1.0; 3]))?;
    let records = split.records();
    Ok(sspa_data::epoch_order(&split, &config, 0).into_iter().map(|row| records[row].path.clone()).collect())
}

/// Runs `encoder` over the split `split_name` of `shards` (evaluation loader, no augmentation)
/// and hands each batch's raw global and patch features and targets to `sink`, in [`split_ids`]
/// order. `cancelled` is polled between batches; `progress` gets the images done in each batch.
///
/// # Errors
/// [`FeatureError::Cancelled`], an unreadable shard, batches that disagree, or `sink`'s error.
#[allow(clippy::too_many_arguments)]
pub fn encode_split_into(
    encoder: &Backbone,
    shards: &ShardSet,
    split_name: &str,
    image_size: u32,
    mean_std: ([f32; 3], [f32; 3]),
    device: &Device,
    cancelled: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(u64),
    sink: &mut dyn FnMut(EncodedBatch<'_>) -> Result<(), FeatureError>,
) -> Result<(), FeatureError> {
    let (split, config) = eval_loader(shards, split_name, image_size, mean_std)?;
    let order = sspa_data::epoch_order(&split, &config, 0);
    let loader = Loader::new(&split, &config, 0)?;
    let classes = split.label_count;
    let read = |tensor: Tensor<2>, what: &str| {
        tensor
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| FeatureError::Inconsistent(format!("reading {what}: {e:?}")))
    };
    let mut done = 0;
    for batch in loader {
        if cancelled() {
            return Err(FeatureError::Cancelled);
        }
        let batch = batch?;
        if batch.label_count != classes {
            return Err(FeatureError::Inconsistent(format!(
                "batch has {} labels, split `{split_name}` {classes}",
                batch.label_count
            )));
        }
        if order.get(done..done + batch.rows.len()) != Some(&batch.rows[..]) {
            return Err(FeatureError::Inconsistent(format!(
                "split `{split_name}`: the loader left the evaluation order at image {done}"
            )));
        }
        let features = encoder.forward(batch.to_tensors(device).images);
        let [b, n, c] = features.patches.dims();
        let patches = read(features.patches.reshape([b * n, c]), "patches")?;
        let global = read(features.global, "global features")?;
        sink(EncodedBatch {
            global: &global,
            patches: &patches,
            targets: &batch.targets,
            patches_per_image: n,
            width: c,
        })?;
        done += b;
        progress(b as u64);
    }
    Ok(())
}

/// Scores the split `split_name` of `shards` through a trained `encoder` and `score` (a head
/// over one batch of features), batch by batch: only the scores are kept, so memory does not
/// grow with the split's features. Returns the ids (in [`split_ids`] order) and the scores,
/// `[n, C]` row-major.
///
/// # Errors
/// As [`encode_split_into`], and `score`'s.
#[allow(clippy::too_many_arguments)]
pub fn score_split_streamed(
    encoder: &Backbone,
    shards: &ShardSet,
    split_name: &str,
    image_size: u32,
    mean_std: ([f32; 3], [f32; 3]),
    device: &Device,
    cancelled: &dyn Fn() -> bool,
    score: &dyn Fn(&FeatureSet) -> Result<Vec<f32>, FeatureError>,
) -> Result<(Vec<String>, Vec<f32>), FeatureError> {
    let ids = split_ids(shards, split_name)?;
    let mut scores = Vec::new();
    encode_split_into(
        encoder,
        shards,
        split_name,
        image_size,
        mean_std,
        device,
        cancelled,
        &mut |_| {},
        &mut |batch| {
            let rows = batch.global.len() / batch.width.max(1);
            let set = FeatureSet {
                ids: (0..rows).map(|row| row.to_string()).collect(),
                global: batch.global.to_vec(),
                patches: batch.patches.to_vec(),
                targets: batch.targets.to_vec(),
                patches_per_image: batch.patches_per_image,
                width: batch.width,
                classes: batch.targets.len() / rows.max(1),
            };
            scores.extend(score(&set)?);
            Ok(())
        },
    )?;
    Ok((ids, scores))
}
