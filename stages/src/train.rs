//! `train`: the SSPA head and CAP prompt tokens (sspa-train), on frozen image-encoder features
//! (`model.freeze_image_encoder = true`, [`crate::features`]) or with the image encoder trained
//! alongside ([`crate::finetune`]).
//!
//! - `T_k`: the embed stage's description embeddings averaged per label (`[C, d_t]`).
//! - `T_l`: with `ablation.cap`, the preset's frozen text encoder (MiniLM or CLIP's text tower)
//!   with `model.prompt_tokens` learnable prompt tokens (`forward_with_prompts`); otherwise the
//!   fixed embeddings of `"A photo of a {label}."`.
//! - Validation: a seeded 10 % slice of the train split (the test split stays unseen).
//! - Checkpoints live in `state_dir/checkpoints`, so an interrupted run resumes.
//!
//! The encoders' weight files are stage inputs, so new weights retrain.

use crate::encoders::{TextModel, image_location, text_location, weight_files};
use crate::features;
use serde_json::Value;
use sspa_config::{AblationSection, ModelSection, TrainSection};
use sspa_dag::{Stage, StageContext, StageError};
use sspa_train::{
    Examples, FeatureSet, FineTune, FixedTextEncoder, ImageSource, PromptTextEncoder, Sections, TextInputs, TrainData,
    TrainOptions,
};
use std::path::{Path, PathBuf};

use burn::prelude::*;

/// Share of the train split held out for validation.
const VALIDATION_FRACTION: f64 = 0.1;

pub struct Train;

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

/// The rows of `set` at `indices`.
pub(crate) fn subset(set: &FeatureSet, indices: &[usize]) -> FeatureSet {
    let (n, d, c) = (set.patches_per_image, set.width, set.classes);
    let mut out = FeatureSet {
        ids: Vec::with_capacity(indices.len()),
        global: Vec::with_capacity(indices.len() * d),
        patches: Vec::with_capacity(indices.len() * n * d),
        targets: Vec::with_capacity(indices.len() * c),
        patches_per_image: n,
        width: d,
        classes: c,
    };
    for &i in indices {
        out.ids.push(set.ids[i].clone());
        out.global.extend_from_slice(&set.global[i * d..(i + 1) * d]);
        out.patches.extend_from_slice(&set.patches[i * n * d..(i + 1) * n * d]);
        out.targets.extend_from_slice(&set.targets[i * c..(i + 1) * c]);
    }
    out
}

impl Stage for Train {
    fn kind(&self) -> &str {
        "train"
    }

    /// 2: the image encoder can be trained; CAP prompt tokens take no weight decay.
    fn version(&self) -> u32 {
        2
    }

    /// The text and image encoders' weight files.
    fn inputs(&self, params: &Value, project_root: &Path) -> Result<Vec<PathBuf>, StageError> {
        let model: ModelSection = serde_json::from_value(params.get("model").cloned().unwrap_or(Value::Null))
            .map_err(|e| format!("config `model`: {e}"))?;
        let clip = crate::encoders::is_clip(&model.preset);
        let mut files = weight_files(&text_location(&model, project_root)?, !clip)?;
        for file in weight_files(&image_location(&model, project_root)?, false)? {
            if !files.contains(&file) {
                files.push(file);
            }
        }
        Ok(files)
    }

    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        let model: ModelSection = ctx.section("model")?;
        let train_section: TrainSection = ctx.section("train")?;
        let ablation: AblationSection = ctx.section("ablation")?;
        let shard_dir = ctx.input("shard")?;
        let shards = sspa_data::open_shards(shard_dir)?;
        let labels = shards.labels().to_vec();
        let text = knowledge(&ctx.input("embed")?.join("embeddings.parquet"), &labels)?;

        // The backend, chosen once for image features, the text encoder and training.
        let device = crate::device::select(&train_section)?;
        let train_split = shards.split("train")?;
        let (train_rows, validation_rows) = validation_slice(train_section.seed, train_split.len());
        let mut images = None;
        let mut cached = None;
        if model.freeze_image_encoder {
            let (manifest, train_all, _test) = features::prepare(ctx, &model, shard_dir, &device)?;
            if train_all.len() != train_split.len() {
                return Err(format!(
                    "the feature cache holds {} train images, the shards {}",
                    train_all.len(),
                    train_split.len()
                )
                .into());
            }
            let train_set = subset(&train_all, &train_rows);
            let validation_set = subset(&train_all, &validation_rows);
            drop(train_all);
            tracing::info!(
                "train: {} images, validation: {} images (seeded {:.0} % slice of the train split; the test split is \
                 not used), N = {}, c = {}",
                train_set.len(),
                validation_set.len(),
                VALIDATION_FRACTION * 100.0,
                manifest.patches_per_image,
                manifest.width
            );
            cached = Some((train_set, validation_set));
        } else {
            let location = image_location(&model, &ctx.project_root)?;
            let weights_hash = crate::encoders::weights_hash(&weight_files(&location, false)?)?;
            let (backbone, spec) = crate::encoders::image_encoder(&model, &location, &device.clone().autodiff())?;
            let shard_key = shard_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let source = crate::finetune::ShardImages::new(
                &train_split,
                &train_rows,
                &validation_rows,
                &model,
                train_section.batch_size as usize,
                train_section.seed,
                &shard_key,
            )?;
            let manifest = features::FeatureManifest {
                encoder: spec.name().into(),
                weights_hash: weights_hash.clone(),
                image_size: model.image_size,
                width: spec.width(),
                patches_per_image: spec.patches_per_image(model.image_size as usize),
                fine_tuned: true,
                train: None,
                test: None,
            };
            sspa_dag::write_json_atomic(&ctx.out_dir.join(features::FEATURES_FILE), &manifest)?;
            tracing::info!(
                "train: fine-tuning the image encoder ({}) on {} images, validation: {} images (seeded {:.0} % slice \
                 of the train split), N = {}, c = {}, {} batches of {} per epoch",
                spec.name(),
                train_rows.len(),
                validation_rows.len(),
                VALIDATION_FRACTION * 100.0,
                manifest.patches_per_image,
                manifest.width,
                source.train_batches(),
                train_section.batch_size
            );
            images = Some((source, backbone, spec, weights_hash));
        }

        let encoder: Box<dyn PromptTextEncoder> = if ablation.cap {
            // The prompts live on the autodiff device the loop trains on; so must the encoder.
            let device = device.clone().autodiff();
            let prompts = Prompted { encoder: TextModel::load(&model, &ctx.project_root, &device)? };
            prompts.check(model.prompt_tokens as usize, &labels, &device)?;
            Box::new(prompts)
        } else {
            let text_model = TextModel::load(&model, &ctx.project_root, &device)?;
            let texts: Vec<String> = labels.iter().map(|label| format!("A photo of a {label}.")).collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let context = text_model
                .encode(&refs)?
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| format!("reading template embeddings: {e:?}"))?;
            let (width, prompt_width) = (text_model.width(), text_model.prompt_width());
            Box::new(FixedTextEncoder::new(context, labels.len(), width, prompt_width)?)
        };

        let sections = Sections { model: &model, ablation: &ablation, train: &train_section };
        let examples = match (&cached, &images) {
            (Some((train, validation)), _) => Examples::Features { train, validation },
            (None, Some((source, backbone, spec, weights_hash))) => {
                Examples::Images(FineTune { source, backbone, spec, weights_hash })
            }
            (None, None) => return Err("neither features nor images to train on".into()),
        };
        let data = TrainData { text: &text, encoder: encoder.as_ref(), examples };
        // One checkpoint directory per run (stage version + params + upstream keys), so another
        // configuration neither refuses nor overwrites an interrupted run's checkpoints, and a new
        // implementation does not resume an old one's.
        let run_key = {
            let mut hasher = blake3::Hasher::new();
            hasher.update(&self.version().to_le_bytes());
            hasher.update(ctx.params.to_string().as_bytes());
            for dir in ctx.inputs.values() {
                hasher.update(dir.as_os_str().as_encoded_bytes());
            }
            hasher.finalize().to_hex().to_string()
        };
        let checkpoints = ctx.state_dir.join("checkpoints").join(&run_key[..16]);
        let mut options = TrainOptions::new(&checkpoints, &ctx.out_dir);
        options.device = device;
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
        for log in &outcome.history {
            tracing::info!(
                "epoch {}: loss {:.4}, val mAP {} / EMA {} ({:.1} s)",
                log.epoch,
                log.train_loss,
                log.val_map.map_or("-".into(), |m| format!("{m:.2}")),
                log.val_map_ema.map_or("-".into(), |m| format!("{m:.2}")),
                log.seconds
            );
        }
        Ok(())
    }
}
