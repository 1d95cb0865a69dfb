//! Errors of the training crate.

use std::path::PathBuf;

use sspa_model::ModelError;

/// What can go wrong while caching features, training, checkpointing or predicting.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A feature set whose vectors do not match its declared sizes.
    #[error("feature set `{name}` has `{actual}` values, expected `{expected}` ({shape})")]
    FeatureShape {
        /// Which buffer (`global`, `patches`, `targets`, `ids`).
        name: &'static str,
        /// Its length.
        actual: usize,
        /// The length its sizes imply.
        expected: usize,
        /// The shape, in words.
        shape: String,
    },
    /// Two feature sets (or a feature set and the text inputs) disagree in a size.
    #[error("`{what}` is `{actual}` but `{expected}` was expected")]
    Mismatch {
        /// The size that differs (`C`, `d`, `N`, ...).
        what: &'static str,
        /// What was found.
        actual: usize,
        /// What the other input says.
        expected: usize,
    },
    /// A target outside `{1, 0, -1}`.
    #[error("target `{value}` at image `{image}`, class `{class}`; targets must be 1, 0 or -1")]
    Target {
        /// Image index.
        image: usize,
        /// Class index.
        class: usize,
        /// The value found.
        value: i8,
    },
    /// A training option out of range.
    #[error("option `{key}` = `{value}` is invalid: {reason}")]
    Option {
        /// Option or config key.
        key: &'static str,
        /// The value.
        value: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A feature cache file that is not one, is truncated or fails its hash.
    #[error("feature file `{path}` is unusable: {reason}")]
    CorruptCache {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A feature cache written under another key.
    #[error("feature cache `{path}` has key `{found}`, expected `{expected}`")]
    CacheKey {
        /// The file.
        path: PathBuf,
        /// The key in the file.
        found: String,
        /// The key asked for.
        expected: String,
    },
    /// A checkpoint or output directory whose files do not fit together or with the run.
    #[error("checkpoint `{path}` is unusable: {reason}")]
    Checkpoint {
        /// The checkpoint directory or file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing a file.
    #[error("I/O on `{path}` failed")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// JSON (history, config, cache header) that does not parse.
    #[error("JSON in `{path}` is invalid")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// Weights or optimiser state that burn could not store or load.
    #[error("weights `{path}`: {reason}")]
    Weights {
        /// The file.
        path: PathBuf,
        /// burn's message.
        reason: String,
    },
    /// The image source of a fine-tuning run failed (shards unreadable, loader refused).
    #[error("training images: {message}")]
    Data {
        /// What failed, naming the file or row.
        message: String,
    },
    /// A warm start ([`crate::WarmStart`]) from a model whose tensors do not fit this run's model
    /// beyond what the label change explains.
    #[error(
        "warm start from `{path}`: the architecture differs ({}); train with `train.init = \"scratch\"`",
        describe_mismatches(.mismatches)
    )]
    WarmStartArchitecture {
        /// The old model's weights file.
        path: PathBuf,
        /// Every tensor that does not fit, in path order (the message names the first few).
        mismatches: Vec<TensorMismatch>,
    },
    /// The head rejected its configuration or inputs.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The run was cancelled through the cancel callback; the last finished epoch is checkpointed.
    #[error("training cancelled after epoch `{epochs_done}`")]
    Cancelled {
        /// Epochs finished (and checkpointed) so far.
        epochs_done: u32,
    },
}

/// One tensor of an old model that a warm start cannot copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorMismatch {
    /// Parameter path (`head.qsm.project.weight`).
    pub tensor: String,
    /// Its shape in the old weights file.
    pub old: Vec<usize>,
    /// Its shape in this run's model; `None` when this run's model has no such tensor.
    pub new: Option<Vec<usize>>,
}

impl std::fmt::Display for TensorMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.new {
            Some(new) => write!(f, "`{}` is {:?} in the old model but {new:?} in this run", self.tensor, self.old),
            None => write!(f, "`{}` ({:?}) of the old model is not in this run's model", self.tensor, self.old),
        }
    }
}

/// Mismatches named in the message of [`TrainError::WarmStartArchitecture`]; the rest are counted.
const MISMATCHES_NAMED: usize = 6;

/// `a; b; c; … and 4 more` for the message of [`TrainError::WarmStartArchitecture`].
fn describe_mismatches(mismatches: &[TensorMismatch]) -> String {
    let mut text = mismatches.iter().take(MISMATCHES_NAMED).map(ToString::to_string).collect::<Vec<_>>().join("; ");
    if mismatches.len() > MISMATCHES_NAMED {
        text.push_str(&format!("; … and {} more", mismatches.len() - MISMATCHES_NAMED));
    }
    text
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }

    pub(crate) fn json(path: impl Into<PathBuf>) -> impl FnOnce(serde_json::Error) -> Self {
        let path = path.into();
        move |source| Self::Json { path, source }
    }
}
