//! Label lists for `sspa-pipe describe --labels FILE`: one label per line, checked up front.

use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Longest label accepted, in bytes. Labels are class names, not paragraphs; a longer line is
/// almost always a file that is not a label list.
pub const MAX_LABEL_BYTES: usize = 256;

/// A checked, de-duplicated label list in class-index order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LabelList {
    /// Where the labels came from (a file path or `config labels.names`).
    pub source: String,
    pub labels: Vec<String>,
    /// Repeats that were dropped (the first occurrence is kept).
    pub duplicates: Vec<DuplicateLabel>,
}

/// A label given more than once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DuplicateLabel {
    pub label: String,
    /// 1-based line (or position in a list) of the repeat.
    pub line: usize,
    /// 1-based line of the occurrence that is kept.
    pub first_line: usize,
}

/// One thing wrong with one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabelProblem {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("cannot read the label file `{path}`: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{source_name}` has no labels (every line is empty)")]
    Empty { source_name: String },
    #[error("`{source_name}` has {} bad label(s):{}", problems.len(), list(problems))]
    Invalid { source_name: String, problems: Vec<LabelProblem> },
}

fn list(problems: &[LabelProblem]) -> String {
    problems.iter().map(|p| format!("\n  line {}: {}", p.line, p.message)).collect()
}

impl LabelList {
    /// Checks an in-memory list (e.g. the config's `labels.names`); positions count from 1.
    pub fn from_names(source: &str, names: &[String]) -> Result<Self, LabelError> {
        check(source, names.iter().enumerate().map(|(i, name)| (i + 1, Ok(name.as_str()))))
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Human-readable warnings, one per duplicate.
    pub fn warnings(&self) -> Vec<String> {
        self.duplicates
            .iter()
            .map(|d| {
                format!(
                    "`{}` line {}: duplicate label `{}` (first on line {}), asked once",
                    self.source, d.line, d.label, d.first_line
                )
            })
            .collect()
    }
}

/// Reads a label file: UTF-8, one label per line, surrounding whitespace and blank lines ignored,
/// a leading byte-order mark and `\r\n` endings accepted. Every bad line is reported at once
/// (invalid UTF-8, control characters, longer than [`MAX_LABEL_BYTES`]); duplicates are dropped
/// and listed in [`LabelList::duplicates`].
pub fn read_label_file(path: &Path) -> Result<LabelList, LabelError> {
    let bytes = std::fs::read(path).map_err(|source| LabelError::Read { path: path.to_path_buf(), source })?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let lines = bytes.split(|&b| b == b'\n').enumerate().map(|(i, line)| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = std::str::from_utf8(line).map_err(|error| {
            let at = error.valid_up_to();
            format!(
                "not UTF-8: byte 0x{:02x} at byte {} of the line (save the file as UTF-8)",
                line.get(at).copied().unwrap_or(0),
                at + 1
            )
        });
        (i + 1, text)
    });
    check(&path.display().to_string(), lines)
}

fn check<'a>(
    source: &str,
    lines: impl Iterator<Item = (usize, Result<&'a str, String>)>,
) -> Result<LabelList, LabelError> {
    let mut list = LabelList { source: source.to_owned(), ..LabelList::default() };
    let mut problems = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (line, text) in lines {
        let text = match text {
            Ok(text) => text.trim(),
            Err(message) => {
                problems.push(LabelProblem { line, message });
                continue;
            }
        };
        if text.is_empty() {
            continue;
        }
        if text.len() > MAX_LABEL_BYTES {
            let start: String = text.chars().take(24).collect();
            problems.push(LabelProblem {
                line,
                message: format!("label is {} bytes long (at most {MAX_LABEL_BYTES}): `{start}…`", text.len()),
            });
            continue;
        }
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            problems.push(LabelProblem { line, message: format!("label contains the control character {c:?}") });
            continue;
        }
        match seen.get(text) {
            Some(&first_line) => list.duplicates.push(DuplicateLabel { label: text.to_owned(), line, first_line }),
            None => {
                seen.insert(text.to_owned(), line);
                list.labels.push(text.to_owned());
            }
        }
    }
    if !problems.is_empty() {
        return Err(LabelError::Invalid { source_name: source.to_owned(), problems });
    }
    if list.labels.is_empty() {
        return Err(LabelError::Empty { source_name: source.to_owned() });
    }
    Ok(list)
}
