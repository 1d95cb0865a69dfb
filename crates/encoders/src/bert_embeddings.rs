//! BERT input embeddings: word + absolute position + token type, then LayerNorm.

use burn::module::Param;
use burn::nn::{Embedding, EmbeddingConfig};
use burn::prelude::*;
use sspa_norm::{LayerNorm, LayerNormConfig};

use crate::weights::{self, Checkpoint};

/// Configuration of [`BertEmbeddings`].
#[derive(Config, Debug)]
pub struct BertEmbeddingsConfig {
    /// Vocabulary size (30522 for the uncased WordPiece vocabulary).
    pub vocab_size: usize,
    /// Hidden width `d_t`.
    pub hidden_size: usize,
    /// Longest sequence the position table covers.
    pub max_position_embeddings: usize,
    /// Number of token types (segments).
    pub type_vocab_size: usize,
    /// LayerNorm epsilon (1e-12 in BERT).
    pub layer_norm_eps: f64,
}

impl BertEmbeddingsConfig {
    /// Random initialisation (normal, as burn's embedding default); for tests and training from
    /// scratch.
    pub fn init(&self, device: &Device) -> BertEmbeddings {
        BertEmbeddings {
            word: EmbeddingConfig::new(self.vocab_size, self.hidden_size).init(device),
            position: EmbeddingConfig::new(self.max_position_embeddings, self.hidden_size).init(device),
            token_type: EmbeddingConfig::new(self.type_vocab_size, self.hidden_size).init(device),
            norm: LayerNormConfig::new(self.hidden_size).with_epsilon(self.layer_norm_eps).init(device),
        }
    }

    /// Loads `{prefix}.word_embeddings.weight`, `.position_embeddings.weight`,
    /// `.token_type_embeddings.weight` and `.LayerNorm.{weight,bias}`.
    pub fn load(&self, checkpoint: &mut Checkpoint, prefix: &str, device: &Device) -> BertEmbeddings {
        let mut table = |name: &str, rows: usize| Embedding {
            weight: Param::from_tensor(checkpoint.take(
                &format!("{prefix}.{name}.weight"),
                [rows, self.hidden_size],
                device,
            )),
        };
        let word = table("word_embeddings", self.vocab_size);
        let position = table("position_embeddings", self.max_position_embeddings);
        let token_type = table("token_type_embeddings", self.type_vocab_size);
        let norm = weights::layer_norm(
            checkpoint,
            &format!("{prefix}.LayerNorm"),
            self.hidden_size,
            self.layer_norm_eps,
            device,
        );
        BertEmbeddings { word, position, token_type, norm }
    }
}

/// Word, position and token-type embeddings summed, then normalised (dropout is off: inference
/// and frozen use only).
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    /// Word-piece table `[vocab, d_t]`.
    pub word: Embedding,
    /// Absolute positions `[max_positions, d_t]`.
    pub position: Embedding,
    /// Token types `[types, d_t]`; only type 0 is used (single sentences).
    pub token_type: Embedding,
    /// Final LayerNorm.
    pub norm: LayerNorm,
}

impl BertEmbeddings {
    /// Looks up word embeddings only (the CAP hook splices prompt tokens in between).
    ///
    /// # Shapes
    /// - ids: `[B, L]`
    /// - output: `[B, L, d_t]`
    pub fn words(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.word.forward(ids)
    }

    /// Adds positions `0..L` and token type 0 to word-level embeddings, then normalises.
    ///
    /// # Shapes
    /// - words: `[B, L, d_t]`, `L ≤ max_positions`
    /// - output: `[B, L, d_t]`
    pub fn forward_words(&self, words: Tensor<3>) -> Tensor<3> {
        let [_, length, width] = words.dims();
        let positions = self.position.weight.val().slice(0..length).reshape([1, length, width]);
        let token_type = self.token_type.weight.val().slice(0..1).reshape([1, 1, width]);
        self.norm.forward(words + positions + token_type)
    }

    /// # Shapes
    /// - ids: `[B, L]`
    /// - output: `[B, L, d_t]`
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.forward_words(self.words(ids))
    }

    /// The longest sequence the position table covers.
    pub fn max_positions(&self) -> usize {
        self.position.weight.dims()[0]
    }
}
