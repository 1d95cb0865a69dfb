//! Bad annotations and bad images.

use crate::{Fixture, names, no_progress};
use sspa_config::OnBadImage;
use sspa_data::import::{import, import_split};
use sspa_data::preprocess::BadImageReason;
use sspa_data::shard::{WriteOptions, write_shards};
use sspa_data::{DataError, Geometry};

fn json_list_manifest(extra: &str) -> String {
    format!(
        r#"
name = "toy"
domain = "test"
[labels]
names = ["cat", "dog"]
[source]
format = "json_list"
[splits.train]
annotations = "list.json"
{extra}
"#
    )
}

#[test]
fn unknown_label_in_json_list_names_file_and_line() {
    let fixture = Fixture::new();
    fixture.write("list.json", "{\"images\": [\n  [\"a.png\", [\"cat\"]],\n  [\"b.png\", [\"dgo\"]]\n]}\n");
    let manifest = fixture.manifest(&json_list_manifest(""));
    let error = import(&manifest, fixture.root()).expect_err("dgo");
    match &error {
        DataError::UnknownLabel { path, line, label } => {
            assert!(path.ends_with("list.json"));
            assert_eq!(*line, 3);
            assert_eq!(label, "dgo");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(error.to_string().contains("list.json`:3: unknown label `dgo`"), "{error}");
}

#[test]
fn unknown_label_in_csv_names_line() {
    let fixture = Fixture::new();
    fixture.write("t.csv", "path,labels\na.png,cat\nb.png,cat|bird\n");
    let manifest = fixture.manifest(
        r#"
name = "toy"
domain = "test"
[labels]
names = ["cat", "dog"]
[source]
format = "csv"
labels_column = "labels"
[splits.train]
annotations = "t.csv"
"#,
    );
    let error = import(&manifest, fixture.root()).expect_err("bird");
    assert!(error.to_string().contains("t.csv`:3: unknown label `bird`"), "{error}");
}

#[test]
fn duplicate_images_name_both_lines() {
    let fixture = Fixture::new();
    fixture.write("list.json", "{\"images\": [\n[\"a.png\", [\"cat\"]],\n[\"b.png\", []],\n[\"a.png\", [\"dog\"]]\n]}");
    let manifest = fixture.manifest(&json_list_manifest(""));
    let error = import(&manifest, fixture.root()).expect_err("duplicate");
    match error {
        DataError::DuplicateImage { line, first_line, image, .. } => {
            assert_eq!((line, first_line, image.as_str()), (4, 2, "a.png"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn checksum_mismatch_is_an_error_and_a_match_passes() {
    let fixture = Fixture::new();
    let text = "{\"images\": [[\"a.png\", [\"cat\"]], [\"b.png\", [\"dog\"]]]}";
    fixture.write("list.json", text);
    let right = blake3::hash(text.as_bytes()).to_hex().to_string();
    let wrong = blake3::hash(b"something else").to_hex().to_string();
    let manifest = fixture.manifest(&json_list_manifest(&format!("[checksums]\n\"list.json\" = \"{wrong}\"")));
    match import(&manifest, fixture.root()).expect_err("mismatch") {
        DataError::ChecksumMismatch { expected, actual, path } => {
            assert_eq!((expected, actual.clone()), (wrong, right.clone()));
            assert!(path.ends_with("list.json"));
        }
        other => panic!("unexpected {other:?}"),
    }
    let manifest = fixture.manifest(&json_list_manifest(&format!("[checksums]\n\"list.json\" = \"{right}\"")));
    import(&manifest, fixture.root()).expect("checksum matches");
}

#[test]
fn empty_split_is_an_error() {
    let fixture = Fixture::new();
    fixture.write("list.json", "{\"images\": []}");
    let manifest = fixture.manifest(&json_list_manifest(""));
    let error = import(&manifest, fixture.root()).expect_err("empty");
    assert!(matches!(error, DataError::EmptySplit { ref split, .. } if split == "train"), "{error}");
}

#[test]
fn label_without_positives_is_named() {
    let fixture = Fixture::new();
    fixture.write("list.json", "{\"images\": [[\"a.png\", [\"cat\"]], [\"b.png\", []]]}");
    let manifest = fixture.manifest(&json_list_manifest(""));
    let split = import_split(&manifest, fixture.root(), "train", &names(&["cat", "dog"])).expect("import");
    assert_eq!(split.labels_without_positives, names(&["dog"]));
}

/// One good image and every kind of bad one.
fn bad_image_split(fixture: &Fixture) -> sspa_data::Dataset {
    fixture.png("img/good.png", 40, 30, [10, 200, 30]);
    let png = std::fs::read(fixture.png("img/full.png", 64, 64, [1, 2, 3])).expect("png");
    fixture.write_bytes("img/truncated.png", &png[..png.len() / 2]);
    let mut corrupt_png = png.clone();
    for byte in corrupt_png.iter_mut().skip(40).take(40) {
        *byte ^= 0x5A;
    }
    fixture.write_bytes("img/corrupt.png", &corrupt_png);
    let jpeg = Fixture::jpeg_bytes(64, 48);
    fixture.write_bytes("img/good.jpg", &jpeg);
    fixture.write_bytes("img/truncated.jpg", &jpeg[..jpeg.len() * 2 / 3]);
    let mut corrupt_jpeg = jpeg.clone();
    corrupt_jpeg.truncate(2);
    corrupt_jpeg.extend_from_slice(b"this is not a JPEG stream at all");
    corrupt_jpeg.extend_from_slice(&[0xFF, 0xD9]);
    fixture.write_bytes("img/corrupt.jpg", &corrupt_jpeg);
    fixture.write_bytes("img/empty.png", b"");
    let listed = [
        "good.png",
        "good.jpg",
        "missing.png",
        "empty.png",
        "truncated.png",
        "corrupt.png",
        "truncated.jpg",
        "corrupt.jpg",
    ];
    let entries: Vec<String> = listed.iter().map(|f| format!("[\"{f}\", [\"cat\"]]")).collect();
    fixture.write("list.json", &format!("{{\"images\": [{}]}}", entries.join(",\n")));
    let manifest = fixture.manifest(&json_list_manifest("images = \"img\""));
    import(&manifest, fixture.root()).expect("import")
}

fn options(fixture: &Fixture, on_bad_image: OnBadImage, report_dir: &std::path::Path) -> WriteOptions {
    WriteOptions {
        dataset: "toy".into(),
        geometry: Geometry::for_preset("clip-vit-b32", 32).expect("preset"),
        shard_size: 4,
        on_bad_image,
        threads: Some(2),
        codec: sspa_data::codec::Codec::RAW,
        data_root: fixture.root().to_path_buf(),
        failure_report_dir: Some(report_dir.to_path_buf()),
    }
}

#[test]
fn bad_images_are_skipped_and_each_is_named_with_its_reason() {
    let fixture = Fixture::new();
    let dataset = bad_image_split(&fixture);
    let out = tempfile::tempdir().expect("out");
    let state = tempfile::tempdir().expect("state");
    let summary =
        write_shards(&dataset, &[true], &options(&fixture, OnBadImage::Skip, state.path()), out.path(), &no_progress)
            .expect("skip mode succeeds");
    let reasons: std::collections::BTreeMap<String, BadImageReason> = summary
        .bad_images
        .iter()
        .map(|b| (b.path.file_name().expect("name").to_string_lossy().into_owned(), b.reason.clone()))
        .collect();
    assert_eq!(reasons.len(), 6, "{reasons:?}");
    assert_eq!(reasons["missing.png"], BadImageReason::Missing);
    assert_eq!(reasons["empty.png"], BadImageReason::ZeroByte);
    assert!(matches!(reasons["truncated.png"], BadImageReason::Truncated(_)), "{:?}", reasons["truncated.png"]);
    assert!(matches!(reasons["truncated.jpg"], BadImageReason::Truncated(_)), "{:?}", reasons["truncated.jpg"]);
    assert!(
        matches!(reasons["corrupt.png"], BadImageReason::Corrupt(_) | BadImageReason::Truncated(_)),
        "{:?}",
        reasons["corrupt.png"]
    );
    assert!(
        matches!(reasons["corrupt.jpg"], BadImageReason::Corrupt(_) | BadImageReason::Unsupported(_)),
        "{:?}",
        reasons["corrupt.jpg"]
    );
    assert_eq!(summary.splits[0].written, 2);
    assert_eq!(summary.splits[0].skipped, 6);
    let report: Vec<sspa_data::BadImage> =
        serde_json::from_slice(&std::fs::read(out.path().join("bad_images.json")).expect("report")).expect("json");
    assert_eq!(report, summary.bad_images);
}

#[test]
fn bad_images_fail_the_stage_listing_all_of_them() {
    let fixture = Fixture::new();
    let dataset = bad_image_split(&fixture);
    let out = tempfile::tempdir().expect("out");
    let state = tempfile::tempdir().expect("state");
    let error =
        write_shards(&dataset, &[true], &options(&fixture, OnBadImage::Fail, state.path()), out.path(), &no_progress)
            .expect_err("fail mode");
    let message = error.to_string();
    for name in ["missing.png", "empty.png", "truncated.png", "corrupt.png", "truncated.jpg", "corrupt.jpg"] {
        assert!(message.contains(name), "{name} not in {message}");
    }
    assert!(message.starts_with("6 bad image(s)"), "{message}");
    assert!(state.path().join("bad_images.json").exists());
    assert!(!out.path().join("shards.json").exists(), "no shard set is published on failure");
}
