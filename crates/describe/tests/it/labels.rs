//! Label files for new label sets: bad input gives clear errors naming the file and line.

use sspa_describe::{LabelError, LabelList, MAX_LABEL_BYTES, read_label_file};
use std::path::PathBuf;

fn file(dir: &tempfile::TempDir, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join("labels.txt");
    std::fs::write(&path, bytes).expect("write");
    path
}

#[test]
fn one_label_per_line_with_crlf_bom_and_blank_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = file(&dir, "\u{feff}T-shirt/top\r\n  Trouser \r\n\r\nAnkle boot\nit's \"{{ x }}\"".as_bytes());
    let list = read_label_file(&path).expect("valid");
    assert_eq!(list.labels, ["T-shirt/top", "Trouser", "Ankle boot", "it's \"{{ x }}\""]);
    assert!(list.duplicates.is_empty());
}

#[test]
fn duplicates_are_reported_and_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = file(&dir, b"Bag\nCoat\nBag\nDress\nCoat\n");
    let list = read_label_file(&path).expect("valid");
    assert_eq!(list.labels, ["Bag", "Coat", "Dress"]);
    let repeats: Vec<(String, usize, usize)> =
        list.duplicates.iter().map(|d| (d.label.clone(), d.line, d.first_line)).collect();
    assert_eq!(repeats, [("Bag".into(), 3, 1), ("Coat".into(), 5, 2)]);
    let warnings = list.warnings();
    assert!(warnings[0].contains(&path.display().to_string()) && warnings[0].contains("line 3"), "{warnings:?}");
}

#[test]
fn empty_file_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    for bytes in [&b""[..], b"\n  \n\r\n"] {
        let path = file(&dir, bytes);
        let error = read_label_file(&path).expect_err("empty");
        assert!(matches!(error, LabelError::Empty { .. }));
        assert!(error.to_string().contains(&format!("`{}`", path.display())), "{error}");
    }
}

#[test]
fn a_10_kb_label_is_an_error_naming_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let long = "x".repeat(10 * 1024);
    let path = file(&dir, format!("Bag\n{long}\nCoat\n").as_bytes());
    let error = read_label_file(&path).expect_err("too long");
    let message = error.to_string();
    assert!(message.contains("line 2") && message.contains("10240 bytes"), "{message}");
    assert!(message.contains(&MAX_LABEL_BYTES.to_string()), "{message}");
    assert!(message.len() < 400, "the message quotes only the start of the label");
}

#[test]
fn non_utf8_bytes_are_an_error_and_every_bad_line_is_listed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = file(&dir, b"Bag\nCaf\xe9\nCoat\ntab\there\n\xff\xfe\n");
    let error = read_label_file(&path).expect_err("latin-1");
    let LabelError::Invalid { problems, .. } = &error else { panic!("{error}") };
    let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
    assert_eq!(lines, [2, 4, 5]);
    let message = error.to_string();
    assert!(message.contains(&format!("`{}`", path.display())), "{message}");
    assert!(message.contains("line 2: not UTF-8: byte 0xe9 at byte 4"), "{message}");
    assert!(message.contains("control character"), "{message}");
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let error = read_label_file(std::path::Path::new("/nonexistent/labels.txt")).expect_err("missing");
    assert!(error.to_string().contains("`/nonexistent/labels.txt`"), "{error}");
}

#[test]
fn config_names_get_the_same_checks() {
    let names: Vec<String> = ["a", "b", "a"].iter().map(|s| (*s).to_owned()).collect();
    let list = LabelList::from_names("labels.names", &names).expect("valid");
    assert_eq!((list.labels.len(), list.duplicates.len()), (2, 1));
    let error = LabelList::from_names("labels.names", &["two\nlines".to_owned()]).expect_err("newline");
    assert!(error.to_string().contains("`labels.names`"), "{error}");
}
