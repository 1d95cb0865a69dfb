use std::fmt;
use std::path::PathBuf;

/// What is wrong with one value of a score or target matrix.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueProblem {
    NanScore,
    ScoreOutOfRange(f64),
    /// Targets must be 1, 0 or −1.
    TargetOutOfRange(i64),
    Null,
}

impl fmt::Display for ValueProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NanScore => write!(f, "score is NaN"),
            Self::ScoreOutOfRange(value) => write!(f, "score `{value}` is outside [0, 1]"),
            Self::TargetOutOfRange(value) => {
                write!(f, "target `{value}` is not 1, 0 or -1 (ignored)")
            }
            Self::Null => write!(f, "value is null"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("{what} has `{actual}` values, expected `{expected}` ({images} images × {labels} labels)")]
    Shape { what: &'static str, actual: usize, expected: usize, images: usize, labels: usize },
    #[error("`{what}` has `{actual}` entries, expected `{expected}`")]
    Length { what: &'static str, actual: usize, expected: usize },
    #[error("image `{image}`, label `{label}`: {problem}")]
    InvalidValue { image: String, label: String, problem: ValueProblem },
    #[error("label `{label}` appears more than once")]
    DuplicateLabel { label: String },
    #[error("image `{image}` appears more than once")]
    DuplicateImage { image: String },
    #[error("threshold `{0}` is not in [0, 1]")]
    InvalidThreshold(f32),
    #[error("top-k needs `k` ≥ 1, got `{0}`")]
    InvalidTopK(usize),
    #[error("no label has a positive target among {images} images: mAP and CR are undefined")]
    NoPositives { images: usize },
    #[error("mA is undefined: no label has both positive and negative targets")]
    NoMeanAccuracy,

    /// Opening, reading or writing a Parquet file (the error names it).
    #[error(transparent)]
    Table(#[from] sspa_table::TableError),
    #[error("`{path}` has no `image` column")]
    MissingImageColumn { path: PathBuf },
    #[error("`{path}` has no label columns besides `image`")]
    NoLabelColumns { path: PathBuf },
    #[error("`{path}`: column `{column}` appears more than once")]
    DuplicateColumn { path: PathBuf, column: String },
    #[error("`{path}`: column `{column}` has type `{actual}`, expected {expected}")]
    ColumnType { path: PathBuf, column: String, actual: String, expected: &'static str },
    #[error("`{path}`: column `{column}`, row `{row}` (image `{image}`): {problem}")]
    InvalidFileValue { path: PathBuf, column: String, row: usize, image: String, problem: ValueProblem },
    #[error("`{path}`: column `image`, row `{row}` is null")]
    NullImage { path: PathBuf, row: usize },
    #[error("`{path}`: image `{image}` appears in rows `{first}` and `{second}`")]
    DuplicateFileImage { path: PathBuf, image: String, first: usize, second: usize },
    #[error("`{path}` promises `{expected}` rows but holds `{actual}`")]
    RowCount { path: PathBuf, expected: usize, actual: usize },
    #[error(
        "`{scores}` and `{targets}` hold different images: {only_in_scores} only in the scores \
         ({scores_examples}), {only_in_targets} only in the targets ({targets_examples})"
    )]
    ImageMismatch {
        scores: PathBuf,
        targets: PathBuf,
        only_in_scores: usize,
        scores_examples: String,
        only_in_targets: usize,
        targets_examples: String,
    },
    #[error(
        "`{scores}` and `{targets}` hold different labels: only in the scores [{only_in_scores}], \
         only in the targets [{only_in_targets}]"
    )]
    LabelMismatch { scores: PathBuf, targets: PathBuf, only_in_scores: String, only_in_targets: String },

    #[error("cannot build an Arrow batch for `{path}`")]
    Arrow {
        path: PathBuf,
        #[source]
        source: arrow_schema::ArrowError,
    },
}

/// `a`, `b`, `c` and 7 more: a short, readable sample of names for an error message.
pub(crate) fn name_sample<'a>(names: impl IntoIterator<Item = &'a str>, total: usize) -> String {
    const SHOWN: usize = 5;
    let mut text: Vec<String> = names.into_iter().take(SHOWN).map(|name| format!("`{name}`")).collect();
    if total > SHOWN {
        text.push(format!("and {} more", total - SHOWN));
    }
    if text.is_empty() { "none".to_owned() } else { text.join(", ") }
}
