//! `sspa-pipe encode`: texts or images → Parquet, with a pretrained encoder.
//!
//! Models (`--model`), resolved by [`sspa_infer::encoders::resolve_model`] in this order:
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

use burn::prelude::*;
use clap::Subcommand;
use sspa_config::{ComputeDevice, Precision};
use sspa_infer::encode::{EncodeError, ImageModel, encode_texts};
use sspa_infer::{DeviceSettings, device::select};

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
        /// `cpu`, `libtorch` or `cuda:N` (libtorch needs a `--features tch` build).
        #[arg(long, value_name = "DEVICE", default_value = "cpu")]
        device: ComputeDevice,
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
        /// `cpu`, `libtorch` or `cuda:N` (libtorch needs a `--features tch` build).
        #[arg(long, value_name = "DEVICE", default_value = "cpu")]
        device: ComputeDevice,
    },
}

/// Runs `encode text` or `encode image`.
pub fn encode(command: &EncodeCommand) -> anyhow::Result<u8> {
    match command {
        EncodeCommand::Text { model, input, output, device } => {
            encode_text(model, input, output, &self::device(*device)?)
        }
        EncodeCommand::Image { model, input, output, patches, batch_size, device } => {
            encode_images(model, input, output, *patches, usize::from(*batch_size), &self::device(*device)?)
        }
    }
}

/// The device a `--device` flag names, through the one device selection (f32).
pub(crate) fn device(device: ComputeDevice) -> anyhow::Result<Device> {
    select(DeviceSettings { device, precision: Precision::F32 })
        .map_err(|e| UsageError(format!("--device: {e}")).into())
}

fn usage(message: String) -> anyhow::Error {
    UsageError(message).into()
}

/// A wrong model argument is a usage error (exit 2); anything else fails the command.
fn encode_error(error: EncodeError) -> anyhow::Error {
    match error {
        EncodeError::Usage(message) => usage(message),
        other => anyhow::Error::new(other),
    }
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
    let rows = encode_texts(spec, read_lines(input)?, device).map_err(encode_error)?;
    sspa_table::write_text_encodings(output, &rows)?;
    let width = rows.first().map_or(0, |row| row.embedding.len());
    tracing::info!("encoded {} texts ({width}-d) into `{}`", rows.len(), output.display());
    Ok(exit::OK)
}

fn encode_images(
    spec: &str,
    inputs: &[PathBuf],
    output: &Path,
    with_patches: bool,
    batch_size: usize,
    device: &Device,
) -> anyhow::Result<u8> {
    let model = ImageModel::load(spec, device).map_err(encode_error)?;
    let mut prepared = Vec::new();
    let mut failed = 0_usize;
    for input in inputs {
        match model.prepare(input) {
            Ok(values) => prepared.push((input.display().to_string(), values)),
            Err(reason) => {
                failed += 1;
                tracing::error!("skipping {reason}");
            }
        }
    }
    if prepared.is_empty() {
        anyhow::bail!("none of the {} images could be read", inputs.len());
    }
    let rows = model.encode(&prepared, batch_size, with_patches, device).map_err(encode_error)?;
    sspa_table::write_image_encodings(output, &rows, with_patches)?;
    tracing::info!("encoded {} of {} images into `{}`", rows.len(), inputs.len(), output.display());
    if failed > 0 {
        tracing::error!("{failed} of {} images could not be read", inputs.len());
        return Ok(exit::STAGE_FAILED);
    }
    Ok(exit::OK)
}
