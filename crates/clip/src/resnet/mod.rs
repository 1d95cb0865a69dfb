//! The ModifiedResNet image tower of CLIP (RN50, RN101): OpenAI's `model.py` (also OpenCLIP's
//! `modified_resnet.py`) in burn.
//!
//! Differences from torchvision's ResNet: a three-convolution stem with an average pool,
//! anti-aliased strides (an average pool before the stride-1 `conv3` and in the downsample path,
//! see [`bottleneck`]) and attention pooling instead of global average pooling ([`attnpool`]).
//! BatchNorm runs in inference mode and is folded into the convolutions at load time.
//!
//! [`ModifiedResNet::forward`] returns [`sspa_encoders::ImageFeatures`]: the attention-pooled
//! `global` feature `[B, output_dim]` and MaskCLIP dense `patches` `[B, h·w, output_dim]`, both
//! in the joint image–text space. Other input sizes than the configured `image_size` work: the
//! positional embedding is interpolated bicubically ([`attnpool`]).
//!
//! Weights: [`load_openai`] (key table in [`load`]), architecture from shapes:
//! [`ModifiedResNetConfig::infer`].

pub mod attnpool;
pub mod bottleneck;
pub mod error;
pub mod load;
pub mod model;
pub mod pool;
pub mod stem;

pub use error::ResnetError;
pub use load::{load_file, load_openai};
pub use model::{ModifiedResNet, ModifiedResNetConfig};
