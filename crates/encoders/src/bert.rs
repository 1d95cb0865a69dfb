//! BERT encoder (HF `BertModel` without the pooler), as used by sentence-transformers'
//! `all-MiniLM-L6-v2`, with the CAP prompt hook.
//!
//! # Weight key mapping (HF `BertModel` safetensors → this module)
//!
//! | checkpoint key | field | note |
//! |---|---|---|
//! | `embeddings.word_embeddings.weight` `[V, d]` | `embeddings.word.weight` | |
//! | `embeddings.position_embeddings.weight` `[P, d]` | `embeddings.position.weight` | |
//! | `embeddings.token_type_embeddings.weight` `[T, d]` | `embeddings.token_type.weight` | |
//! | `embeddings.LayerNorm.{weight,bias}` | `embeddings.norm.{gamma,beta}` | |
//! | `encoder.layer.{i}.attention.self.{query,key,value}.{weight,bias}` | `layers[i].attention.qkv` | concatenated `[3d, d]`, kept in both layouts ([`FrozenLinear`](crate::frozen_linear::FrozenLinear)) |
//! | `encoder.layer.{i}.attention.output.dense.{weight,bias}` | `layers[i].attention.output` | both layouts |
//! | `encoder.layer.{i}.attention.output.LayerNorm.{weight,bias}` | `layers[i].attention.norm` | |
//! | `encoder.layer.{i}.intermediate.dense.{weight,bias}` | `layers[i].intermediate` | both layouts |
//! | `encoder.layer.{i}.output.dense.{weight,bias}` | `layers[i].output` | both layouts |
//! | `encoder.layer.{i}.output.LayerNorm.{weight,bias}` | `layers[i].norm` | |
//! | `embeddings.position_ids`, `pooler.dense.{weight,bias}` | — | ignored: a buffer, and the unused `[CLS]` pooler |
//!
//! Keys may all carry a `bert.` prefix (checkpoints saved from task heads); any other key is
//! reported as unexpected.

use std::path::Path;

use burn::prelude::*;
use serde::Deserialize;

use crate::bert_embeddings::{BertEmbeddings, BertEmbeddingsConfig};
use crate::bert_layer::{BertLayer, BertLayerConfig};
use crate::error::EncoderError;
use crate::weights::Checkpoint;

/// Architecture of a BERT encoder (the fields of HF's `config.json` that matter).
#[derive(Config, Debug, PartialEq)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden width `d_t` (384 for MiniLM-L6).
    pub hidden_size: usize,
    /// Number of encoder layers (6).
    pub num_hidden_layers: usize,
    /// Number of attention heads (12).
    pub num_attention_heads: usize,
    /// Feed-forward width (1536).
    pub intermediate_size: usize,
    /// Length of the position table (512).
    pub max_position_embeddings: usize,
    /// Number of token types (2).
    pub type_vocab_size: usize,
    /// LayerNorm epsilon (1e-12).
    #[config(default = 1e-12)]
    pub layer_norm_eps: f64,
}

#[derive(Deserialize)]
struct HfBertConfig {
    model_type: Option<String>,
    hidden_act: Option<String>,
    position_embedding_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    type_vocab_size: usize,
    layer_norm_eps: Option<f64>,
}

impl BertConfig {
    /// Reads an HF `config.json` of `model_type` `bert` with `gelu` activation and absolute
    /// positions (anything else is rejected rather than silently mis-run).
    pub fn from_hf_file(path: &Path) -> Result<Self, EncoderError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| EncoderError::Io { path: path.to_path_buf(), source })?;
        let invalid = |reason: String| EncoderError::Config { path: path.to_path_buf(), reason };
        let raw: HfBertConfig = serde_json::from_str(&text).map_err(|error| invalid(error.to_string()))?;
        if let Some(kind) = raw.model_type.as_deref().filter(|kind| *kind != "bert") {
            return Err(invalid(format!("`model_type` is `{kind}`, expected `bert`")));
        }
        if let Some(activation) = raw.hidden_act.as_deref().filter(|act| *act != "gelu") {
            return Err(invalid(format!("`hidden_act` is `{activation}`, only `gelu` is supported")));
        }
        if let Some(kind) = raw.position_embedding_type.as_deref().filter(|kind| *kind != "absolute") {
            return Err(invalid(format!("`position_embedding_type` is `{kind}`, expected `absolute`")));
        }
        if raw.num_attention_heads == 0 || !raw.hidden_size.is_multiple_of(raw.num_attention_heads) {
            return Err(invalid(format!(
                "`hidden_size` `{}` is not divisible by `num_attention_heads` `{}`",
                raw.hidden_size, raw.num_attention_heads
            )));
        }
        Ok(Self {
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            intermediate_size: raw.intermediate_size,
            max_position_embeddings: raw.max_position_embeddings,
            type_vocab_size: raw.type_vocab_size,
            layer_norm_eps: raw.layer_norm_eps.unwrap_or(1e-12),
        })
    }

    fn embeddings(&self) -> BertEmbeddingsConfig {
        BertEmbeddingsConfig::new(
            self.vocab_size,
            self.hidden_size,
            self.max_position_embeddings,
            self.type_vocab_size,
            self.layer_norm_eps,
        )
    }

    fn layer(&self) -> BertLayerConfig {
        BertLayerConfig::new(self.hidden_size, self.num_attention_heads, self.intermediate_size, self.layer_norm_eps)
    }

    /// Random initialisation (tests, or training from scratch).
    pub fn init(&self, device: &Device) -> Bert {
        Bert {
            embeddings: self.embeddings().init(device),
            layers: (0..self.num_hidden_layers).map(|_| self.layer().init(device)).collect(),
        }
    }

    /// Loads the weights following the key table of this module; every mismatch is reported in
    /// one [`EncoderError::Weights`].
    pub fn load(&self, path: &Path, device: &Device) -> Result<Bert, EncoderError> {
        let checkpoint = Checkpoint::open(path, "BERT")?;
        self.load_checkpoint(checkpoint, device)
    }

    /// [`load`](Self::load) from an opened checkpoint.
    pub fn load_checkpoint(&self, mut checkpoint: Checkpoint, device: &Device) -> Result<Bert, EncoderError> {
        let prefix = if checkpoint.contains("bert.embeddings.word_embeddings.weight") { "bert." } else { "" };
        let embeddings = self.embeddings().load(&mut checkpoint, &format!("{prefix}embeddings"), device);
        let layers = (0..self.num_hidden_layers)
            .map(|index| self.layer().load(&mut checkpoint, &format!("{prefix}encoder.layer.{index}"), device))
            .collect();
        for ignored in ["embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"] {
            checkpoint.ignore(&format!("{prefix}{ignored}"));
        }
        checkpoint.finish()?;
        Ok(Bert { embeddings, layers })
    }
}

/// The BERT encoder stack. Frozen use: call [`Module::set_require_grad`] with `false` (the
/// loaders of this crate do) and gradients reach only inputs such as CAP prompt tokens.
#[derive(Module, Debug)]
pub struct Bert {
    /// Input embeddings.
    pub embeddings: BertEmbeddings,
    /// Encoder layers.
    pub layers: Vec<BertLayer>,
}

impl Bert {
    /// Hidden width `d_t`.
    pub fn width(&self) -> usize {
        self.embeddings.word.weight.dims()[1]
    }

    /// # Shapes
    /// - ids: `[B, L]` word-piece ids (with `[CLS]`/`[SEP]`)
    /// - mask: `[B, L]`, 1.0 for real tokens, 0.0 for padding
    /// - output: `[B, L, d_t]` last hidden states
    pub fn forward(&self, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<3> {
        self.forward_words(self.embeddings.words(ids), mask)
    }

    /// Runs the stack on word-level embeddings (positions and token types are added here).
    ///
    /// # Shapes
    /// - words: `[B, L, d_t]`
    /// - mask: `[B, L]`
    /// - output: `[B, L, d_t]`
    pub fn forward_words(&self, words: Tensor<3>, mask: Tensor<2>) -> Tensor<3> {
        let [batch, length] = mask.dims();
        // 0 where attended, the lowest f32 where padded (as HF's extended attention mask).
        let additive = (mask.neg() + 1.0).mul_scalar(f32::MIN).reshape([batch, 1, 1, length]);
        let mut hidden = self.embeddings.forward_words(words);
        for layer in &self.layers {
            hidden = layer.forward(hidden, additive.clone());
        }
        hidden
    }

    /// The CAP prompt hook: `M` learnable tokens are inserted after `[CLS]` and before each
    /// label's word pieces, `[CLS] V_1 … V_M w_1 … w_n [SEP]`; the mask is extended with ones.
    /// Gradients flow through the (frozen) encoder into `prompts`.
    ///
    /// # Shapes
    /// - prompts: `[M, d_t]`
    /// - ids: `[B, L]` with `[CLS]` first
    /// - mask: `[B, L]`
    /// - output: (`[B, M + L, d_t]` hidden states, `[B, M + L]` extended mask)
    pub fn forward_with_prompts(
        &self,
        prompts: Tensor<2>,
        ids: Tensor<2, Int>,
        mask: Tensor<2>,
    ) -> (Tensor<3>, Tensor<2>) {
        let [batch, length] = ids.dims();
        let [count, width] = prompts.dims();
        if count == 0 || length == 0 {
            return (self.forward(ids, mask.clone()), mask);
        }
        let words = self.embeddings.words(ids);
        let first = words.clone().slice([0..batch, 0..1]);
        let rest = words.slice([0..batch, 1..length]);
        let prompts = prompts.reshape([1, count, width]).expand([batch, count, width]);
        let spliced = Tensor::cat(vec![first, prompts, rest], 1);
        let device = mask.device();
        let mask = Tensor::cat(
            vec![
                mask.clone().slice([0..batch, 0..1]),
                Tensor::ones([batch, count], &device),
                mask.slice([0..batch, 1..length]),
            ],
            1,
        );
        (self.forward_words(spliced, mask.clone()), mask)
    }
}

/// sentence-transformers pooling: the mean of the hidden states over attended tokens, then L2
/// normalisation (`max(‖x‖, 1e-12)` as `torch.nn.functional.normalize`).
///
/// # Shapes
/// - hidden: `[B, L, d]`
/// - mask: `[B, L]`
/// - output: `[B, d]`
pub fn mean_pool_normalise(hidden: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
    let [batch, length, width] = hidden.dims();
    let weights = mask.reshape([batch, length, 1]);
    let summed = (hidden * weights.clone()).sum_dim(1).reshape([batch, width]);
    let counts = weights.sum_dim(1).reshape([batch, 1]).clamp_min(1e-9);
    let mean = summed / counts;
    let norm = mean.clone().powf_scalar(2.0).sum_dim(1).sqrt().clamp_min(1e-12);
    mean / norm
}
