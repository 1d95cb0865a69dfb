//! Generic CSV (RFC 4180 quoting): a header row, a path column, and either
//! - one column per label holding `1`, `0` or `-1` (every other column must be a label name), or
//! - a `labels_column` holding the positive labels joined by `label_separator`.

use super::{LabelIndex, RawEntry, Row, Sink};
use crate::error::DataError;
use crate::manifest::SourceSection;
use std::path::Path;

/// A parsed record and the line it starts on.
struct Record {
    line: usize,
    fields: Vec<String>,
}

/// Reads CSV records one at a time; quoted fields may hold delimiters, `""` and newlines.
struct Records<R> {
    reader: R,
    delimiter: char,
    /// Lines read so far.
    line: usize,
    buffer: String,
}

impl<R: std::io::BufRead> Records<R> {
    fn new(reader: R, delimiter: char) -> Self {
        Self { reader, delimiter, line: 0, buffer: String::new() }
    }

    fn next_record(&mut self, path: &Path) -> Result<Option<Record>, DataError> {
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut in_quotes = false;
        let mut row_has_content = false;
        let mut start_line = self.line + 1;
        loop {
            self.buffer.clear();
            let read = self.reader.read_line(&mut self.buffer).map_err(|e| DataError::read(path, e))?;
            if read == 0 {
                if in_quotes {
                    return Err(DataError::annotation(path, format!("{start_line}: unterminated quoted field")));
                }
                if row_has_content || !fields.is_empty() {
                    fields.push(field);
                    return Ok(Some(Record { line: start_line, fields }));
                }
                return Ok(None);
            }
            self.line += 1;
            let text = if self.line == 1 { self.buffer.trim_start_matches('\u{feff}') } else { self.buffer.as_str() };
            let mut chars = text.chars().peekable();
            while let Some(c) = chars.next() {
                if in_quotes {
                    match c {
                        '"' if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        '"' => in_quotes = false,
                        _ => field.push(c),
                    }
                    continue;
                }
                match c {
                    '"' if field.is_empty() => {
                        in_quotes = true;
                        row_has_content = true;
                    }
                    '\r' => {}
                    '\n' => {
                        if row_has_content || !fields.is_empty() {
                            fields.push(std::mem::take(&mut field));
                            return Ok(Some(Record { line: start_line, fields }));
                        }
                        start_line = self.line + 1;
                    }
                    c if c == self.delimiter => {
                        fields.push(std::mem::take(&mut field));
                        row_has_content = true;
                    }
                    _ => {
                        field.push(c);
                        row_has_content = true;
                    }
                }
            }
        }
    }
}

/// Hands on every row; a row's problems (wrong field count, unknown label, bad cell) are handed
/// on as they are found and the reading goes on. A header without the path or labels column, an
/// unterminated quote and I/O errors stop it.
pub(crate) fn read(
    path: &Path,
    source: &SourceSection,
    labels: &LabelIndex,
    sink: &mut Sink<'_>,
) -> Result<(), DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::read(path, e))?;
    let mut rows = Records::new(std::io::BufReader::with_capacity(super::stream::READ_BUFFER, file), source.delimiter);
    let header = rows.next_record(path)?.ok_or_else(|| DataError::annotation(path, "no header row"))?;
    let column = |name: &str| header.fields.iter().position(|f| f.trim() == name);
    let path_column = column(&source.path_column)
        .ok_or_else(|| DataError::annotation(path, format!("1: no `{}` column in the header", source.path_column)))?;
    enum Layout {
        List(usize),
        OneHot(Vec<(usize, usize)>),
    }
    let layout = match &source.labels_column {
        Some(name) => Layout::List(
            column(name).ok_or_else(|| DataError::annotation(path, format!("1: no `{name}` column in the header")))?,
        ),
        None => {
            let mut columns = Vec::new();
            for (i, name) in header.fields.iter().enumerate().filter(|(i, _)| *i != path_column) {
                match labels.require(name.trim(), path, header.line) {
                    Ok(label) => columns.push((i, label)),
                    Err(problem) => sink(Row::Problem(problem))?,
                }
            }
            Layout::OneHot(columns)
        }
    };
    while let Some(row) = rows.next_record(path)? {
        if row.fields.len() != header.fields.len() {
            sink(Row::Problem(DataError::annotation(
                path,
                format!("{}: {} fields, the header has {}", row.line, row.fields.len(), header.fields.len()),
            )))?;
            continue;
        }
        let mut targets = vec![0i8; labels.len()];
        match &layout {
            Layout::List(column) => {
                let cell = row.fields[*column].trim();
                for name in cell.split(source.label_separator.as_str()).map(str::trim).filter(|n| !n.is_empty()) {
                    match labels.require(name, path, row.line) {
                        Ok(label) => targets[label] = 1,
                        Err(problem) => sink(Row::Problem(problem))?,
                    }
                }
            }
            Layout::OneHot(columns) => {
                for &(column, label) in columns {
                    targets[label] = match row.fields[column].trim() {
                        "1" => 1,
                        "0" | "" => 0,
                        "-1" => -1,
                        other => {
                            sink(Row::Problem(DataError::annotation(
                                path,
                                format!(
                                    "{}: column `{}` holds `{other}`, expected 1, 0 or -1",
                                    row.line, header.fields[column]
                                ),
                            )))?;
                            0
                        }
                    };
                }
            }
        }
        sink(Row::Entry(RawEntry { path: row.fields[path_column].trim().to_string(), line: row.line, targets }))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &str, delimiter: char, path: &Path) -> Result<Vec<Record>, DataError> {
        let mut reader = Records::new(text.as_bytes(), delimiter);
        let mut out = Vec::new();
        while let Some(record) = reader.next_record(path)? {
            out.push(record);
        }
        Ok(out)
    }

    #[test]
    fn quoted_fields_and_lines() {
        let text = "path,labels\n\"a,b.png\",\"x|y\"\n\n\"multi\nline.png\",z\nlast.png,\"say \"\"hi\"\"\"";
        let rows = records(text, ',', Path::new("t.csv")).expect("valid");
        let lines: Vec<usize> = rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![1, 2, 4, 6]);
        assert_eq!(rows[1].fields, vec!["a,b.png", "x|y"]);
        assert_eq!(rows[2].fields, vec!["multi\nline.png", "z"]);
        assert_eq!(rows[3].fields, vec!["last.png", "say \"hi\""]);
    }

    #[test]
    fn unterminated_quote_is_an_error() {
        assert!(records("path\n\"open", ',', Path::new("t.csv")).is_err());
    }
}
