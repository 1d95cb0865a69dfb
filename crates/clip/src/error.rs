//! The crate's error type.

use std::path::PathBuf;

use sspa_encoders::EncoderError;

/// Everything that can go wrong while loading or running CLIP.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    /// Reading a checkpoint failed: unreadable, truncated or foreign file, or a tensor inventory
    /// that does not match the architecture (every missing, unexpected, mis-shaped tensor listed).
    #[error(transparent)]
    Weights(#[from] EncoderError),
    /// The ModifiedResNet tower could not be built or inferred.
    #[error(transparent)]
    Resnet(#[from] crate::resnet::ResnetError),
    /// A file could not be read.
    #[error("cannot read `{path}`")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A configuration (HF `config.json`, or shapes inferred from a state dict) is unusable.
    #[error("invalid CLIP configuration `{path}`: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The BPE vocabulary could not be read or is malformed.
    #[error("tokenizer `{path}`: {reason}")]
    Tokenizer {
        /// The vocabulary file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An input does not fit the model (empty batch, wrong width, token outside the vocabulary…).
    #[error("invalid input: {0}")]
    Input(String),
    /// An image could not be decoded.
    #[error("cannot decode image `{path}`")]
    Image {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: image::ImageError,
    },
    /// A required file could not be found.
    #[error("{what} not found: tried {}; run `scripts/install-encoders` or set `SSPA_CLIP_DIR`", tried.iter().map(|p| format!("`{}`", p.display())).collect::<Vec<_>>().join(", "))]
    NotFound {
        /// What was looked for.
        what: String,
        /// The places that were tried.
        tried: Vec<PathBuf>,
    },
}
