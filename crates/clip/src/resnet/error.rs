//! Errors of the ModifiedResNet tower.

use sspa_encoders::EncoderError;

/// Everything that can go wrong while building or loading a [`super::ModifiedResNet`].
#[derive(Debug, thiserror::Error)]
pub enum ResnetError {
    /// The checkpoint could not be read or does not match the architecture (every missing,
    /// unexpected, mis-shaped or mis-typed tensor is listed).
    #[error(transparent)]
    Weights(#[from] EncoderError),
    /// The architecture cannot be inferred from the checkpoint's tensor shapes.
    #[error("cannot infer the ModifiedResNet configuration under prefix `{prefix}`: {reason}")]
    Infer {
        /// Key prefix of the image tower (`visual.`).
        prefix: String,
        /// What is missing or inconsistent.
        reason: String,
    },
    /// The configuration is inconsistent (zero width, heads not dividing the width…).
    #[error("invalid ModifiedResNet configuration: {0}")]
    Config(String),
}
