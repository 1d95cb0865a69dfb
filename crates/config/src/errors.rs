use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a config file, at a 1-based line and column — or in a command-line override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line in the file (0 for an override).
    pub line: usize,
    /// 1-based column in the file (0 for an override).
    pub column: usize,
    /// What is wrong, for the user.
    pub message: String,
    /// The `-S key=value` argument the problem comes from (then `line` and `column` are 0).
    pub argument: Option<String>,
}

/// Every problem found in one config file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors {
    /// The config file the problems are in.
    pub file: PathBuf,
    /// Every problem, ordered by position in the file once reported.
    pub errors: Vec<ConfigError>,
    /// Overridden key → its `-S` argument, to attribute problems of those keys to the argument.
    overrides: Vec<(String, String)>,
}

impl ConfigErrors {
    pub(crate) fn new(file: &Path) -> Self {
        Self { file: file.to_path_buf(), errors: Vec::new(), overrides: Vec::new() }
    }

    pub(crate) fn with_overrides(mut self, overrides: Vec<(String, String)>) -> Self {
        self.overrides = overrides;
        self
    }

    /// A problem of the value at `key` (dotted): attributed to its `-S` argument when an override
    /// set it (or a value inside it), else to `at` in the file.
    pub(crate) fn push_key(&mut self, key: &str, at: (usize, usize), message: String) {
        let from = self.overrides.iter().find(|(overridden, _)| {
            key == overridden
                || key.starts_with(&format!("{overridden}."))
                || overridden.starts_with(&format!("{key}."))
        });
        match from {
            Some((_, argument)) => {
                let argument = Some(argument.clone());
                self.errors.push(ConfigError { line: 0, column: 0, message, argument });
            }
            None => self.push(at, message),
        }
    }

    /// A problem of an override itself (its syntax, or a key that cannot hold it).
    pub(crate) fn push_argument(&mut self, argument: &str, message: String) {
        self.errors.push(ConfigError { line: 0, column: 0, message, argument: Some(argument.to_owned()) });
    }

    pub(crate) fn single(file: &Path, message: String) -> Self {
        let mut errors = Self::new(file);
        errors.push((1, 1), message);
        errors
    }

    pub(crate) fn push(&mut self, (line, column): (usize, usize), message: String) {
        self.errors.push(ConfigError { line, column, message, argument: None });
    }

    /// Orders problems by position in the file.
    pub(crate) fn sort(&mut self) {
        self.errors.sort_by_key(|e| (e.line, e.column));
    }

    /// Whether no problem was found.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.errors.len();
        write!(f, "{} error{} in `{}`", count, if count == 1 { "" } else { "s" }, self.file.display())?;
        for e in &self.errors {
            match &e.argument {
                Some(argument) => write!(f, "\n  `-S {argument}`: {}", e.message)?,
                None => write!(f, "\n  {}:{}:{}: {}", self.file.display(), e.line, e.column, e.message)?,
            }
        }
        Ok(())
    }
}
