//! Weight loaders: HF `transformers` directories and OpenAI / OpenCLIP state dicts.
//!
//! # HF `CLIPModel` directory ([`load_hf_dir`])
//!
//! `config.json` (`text_config`, `vision_config`, `projection_dim`; `hidden_act` `quick_gelu`
//! or `gelu`) and `model.safetensors`:
//!
//! | checkpoint key | field |
//! |---|---|
//! | `text_model.embeddings.token_embedding.weight` | `text.token_embedding` |
//! | `text_model.embeddings.position_embedding.weight` | `text.positional_embedding` |
//! | `text_model.encoder.layers.{i}.layer_norm1`, `.layer_norm2` | `text.transformer.blocks[i].ln_1`, `.ln_2` |
//! | `text_model.encoder.layers.{i}.self_attn.{q,k,v}_proj.{weight,bias}` | `…blocks[i].attn.in_proj` (fused, transposed) |
//! | `text_model.encoder.layers.{i}.self_attn.out_proj` | `…blocks[i].attn.out_proj` (transposed) |
//! | `text_model.encoder.layers.{i}.mlp.fc1`, `.mlp.fc2` | `…blocks[i].c_fc`, `.c_proj` (transposed) |
//! | `text_model.final_layer_norm` | `text.ln_final` |
//! | `text_projection.weight` `[D, W]` | `text.text_projection` `[W, D]` |
//! | `vision_model.embeddings.patch_embedding.weight` | `visual.conv1` |
//! | `vision_model.embeddings.class_embedding` | `visual.class_embedding` |
//! | `vision_model.embeddings.position_embedding.weight` | `visual.positional_embedding` |
//! | `vision_model.pre_layrnorm`, `vision_model.post_layernorm` | `visual.ln_pre`, `visual.ln_post` |
//! | `vision_model.encoder.layers.{i}.*` | `visual.transformer.blocks[i]` (as the text layers) |
//! | `visual_projection.weight` `[D, W]` | `visual.proj` `[W, D]` |
//! | `logit_scale` `[]` | [`Clip::logit_scale`] |
//! | `*.embeddings.position_ids` | ignored (buffers) |
//!
//! Tokenizer: `tokenizer.json`, else `vocab.json` + `merges.txt` in the directory, else the
//! installed OpenAI BPE file ([`crate::paths::bpe_vocab`]).
//!
//! # OpenAI / OpenCLIP state dict in safetensors ([`load_openai_file`])
//!
//! The architecture is inferred from the shapes ([`ClipConfig::infer_openai`]) unless given.
//!
//! | checkpoint key | field |
//! |---|---|
//! | `token_embedding.weight`, `positional_embedding` | `text.token_embedding`, `text.positional_embedding` |
//! | `transformer.resblocks.{i}.ln_1`, `.ln_2` | `text.transformer.blocks[i].ln_1`, `.ln_2` |
//! | `transformer.resblocks.{i}.attn.in_proj_weight` `[3W, W]`, `.in_proj_bias` | `…blocks[i].attn.in_proj` (transposed) |
//! | `transformer.resblocks.{i}.attn.out_proj` | `…blocks[i].attn.out_proj` (transposed) |
//! | `transformer.resblocks.{i}.mlp.c_fc`, `.mlp.c_proj` | `…blocks[i].c_fc`, `.c_proj` (transposed) |
//! | `ln_final`, `text_projection` `[W, D]` | `text.ln_final`, `text.text_projection` |
//! | `visual.conv1.weight`, `visual.class_embedding`, `visual.positional_embedding` | ViT embeddings |
//! | `visual.ln_pre`, `visual.transformer.resblocks.{i}.*`, `visual.ln_post`, `visual.proj` | ViT tower |
//! | `visual.conv{1,2,3}`, `visual.bn*`, `visual.layer{1-4}.*`, `visual.attnpool.*` | ModifiedResNet ([`crate::resnet::load`]) |
//! | `logit_scale` `[]` | [`Clip::logit_scale`] |
//! | `input_resolution`, `context_length`, `vocab_size` | ignored (OpenAI JIT leftovers) |
//!
//! Tokenizer: `bpe_simple_vocab_16e6.txt.gz` next to the file, else the installed one.
//!
//! Every loader reads only `F32` tensors; missing, unexpected, mis-shaped or mis-typed tensors
//! make one [`ClipError::Weights`] listing all of them; unreadable, truncated or foreign files an
//! [`sspa_encoders::EncoderError::Io`] / [`sspa_encoders::EncoderError::Checkpoint`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use safetensors::SafeTensors;
use serde::Deserialize;
use sspa_encoders::EncoderError;
use sspa_encoders::weights::Checkpoint;

use crate::error::ClipError;
use crate::model::{Clip, Visual};
use crate::paths;
use crate::preset::{ClipConfig, VisionConfig};
use crate::text::TextTransformerConfig;
use crate::tokenizer::ClipTokenizer;
use crate::vit::VisionTransformerConfig;
use crate::weights::KeyLayout;

#[derive(Deserialize)]
struct HfText {
    #[serde(default = "defaults::vocab")]
    vocab_size: usize,
    #[serde(default = "defaults::text_width")]
    hidden_size: usize,
    #[serde(default = "defaults::text_mlp")]
    intermediate_size: usize,
    #[serde(default = "defaults::layers")]
    num_hidden_layers: usize,
    #[serde(default = "defaults::text_heads")]
    num_attention_heads: usize,
    #[serde(default = "defaults::context")]
    max_position_embeddings: usize,
    #[serde(default = "defaults::activation")]
    hidden_act: String,
    #[serde(default = "defaults::epsilon")]
    layer_norm_eps: f64,
}

#[derive(Deserialize)]
struct HfVision {
    #[serde(default = "defaults::vision_width")]
    hidden_size: usize,
    #[serde(default = "defaults::vision_mlp")]
    intermediate_size: usize,
    #[serde(default = "defaults::layers")]
    num_hidden_layers: usize,
    #[serde(default = "defaults::vision_heads")]
    num_attention_heads: usize,
    #[serde(default = "defaults::image")]
    image_size: usize,
    #[serde(default = "defaults::patch")]
    patch_size: usize,
    #[serde(default = "defaults::activation")]
    hidden_act: String,
    #[serde(default = "defaults::epsilon")]
    layer_norm_eps: f64,
    #[serde(default = "defaults::channels")]
    num_channels: usize,
}

#[derive(Deserialize)]
struct HfClip {
    model_type: Option<String>,
    #[serde(default = "defaults::projection")]
    projection_dim: usize,
    text_config: Option<HfText>,
    text_config_dict: Option<HfText>,
    vision_config: Option<HfVision>,
    vision_config_dict: Option<HfVision>,
}

/// HF `CLIPTextConfig` / `CLIPVisionConfig` / `CLIPConfig` defaults (ViT-B/32).
mod defaults {
    pub fn vocab() -> usize {
        49408
    }
    pub fn text_width() -> usize {
        512
    }
    pub fn text_mlp() -> usize {
        2048
    }
    pub fn layers() -> usize {
        12
    }
    pub fn text_heads() -> usize {
        8
    }
    pub fn context() -> usize {
        77
    }
    pub fn activation() -> String {
        "quick_gelu".into()
    }
    pub fn epsilon() -> f64 {
        1e-5
    }
    pub fn vision_width() -> usize {
        768
    }
    pub fn vision_mlp() -> usize {
        3072
    }
    pub fn vision_heads() -> usize {
        12
    }
    pub fn image() -> usize {
        224
    }
    pub fn patch() -> usize {
        32
    }
    pub fn channels() -> usize {
        3
    }
    pub fn projection() -> usize {
        512
    }
}

fn quick_gelu(path: &Path, tower: &str, activation: &str) -> Result<bool, ClipError> {
    match activation {
        "quick_gelu" => Ok(true),
        "gelu" => Ok(false),
        other => Err(ClipError::Config {
            path: path.to_path_buf(),
            reason: format!("{tower} `hidden_act` is `{other}`, expected `quick_gelu` or `gelu`"),
        }),
    }
}

/// The architecture of an HF `config.json` (`model_type` `clip`).
pub fn hf_config(path: &Path) -> Result<ClipConfig, ClipError> {
    let text = std::fs::read_to_string(path).map_err(|source| ClipError::Io { path: path.to_path_buf(), source })?;
    let invalid = |reason: String| ClipError::Config { path: path.to_path_buf(), reason };
    let raw: HfClip = serde_json::from_str(&text).map_err(|error| invalid(error.to_string()))?;
    if let Some(kind) = raw.model_type.as_deref().filter(|kind| *kind != "clip") {
        return Err(invalid(format!("`model_type` is `{kind}`, expected `clip`")));
    }
    let text_raw = raw.text_config.or(raw.text_config_dict).ok_or_else(|| invalid("no `text_config`".into()))?;
    let vision_raw =
        raw.vision_config.or(raw.vision_config_dict).ok_or_else(|| invalid("no `vision_config`".into()))?;
    if vision_raw.num_channels != 3 {
        return Err(invalid(format!("`num_channels` is `{}`, expected 3", vision_raw.num_channels)));
    }
    let embed_dim = raw.projection_dim;
    let text = TextTransformerConfig::new(
        text_raw.vocab_size,
        text_raw.max_position_embeddings,
        text_raw.hidden_size,
        text_raw.num_attention_heads,
        text_raw.num_hidden_layers,
        text_raw.intermediate_size,
        embed_dim,
    )
    .with_layer_norm_eps(text_raw.layer_norm_eps)
    .with_quick_gelu(quick_gelu(path, "text", &text_raw.hidden_act)?);
    let vision = VisionTransformerConfig::new(
        vision_raw.image_size,
        vision_raw.patch_size,
        vision_raw.hidden_size,
        vision_raw.num_attention_heads,
        vision_raw.num_hidden_layers,
        vision_raw.intermediate_size,
        embed_dim,
    )
    .with_layer_norm_eps(vision_raw.layer_norm_eps)
    .with_quick_gelu(quick_gelu(path, "vision", &vision_raw.hidden_act)?);
    let config = ClipConfig { embed_dim, text, vision: VisionConfig::Vit(vision) };
    config.validate().map_err(invalid)?;
    Ok(config)
}

/// The tokenizer of an HF directory (see the module docs for the search order).
pub fn find_hf_tokenizer(dir: &Path) -> Result<ClipTokenizer, ClipError> {
    let json = dir.join("tokenizer.json");
    if json.is_file() {
        return ClipTokenizer::from_tokenizer_json(&json);
    }
    let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
    if vocab.is_file() && merges.is_file() {
        return ClipTokenizer::from_vocab_merges(&vocab, &merges);
    }
    installed_bpe(vec![json, vocab])
}

/// OpenAI's BPE file next to a state dict, else the installed one.
pub fn find_bpe_next_to(file: &Path) -> Result<ClipTokenizer, ClipError> {
    let beside = file.parent().unwrap_or(Path::new(".")).join(paths::BPE_VOCAB);
    if beside.is_file() {
        return ClipTokenizer::from_bpe_gz(&beside);
    }
    installed_bpe(vec![beside])
}

fn installed_bpe(mut tried: Vec<PathBuf>) -> Result<ClipTokenizer, ClipError> {
    let installed = paths::bpe_vocab();
    if installed.is_file() {
        return ClipTokenizer::from_bpe_gz(&installed);
    }
    tried.push(installed);
    Err(ClipError::NotFound { what: "CLIP tokenizer".into(), tried })
}

fn read(path: &Path) -> Result<Vec<u8>, ClipError> {
    std::fs::read(path).map_err(|source| ClipError::Weights(EncoderError::Io { path: path.to_path_buf(), source }))
}

/// Key → shape of every tensor in a safetensors buffer.
pub fn tensor_shapes(buffer: &[u8], path: &Path) -> Result<BTreeMap<String, Vec<usize>>, ClipError> {
    let parsed = SafeTensors::deserialize(buffer).map_err(|error| {
        ClipError::Weights(EncoderError::Checkpoint { path: path.to_path_buf(), reason: error.to_string() })
    })?;
    Ok(parsed.iter().map(|(name, view)| (name.to_string(), view.shape().to_vec())).collect())
}

fn logit_scale(checkpoint: &mut Checkpoint) -> f32 {
    checkpoint.take_values("logit_scale", &[]).first().copied().unwrap_or_default()
}

/// Loads an HF `CLIPModel` directory (`config.json`, `model.safetensors`, tokenizer files).
pub fn load_hf_dir(dir: &Path, device: &Device) -> Result<Clip, ClipError> {
    let config = hf_config(&dir.join("config.json"))?;
    let weights = dir.join("model.safetensors");
    let tokenizer = find_hf_tokenizer(dir)?;
    let buffer = read(&weights)?;
    let mut checkpoint = Checkpoint::from_bytes(&buffer, &weights, "CLIP (HF)")?;
    let text = config.text.load(&mut checkpoint, KeyLayout::Hf, device);
    let VisionConfig::Vit(vision) = &config.vision else {
        let reason = "HF `CLIPModel` directories hold ViT image towers only".to_string();
        return Err(ClipError::Config { path: dir.join("config.json"), reason });
    };
    let visual = Visual::Vit(vision.load(&mut checkpoint, KeyLayout::Hf, device));
    let scale = logit_scale(&mut checkpoint);
    checkpoint.finish()?;
    tracing::debug!(dir = %dir.display(), "loaded HF CLIP");
    Ok(Clip::from_parts(text, visual, tokenizer, scale, config, device))
}

/// Loads an OpenAI / OpenCLIP state dict saved as safetensors; `config` overrides the
/// architecture inferred from the shapes (e.g. for heads that are not 64 wide).
pub fn load_openai_file(path: &Path, config: Option<ClipConfig>, device: &Device) -> Result<Clip, ClipError> {
    let buffer = read(path)?;
    let config = match config {
        Some(config) => config,
        None => ClipConfig::infer_openai(&tensor_shapes(&buffer, path)?)
            .map_err(|reason| ClipError::Config { path: path.to_path_buf(), reason })?,
    };
    config.validate().map_err(|reason| ClipError::Config { path: path.to_path_buf(), reason })?;
    let mut checkpoint = Checkpoint::from_bytes(&buffer, path, "CLIP (OpenAI)")?;
    let tokenizer = find_bpe_next_to(path)?;
    let text = config.text.load(&mut checkpoint, KeyLayout::OpenAi, device);
    let visual = match &config.vision {
        VisionConfig::Vit(vision) => Visual::Vit(vision.load(&mut checkpoint, KeyLayout::OpenAi, device)),
        VisionConfig::ResNet(resnet) => {
            Visual::ResNet(crate::resnet::load_openai(&mut checkpoint, "visual.", resnet, device)?)
        }
    };
    let scale = logit_scale(&mut checkpoint);
    for ignored in ["input_resolution", "context_length", "vocab_size"] {
        checkpoint.ignore(ignored);
    }
    checkpoint.finish()?;
    tracing::debug!(file = %path.display(), "loaded OpenAI CLIP");
    Ok(Clip::from_parts(text, visual, tokenizer, scale, config, device))
}
