//! `sspa-pipe encode`: texts or images → Parquet, with a pretrained encoder.
//!
//! Models (`--model`), resolved by [`sspa_stages::encoders::resolve_model`] in this order:
//! - the presets `minilm` and `efficientnet-lite0`: the installed defaults of
//!   `scripts/install-encoders` (`sspa_encoders::paths`);
//! - a directory with a `config.json` of `model_type` `bert` and a `tokenizer.json`: a MiniLM/BERT
//!   sentence encoder (mean pooling, L2-normalised);
//! - a directory with a `config.json` of `model_type` `clip`: an HF `CLIPModel` (`sspa_clip::Clip`);
//! - a directory with `model.safetensors`, or a safetensors file: EfficientNet-Lite0 when it holds
//!   `_conv_stem.weight`, an OpenAI/OpenCLIP CLIP state dict when it holds `visual.*` tensors
//!   (architecture inferred from the shapes, tokenizer as `sspa_clip::load` looks for it).
//!
//! Outputs (see `sspa_table`): `encode text` writes `index` (uint32, 0-based line), `text`
//! (utf8), `embedding` (fixed-size list of float32); `encode image` writes `path` (utf8, as
//! given), `global` (fixed-size list of float32) and, with `--patches`, `patches`: a list with
//! one fixed-size float32 list per patch, row-major over the last feature map or patch grid (49
//! at 224 px for EfficientNet-Lite0, CLIP RN50 and ViT-B/32). Features are written as the library
//! returns them: MiniLM embeddings are L2-normalised, CLIP features are not (normalise before
//! taking cosines); EfficientNet-Lite0's `global` is the mean of its patches.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::prelude::*;
use burn::tensor::TensorData;
use clap::Subcommand;
use sspa_clip::{Clip, ClipPreprocess};
use sspa_encoders::weights::Checkpoint;
use sspa_encoders::{EfficientNetLite0, EfficientNetLite0Config, ImageFeatures, ImagePreprocess, MiniLm};
use sspa_stages::encoders::{ModelKind, ModelSpecError, resolve_model};
use sspa_table::{ImageEncoding, TextEncoding};

use crate::exit::{self, UsageError};

#[derive(Debug, Subcommand)]
pub enum EncodeCommand {
    /// Texts, one per line (blank lines are an error) → `index`, `text`, `embedding`.
    Text {
        /// `minilm`, a BERT sentence-encoder directory, or a CLIP model (HF directory or
        /// OpenAI/OpenCLIP safetensors file).
        #[arg(long, value_name = "DIR|PRESET")]
        model: String,
        /// UTF-8 text file, one text per line.
        #[arg(long, value_name = "FILE")]
        input: PathBuf,
        /// Parquet file to write.
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
    },
    /// Images → `path`, `global` (and `patches`); unreadable images are reported and skipped.
    Image {
        /// `efficientnet-lite0`, EfficientNet-Lite0 weights (directory or safetensors file), or a
        /// CLIP model (HF directory or OpenAI/OpenCLIP safetensors file).
        #[arg(long, value_name = "DIR|PRESET")]
        model: String,
        /// Image files (PNG, JPEG).
        #[arg(long, value_name = "IMG", num_args = 1.., required = true)]
        input: Vec<PathBuf>,
        /// Parquet file to write.
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
        /// Also write the patch features.
        #[arg(long)]
        patches: bool,
        /// Images encoded at once.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
        batch_size: u16,
    },
}

/// Runs `encode text` or `encode image`.
pub fn encode(command: &EncodeCommand) -> anyhow::Result<u8> {
    let device = Device::flex();
    match command {
        EncodeCommand::Text { model, input, output } => encode_text(model, input, output, &device),
        EncodeCommand::Image { model, input, output, patches, batch_size } => {
            encode_images(model, input, output, *patches, usize::from(*batch_size), &device)
        }
    }
}

fn usage(message: String) -> anyhow::Error {
    UsageError(message).into()
}

/// Resolves `--model` ([`sspa_stages::encoders::resolve_model`]); a wrong argument is a usage error.
fn resolve(spec: &str) -> anyhow::Result<ModelKind> {
    resolve_model(spec).map_err(|error| match error {
        ModelSpecError::Usage(message) => usage(message),
        other => anyhow::Error::new(other),
    })
}

fn load_clip(path: &Path, device: &Device) -> anyhow::Result<Clip> {
    Clip::load(path, device).with_context(|| format!("loading CLIP `{}`", path.display()))
}

/// The texts of a file, one per line; a blank line is an error naming it.
fn read_lines(input: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(input)
        .map_err(|error| usage(format!("cannot read `{}` as UTF-8 text: {error}", input.display())))?;
    let mut lines = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            return Err(usage(format!("`{}` line {} is blank: one text per line", input.display(), number + 1)));
        }
        lines.push(line.to_string());
    }
    if lines.is_empty() {
        return Err(usage(format!("`{}` holds no text", input.display())));
    }
    Ok(lines)
}

fn encode_text(spec: &str, input: &Path, output: &Path, device: &Device) -> anyhow::Result<u8> {
    let lines = read_lines(input)?;
    let texts: Vec<&str> = lines.iter().map(String::as_str).collect();
    let embeddings = match resolve(spec)? {
        ModelKind::MiniLm(dir) => {
            let encoder = MiniLm::load(&dir, device).with_context(|| format!("loading `{}`", dir.display()))?;
            encoder.encode(&texts).with_context(|| format!("encoding `{}`", input.display()))?
        }
        ModelKind::Clip(path) => {
            load_clip(&path, device)?.encode_text(&texts).with_context(|| format!("encoding `{}`", input.display()))?
        }
        ModelKind::EfficientNet(file) => {
            return Err(usage(format!(
                "`{}` is EfficientNet-Lite0, an image model: use `encode image`",
                file.display()
            )));
        }
    };
    let [count, width] = embeddings.dims();
    let values = embeddings.into_data().convert::<f32>().try_into_vec::<f32>().context("reading the embeddings")?;
    let rows: Vec<TextEncoding> = lines
        .into_iter()
        .zip(values.chunks_exact(width))
        .enumerate()
        .map(|(index, (text, embedding))| TextEncoding { index: index as u32, text, embedding: embedding.to_vec() })
        .collect();
    sspa_table::write_text_encodings(output, &rows)?;
    tracing::info!("encoded {count} texts ({width}-d) into `{}`", output.display());
    Ok(exit::OK)
}

/// An image encoder with its preprocessing.
enum ImageModel {
    EfficientNet(Box<EfficientNetLite0>, ImagePreprocess),
    Clip(Box<Clip>, ClipPreprocess),
}

impl ImageModel {
    fn load(spec: &str, device: &Device) -> anyhow::Result<Self> {
        match resolve(spec)? {
            ModelKind::EfficientNet(file) => {
                let checkpoint = Checkpoint::open(&file, "EfficientNet-Lite0")?;
                let model = EfficientNetLite0Config::new()
                    .load_checkpoint(checkpoint, device)
                    .with_context(|| format!("loading `{}`", file.display()))?;
                Ok(Self::EfficientNet(Box::new(model), ImagePreprocess::default()))
            }
            ModelKind::Clip(path) => {
                let clip = load_clip(&path, device)?;
                let size = u32::try_from(clip.image_size()).context("CLIP image size")?;
                Ok(Self::Clip(Box::new(clip), ClipPreprocess::with_size(size)))
            }
            ModelKind::MiniLm(dir) => {
                Err(usage(format!("`{}` is a text model (BERT): use `encode text`", dir.display())))
            }
        }
    }

    /// Side of the square inputs.
    fn side(&self) -> usize {
        match self {
            Self::EfficientNet(_, preprocess) => preprocess.crop as usize,
            Self::Clip(_, preprocess) => preprocess.size as usize,
        }
    }

    /// Decodes, resizes, crops and normalises one file: `[3, side, side]` values.
    fn prepare(&self, path: &Path) -> anyhow::Result<Vec<f32>> {
        Ok(match self {
            Self::EfficientNet(_, preprocess) => {
                preprocess.normalise(&preprocess.resize_crop(&ImagePreprocess::open(path)?)?)
            }
            Self::Clip(_, preprocess) => preprocess.pixels(&ClipPreprocess::open(path)?)?,
        })
    }

    fn forward(&self, images: Tensor<4>) -> ImageFeatures {
        match self {
            Self::EfficientNet(model, _) => model.forward(images),
            Self::Clip(model, _) => model.encode_image(images),
        }
    }
}

fn encode_images(
    spec: &str,
    inputs: &[PathBuf],
    output: &Path,
    with_patches: bool,
    batch_size: usize,
    device: &Device,
) -> anyhow::Result<u8> {
    let model = ImageModel::load(spec, device)?;
    let mut prepared = Vec::new();
    let mut failed = 0_usize;
    for input in inputs {
        match model.prepare(input) {
            Ok(values) => prepared.push((input.display().to_string(), values)),
            Err(error) => {
                failed += 1;
                tracing::error!("skipping `{}`: {error:#}", input.display());
            }
        }
    }
    if prepared.is_empty() {
        anyhow::bail!("none of the {} images could be read", inputs.len());
    }
    let side = model.side();
    let mut rows = Vec::with_capacity(prepared.len());
    for chunk in prepared.chunks(batch_size) {
        let values: Vec<f32> = chunk.iter().flat_map(|(_, values)| values.iter().copied()).collect();
        let batch = Tensor::from_data(TensorData::new(values, [chunk.len(), 3, side, side]), device);
        let features = model.forward(batch);
        rows.extend(split_features(features, chunk.iter().map(|(path, _)| path.clone()), with_patches)?);
    }
    sspa_table::write_image_encodings(output, &rows, with_patches)?;
    tracing::info!("encoded {} of {} images into `{}`", rows.len(), inputs.len(), output.display());
    if failed > 0 {
        tracing::error!("{failed} of {} images could not be read", inputs.len());
        return Ok(exit::STAGE_FAILED);
    }
    Ok(exit::OK)
}

/// One row per image of a batch's features.
fn split_features(
    features: ImageFeatures,
    paths: impl Iterator<Item = String>,
    with_patches: bool,
) -> anyhow::Result<Vec<ImageEncoding>> {
    let [_, width] = features.global.dims();
    let [_, count, _] = features.patches.dims();
    let global = features.global.into_data().convert::<f32>().try_into_vec::<f32>().context("reading features")?;
    let patches = if with_patches {
        Some(features.patches.into_data().convert::<f32>().try_into_vec::<f32>().context("reading patches")?)
    } else {
        None
    };
    Ok(paths
        .enumerate()
        .map(|(row, path)| ImageEncoding {
            path,
            global: global[row * width..(row + 1) * width].to_vec(),
            patches: patches.as_ref().map(|values| {
                values[row * count * width..(row + 1) * count * width]
                    .chunks_exact(width)
                    .map(<[f32]>::to_vec)
                    .collect()
            }),
        })
        .collect())
}
