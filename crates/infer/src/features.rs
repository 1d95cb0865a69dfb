//! Image features of shard splits, and the manifest that says which encoder made them.
//!
//! The `features` stage runs a frozen image encoder ([`crate::encoders::image_encoder`]) over
//! every split of the shard stage's output with [`encode_split`] and publishes one safetensors
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

/// Runs `encoder` over the split `split_name` of `shards` (evaluation loader, no augmentation):
/// raw global and patch features, ids and targets. `cancelled` is polled between batches;
/// `progress` gets the images done in each batch.
///
/// # Errors
/// [`FeatureError::Cancelled`], an unreadable shard, or batches that disagree.
#[allow(clippy::too_many_arguments)]
pub fn encode_split(
    encoder: &Backbone,
    shards: &ShardSet,
    split_name: &str,
    image_size: u32,
    mean_std: ([f32; 3], [f32; 3]),
    device: &Device,
    cancelled: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(u64),
) -> Result<FeatureSet, FeatureError> {
    let split = shards.split(split_name)?;
    let config = LoaderConfig::eval(ENCODE_BATCH, image_size, mean_std.0, mean_std.1);
    let loader = Loader::new(&split, &config, 0)?;
    let classes = split.label_count;
    let (mut ids, mut global, mut patches, mut targets) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut patches_per_image, mut width) = (0, 0);
    let read = |tensor: Tensor<2>, what: &str| {
        tensor
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| FeatureError::Inconsistent(format!("reading {what}: {e:?}")))
    };
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
        let features = encoder.forward(batch.to_tensors(device).images);
        let [b, n, c] = features.patches.dims();
        (patches_per_image, width) = (n, c);
        patches.extend(read(features.patches.reshape([b * n, c]), "patches")?);
        global.extend(read(features.global, "global features")?);
        targets.extend_from_slice(&batch.targets);
        for &row in &batch.rows {
            let record = split
                .records()
                .get(row)
                .ok_or_else(|| FeatureError::Inconsistent(format!("row {row} outside split `{split_name}`")))?;
            ids.push(record.path.clone());
        }
        progress(b as u64);
    }
    Ok(FeatureSet { ids, global, patches, targets, patches_per_image, width, classes })
}
