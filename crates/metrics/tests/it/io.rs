//! Parquet IO: round trips, matching by name, and every named error.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float32Array, Float64Array, Int8Array, Int64Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use sspa_metrics::{
    EvalData, EvalOptions, MetricKind, MetricsError, Scores, Targets, ValueProblem, evaluate_data, evaluate_files,
    read_scores, read_targets, write_scores, write_targets,
};

fn write_raw(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let batch = RecordBatch::try_from_iter(columns).expect("batch");
    let file = std::fs::File::create(path).expect("create");
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
}

fn strings(values: &[&str]) -> ArrayRef {
    Arc::new(StringArray::from(values.to_vec()))
}

fn floats(values: &[f32]) -> ArrayRef {
    Arc::new(Float32Array::from(values.to_vec()))
}

fn ints(values: &[i8]) -> ArrayRef {
    Arc::new(Int8Array::from(values.to_vec()))
}

/// A valid pair: 3 images, labels `cat` and `dog`.
fn valid_pair(directory: &Path) -> (PathBuf, PathBuf) {
    let scores = directory.join("scores.parquet");
    let targets = directory.join("targets.parquet");
    write_raw(
        &scores,
        vec![
            ("image", strings(&["a", "b", "c"])),
            ("cat", floats(&[0.9, 0.2, 0.6])),
            ("dog", floats(&[0.1, 0.7, 0.4])),
        ],
    );
    write_raw(
        &targets,
        vec![("image", strings(&["a", "b", "c"])), ("cat", ints(&[1, 0, 0])), ("dog", ints(&[0, 1, -1]))],
    );
    (scores, targets)
}

#[test]
fn written_files_read_back_and_evaluate_like_memory() {
    let directory = tempfile::tempdir().expect("tempdir");
    let images: Vec<String> = (0..300).map(|index| format!("img_{index:04}.jpg")).collect();
    let labels: Vec<String> = ["person", "bicycle", "traffic light"].map(String::from).to_vec();
    let scores: Vec<f32> = (0..900).map(|index| ((index * 7919) % 1000) as f32 / 999.0).collect();
    let targets: Vec<i8> = (0..900).map(|index| ((index * 31 + index / 7) % 3) as i8 - 1).collect();
    let score_matrix = Scores::from_row_major(images.clone(), labels.clone(), &scores).expect("scores");
    let target_matrix = Targets::from_row_major(images.clone(), labels.clone(), &targets).expect("targets");
    let scores_path = directory.path().join("s.parquet");
    let targets_path = directory.path().join("t.parquet");
    write_scores(&scores_path, &score_matrix).expect("write scores");
    write_targets(&targets_path, &target_matrix).expect("write targets");
    assert_eq!(read_scores(&scores_path).expect("read scores"), score_matrix);
    assert_eq!(read_targets(&targets_path).expect("read targets"), target_matrix);
    // Only the two files remain: the temporary files were renamed.
    assert_eq!(std::fs::read_dir(directory.path()).expect("list").count(), 2);

    let options = EvalOptions { kind: MetricKind::Pedestrian, ..EvalOptions::default() };
    let from_files = evaluate_files(&scores_path, &targets_path, &options).expect("files");
    let in_memory =
        evaluate_data(&EvalData::new(score_matrix, target_matrix).expect("data"), &options).expect("memory");
    assert_eq!(from_files, in_memory);
}

#[test]
fn rows_match_by_image_and_columns_by_name() {
    let directory = tempfile::tempdir().expect("tempdir");
    let (scores, targets) = valid_pair(directory.path());
    let shuffled = directory.path().join("shuffled.parquet");
    write_raw(
        &shuffled,
        vec![
            ("dog", floats(&[0.4, 0.1, 0.7])),
            ("image", strings(&["c", "a", "b"])),
            ("cat", floats(&[0.6, 0.9, 0.2])),
        ],
    );
    let options = EvalOptions::default();
    assert_eq!(
        evaluate_files(&scores, &targets, &options).expect("ordered"),
        evaluate_files(&shuffled, &targets, &options).expect("shuffled")
    );
}

#[test]
fn wider_numeric_types_are_accepted() {
    let directory = tempfile::tempdir().expect("tempdir");
    let (scores, targets) = valid_pair(directory.path());
    let wide_scores = directory.path().join("wide_scores.parquet");
    let wide_targets = directory.path().join("wide_targets.parquet");
    write_raw(
        &wide_scores,
        vec![
            ("image", strings(&["a", "b", "c"])),
            ("cat", Arc::new(Float64Array::from(vec![0.9f64, 0.2, 0.6]))),
            ("dog", floats(&[0.1, 0.7, 0.4])),
        ],
    );
    write_raw(
        &wide_targets,
        vec![
            ("image", strings(&["a", "b", "c"])),
            ("cat", Arc::new(Int64Array::from(vec![1i64, 0, 0]))),
            ("dog", ints(&[0, 1, -1])),
        ],
    );
    let options = EvalOptions::default();
    assert_eq!(
        evaluate_files(&scores, &targets, &options).expect("narrow"),
        evaluate_files(&wide_scores, &wide_targets, &options).expect("wide")
    );
}

/// Writes a scores file with the given columns and evaluates it against the valid targets.
fn scores_error(columns: Vec<(&str, ArrayRef)>) -> (MetricsError, String) {
    let directory = tempfile::tempdir().expect("tempdir");
    let (_, targets) = valid_pair(directory.path());
    let scores = directory.path().join("bad_scores.parquet");
    write_raw(&scores, columns);
    let error = evaluate_files(&scores, &targets, &EvalOptions::default()).expect_err("must fail");
    let message = error.to_string();
    assert!(message.contains("bad_scores.parquet"), "file not named: {message}");
    (error, message)
}

fn targets_error(columns: Vec<(&str, ArrayRef)>) -> (MetricsError, String) {
    let directory = tempfile::tempdir().expect("tempdir");
    let (scores, _) = valid_pair(directory.path());
    let targets = directory.path().join("bad_targets.parquet");
    write_raw(&targets, columns);
    let error = evaluate_files(&scores, &targets, &EvalOptions::default()).expect_err("must fail");
    let message = error.to_string();
    assert!(message.contains("bad_targets.parquet"), "file not named: {message}");
    (error, message)
}

#[test]
fn nan_score_names_column_row_and_image() {
    let (error, message) = scores_error(vec![
        ("image", strings(&["a", "b", "c"])),
        ("cat", floats(&[0.9, 0.2, 0.6])),
        ("dog", floats(&[0.1, f32::NAN, 0.4])),
    ]);
    assert!(
        matches!(&error, MetricsError::InvalidFileValue { column, row: 1, image, problem: ValueProblem::NanScore, .. }
            if column == "dog" && image == "b"),
        "{message}"
    );
    assert!(message.ends_with("column `dog`, row `1` (image `b`): score is NaN"), "{message}");
}

#[test]
fn out_of_range_scores_are_errors() {
    let (error, message) = scores_error(vec![
        ("image", strings(&["a", "b", "c"])),
        ("cat", Arc::new(Float64Array::from(vec![0.9f64, 0.2, 1.5]))),
        ("dog", floats(&[0.1, 0.7, 0.4])),
    ]);
    assert!(
        matches!(error, MetricsError::InvalidFileValue { row: 2, problem: ValueProblem::ScoreOutOfRange(_), .. }),
        "{message}"
    );
    assert!(message.contains("score `1.5` is outside [0, 1]"), "{message}");
    let (_, message) = scores_error(vec![
        ("image", strings(&["a", "b", "c"])),
        ("cat", floats(&[-0.1, 0.2, 0.5])),
        ("dog", floats(&[0.1, 0.7, 0.4])),
    ]);
    assert!(message.contains("column `cat`, row `0` (image `a`)"), "{message}");
}

#[test]
fn null_scores_are_errors() {
    let (error, message) = scores_error(vec![
        ("image", strings(&["a", "b", "c"])),
        ("cat", Arc::new(Float32Array::from(vec![Some(0.9), None, Some(0.6)]))),
        ("dog", floats(&[0.1, 0.7, 0.4])),
    ]);
    assert!(matches!(error, MetricsError::InvalidFileValue { row: 1, problem: ValueProblem::Null, .. }), "{message}");
}

#[test]
fn targets_outside_one_zero_minus_one_are_errors() {
    let (error, message) = targets_error(vec![
        ("image", strings(&["a", "b", "c"])),
        ("cat", ints(&[1, 2, 0])),
        ("dog", ints(&[0, 1, -1])),
    ]);
    assert!(
        matches!(error, MetricsError::InvalidFileValue { row: 1, problem: ValueProblem::TargetOutOfRange(2), .. }),
        "{message}"
    );
    assert!(message.contains("column `cat`, row `1` (image `b`)"), "{message}");
}

#[test]
fn wrong_column_types_are_errors() {
    let (error, message) = scores_error(vec![
        ("image", strings(&["a", "b", "c"])),
        ("cat", strings(&["x", "y", "z"])),
        ("dog", floats(&[0.1, 0.7, 0.4])),
    ]);
    assert!(matches!(&error, MetricsError::ColumnType { column, .. } if column == "cat"), "{message}");
    let (error, message) = targets_error(vec![
        ("image", strings(&["a", "b", "c"])),
        ("cat", ints(&[1, 0, 0])),
        ("dog", floats(&[0.0, 1.0, 0.0])),
    ]);
    assert!(matches!(&error, MetricsError::ColumnType { column, .. } if column == "dog"), "{message}");
    assert!(message.contains("expected an integer column"), "{message}");
    let (error, message) = scores_error(vec![
        ("image", Arc::new(Int64Array::from(vec![1i64, 2, 3]))),
        ("cat", floats(&[0.9, 0.2, 0.6])),
        ("dog", floats(&[0.1, 0.7, 0.4])),
    ]);
    assert!(matches!(&error, MetricsError::ColumnType { column, .. } if column == "image"), "{message}");
}

#[test]
fn missing_image_column_and_missing_labels_are_errors() {
    let (error, message) = scores_error(vec![("cat", floats(&[0.9, 0.2, 0.6])), ("dog", floats(&[0.1, 0.7, 0.4]))]);
    assert!(matches!(error, MetricsError::MissingImageColumn { .. }), "{message}");
    let (error, message) = scores_error(vec![("image", strings(&["a", "b", "c"]))]);
    assert!(matches!(error, MetricsError::NoLabelColumns { .. }), "{message}");
}

#[test]
fn duplicate_images_name_both_rows() {
    let (error, message) = scores_error(vec![
        ("image", strings(&["a", "b", "a"])),
        ("cat", floats(&[0.9, 0.2, 0.6])),
        ("dog", floats(&[0.1, 0.7, 0.4])),
    ]);
    assert!(
        matches!(&error, MetricsError::DuplicateFileImage { image, first: 0, second: 2, .. } if image == "a"),
        "{message}"
    );
}

#[test]
fn null_image_is_an_error() {
    let (error, message) = scores_error(vec![
        ("image", Arc::new(StringArray::from(vec![Some("a"), None, Some("c")]))),
        ("cat", floats(&[0.9, 0.2, 0.6])),
        ("dog", floats(&[0.1, 0.7, 0.4])),
    ]);
    assert!(matches!(error, MetricsError::NullImage { row: 1, .. }), "{message}");
}

#[test]
fn mismatched_images_are_listed() {
    let (error, message) = scores_error(vec![
        ("image", strings(&["a", "b", "x"])),
        ("cat", floats(&[0.9, 0.2, 0.6])),
        ("dog", floats(&[0.1, 0.7, 0.4])),
    ]);
    assert!(matches!(error, MetricsError::ImageMismatch { only_in_scores: 1, only_in_targets: 1, .. }), "{message}");
    assert!(message.contains("`x`") && message.contains("`c`"), "{message}");
}

#[test]
fn mismatched_labels_are_listed() {
    let (error, message) = scores_error(vec![
        ("image", strings(&["a", "b", "c"])),
        ("cat", floats(&[0.9, 0.2, 0.6])),
        ("dgo", floats(&[0.1, 0.7, 0.4])),
    ]);
    assert!(matches!(error, MetricsError::LabelMismatch { .. }), "{message}");
    assert!(message.contains("only in the scores [`dgo`], only in the targets [`dog`]"), "{message}");
}

#[test]
fn unreadable_files_are_errors() {
    let directory = tempfile::tempdir().expect("tempdir");
    let (scores, _) = valid_pair(directory.path());
    let missing = directory.path().join("missing.parquet");
    let error = evaluate_files(&scores, &missing, &EvalOptions::default()).expect_err("missing");
    assert!(matches!(error, MetricsError::Table(sspa_table::TableError::Io { .. })), "{error}");
    let text = directory.path().join("text.parquet");
    std::fs::write(&text, "image,cat\na,1\n").expect("write");
    let error = evaluate_files(&scores, &text, &EvalOptions::default()).expect_err("not parquet");
    assert!(matches!(error, MetricsError::Table(sspa_table::TableError::Parquet { .. })), "{error}");
    assert!(error.to_string().contains("text.parquet"), "{error}");
}

#[test]
fn many_row_groups_and_batches_read_in_order() {
    use parquet::file::properties::WriterProperties;
    let directory = tempfile::tempdir().expect("tempdir");
    let path = directory.path().join("grouped.parquet");
    let n = 20_000;
    let images: Vec<String> = (0..n).map(|index| format!("i{index}")).collect();
    let cat: Vec<f32> = (0..n).map(|index| (index % 1000) as f32 / 1000.0).collect();
    let mut dog: Vec<f32> = (0..n).map(|index| ((index * 7) % 1000) as f32 / 1000.0).collect();
    let write = |dog: &[f32]| {
        let batch = RecordBatch::try_from_iter(vec![
            ("image", Arc::new(StringArray::from(images.clone())) as ArrayRef),
            ("cat", floats(&cat)),
            ("dog", floats(dog)),
        ])
        .expect("batch");
        let properties = WriterProperties::builder().set_max_row_group_row_count(Some(3_000)).build();
        let file = std::fs::File::create(&path).expect("create");
        let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(properties)).expect("writer");
        writer.write(&batch).expect("write");
        let metadata = writer.close().expect("close");
        assert!(metadata.num_row_groups() > 5);
    };
    write(&dog);
    let scores = read_scores(&path).expect("read");
    assert_eq!(scores.images(), &images[..]);
    assert_eq!(scores.column(0), &cat[..]);
    assert_eq!(scores.column(1), &dog[..]);

    // A bad value deep in a later row group is reported at its own row and image.
    dog[17_123] = f32::NAN;
    write(&dog);
    let error = read_scores(&path).expect_err("NaN");
    assert!(
        matches!(&error, MetricsError::InvalidFileValue { row: 17_123, image, .. } if image == "i17123"),
        "{error}"
    );
}

#[test]
fn duplicate_label_columns_are_errors() {
    let (error, message) = scores_error(vec![
        ("image", strings(&["a", "b", "c"])),
        ("cat", floats(&[0.9, 0.2, 0.6])),
        ("cat", floats(&[0.1, 0.7, 0.4])),
    ]);
    assert!(matches!(&error, MetricsError::DuplicateColumn { column, .. } if column == "cat"), "{message}");
}
