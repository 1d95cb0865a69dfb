//! One error type for the crate: every variant names the file (and key or line) it is about.

use std::path::PathBuf;

/// A place in a text file, 1-based, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Line and column of byte `offset` in `text` (both 1-based).
pub fn position_of(text: &str, offset: usize) -> Position {
    let offset = offset.min(text.len());
    let before = text.as_bytes().get(..offset).unwrap_or_default();
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = offset - before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
    Position { line, column }
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}`: invalid TOML: {message}", path.display())]
    ManifestToml { path: PathBuf, message: String },
    #[error("`{}`:{position}: unknown key `{key}`", path.display())]
    ManifestUnknownKey { path: PathBuf, key: String, position: Position },
    #[error("`{}`: key `{key}`: {message}", path.display())]
    ManifestInvalid { path: PathBuf, key: String, message: String },
    #[error("`{}`: expected BLAKE3 `{expected}`, found `{actual}`", path.display())]
    ChecksumMismatch { path: PathBuf, expected: String, actual: String },
    #[error("`{}`: {message}", path.display())]
    Annotation { path: PathBuf, message: String },
    #[error("`{}`:{line}: unknown label `{label}`", path.display())]
    UnknownLabel { path: PathBuf, line: usize, label: String },
    #[error("`{}`:{line}: image `{image}` already listed on line {first_line}", path.display())]
    DuplicateImage { path: PathBuf, line: usize, first_line: usize, image: String },
    #[error("`{}`:{line}: image `{image}` does not exist (looked at `{}`)", path.display(), looked_at.display())]
    MissingImage { path: PathBuf, line: usize, image: String, looked_at: PathBuf },
    /// Several problems in one annotation file, found in one pass: the first
    /// [`PROBLEMS_LISTED`] in file order (duplicates after the rows), each naming its file and
    /// line (or item), and how many there are in all.
    #[error("`{}`: {count} problems in the annotations:\n{}", path.display(), listing(problems, *count))]
    Annotations { path: PathBuf, count: usize, problems: Vec<DataError> },
    #[error("split `{split}` of `{}` has no images", path.display())]
    EmptySplit { path: PathBuf, split: String },
    #[error("split `{split}` is not in the manifest (it has {available})")]
    UnknownSplit { split: String, available: String },
    #[error("{count} bad image(s): {listing}")]
    BadImages { count: usize, listing: String },
    #[error("the demo dataset cannot be built: {message}")]
    Demo { message: String },
    #[error("`{}`: {message}", path.display())]
    Shards { path: PathBuf, message: String },
    /// Reading or writing a Parquet file (the error names it).
    #[error(transparent)]
    Table(#[from] sspa_table::TableError),
    #[error("`{}`: arrow", path.display())]
    Arrow {
        path: PathBuf,
        #[source]
        source: arrow_schema::ArrowError,
    },
    #[error("`{}`: cannot encode image", path.display())]
    Encode {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    #[error("unknown model preset `{preset}` (known: {known})")]
    UnknownPreset { preset: String, known: String },
    #[error("invalid loader setting `{key}`: {message}")]
    Loader { key: String, message: String },
}

/// How many problems of one annotation file [`DataError::Annotations`] lists (the rest are counted).
pub const PROBLEMS_LISTED: usize = 50;

/// One problem a line, with its causes (`cannot read `x.xml`: No such file or directory`).
fn listing(problems: &[DataError], count: usize) -> String {
    let mut lines: Vec<String> = problems
        .iter()
        .map(|problem| {
            let mut line = format!("  {problem}");
            let mut source = std::error::Error::source(problem);
            while let Some(cause) = source {
                line.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            line
        })
        .collect();
    if count > problems.len() {
        lines.push(format!("  … and {} more", count - problems.len()));
    }
    lines.join("\n")
}

impl DataError {
    pub(crate) fn read(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Read { path: path.into(), source }
    }
    pub(crate) fn write(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Write { path: path.into(), source }
    }
    pub(crate) fn annotation(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Annotation { path: path.into(), message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let text = "ab\ncd\n";
        assert_eq!(position_of(text, 0), Position { line: 1, column: 1 });
        assert_eq!(position_of(text, 4), Position { line: 2, column: 2 });
        assert_eq!(position_of(text, 6), Position { line: 3, column: 1 });
    }
}
