//! Image features for the train and evaluate stages.
//!
//! With `model.freeze_image_encoder = false` nothing is cached: the encoder is trained with the
//! head ([`crate::finetune`]) and the evaluate stage encodes its split with the run's own (raw and
//! EMA) encoder through [`encode_split`].
//!
//! With `model.freeze_image_encoder = true` the preset's image encoder ([`crate::encoders`]) runs
//! once over the shard stage's train and test splits (eval loader: no augmentation,
//! `model.image_size` input) and its raw features are kept: for EfficientNet-Lite0 the last feature
//! map (`c = 1280` channels) as patch tokens and their mean as the global feature; for CLIP the
//! joint-space global feature and projected patch tokens. The SSPA head maps them to the joint
//! width `d` with its own learnable image projection (`model.image_projection`).
//!
//! The result is cached in the train stage's `state_dir` with [`sspa_train::write_feature_cache`],
//! keyed by the shard output (= shard cache key), the weights hash, the image size and the
//! projection; `features.json` in the train stage's output names the cache files and keys so the
//! evaluate stage reads the same features.

use crate::encoders::{frozen_encoder_name, image_encoder, image_location, weight_files, weights_hash};
use serde::{Deserialize, Serialize};
use sspa_dag::{StageContext, StageError};
use sspa_data::{Loader, LoaderConfig, open_shards};
use sspa_train::Backbone;
use sspa_train::FeatureSet;
use std::path::{Path, PathBuf};

use burn::prelude::*;

/// Bump when the features computed for the same key change.
const FEATURE_VERSION: u32 = 2;
/// Images per encoder forward pass.
const ENCODE_BATCH: usize = 32;

/// `features.json` in the train stage's output directory.
pub const FEATURES_FILE: &str = "features.json";

/// One cached split.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedSplit {
    pub path: PathBuf,
    pub key: String,
    pub images: usize,
}

/// What `features.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeatureManifest {
    pub encoder: String,
    /// BLAKE3 of the pretrained encoder weights the run started from.
    pub weights_hash: String,
    pub image_size: u32,
    /// Feature width `c` of the encoder.
    pub width: usize,
    pub patches_per_image: usize,
    /// The image encoder was trained with the head (`model.freeze_image_encoder = false`): it is
    /// in the run's weights, and features are computed from them (raw and EMA differ), not cached.
    #[serde(default)]
    pub fine_tuned: bool,
    /// Cached frozen-encoder features (absent when `fine_tuned`).
    pub train: Option<CachedSplit>,
    pub test: Option<CachedSplit>,
}

impl FeatureManifest {
    pub fn read(train_dir: &Path) -> Result<Self, StageError> {
        let path = train_dir.join(FEATURES_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("reading `{}`: {e}", path.display()))?;
        Ok(serde_json::from_str(&text).map_err(|e| format!("parsing `{}`: {e}", path.display()))?)
    }

    /// Reads one split's cached features.
    pub fn load(split: &CachedSplit) -> Result<FeatureSet, StageError> {
        sspa_train::read_feature_cache(&split.path, &split.key).map_err(|e| {
            format!(
                "feature cache `{}`: {e} (rerun the train stage with `--force` to rebuild it)",
                split.path.display()
            )
            .into()
        })
    }
}

/// The EfficientNet-Lite0 weights file of `model.image_weights` or the installed default.
pub fn efficientnet_weights(model: &sspa_config::ModelSection, project_root: &Path) -> PathBuf {
    match &model.image_weights {
        Some(path) => {
            let path = project_root.join(path);
            if path.is_dir() { path.join("model.safetensors") } else { path }
        }
        None => sspa_encoders::paths::efficientnet_dir().join("model.safetensors"),
    }
}

/// Runs `encoder` over one split (evaluation loader, no augmentation): raw global and patch
/// features, ids and targets.
#[allow(clippy::too_many_arguments)]
pub(crate) fn encode_split(
    ctx: &StageContext,
    encoder: &Backbone,
    shards: &sspa_data::ShardSet,
    split_name: &str,
    image_size: u32,
    mean_std: ([f32; 3], [f32; 3]),
    device: &Device,
    done: &mut u64,
) -> Result<FeatureSet, StageError> {
    let split = shards.split(split_name)?;
    let config = LoaderConfig::eval(ENCODE_BATCH, image_size, mean_std.0, mean_std.1);
    let loader = Loader::new(&split, &config, 0)?;
    let classes = split.label_count;
    let mut width = 0;
    let (mut ids, mut global, mut patches, mut targets) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut patches_per_image = 0;
    for batch in loader {
        if ctx.cancelled() {
            return Err("cancelled".into());
        }
        let batch = batch?;
        let features = encoder.forward(batch.to_tensors(device).images);
        let [b, n, c] = features.patches.dims();
        (patches_per_image, width) = (n, c);
        patches.extend(
            features
                .patches
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| format!("reading patches: {e:?}"))?,
        );
        global.extend(
            features
                .global
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| format!("reading features: {e:?}"))?,
        );
        if batch.label_count != classes {
            return Err(format!("batch has {} labels, split `{split_name}` {classes}", batch.label_count).into());
        }
        targets.extend_from_slice(&batch.targets);
        for &row in &batch.rows {
            let record = split.records().get(row).ok_or_else(|| format!("row {row} outside split `{split_name}`"))?;
            ids.push(record.path.clone());
        }
        *done += b as u64;
        ctx.progress.set_position(*done);
    }
    Ok(FeatureSet { ids, global, patches, targets, patches_per_image, width, classes })
}

/// Computes (or finds in `state_dir`) the frozen encoder's train and test features and writes
/// `features.json` into `out_dir`. Returns the manifest and both feature sets.
pub fn prepare(
    ctx: &StageContext,
    model: &sspa_config::ModelSection,
    shard_dir: &Path,
    device: &Device,
) -> Result<(FeatureManifest, FeatureSet, FeatureSet), StageError> {
    let location = image_location(model, &ctx.project_root)?;
    let weights_hash = weights_hash(&weight_files(&location, false)?)?;
    let shard_key = shard_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let encoder_kind = frozen_encoder_name(model);
    let base_key =
        format!("v{FEATURE_VERSION}/shard={shard_key}/{encoder_kind}@{weights_hash}/size={}", model.image_size);
    let cache_dir = ctx.state_dir.join("features");
    let train_key = format!("{base_key}/split=train");
    let test_key = format!("{base_key}/split=test");
    let train_path = sspa_train::feature_cache_path(&cache_dir, &train_key);
    let test_path = sspa_train::feature_cache_path(&cache_dir, &test_key);
    let cached = match (
        sspa_train::read_feature_cache(&train_path, &train_key),
        sspa_train::read_feature_cache(&test_path, &test_key),
    ) {
        (Ok(train), Ok(test)) => {
            tracing::info!("image features: reusing the cache in `{}`", cache_dir.display());
            Some((train, test))
        }
        _ => None,
    };
    let (train, test) = match cached {
        Some(pair) => pair,
        None => {
            let (encoder, _) = image_encoder(model, &location, device)?;
            let shards = open_shards(shard_dir)?;
            let mean_std = sspa_data::mean_std(&model.preset)?;
            let total = shards.split("train")?.len() + shards.split("test")?.len();
            ctx.progress.set_length(total as u64);
            ctx.progress.set_message(format!("encoding images ({encoder_kind})"));
            let started = std::time::Instant::now();
            let mut done = 0;
            let train = encode_split(ctx, &encoder, &shards, "train", model.image_size, mean_std, device, &mut done)?;
            let test = encode_split(ctx, &encoder, &shards, "test", model.image_size, mean_std, device, &mut done)?;
            let seconds = started.elapsed().as_secs_f64();
            tracing::info!(
                "image features: {} train + {} test images, N = {}, c = {} in {seconds:.1} s ({:.1} images/s)",
                train.len(),
                test.len(),
                train.patches_per_image,
                train.width,
                done as f64 / seconds.max(1e-9)
            );
            sspa_train::write_feature_cache(&train_path, &train_key, &train)?;
            sspa_train::write_feature_cache(&test_path, &test_key, &test)?;
            (train, test)
        }
    };
    let manifest = FeatureManifest {
        encoder: encoder_kind.into(),
        weights_hash,
        image_size: model.image_size,
        width: train.width,
        patches_per_image: train.patches_per_image,
        fine_tuned: false,
        train: Some(CachedSplit { path: train_path, key: train_key, images: train.len() }),
        test: Some(CachedSplit { path: test_path, key: test_key, images: test.len() }),
    };
    sspa_dag::write_json_atomic(&ctx.out_dir.join(FEATURES_FILE), &manifest)?;
    Ok((manifest, train, test))
}
