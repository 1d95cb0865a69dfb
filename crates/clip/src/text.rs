//! CLIP's text tower: token + positional embedding, causal pre-LN transformer, `ln_final`,
//! pooling at the EOT token, text projection; and the CAP prompt hook.
//!
//! Pooling takes, as OpenAI, the position of the highest id of each row (EOT, 49407, is the
//! highest id of the vocabulary); HF's `eos_token_id` rule picks the same position for
//! tokenizer output.

use burn::module::Param;
use burn::nn::{Embedding, EmbeddingConfig};
use burn::prelude::*;
use burn::tensor::{Distribution, TensorData};
use sspa_encoders::weights::Checkpoint;
use sspa_norm::{LayerNorm, LayerNormConfig};

use crate::error::ClipError;
use crate::residual::ResidualAttentionBlockConfig;
use crate::tokenizer::ClipTokens;
use crate::transformer::{Transformer, TransformerConfig};
use crate::weights::{self, KeyLayout};

/// Configuration of [`TextTransformer`].
#[derive(Config, Debug, PartialEq)]
pub struct TextTransformerConfig {
    /// Vocabulary size (49408 for OpenAI's BPE).
    pub vocab_size: usize,
    /// Number of positions (77).
    pub context_length: usize,
    /// Transformer width `W`.
    pub width: usize,
    /// Number of attention heads.
    pub heads: usize,
    /// Number of residual blocks.
    pub layers: usize,
    /// MLP hidden width (`4W` in OpenAI models).
    pub mlp_width: usize,
    /// Joint embedding width `D` (the text projection's output).
    pub embed_dim: usize,
    /// LayerNorm epsilon.
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
    /// QuickGELU (OpenAI) rather than exact GELU.
    #[config(default = true)]
    pub quick_gelu: bool,
}

impl TextTransformerConfig {
    fn transformer(&self) -> TransformerConfig {
        let block = ResidualAttentionBlockConfig::new(self.width, self.heads, self.mlp_width)
            .with_layer_norm_eps(self.layer_norm_eps)
            .with_quick_gelu(self.quick_gelu);
        TransformerConfig::new(block, self.layers)
    }

    /// Random initialisation.
    pub fn init(&self, device: &Device) -> TextTransformer {
        let normal = |shape: [usize; 2], std: f64| Tensor::random(shape, Distribution::Normal(0.0, std), device);
        TextTransformer {
            token_embedding: EmbeddingConfig::new(self.vocab_size, self.width).init(device),
            positional_embedding: Param::from_tensor(normal([self.context_length, self.width], 0.01)),
            transformer: self.transformer().init(device),
            ln_final: LayerNormConfig::new(self.width).with_epsilon(self.layer_norm_eps).init(device),
            text_projection: Param::from_tensor(normal([self.width, self.embed_dim], (self.width as f64).powf(-0.5))),
        }
    }

    /// Loads the text tower:
    ///
    /// | field | OpenAI key | HF key |
    /// |---|---|---|
    /// | `token_embedding` | `token_embedding.weight` `[V, W]` | `text_model.embeddings.token_embedding.weight` |
    /// | `positional_embedding` | `positional_embedding` `[C, W]` | `text_model.embeddings.position_embedding.weight` |
    /// | `transformer` | `transformer.resblocks.{i}.*` | `text_model.encoder.layers.{i}.*` |
    /// | `ln_final` | `ln_final` | `text_model.final_layer_norm` |
    /// | `text_projection` `[W, D]` | `text_projection` `[W, D]` | `text_projection.weight` `[D, W]` (transposed) |
    ///
    /// HF's `text_model.embeddings.position_ids` buffer is ignored.
    pub fn load(&self, checkpoint: &mut Checkpoint, layout: KeyLayout, device: &Device) -> TextTransformer {
        let (token, position, blocks, norm, projection) = match layout {
            KeyLayout::OpenAi => {
                ("token_embedding.weight", "positional_embedding", "transformer", "ln_final", "text_projection")
            }
            KeyLayout::Hf => (
                "text_model.embeddings.token_embedding.weight",
                "text_model.embeddings.position_embedding.weight",
                "text_model.encoder",
                "text_model.final_layer_norm",
                "text_projection.weight",
            ),
        };
        if layout == KeyLayout::Hf {
            checkpoint.ignore("text_model.embeddings.position_ids");
        }
        let mut token_embedding = EmbeddingConfig::new(self.vocab_size, self.width).init(device);
        token_embedding.weight = Param::from_tensor(checkpoint.take(token, [self.vocab_size, self.width], device));
        TextTransformer {
            token_embedding,
            positional_embedding: Param::from_tensor(checkpoint.take(
                position,
                [self.context_length, self.width],
                device,
            )),
            transformer: self.transformer().load(checkpoint, blocks, layout, device),
            ln_final: weights::layer_norm(checkpoint, norm, self.width, self.layer_norm_eps, device),
            text_projection: weights::projection(
                checkpoint,
                projection,
                self.width,
                self.embed_dim,
                layout == KeyLayout::Hf,
                device,
            ),
        }
    }
}

/// The CLIP text transformer.
#[derive(Module, Debug)]
pub struct TextTransformer {
    /// Token embedding `[V, W]`.
    pub token_embedding: Embedding,
    /// Learned absolute positions `[C, W]`.
    pub positional_embedding: Param<Tensor<2>>,
    /// Causal pre-LN transformer.
    pub transformer: Transformer,
    /// Final LayerNorm.
    pub ln_final: LayerNorm,
    /// Projection into the joint space, `[W, D]`, applied as `x · P`.
    pub text_projection: Param<Tensor<2>>,
}

impl TextTransformer {
    /// Transformer width `W` (the width of CAP prompt vectors).
    pub fn width(&self) -> usize {
        self.positional_embedding.dims()[1]
    }

    /// Joint embedding width `D`.
    pub fn embed_dim(&self) -> usize {
        self.text_projection.dims()[1]
    }

    /// Number of positions (77).
    pub fn context_length(&self) -> usize {
        self.positional_embedding.dims()[0]
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.token_embedding.weight.dims()[0]
    }

    /// Projected text features (not normalised), pooled at each row's highest id (EOT).
    ///
    /// # Shapes
    /// - tokens: `[B, L]`, `L ≤ context_length`
    /// - output: `[B, D]`
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<2> {
        let [batch, _] = tokens.dims();
        let eot = tokens.clone().argmax(1).reshape([batch]);
        self.forward_embedded(self.token_embedding.forward(tokens), eot)
    }

    /// The tower from word embeddings on, pooled at `eot`.
    ///
    /// # Shapes
    /// - words: `[B, L, W]`, `L ≤ context_length`
    /// - eot: `[B]`, the pooled position of each row
    /// - output: `[B, D]`
    pub fn forward_embedded(&self, words: Tensor<3>, eot: Tensor<1, Int>) -> Tensor<2> {
        let [batch, length, width] = words.dims();
        let device = words.device();
        let positions = self.positional_embedding.val().narrow(0, 0, length).reshape([1, length, width]);
        let hidden = self.transformer.forward(words + positions, Some(causal_mask(length, &device)));
        let hidden = self.ln_final.forward(hidden);
        let index = eot.reshape([batch, 1, 1]).expand([batch, 1, width]);
        let pooled = hidden.gather(1, index).reshape([batch, width]);
        pooled.matmul(self.text_projection.val())
    }

    /// The CAP prompt hook (CoOp layout): each row `[SOT][label words][EOT]` becomes
    /// `[SOT][V_1 … V_M][label words][EOT]`, still `context_length` long (label words cut to
    /// `context_length − 2 − M`), pooled at the shifted EOT. `prompts` may require gradients on an
    /// autodiff device; the frozen tower passes gradients through to them.
    ///
    /// # Shapes
    /// - prompts: `[M, W]`
    /// - tokens: `batch` rows of [`ClipTokens`]
    /// - output: `[batch, D]`
    pub fn forward_with_prompts(&self, prompts: Tensor<2>, tokens: &ClipTokens) -> Result<Tensor<2>, ClipError> {
        let [count, width] = prompts.dims();
        let length = tokens.context_length;
        if width != self.width() {
            return Err(ClipError::Input(format!(
                "prompt width `{width}` differs from the text width `{}`",
                self.width()
            )));
        }
        if length > self.context_length() || count + 2 > length {
            return Err(ClipError::Input(format!(
                "`{count}` prompt tokens and `{length}`-token rows do not fit `{}` positions",
                self.context_length()
            )));
        }
        if count == 0 {
            return Ok(self.forward(tokens.tensor(&self.positional_embedding.device())));
        }
        let batch = tokens.batch;
        let mut ids = vec![0_i64; batch * length];
        let mut eot = Vec::with_capacity(batch);
        for row in 0..batch {
            let start = row * length;
            let words = tokens.words(row);
            let kept = &words[..words.len().min(length - 2 - count)];
            ids[start] = tokens.ids[start];
            ids[start + 1 + count..start + 1 + count + kept.len()].copy_from_slice(kept);
            ids[start + 1 + count + kept.len()] = tokens.ids[start + tokens.eot_positions[row]];
            eot.push((1 + count + kept.len()) as i64);
        }
        let device = self.positional_embedding.device();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, length]), &device);
        let words = self.token_embedding.forward(ids);
        let spliced = Tensor::cat(
            vec![
                words.clone().narrow(1, 0, 1),
                prompts.reshape([1, count, width]).expand([batch, count, width]),
                words.narrow(1, 1 + count, length - 1 - count),
            ],
            1,
        );
        let eot = Tensor::<1, Int>::from_data(TensorData::new(eot, [batch]), &device);
        Ok(self.forward_embedded(spliced, eot))
    }
}

/// `[L, L]`: 0 on and below the diagonal, the lowest `f32` above (no attention to later tokens).
fn causal_mask(length: usize, device: &Device) -> Tensor<2> {
    let values: Vec<f32> =
        (0..length * length).map(|index| if index % length > index / length { f32::MIN } else { 0.0 }).collect();
    Tensor::from_data(TensorData::new(values, [length, length]), device)
}
