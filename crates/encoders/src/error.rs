//! The crate's error type.

use std::path::PathBuf;

use crate::weights::WeightProblem;

/// Everything that can go wrong while loading or running an encoder.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    /// A file could not be read.
    #[error("cannot read `{path}`")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file is not a valid safetensors checkpoint (wrong file, truncated, corrupt header).
    #[error("`{path}` is not a readable safetensors checkpoint: {reason}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What the safetensors reader reported.
        reason: String,
    },
    /// The checkpoint does not match the architecture: every problem is listed.
    #[error("`{path}` does not match the `{model}` architecture ({} problems):\n  {}", problems.len(), list(problems))]
    Weights {
        /// The file.
        path: PathBuf,
        /// The architecture being loaded.
        model: String,
        /// Missing, unexpected, mis-shaped and mis-typed tensors.
        problems: Vec<WeightProblem>,
    },
    /// A model configuration file is unreadable or inconsistent.
    #[error("invalid model configuration `{path}`: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The tokenizer could not be loaded or failed on an input.
    #[error("tokenizer `{path}`: {reason}")]
    Tokenizer {
        /// The `tokenizer.json` file.
        path: PathBuf,
        /// What the tokenizer reported.
        reason: String,
    },
    /// An input does not fit the model (too long, empty batch, wrong width…).
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
    /// A model directory could not be found.
    #[error("{what} not found: tried {}", tried.iter().map(|p| format!("`{}`", p.display())).collect::<Vec<_>>().join(", "))]
    NotFound {
        /// What was looked for.
        what: String,
        /// The places that were tried.
        tried: Vec<PathBuf>,
    },
}

fn list(problems: &[WeightProblem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  ")
}
