//! The frozen encoders of a `model.preset`, resolved once for every stage that needs them.
//!
//! | preset | text encoder | image encoder | weights |
//! |---|---|---|---|
//! | `minilm-efficientnet-lite0` | MiniLM-L6 (`T` L2-normalised) | EfficientNet-Lite0 (`c = 1280`) | installed by `scripts/install-encoders`, or `model.text_weights` / `model.image_weights` |
//! | `clip-rn50`, `clip-rn101`, `clip-vit-b32`, `clip-vit-b16` | CLIP text tower (projected) | CLIP image tower (joint space) | user-provided: `model.image_weights` (and `model.text_weights`, default the same) = an HF `CLIPModel` directory or an OpenAI/OpenCLIP safetensors file |
//!
//! The weight files named by [`weight_files`] are stage inputs, so new weights re-run what
//! depends on them.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use sspa_clip::Clip;
use sspa_config::ModelSection;
use sspa_encoders::{EfficientNetLite0, ImageFeatures, MiniLm};

use crate::Error;

/// MiniLM files that decide its output.
const MINILM_FILES: &[&str] = &["config.json", "model.safetensors", "tokenizer.json"];
/// Files of an HF `CLIPModel` directory that decide its output (those present are hashed).
const CLIP_HF_FILES: &[&str] =
    &["config.json", "model.safetensors", "tokenizer.json", "vocab.json", "merges.txt", "bpe_simple_vocab_16e6.txt.gz"];

/// Whether `preset` is a CLIP preset.
pub fn is_clip(preset: &str) -> bool {
    preset.starts_with("clip-")
}

/// Where the CLIP weights of `model` are: `image_weights` for the image tower, `text_weights`
/// (default: the same) for the text tower.
fn clip_path(model: &ModelSection, project_root: &Path, text: bool) -> Result<PathBuf, Error> {
    let chosen =
        if text { model.text_weights.as_ref().or(model.image_weights.as_ref()) } else { model.image_weights.as_ref() };
    let Some(path) = chosen else {
        return Err(Error::Unsupported(format!(
            "`model.preset = \"{}\"`: CLIP weights are not shipped; set `model.image_weights` (and optionally \
             `model.text_weights`) to an HF CLIPModel directory or an OpenAI/OpenCLIP safetensors file",
            model.preset
        )));
    };
    Ok(project_root.join(path))
}

/// The text encoder's location: a MiniLM directory or a CLIP directory/file.
pub fn text_location(model: &ModelSection, project_root: &Path) -> Result<PathBuf, Error> {
    if is_clip(&model.preset) {
        return clip_path(model, project_root, true);
    }
    Ok(match &model.text_weights {
        Some(dir) => project_root.join(dir),
        None => sspa_encoders::paths::minilm_dir(),
    })
}

/// The image encoder's weights: the EfficientNet-Lite0 safetensors file, or a CLIP directory/file.
pub fn image_location(model: &ModelSection, project_root: &Path) -> Result<PathBuf, Error> {
    if is_clip(&model.preset) {
        return clip_path(model, project_root, false);
    }
    Ok(crate::features::efficientnet_weights(model, project_root))
}

/// The files behind a location, for stage inputs and hashes: the known files of a directory that
/// exist, or the file itself. A missing location is an error naming it.
pub fn weight_files(location: &Path, text_minilm: bool) -> Result<Vec<PathBuf>, Error> {
    if location.is_dir() {
        let names = if text_minilm { MINILM_FILES } else { CLIP_HF_FILES };
        let files: Vec<PathBuf> = names.iter().map(|name| location.join(name)).filter(|p| p.is_file()).collect();
        if text_minilm && files.len() != MINILM_FILES.len() {
            return Err(Error::Unsupported(format!(
                "text-encoder weights incomplete in `{}` (needs {}): run `scripts/install-encoders` or fix \
                 `model.text_weights`",
                location.display(),
                MINILM_FILES.join(", ")
            )));
        }
        return Ok(files);
    }
    if location.is_file() {
        return Ok(vec![location.to_owned()]);
    }
    Err(Error::Unsupported(format!(
        "encoder weights not found at `{}`: run `scripts/install-encoders` or set `model.text_weights` / \
         `model.image_weights`",
        location.display()
    )))
}

/// BLAKE3 over the files of a location (names and contents), memory-mapped rather than read into
/// memory (CLIP checkpoints are hundreds of MB).
pub fn weights_hash(files: &[PathBuf]) -> Result<String, Error> {
    let unreadable = |file: &Path, e: std::io::Error| {
        Error::Unsupported(format!("reading encoder weights `{}`: {e}", file.display()))
    };
    let mut hasher = blake3::Hasher::new();
    for file in files {
        if files.len() > 1 {
            let length = std::fs::metadata(file).map_err(|e| unreadable(file, e))?.len();
            hasher.update(file.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default());
            hasher.update(&length.to_le_bytes());
        }
        hasher.update_mmap(file).map_err(|e| unreadable(file, e))?;
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// The frozen text encoder of a preset.
#[derive(Debug)]
pub enum TextModel {
    MiniLm(Box<MiniLm>),
    Clip(Box<Clip>),
}

impl TextModel {
    /// Loads the text encoder of `model` on `device`.
    ///
    /// # Errors
    /// Missing or mismatched weights.
    pub fn load(model: &ModelSection, project_root: &Path, device: &Device) -> Result<Self, sspa_dag::StageError> {
        let location = text_location(model, project_root)?;
        Ok(if is_clip(&model.preset) {
            Self::Clip(Box::new(Clip::load(&location, device)?))
        } else {
            Self::MiniLm(Box::new(MiniLm::load(&location, device)?))
        })
    }

    /// Short name for records, e.g. `minilm-l6` or `clip-text`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::MiniLm(_) => "minilm-l6",
            Self::Clip(_) => "clip-text",
        }
    }

    /// Output width `d_t`.
    pub fn width(&self) -> usize {
        match self {
            Self::MiniLm(m) => m.width(),
            Self::Clip(c) => c.embed_dim(),
        }
    }

    /// Width of one CAP prompt token (the token-embedding width).
    pub fn prompt_width(&self) -> usize {
        match self {
            Self::MiniLm(m) => m.width(),
            Self::Clip(c) => c.text_tower().width(),
        }
    }

    /// Embeddings of `texts` (MiniLM: L2-normalised mean pooling; CLIP: projected EOT feature).
    ///
    /// # Shapes
    /// - output: `[texts.len(), d_t]`
    pub fn encode(&self, texts: &[&str]) -> Result<Tensor<2>, sspa_dag::StageError> {
        Ok(match self {
            Self::MiniLm(m) => m.encode(texts)?,
            Self::Clip(c) => c.encode_text(texts)?,
        })
    }

    /// The CAP hook: `M` learnable tokens before each label's words (CLIP:
    /// `[SOT][V]_1…[V]_M {label} . [EOT]`; MiniLM: `[CLS] V_1…V_M {label} [SEP]`).
    ///
    /// # Shapes
    /// - prompts: `[M, prompt_width]`
    /// - output: `[labels.len(), d_t]`
    pub fn forward_with_prompts(&self, prompts: Tensor<2>, labels: &[&str]) -> Result<Tensor<2>, sspa_dag::StageError> {
        Ok(match self {
            Self::MiniLm(m) => m.forward_with_prompts(prompts, labels)?,
            Self::Clip(c) => {
                let labels: Vec<String> = labels.iter().map(|label| format!("{label}.")).collect();
                let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
                c.forward_with_prompts(prompts, &labels)?
            }
        })
    }
}

/// The frozen image encoder of a preset.
#[derive(Debug)]
pub enum ImageModel {
    EfficientNet(Box<EfficientNetLite0>),
    Clip(Box<Clip>),
}

impl ImageModel {
    /// Loads the image encoder of `model` on `device` from `location` ([`image_location`]).
    ///
    /// # Errors
    /// Missing or mismatched weights.
    pub fn load(model: &ModelSection, location: &Path, device: &Device) -> Result<Self, sspa_dag::StageError> {
        Ok(if is_clip(&model.preset) {
            Self::Clip(Box::new(Clip::load(location, device)?))
        } else {
            use burn::module::Module;
            let encoder = sspa_encoders::EfficientNetLite0Config::new().load(location, device)?;
            Self::EfficientNet(Box::new(encoder.set_require_grad(false)))
        })
    }

    /// Name recorded in `features.json`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::EfficientNet(_) => "efficientnet-lite0",
            Self::Clip(_) => "clip-image",
        }
    }

    /// Global and patch features (EfficientNet: raw last feature map and its mean; CLIP: the
    /// joint-space class/pooled token and projected patch tokens).
    ///
    /// # Shapes
    /// - images: `[B, 3, S, S]`, normalised with the preset's mean/std
    /// - output: global `[B, c]`, patches `[B, N, c]`
    pub fn forward(&self, images: Tensor<4>) -> ImageFeatures {
        match self {
            Self::EfficientNet(e) => e.forward(images),
            Self::Clip(c) => c.encode_image(images),
        }
    }
}
