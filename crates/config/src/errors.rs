use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a config file, at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Every problem found in one config file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    pub(crate) fn new(file: &Path) -> Self {
        Self { file: file.to_path_buf(), errors: Vec::new() }
    }

    pub(crate) fn single(file: &Path, message: String) -> Self {
        let mut errors = Self::new(file);
        errors.push((1, 1), message);
        errors
    }

    pub(crate) fn push(&mut self, (line, column): (usize, usize), message: String) {
        self.errors.push(ConfigError { line, column, message });
    }

    /// Orders problems by position in the file.
    pub(crate) fn sort(&mut self) {
        self.errors.sort_by_key(|e| (e.line, e.column));
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.errors.len();
        write!(f, "{} error{} in `{}`", count, if count == 1 { "" } else { "s" }, self.file.display())?;
        for e in &self.errors {
            write!(f, "\n  {}:{}:{}: {}", self.file.display(), e.line, e.column, e.message)?;
        }
        Ok(())
    }
}
