//! `features`: the frozen image encoder over every split of the shards, once.
//!
//! With `model.freeze_image_encoder = true` the preset's image encoder
//! ([`sspa_infer::encoders::image_encoder`]) runs over each shard split (evaluation loader: no
//! augmentation, `model.image_size` input) on the `train.device`, and its raw features are
//! published as `<split>.safetensors` (tensors `global [n, c]`, `patches [n, N, c]`, `targets
//! [n, C]`; image ids in the metadata) with `features.json` naming them by relative path. For
//! EfficientNet-Lite0 the last feature map (`c = 1280`) gives the patch tokens and their mean the
//! global feature; for CLIP the joint-space global feature and projected patch tokens. Every
//! variant whose `train`/`ablation` keys differ reuses this result.
//!
//! With `model.freeze_image_encoder = false` nothing is encoded: the image encoder is trained with
//! the head, and `features.json` says so (`fine_tuned`).
//!
//! A split encoded before an interruption is kept in the stage's state directory and reused.

use crate::params::TypedStage;
use serde::{Deserialize, Serialize};
use sspa_config::{FeatureDtype, FeaturesSection, Preset};
use sspa_dag::{StageContext, StageError};
use sspa_infer::DeviceSettings;
use sspa_infer::encoders::{EncoderChoice, image_encoder, image_files, image_location, weights_hash};
use sspa_infer::features::{FEATURES_FILE, FeatureError, FeatureManifest, SplitFeatures, encode_split_into, split_ids};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub struct Features;

/// `model.preset`, `model.image_weights`, `model.image_size`, `model.freeze_image_encoder`,
/// `train.device`, `train.precision`.
#[derive(Debug, Serialize, Deserialize)]
pub struct FeaturesParams {
    pub model: FeatureModel,
    pub features: FeaturesSection,
    pub train: DeviceSettings,
}

/// The `[model]` keys that decide the image features.
#[derive(Debug, Serialize, Deserialize)]
pub struct FeatureModel {
    pub preset: Preset,
    pub image_weights: Option<PathBuf>,
    pub image_size: u32,
    pub freeze_image_encoder: bool,
}

impl FeatureModel {
    fn encoders(&self) -> EncoderChoice {
        EncoderChoice { preset: self.preset, text_weights: None, image_weights: self.image_weights.clone() }
    }
}

/// The file a split's features are published in.
pub(crate) fn split_file(split: &str) -> String {
    format!("{split}.safetensors")
}

impl TypedStage for Features {
    type Params = FeaturesParams;
    const KIND: &'static str = "features";
    const VERSION: u32 = 1;

    /// The image encoder's weight files.
    fn inputs(&self, params: &FeaturesParams, project_root: &Path) -> Result<Vec<PathBuf>, StageError> {
        Ok(image_files(&params.model.encoders(), project_root)?)
    }

    fn run(&self, params: FeaturesParams, ctx: &StageContext) -> Result<(), StageError> {
        let model = &params.model;
        let info = model.preset.info();
        let encoders = model.encoders();
        let location = image_location(&encoders, &ctx.project_root)?;
        let weights_hash = weights_hash(&image_files(&encoders, &ctx.project_root)?)?;
        let mut manifest = FeatureManifest {
            encoder: info.image_encoder.into(),
            weights_hash,
            image_size: model.image_size,
            width: info.image_width,
            patches_per_image: model.preset.patches_per_image(model.image_size),
            fine_tuned: !model.freeze_image_encoder,
            splits: BTreeMap::new(),
        };
        if model.freeze_image_encoder {
            encode_all(ctx, model, &location, (params.train, params.features.dtype), &mut manifest)?;
        } else {
            tracing::info!("features: the image encoder is trained with the head; nothing to encode");
        }
        sspa_dag::write_json_atomic(&ctx.out_dir.join(FEATURES_FILE), &manifest)?;
        Ok(())
    }
}

/// Encodes every shard split (or reuses a split encoded before an interruption) into `ctx.out_dir`.
fn encode_all(
    ctx: &StageContext,
    model: &FeatureModel,
    location: &Path,
    (settings, dtype): (DeviceSettings, FeatureDtype),
    manifest: &mut FeatureManifest,
) -> Result<(), StageError> {
    let shards = sspa_data::open_shards(ctx.input("shard")?)?;
    let names: Vec<String> = shards.meta.splits.keys().cloned().collect();
    let total: u64 = names.iter().map(|name| shards.meta.splits[name].images).sum();
    // Work in progress is keyed by everything the features depend on.
    let scratch = ctx.state_dir.join(resume_key(ctx, Features::VERSION));
    std::fs::create_dir_all(&scratch).map_err(|e| format!("creating `{}`: {e}", scratch.display()))?;
    let device = sspa_infer::device::select(settings)?;
    let mut encoder = None;
    let mut done = 0_u64;
    ctx.progress.set_length(total);
    let started = std::time::Instant::now();
    for name in &names {
        let file = split_file(name);
        let partial = scratch.join(&file);
        // A split encoded before an interruption is only checked (its header and targets, through
        // a memory map), not read into memory.
        let (images, width, patches_per_image) = match sspa_train::MappedFeatures::open(&partial) {
            Ok((set, _)) => {
                tracing::info!("features: reusing split `{name}` encoded before an interruption");
                (set.len(), set.width, set.patches_per_image)
            }
            Err(_) => {
                if encoder.is_none() {
                    encoder = Some(image_encoder(model.preset, location, &device)?.0);
                }
                let encoder = encoder.as_ref().ok_or("the image encoder did not load")?;
                ctx.progress.set_message(format!("encoding `{name}` ({})", manifest.encoder));
                let info = model.preset.info();
                let cancelled = || ctx.cancelled();
                let mut progress = |images: u64| {
                    done += images;
                    ctx.progress.set_position(done);
                };
                let metadata = BTreeMap::from([
                    ("encoder".to_string(), manifest.encoder.clone()),
                    ("weights_hash".to_string(), manifest.weights_hash.clone()),
                    ("split".to_string(), name.clone()),
                ]);
                // Written batch by batch as it is encoded: memory holds a batch, not the split.
                let ids = split_ids(&shards, name)?;
                let classes = shards.split(name)?.label_count;
                let mut sizes = (0, 0);
                sspa_train::write_features_streamed::<FeatureError>(
                    &partial,
                    &ids,
                    classes,
                    &metadata,
                    dtype,
                    |writer| {
                        encode_split_into(
                            encoder,
                            &shards,
                            name,
                            model.image_size,
                            (info.mean, info.std),
                            &device,
                            &cancelled,
                            &mut progress,
                            &mut |batch| {
                                sizes = (batch.width, batch.patches_per_image);
                                Ok(writer.append(
                                    batch.global,
                                    batch.patches,
                                    batch.targets,
                                    batch.patches_per_image,
                                    batch.width,
                                )?)
                            },
                        )
                    },
                )?;
                (ids.len(), sizes.0, sizes.1)
            }
        };
        (manifest.width, manifest.patches_per_image) = (width, patches_per_image);
        manifest.splits.insert(name.clone(), SplitFeatures { file: file.clone(), images });
        publish(&partial, &ctx.out_dir.join(&file))?;
    }
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        "features: {} images in {} split(s), N = {}, c = {}, in {seconds:.1} s",
        total,
        names.len(),
        manifest.patches_per_image,
        manifest.width
    );
    Ok(())
}

/// Moves a finished file into the output directory (a rename: both live in the workspace).
fn publish(from: &Path, to: &Path) -> Result<(), StageError> {
    std::fs::rename(from, to)
        .or_else(|_| std::fs::copy(from, to).map(|_| ()))
        .map_err(|e| format!("moving `{}` to `{}`: {e}", from.display(), to.display()).into())
}

/// A short hash of the stage version, its params and its inputs' output directories: the name of
/// the resumable state of one computation.
pub(crate) fn resume_key(ctx: &StageContext, version: u32) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&version.to_le_bytes());
    hasher.update(ctx.params.to_string().as_bytes());
    for dir in ctx.inputs.values() {
        hasher.update(dir.file_name().map(|name| name.as_encoded_bytes()).unwrap_or_default());
    }
    hasher.finalize().to_hex()[..16].to_string()
}
