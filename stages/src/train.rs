//! `train`: the SSPA head and CAP prompt tokens (sspa-train), on the features stage's frozen
//! image-encoder features (`model.freeze_image_encoder = true`) or with the image encoder trained
//! alongside ([`crate::finetune`]).
//!
//! - `T_k`: the embed stage's description embeddings averaged per label (`[C, d_t]`).
//! - `T_l`: with `ablation.cap`, the preset's frozen text encoder (MiniLM or CLIP's text tower)
//!   with `model.prompt_tokens` learnable prompt tokens (`forward_with_prompts`); otherwise the
//!   fixed embeddings of `"A photo of a {label}."`.
//! - Validation: a seeded 10 % slice of the train split (the test split stays unseen).
//! - Checkpoints live in `state_dir/checkpoints`, so an interrupted run resumes; a forced run
//!   (`--force`) discards them first and trains from scratch.
//!
//! The encoders' weight files are stage inputs, so new weights retrain.

use crate::params::TypedStage;
use serde::{Deserialize, Serialize};
use sspa_config::{AblationSection, ModelSection, TrainSection};
use sspa_dag::{StageContext, StageError};
use sspa_infer::DeviceSettings;
use sspa_infer::encoders::{EncoderChoice, TextModel, image_files, image_location, text_files, weights_hash};
use sspa_infer::features::{FEATURES_FILE, FeatureManifest};
use sspa_train::{
    FineTune, FixedTextEncoder, ImageSource, MappedFeatures, MappedSource, PromptTextEncoder, Sections, TextInputs,
    TrainData, TrainOptions, TrainingSource,
};
use std::path::{Path, PathBuf};

use burn::prelude::*;

/// Share of the train split held out for validation.
const VALIDATION_FRACTION: f64 = 0.1;

pub struct Train;

/// `model`, `train`, `ablation`: the whole recipe.
#[derive(Debug, Serialize, Deserialize)]
pub struct TrainParams {
    pub model: ModelSection,
    pub train: TrainSection,
    pub ablation: AblationSection,
}

/// The frozen text encoder with CAP's prompt hook.
struct Prompted {
    encoder: TextModel,
}

impl PromptTextEncoder for Prompted {
    fn prompt_width(&self) -> usize {
        self.encoder.prompt_width()
    }

    fn output_width(&self) -> usize {
        self.encoder.width()
    }

    /// # Panics
    /// When the encoder refuses the prompts; [`Prompted::check`] runs the same call up front so
    /// that a bad configuration is an error before training starts.
    fn forward(&self, prompts: Tensor<2>, labels: &[String]) -> Tensor<2> {
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        self.encoder
            .forward_with_prompts(prompts, &labels)
            .expect("the encoder accepted the same prompts before training")
    }
}

impl Prompted {
    fn check(&self, prompt_tokens: usize, labels: &[String], device: &Device) -> Result<(), StageError> {
        let names: Vec<&str> = labels.iter().map(String::as_str).collect();
        let prompts = Tensor::<2>::zeros([prompt_tokens.max(1), self.encoder.prompt_width()], device);
        let out = self.encoder.forward_with_prompts(prompts, &names)?;
        if out.dims() != [labels.len(), self.encoder.width()] {
            return Err(format!("{} prompt output {:?}", self.encoder.name(), out.dims()).into());
        }
        Ok(())
    }
}

/// `T_k`: mean embedding per label, in the order of `labels`.
fn knowledge(embeddings_path: &Path, labels: &[String]) -> Result<TextInputs, StageError> {
    let rows = sspa_table::read_embeddings(embeddings_path)?;
    let width = rows.first().map(|row| row.embedding.len()).ok_or("embeddings.parquet holds no row")?;
    let mut sums = vec![vec![0f64; width]; labels.len()];
    let mut counts = vec![0usize; labels.len()];
    for row in &rows {
        let index = labels
            .iter()
            .position(|label| *label == row.label)
            .ok_or_else(|| format!("embedding for label `{}` that the shards do not have", row.label))?;
        if row.embedding.len() != width {
            return Err(
                format!("embedding of `{}` has width {}, expected {width}", row.label, row.embedding.len()).into()
            );
        }
        for (sum, value) in sums[index].iter_mut().zip(&row.embedding) {
            *sum += f64::from(*value);
        }
        counts[index] += 1;
    }
    if let Some(missing) = counts.iter().position(|&count| count == 0) {
        return Err(format!("no description embedding for label `{}`", labels[missing]).into());
    }
    let knowledge = sums
        .iter()
        .zip(&counts)
        .flat_map(|(sum, &count)| sum.iter().map(move |value| (value / count as f64) as f32))
        .collect();
    Ok(TextInputs { labels: labels.to_vec(), knowledge, width })
}

/// The seeded validation slice of `n` train images: `(train rows, validation rows)`, each sorted.
pub(crate) fn validation_slice(seed: u64, n: usize) -> (Vec<usize>, Vec<usize>) {
    let order = sspa_train::epoch_permutation(seed ^ 0x7661_6c69_6461_7465, 0, n);
    let held_out = ((n as f64) * VALIDATION_FRACTION).round() as usize;
    let held_out = held_out.min(n.saturating_sub(1));
    let (mut validation, mut train) = (order[..held_out].to_vec(), order[held_out..].to_vec());
    validation.sort_unstable();
    train.sort_unstable();
    (train, validation)
}

impl TypedStage for Train {
    type Params = TrainParams;
    const KIND: &'static str = "train";
    /// 3: features come from the features stage.
    const VERSION: u32 = 3;

    /// The text and image encoders' weight files (a warm start's weights are a declared dep).
    fn inputs(&self, params: &TrainParams, project_root: &Path) -> Result<Vec<PathBuf>, StageError> {
        let encoders = EncoderChoice::of(&params.model);
        let mut files = text_files(&encoders, project_root)?;
        for file in image_files(&encoders, project_root)? {
            if !files.contains(&file) {
                files.push(file);
            }
        }
        Ok(files)
    }

    fn run(&self, params: TrainParams, ctx: &StageContext) -> Result<(), StageError> {
        let TrainParams { model, train: train_section, ablation } = params;
        let shard_dir = ctx.input("shard")?;
        let shards = sspa_data::open_shards(shard_dir)?;
        let labels = shards.labels().to_vec();
        let text = knowledge(&ctx.input("embed")?.join("embeddings.parquet"), &labels)?;

        // The backend, chosen once for the text encoder and training.
        let device = sspa_infer::device::select(DeviceSettings::of(&train_section))?;
        let train_split = shards.split("train")?;
        let rows = validation_slice(train_section.seed, train_split.len());
        let mut mapped = None;
        let mut images = None;
        if model.freeze_image_encoder {
            mapped = Some(frozen_features(ctx, train_split.len())?);
        } else {
            images = Some(fine_tuning(ctx, &model, &train_section, &train_split, &rows, &device)?);
        }
        let encoder = text_encoder(&model, &ablation, &labels, &ctx.project_root, &device)?;

        let sections = Sections { model: &model, ablation: &ablation, train: &train_section };
        let split_rows;
        let features;
        let fine_tune;
        let source: &dyn TrainingSource = match (&mapped, &images) {
            (Some(mapped), _) => {
                split_rows = (mapped.rows(rows.0.clone())?, mapped.rows(rows.1.clone())?);
                tracing::info!(
                    "train: {} images, validation: {} images (seeded {:.0} % slice of the train split; the test split \
                     is not used), N = {}, c = {}; features read through a memory map from `{}`",
                    split_rows.0.len(),
                    split_rows.1.len(),
                    VALIDATION_FRACTION * 100.0,
                    mapped.patches_per_image,
                    mapped.width,
                    mapped.path().display()
                );
                features = MappedSource { train: &split_rows.0, validation: &split_rows.1 };
                &features
            }
            (None, Some((source, backbone, spec, weights_hash))) => {
                fine_tune = FineTune { source, backbone, spec, weights_hash };
                &fine_tune
            }
            (None, None) => return Err("neither features nor images to train on".into()),
        };
        let data = TrainData { text: &text, encoder: encoder.as_ref(), source };
        let mut options = TrainOptions::new(&checkpoints(ctx)?, &ctx.out_dir);
        options.device = device;
        options.warm_start = warm_start(&train_section, &ctx.project_root);
        let progress = |done: u64, total: u64, message: &str| {
            ctx.progress.update(done, total);
            ctx.progress.set_message(message.to_owned());
        };
        let cancel = || ctx.cancelled();
        let outcome = sspa_train::train(sections, data, &options, &progress, &cancel)?;
        if let Some(epochs) = outcome.resumed_from {
            tracing::info!("train: resumed from the checkpoint after epoch {epochs}");
        }
        if !outcome.finished {
            return Err(format!("training stopped after {} epochs", outcome.epochs_done).into());
        }
        Ok(())
    }
}

/// `train.init_weights` (a registry version's served weights, resolved from `train.init` when
/// the config was bound to its workspace) as the trainer's warm start: the version directory
/// holds the model's `config.json` and both weight files.
fn warm_start(train: &TrainSection, project_root: &Path) -> Option<sspa_train::WarmStart> {
    let file = project_root.join(train.init_weights.as_ref()?);
    let weights = if file.file_name().is_some_and(|name| name == sspa_train::files::MODEL) {
        sspa_train::Weights::Raw
    } else {
        sspa_train::Weights::Ema
    };
    tracing::info!("train: warm start ({}) from `{}`", train.init, file.display());
    Some(sspa_train::WarmStart::new(file.parent()?, weights))
}

/// `(train rows, validation rows)` of the shard train split.
type Rows = (Vec<usize>, Vec<usize>);

/// The features stage's train-split features, cut into the training and validation slices; the
/// features' record (without its files) is published as the run's `features.json`.
fn frozen_features(ctx: &StageContext, train_images: usize) -> Result<MappedFeatures, StageError> {
    let features_dir = ctx.input("features")?;
    let features = FeatureManifest::read(features_dir)?;
    if features.fine_tuned {
        return Err("the features stage encoded nothing (its `model.freeze_image_encoder` is false)".into());
    }
    let train_all = features.open(features_dir, "train")?;
    if train_all.len() != train_images {
        return Err(format!("the features hold {} train images, the shards {train_images}", train_all.len()).into());
    }
    sspa_dag::write_json_atomic(&ctx.out_dir.join(FEATURES_FILE), &features.without_splits())?;
    Ok(train_all)
}

/// What training the image encoder needs: the shard images, the pretrained encoder (trainable, on
/// the autodiff device), its spec and the hash of its weights. Publishes the run's `features.json`.
fn fine_tuning(
    ctx: &StageContext,
    model: &ModelSection,
    train: &TrainSection,
    train_split: &sspa_data::SplitReader,
    rows: &Rows,
    device: &Device,
) -> Result<(crate::finetune::ShardImages, sspa_train::Backbone, sspa_train::BackboneSpec, String), StageError> {
    let encoders = EncoderChoice::of(model);
    let location = image_location(&encoders, &ctx.project_root)?;
    let weights_hash = weights_hash(&image_files(&encoders, &ctx.project_root)?)?;
    let (backbone, spec) = sspa_infer::encoders::image_encoder(model.preset, &location, &device.clone().autodiff())?;
    let shard_dir = ctx.input("shard")?;
    let shard_key = shard_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let source = crate::finetune::ShardImages::new(
        train_split,
        &rows.0,
        &rows.1,
        model,
        train.batch_size as usize,
        train.seed,
        &shard_key,
    )?;
    let manifest = FeatureManifest {
        encoder: spec.name().into(),
        weights_hash: weights_hash.clone(),
        image_size: model.image_size,
        width: spec.width(),
        patches_per_image: spec.patches_per_image(model.image_size as usize),
        fine_tuned: true,
        splits: Default::default(),
    };
    sspa_dag::write_json_atomic(&ctx.out_dir.join(FEATURES_FILE), &manifest)?;
    tracing::info!(
        "train: fine-tuning the image encoder ({}) on {} images, validation: {} images (seeded {:.0} % slice of the \
         train split), N = {}, c = {}, {} batches of {} per epoch",
        spec.name(),
        rows.0.len(),
        rows.1.len(),
        VALIDATION_FRACTION * 100.0,
        manifest.patches_per_image,
        manifest.width,
        source.train_batches(),
        train.batch_size
    );
    Ok((source, backbone, spec, weights_hash))
}

/// `T_l`: the frozen text encoder with CAP's learnable prompts, or (without CAP) the fixed
/// embeddings of `"A photo of a {label}."`.
fn text_encoder(
    model: &ModelSection,
    ablation: &AblationSection,
    labels: &[String],
    project_root: &Path,
    device: &Device,
) -> Result<Box<dyn PromptTextEncoder>, StageError> {
    let encoders = EncoderChoice::of(model);
    if ablation.cap {
        // The prompts live on the autodiff device the loop trains on; so must the encoder.
        let device = device.clone().autodiff();
        let prompts = Prompted { encoder: TextModel::load(&encoders, project_root, &device)? };
        prompts.check(model.prompt_tokens as usize, labels, &device)?;
        return Ok(Box::new(prompts));
    }
    let text_model = TextModel::load(&encoders, project_root, device)?;
    let texts: Vec<String> = labels.iter().map(|label| format!("A photo of a {label}.")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let context = text_model
        .encode(&refs)?
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| format!("reading template embeddings: {e:?}"))?;
    let (width, prompt_width) = (text_model.width(), text_model.prompt_width());
    Ok(Box::new(FixedTextEncoder::new(context, labels.len(), width, prompt_width)?))
}

/// One checkpoint directory per computation (stage version + params + upstream keys), so another
/// configuration neither refuses nor overwrites an interrupted run's checkpoints, and a new
/// implementation does not resume an old one's. A forced run discards it first.
fn checkpoints(ctx: &StageContext) -> Result<PathBuf, StageError> {
    let dir = ctx.state_dir.join("checkpoints").join(crate::features::resume_key(ctx, Train::VERSION));
    if ctx.forced && dir.exists() {
        tracing::info!("train: forced, so the checkpoints of this configuration are discarded");
        std::fs::remove_dir_all(&dir).map_err(|e| format!("removing checkpoints `{}`: {e}", dir.display()))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_validation_slice_is_seeded_disjoint_and_a_tenth() {
        let (train, validation) = validation_slice(7, 200);
        assert_eq!((train.len(), validation.len()), (180, 20));
        let mut all: Vec<usize> = train.iter().chain(&validation).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..200).collect::<Vec<_>>(), "every row exactly once");
        assert!(train.windows(2).all(|w| w[0] < w[1]) && validation.windows(2).all(|w| w[0] < w[1]), "sorted");
        assert_eq!(validation_slice(7, 200), (train, validation.clone()), "same seed, same slice");
        assert_ne!(validation_slice(8, 200).1, validation, "another seed, another slice");
        assert_eq!(validation_slice(0, 1), (vec![0], vec![]), "one image stays for training");
    }
}
