//! Errors of the model crate: invalid head configurations and bad inputs.

use burn::prelude::*;

/// What can go wrong when building or feeding a head.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    /// `d` must be a positive multiple of 4 so that it splits into quaternion components.
    #[error("embedding width `{d_model}` must be a positive multiple of 4")]
    EmbedWidth {
        /// The offending width.
        d_model: usize,
    },
    /// The quaternion hidden width `q` (per component) must be positive.
    #[error("quaternion width `{quaternion_width}` must be positive")]
    QuaternionWidth {
        /// The offending width.
        quaternion_width: usize,
    },
    /// A text encoder width of zero.
    #[error("text width `{text_width}` must be positive")]
    TextWidth {
        /// The offending width.
        text_width: usize,
    },
    /// Image features of width `c` that cannot reach `d`: zero, or `c ≠ d` with
    /// `model.image_projection = "none"`.
    #[error(
        "image features have width `{image_width}` but the joint width `model.embed_dim` is `{d_model}`: \
         set `model.image_projection = \"linear\"` (a learnable Linear({image_width}, {d_model})) or make them equal"
    )]
    ImageWidth {
        /// Width `c` of the image encoder's features.
        image_width: usize,
        /// Joint width `d`.
        d_model: usize,
    },
    /// Attention heads that do not split the width evenly.
    #[error("`{heads}` attention heads do not divide the width `{d_model}`")]
    Heads {
        /// The width `D`.
        d_model: usize,
        /// The number of heads `H`.
        heads: usize,
    },
    /// A value read from the domain config does not fit the type it configures.
    #[error("config value `{key}` = `{value}` is out of range")]
    OutOfRange {
        /// Config key, e.g. `model.embed_dim`.
        key: &'static str,
        /// The value as written.
        value: String,
    },
    /// The input tensors' shapes do not agree with each other or with the head.
    #[error("input `{input}` has shape `{actual:?}`, expected `{expected}`")]
    Shape {
        /// Which input.
        input: &'static str,
        /// Its shape.
        actual: Vec<usize>,
        /// What was expected, in words.
        expected: String,
    },
    /// Targets outside `{1, 0, -1}`.
    #[error("target at `{index}` is `{value}`; targets must be 1, 0 or -1 (ignored)")]
    Target {
        /// Flat index into the target matrix.
        index: usize,
        /// The value found.
        value: f32,
    },
}

/// A [`ModelError::Shape`] for `input`.
pub(crate) fn shape_error(input: &'static str, actual: &[usize], expected: String) -> ModelError {
    ModelError::Shape { input, actual: actual.to_vec(), expected }
}

/// Checks that the global feature is `[B, c]` and the patch features `[B, N, c]` for a head that
/// takes image features of width `image_width` (`c`).
///
/// # Errors
/// [`ModelError::Shape`] naming `global` or `patches`.
pub(crate) fn check_image_inputs(
    global: &Tensor<2>,
    patches: &Tensor<3>,
    image_width: usize,
) -> Result<(), ModelError> {
    let [batch, width] = global.dims();
    if width != image_width {
        return Err(shape_error("global", &global.dims(), format!("[B, {image_width}]")));
    }
    let [patch_batch, _, width] = patches.dims();
    if patch_batch != batch || width != image_width {
        return Err(shape_error("patches", &patches.dims(), format!("[{batch}, N, {image_width}]")));
    }
    Ok(())
}
