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
use serde::{Deserialize, Serialize};
use sspa_clip::Clip;
use sspa_config::{ModelSection, Preset};
use sspa_encoders::MiniLm;
use sspa_train::{Backbone, BackboneSpec};

/// The `[model]` keys that decide which pretrained encoders are loaded: a stage that loads one
/// declares exactly these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncoderChoice {
    pub preset: Preset,
    /// Text-encoder weights; `None` = the preset's installed default (CLIP: `image_weights`).
    pub text_weights: Option<PathBuf>,
    /// Image-encoder weights; `None` = the preset's installed default.
    pub image_weights: Option<PathBuf>,
}

impl EncoderChoice {
    /// The choice a `[model]` section makes.
    pub fn of(model: &ModelSection) -> Self {
        Self {
            preset: model.preset,
            text_weights: model.text_weights.clone(),
            image_weights: model.image_weights.clone(),
        }
    }
}

/// Why an encoder could not be found or loaded.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    /// The choice or argument names nothing usable (not installed, not a model, wrong kind).
    #[error("{0}")]
    Usage(String),
    /// A file that should be readable is not.
    #[error("reading `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Encoder(#[from] sspa_encoders::EncoderError),
    #[error(transparent)]
    Clip(#[from] sspa_clip::ClipError),
    #[error(transparent)]
    Train(#[from] sspa_train::TrainError),
}

/// Preset name of the installed MiniLM (for `--model`).
pub const MINILM: &str = "minilm";
/// Preset name of the installed EfficientNet-Lite0 (for `--model`).
pub const EFFICIENTNET_LITE0: &str = "efficientnet-lite0";
/// Key that marks an EfficientNet-Lite0 checkpoint.
const EFFICIENTNET_KEY: &str = "_conv_stem.weight";
/// Key prefix of the image tower in an OpenAI / OpenCLIP state dict.
const OPENAI_VISUAL_PREFIX: &str = "visual.";

/// What a model argument (a preset name or a path) names.
#[derive(Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// A MiniLM/BERT directory.
    MiniLm(PathBuf),
    /// An EfficientNet-Lite0 safetensors file.
    EfficientNet(PathBuf),
    /// A CLIP HF directory or OpenAI/OpenCLIP safetensors file.
    Clip(PathBuf),
}

/// The tensor names in a safetensors file's header (the tensors are not read).
fn safetensors_keys(file: &Path) -> Result<Vec<String>, EncoderError> {
    use std::io::Read;
    let not_safetensors = || EncoderError::Usage(format!("`{}` is not a safetensors file", file.display()));
    let io = |source| EncoderError::Io { path: file.to_owned(), source };
    let mut reader = std::fs::File::open(file).map_err(io)?;
    let mut length = [0_u8; 8];
    reader.read_exact(&mut length).map_err(|_| not_safetensors())?;
    let length = usize::try_from(u64::from_le_bytes(length)).map_err(|_| not_safetensors())?;
    let size = reader.metadata().map(|m| m.len()).unwrap_or(0);
    if length as u64 > size {
        return Err(not_safetensors());
    }
    let mut header = vec![0_u8; length];
    reader.read_exact(&mut header).map_err(|_| not_safetensors())?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|_| not_safetensors())?;
    Ok(header.into_iter().map(|(key, _)| key).filter(|key| key != "__metadata__").collect())
}

/// Resolves a model argument, in this order: the presets [`MINILM`] and [`EFFICIENTNET_LITE0`]
/// (the installed defaults of `scripts/install-encoders`); a directory whose `config.json` has
/// `model_type` `bert` (with a `tokenizer.json`) or `clip`; a directory with `model.safetensors`,
/// or a safetensors file, that holds `_conv_stem.weight` (EfficientNet-Lite0) or `visual.*`
/// tensors (an OpenAI/OpenCLIP CLIP state dict).
///
/// # Errors
/// [`EncoderError::Usage`] naming what is missing or unsupported; [`EncoderError::Io`].
pub fn resolve_model(spec: &str) -> Result<ModelKind, EncoderError> {
    let usage = EncoderError::Usage;
    let (path, preset) = match spec {
        MINILM => (sspa_encoders::paths::minilm_dir(), true),
        EFFICIENTNET_LITE0 => (sspa_encoders::paths::efficientnet_dir(), true),
        _ => (PathBuf::from(spec), false),
    };
    if !path.exists() {
        return Err(usage(if preset {
            format!("preset `{spec}` is not installed at `{}`: run scripts/install-encoders", path.display())
        } else {
            format!("model `{spec}` is neither a preset ({MINILM}, {EFFICIENTNET_LITE0}) nor an existing path")
        }));
    }
    let config_path = path.join("config.json");
    if path.is_dir() && config_path.is_file() {
        let text = std::fs::read_to_string(&config_path)
            .map_err(|source| EncoderError::Io { path: config_path.clone(), source })?;
        let config: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| usage(format!("`{}` is not JSON: {e}", config_path.display())))?;
        match config.get("model_type").and_then(serde_json::Value::as_str) {
            Some("bert") if path.join("tokenizer.json").is_file() => return Ok(ModelKind::MiniLm(path)),
            Some("bert") => return Err(usage(format!("`{}` has no `tokenizer.json`", path.display()))),
            Some("clip") => return Ok(ModelKind::Clip(path)),
            _ => {}
        }
    }
    let file = if path.is_dir() { path.join("model.safetensors") } else { path.clone() };
    if file.is_file() {
        let keys = safetensors_keys(&file)?;
        if keys.iter().any(|key| key == EFFICIENTNET_KEY) {
            return Ok(ModelKind::EfficientNet(file));
        }
        if keys.iter().any(|key| key.starts_with(OPENAI_VISUAL_PREFIX)) {
            return Ok(ModelKind::Clip(file));
        }
        return Err(usage(format!(
            "`{}` is not a supported model: neither EfficientNet-Lite0 (`{EFFICIENTNET_KEY}`) nor an OpenAI CLIP \
             state dict (`{OPENAI_VISUAL_PREFIX}*`)",
            file.display()
        )));
    }
    Err(usage(format!(
        "`{}` is not a supported model: expected a BERT or CLIP `config.json`, or `model.safetensors`",
        path.display()
    )))
}

/// MiniLM files that decide its output.
const MINILM_FILES: &[&str] = &["config.json", "model.safetensors", "tokenizer.json"];
/// Files of an HF `CLIPModel` directory that decide its output (those present are hashed).
const CLIP_HF_FILES: &[&str] =
    &["config.json", "model.safetensors", "tokenizer.json", "vocab.json", "merges.txt", "bpe_simple_vocab_16e6.txt.gz"];

/// Where the CLIP weights of `model` are: `image_weights` for the image tower, `text_weights`
/// (default: the same) for the text tower.
fn clip_path(model: &EncoderChoice, project_root: &Path, text: bool) -> Result<PathBuf, EncoderError> {
    let chosen =
        if text { model.text_weights.as_ref().or(model.image_weights.as_ref()) } else { model.image_weights.as_ref() };
    let Some(path) = chosen else {
        return Err(EncoderError::Usage(format!(
            "`model.preset = \"{}\"`: CLIP weights are not shipped; set `model.image_weights` (and optionally \
             `model.text_weights`) to an HF CLIPModel directory or an OpenAI/OpenCLIP safetensors file",
            model.preset
        )));
    };
    Ok(project_root.join(path))
}

/// The text encoder's location: a MiniLM directory or a CLIP directory/file.
pub fn text_location(model: &EncoderChoice, project_root: &Path) -> Result<PathBuf, EncoderError> {
    if model.preset.is_clip() {
        return clip_path(model, project_root, true);
    }
    Ok(match &model.text_weights {
        Some(dir) => project_root.join(dir),
        None => sspa_encoders::paths::minilm_dir(),
    })
}

/// The image encoder's weights: the EfficientNet-Lite0 safetensors file, or a CLIP directory/file.
pub fn image_location(model: &EncoderChoice, project_root: &Path) -> Result<PathBuf, EncoderError> {
    if model.preset.is_clip() {
        return clip_path(model, project_root, false);
    }
    Ok(match &model.image_weights {
        Some(path) => {
            let path = project_root.join(path);
            if path.is_dir() { path.join("model.safetensors") } else { path }
        }
        None => sspa_encoders::paths::efficientnet_dir().join("model.safetensors"),
    })
}

/// The files the text encoder of `model` reads (stage inputs).
///
/// # Errors
/// A missing or incomplete location.
pub fn text_files(model: &EncoderChoice, project_root: &Path) -> Result<Vec<PathBuf>, EncoderError> {
    weight_files(&text_location(model, project_root)?, !model.preset.is_clip())
}

/// The files the image encoder of `model` reads (stage inputs).
///
/// # Errors
/// A missing location.
pub fn image_files(model: &EncoderChoice, project_root: &Path) -> Result<Vec<PathBuf>, EncoderError> {
    weight_files(&image_location(model, project_root)?, false)
}

/// The files behind a location, for stage inputs and hashes: the known files of a directory that
/// exist, or the file itself. A missing location is an error naming it.
pub fn weight_files(location: &Path, text_minilm: bool) -> Result<Vec<PathBuf>, EncoderError> {
    if location.is_dir() {
        let names = if text_minilm { MINILM_FILES } else { CLIP_HF_FILES };
        let files: Vec<PathBuf> = names.iter().map(|name| location.join(name)).filter(|p| p.is_file()).collect();
        if text_minilm && files.len() != MINILM_FILES.len() {
            return Err(EncoderError::Usage(format!(
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
    Err(EncoderError::Usage(format!(
        "encoder weights not found at `{}`: point `model.image_weights` / `model.text_weights` at them (the \
         MiniLM and EfficientNet-Lite0 defaults are installed by `scripts/install-encoders`; CLIP weights are \
         user-provided)",
        location.display()
    )))
}

/// BLAKE3 over the files of a location (names and contents), memory-mapped rather than read into
/// memory (CLIP checkpoints are hundreds of MB).
pub fn weights_hash(files: &[PathBuf]) -> Result<String, EncoderError> {
    let unreadable = |file: &Path, source: std::io::Error| EncoderError::Io { path: file.to_owned(), source };
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
    pub fn load(model: &EncoderChoice, project_root: &Path, device: &Device) -> Result<Self, EncoderError> {
        let location = text_location(model, project_root)?;
        Ok(if model.preset.is_clip() {
            Self::Clip(Box::new(Clip::load(&location, device)?))
        } else {
            Self::MiniLm(Box::new(MiniLm::load(&location, device)?))
        })
    }

    /// Short name for records, e.g. `minilm-l6` or `clip-text` (the preset table's).
    pub fn name(&self) -> &'static str {
        match self {
            Self::MiniLm(_) => Preset::MinilmEfficientnetLite0.info().text_encoder,
            Self::Clip(_) => Preset::ClipVitB16.info().text_encoder,
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
    pub fn encode(&self, texts: &[&str]) -> Result<Tensor<2>, EncoderError> {
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
    pub fn forward_with_prompts(&self, prompts: Tensor<2>, labels: &[&str]) -> Result<Tensor<2>, EncoderError> {
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

/// The preset's pretrained image encoder at `location` ([`image_location`]) on `device`: on a
/// plain device the frozen feature extractor, on an autodiff device the encoder the train stage
/// trains (its parameters require gradients). CLIP keeps only its image tower. Parameters take
/// the device's float type (bf16 under `train.precision = "bf16"`).
///
/// # Errors
/// Missing or mismatched weights.
pub fn image_encoder(
    preset: Preset,
    location: &Path,
    device: &Device,
) -> Result<(Backbone, BackboneSpec), EncoderError> {
    let (backbone, spec) = if preset.is_clip() {
        Backbone::clip(&Clip::load(location, device)?)?
    } else {
        Backbone::efficientnet(sspa_encoders::EfficientNetLite0Config::new().load(location, device)?)
    };
    Ok((sspa_train::match_device_float(backbone), spec))
}
