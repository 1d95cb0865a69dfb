//! clip: CLIP (Radford et al., 2021) in burn.
//!
//! - [`tokenizer`]: OpenAI's byte-level BPE tokenizer (77-token context, SOT/EOT).
//! - [`text`]: the text transformer (causal, EOT pooling, text projection) with the CAP prompt
//!   hook [`TextTransformer::forward_with_prompts`].
//! - [`vit`]: the ViT image tower; class and patch tokens both go through `ln_post` and the
//!   projection, so patch features live in the joint space.
//! - [`resnet`]: the ModifiedResNet image tower (RN50, RN101) with attention pooling and dense
//!   patch features from the pooling's value/output projections.
//! - [`preset`], [`load`]: OpenAI presets, shape inference from state dicts, HF and
//!   OpenAI/OpenCLIP safetensors loaders, and the [`Clip`] model.
//! - [`preprocess`]: CLIP's image preprocessing (PIL bicubic, centre crop, CLIP mean/std).

pub mod attention;
pub mod clean;
pub mod error;
pub mod interpolate;
pub mod load;
pub mod model;
pub mod paths;
pub mod preprocess;
pub mod preset;
pub mod residual;
pub mod resnet;
pub mod text;
pub mod tokenizer;
pub mod transformer;
pub mod vit;
pub mod weights;

pub use error::ClipError;
pub use model::{Clip, Visual};
pub use preprocess::{CLIP_MEAN, CLIP_STD, ClipPreprocess};
pub use preset::{ClipConfig, ClipPreset, VisionConfig};
pub use text::{TextTransformer, TextTransformerConfig};
pub use tokenizer::{CONTEXT_LENGTH, ClipTokenizer, ClipTokens};
pub use vit::{VisionTransformer, VisionTransformerConfig};
pub use weights::KeyLayout;
