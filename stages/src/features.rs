//! Frozen image features for the train and evaluate stages.
//!
//! With `model.freeze_image_encoder = true` EfficientNet-Lite0 runs once over the shard stage's
//! train and test splits (eval loader: no augmentation, `model.image_size` input). The SSPA head
//! expects image features of width `d = model.embed_dim` and has no image projection of its own,
//! while EfficientNet's last feature map is 1280 wide: the features are therefore mapped to `d` by
//! a fixed, seeded Gaussian random projection (scaled by `1/sqrt(1280)`) and centred on the mean
//! global feature of the train split. Global features are the mean of the (projected) patches,
//! exactly as in the encoder.
//!
//! The result is cached in the train stage's `state_dir` with [`sspa_train::write_feature_cache`],
//! keyed by the shard output (= shard cache key), the weights hash, the image size and the
//! projection; `features.json` in the train stage's output names the cache files and keys so the
//! evaluate stage reads the same features.

use serde::{Deserialize, Serialize};
use sspa_dag::{StageContext, StageError};
use sspa_data::{Loader, LoaderConfig, open_shards};
use sspa_encoders::EfficientNetLite0;
use sspa_train::FeatureSet;
use std::path::{Path, PathBuf};

use burn::prelude::*;

/// Bump when the features computed for the same key change.
const FEATURE_VERSION: u32 = 1;
/// Images per encoder forward pass.
const ENCODE_BATCH: usize = 32;
/// Seed of the random projection.
const PROJECTION_SEED: u64 = 0x5350_4146_4541_5431;

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
    pub weights_hash: String,
    pub image_size: u32,
    pub width: usize,
    pub patches_per_image: usize,
    pub projection: String,
    pub train: CachedSplit,
    pub test: CachedSplit,
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

/// `splitmix64`.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `[input, output]` row-major Gaussian matrix scaled by `1/sqrt(input)` (Box–Muller on
/// splitmix64: portable, independent of the tensor backend's RNG).
fn projection_matrix(input: usize, output: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    let scale = 1.0 / (input as f64).sqrt();
    let uniform = |state: &mut u64| ((splitmix64(state) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let mut values = Vec::with_capacity(input * output + 1);
    while values.len() < input * output {
        let (u1, u2) = (uniform(&mut state), uniform(&mut state));
        let radius = (-2.0 * u1.ln()).sqrt();
        let angle = 2.0 * std::f64::consts::PI * u2;
        values.push((radius * angle.cos() * scale) as f32);
        values.push((radius * angle.sin() * scale) as f32);
    }
    values.truncate(input * output);
    values
}

/// Runs the encoder over one split: projected (uncentred) features.
#[allow(clippy::too_many_arguments)]
fn encode_split(
    ctx: &StageContext,
    encoder: &EfficientNetLite0,
    projection: &Tensor<2>,
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
    let width = projection.dims()[1];
    let (mut ids, mut global, mut patches, mut targets) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut patches_per_image = 0;
    for batch in loader {
        if ctx.cancelled() {
            return Err("cancelled".into());
        }
        let batch = batch?;
        let images = Tensor::<4>::from_data(TensorData::new(batch.images, batch.shape), device);
        let features = encoder.forward(images);
        let [b, n, c] = features.patches.dims();
        let projected = features.patches.reshape([b * n, c]).matmul(projection.clone()).reshape([b, n, width]);
        let pooled = projected.clone().mean_dim(1).reshape([b, width]);
        patches_per_image = n;
        patches.extend(projected.into_data().try_to_vec::<f32>().map_err(|e| format!("reading patches: {e:?}"))?);
        global.extend(pooled.into_data().try_to_vec::<f32>().map_err(|e| format!("reading features: {e:?}"))?);
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

/// Subtracts `mean` (`[d]`) from every global and patch feature.
fn centre(features: &mut FeatureSet, mean: &[f32]) {
    let width = features.width;
    for row in features.global.chunks_mut(width).chain(features.patches.chunks_mut(width)) {
        for (value, m) in row.iter_mut().zip(mean) {
            *value -= m;
        }
    }
}

/// Computes (or finds in `state_dir`) the train and test features and writes `features.json`
/// into `out_dir`. Returns the manifest and both feature sets.
pub fn prepare(
    ctx: &StageContext,
    model: &sspa_config::ModelSection,
    shard_dir: &Path,
) -> Result<(FeatureManifest, FeatureSet, FeatureSet), StageError> {
    if !model.freeze_image_encoder {
        return Err(
            "`model.freeze_image_encoder = false` (fine-tuning the image encoder) is not provided by this build".into(),
        );
    }
    let weights = efficientnet_weights(model, &ctx.project_root);
    let weights_hash = blake3::hash(
        &std::fs::read(&weights).map_err(|e| format!("reading image-encoder weights `{}`: {e}", weights.display()))?,
    )
    .to_hex()
    .to_string();
    let shard_key = shard_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let width = model.embed_dim as usize;
    let projection_name = format!("gaussian(seed={PROJECTION_SEED:#x}, 1280->{width}), centred on train mean");
    let base_key = format!(
        "v{FEATURE_VERSION}/shard={shard_key}/efficientnet-lite0@{weights_hash}/size={}/proj={projection_name}",
        model.image_size
    );
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
            let device = Device::flex();
            let encoder = EfficientNetLite0::load(
                weights.parent().ok_or("image-encoder weights path has no directory")?,
                &device,
            )?;
            let shards = open_shards(shard_dir)?;
            let mean_std = sspa_data::mean_std(&model.preset)?;
            let total = shards.split("train")?.len() + shards.split("test")?.len();
            ctx.progress.set_length(total as u64);
            ctx.progress.set_message("encoding images (EfficientNet-Lite0)");
            let projection = Tensor::<2>::from_data(
                TensorData::new(projection_matrix(1280, width, PROJECTION_SEED), [1280, width]),
                &device,
            );
            let started = std::time::Instant::now();
            let mut done = 0;
            let mut train = encode_split(
                ctx,
                &encoder,
                &projection,
                &shards,
                "train",
                model.image_size,
                mean_std,
                &device,
                &mut done,
            )?;
            let mut test = encode_split(
                ctx,
                &encoder,
                &projection,
                &shards,
                "test",
                model.image_size,
                mean_std,
                &device,
                &mut done,
            )?;
            let mut mean = vec![0f64; width];
            for row in train.global.chunks(width) {
                for (m, v) in mean.iter_mut().zip(row) {
                    *m += f64::from(*v);
                }
            }
            let mean: Vec<f32> = mean.iter().map(|m| (m / train.len().max(1) as f64) as f32).collect();
            centre(&mut train, &mean);
            centre(&mut test, &mean);
            let seconds = started.elapsed().as_secs_f64();
            tracing::info!(
                "image features: {} train + {} test images, N = {}, d = {width} in {seconds:.1} s ({:.1} images/s)",
                train.len(),
                test.len(),
                train.patches_per_image,
                done as f64 / seconds.max(1e-9)
            );
            sspa_train::write_feature_cache(&train_path, &train_key, &train)?;
            sspa_train::write_feature_cache(&test_path, &test_key, &test)?;
            (train, test)
        }
    };
    let manifest = FeatureManifest {
        encoder: "efficientnet-lite0".into(),
        weights_hash,
        image_size: model.image_size,
        width,
        patches_per_image: train.patches_per_image,
        projection: projection_name,
        train: CachedSplit { path: train_path, key: train_key, images: train.len() },
        test: CachedSplit { path: test_path, key: test_key, images: test.len() },
    };
    sspa_dag::write_json_atomic(&ctx.out_dir.join(FEATURES_FILE), &manifest)?;
    Ok((manifest, train, test))
}
