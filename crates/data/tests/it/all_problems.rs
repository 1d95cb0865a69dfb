//! An annotation file with several bad rows reports all of them in one run: the first 50 with
//! file and line, then how many more.

use crate::{Fixture, names, no_progress};
use sspa_config::OnBadImage;
use sspa_data::import::import;
use sspa_data::shard::{WriteOptions, shard_manifest};
use sspa_data::{DataError, Geometry, SplitSource};

const CSV_MANIFEST: &str = r#"
name = "toy"
domain = "test"
[labels]
names = ["cat", "dog"]
[source]
format = "csv"
labels_column = "labels"
[splits.train]
annotations = "t.csv"
images = "img"
"#;

fn json_manifest(format: &str) -> String {
    format!(
        "name = \"toy\"\ndomain = \"test\"\n[labels]\nnames = [\"cat\", \"dog\"]\n[source]\nformat = \"{format}\"\n\
         [splits.train]\nannotations = \"list.json\"\nimages = \"img\"\n"
    )
}

/// The problems of a failed check: their messages, and the count the error gives.
fn problems(error: DataError) -> (Vec<String>, usize, String) {
    let text = error.to_string();
    match error {
        DataError::Annotations { problems, count, .. } => {
            (problems.iter().map(|p| p.to_string()).collect(), count, text)
        }
        other => panic!("expected several problems, got {other:?}"),
    }
}

fn check(
    fixture: &Fixture,
    manifest: &sspa_data::Manifest,
    image_files: bool,
) -> Result<sspa_data::SplitCheck, DataError> {
    let labels = names(&["cat", "dog"]);
    let source = SplitSource::open(manifest, fixture.root(), "train", &labels).expect("open");
    let source = if image_files { source.checking_image_files() } else { source };
    source.check()
}

#[test]
fn csv_unknown_label_missing_image_and_duplicate_are_reported_together() {
    let fixture = Fixture::new();
    for image in ["a.png", "b.png", "c.png"] {
        fixture.write(&format!("img/{image}"), "not decoded by the check");
    }
    fixture.write("t.csv", "path,labels\na.png,cat\nb.png,cat|bird\nmissing.png,dog\na.png,dog\nc.png,\n");
    let manifest = fixture.manifest(CSV_MANIFEST);
    let (listed, count, text) = problems(check(&fixture, &manifest, true).expect_err("three problems"));
    assert_eq!(count, 3);
    assert_eq!(listed.len(), 3);
    assert!(listed[0].ends_with("t.csv`:3: unknown label `bird`"), "{text}");
    assert!(listed[1].contains("t.csv`:4: image `missing.png` does not exist"), "{text}");
    assert!(listed[2].ends_with("t.csv`:5: image `a.png` already listed on line 2"), "{text}");
    assert!(text.contains("t.csv`: 3 problems in the annotations:\n  "), "{text}");
    assert!(!text.contains("more"), "{text}");

    // Without the file check (missing images are then skipped when sharding) two remain.
    let (listed, count, _) = problems(check(&fixture, &manifest, false).expect_err("two problems"));
    assert_eq!((listed.len(), count), (2, 2));

    // The shard stage failing on bad images checks the files before decoding anything.
    let out = tempfile::tempdir().expect("out");
    let options = WriteOptions {
        dataset: "toy".into(),
        geometry: Geometry::for_preset("clip-vit-b32", 32).expect("preset"),
        shard_size: 4,
        on_bad_image: OnBadImage::Fail,
        threads: Some(1),
        codec: sspa_data::codec::Codec::RAW,
        data_root: fixture.root().to_path_buf(),
        failure_report_dir: None,
    };
    let error = shard_manifest(&manifest, fixture.root(), &|_| true, &options, out.path(), &no_progress)
        .expect_err("bad annotations");
    assert_eq!(problems(error).1, 3);
    assert_eq!(std::fs::read_dir(out.path()).expect("out").count(), 0, "nothing written");
}

#[test]
fn sixty_bad_csv_rows_list_fifty_and_count_the_rest() {
    let fixture = Fixture::new();
    let mut text = String::from("path,labels\n");
    for i in 0..60 {
        text.push_str(&format!("{i}.png,cat|unknown{i}\n"));
    }
    fixture.write("t.csv", &text);
    let manifest = fixture.manifest(CSV_MANIFEST);
    let error = import(&manifest, fixture.root()).expect_err("sixty problems");
    let (listed, count, text) = problems(error);
    assert_eq!(count, 60);
    assert_eq!(listed.len(), 50);
    assert!(listed[0].ends_with("t.csv`:2: unknown label `unknown0`"), "{}", listed[0]);
    assert!(listed[49].ends_with("t.csv`:51: unknown label `unknown49`"), "{}", listed[49]);
    assert!(text.ends_with("\n  … and 10 more"), "{text}");
    assert_eq!(text.lines().count(), 1 + 50 + 1);
}

#[test]
fn csv_rows_of_the_wrong_shape_do_not_stop_the_check() {
    let fixture = Fixture::new();
    fixture.write("t.csv", "path,labels\na.png,cat,extra\nb.png,dgo\nc.png\n\"d.png\",cat\n");
    let manifest = fixture.manifest(CSV_MANIFEST);
    let (listed, count, text) = problems(import(&manifest, fixture.root()).expect_err("three problems"));
    assert_eq!(count, 3, "{text}");
    assert!(listed[0].contains("t.csv`: 2: 3 fields, the header has 2"), "{text}");
    assert!(listed[1].ends_with(":3: unknown label `dgo`"), "{text}");
    assert!(listed[2].contains(": 4: 1 fields, the header has 2"), "{text}");
}

#[test]
fn json_list_reports_every_bad_element() {
    let fixture = Fixture::new();
    let text = "{\"images\": [\n[\"a.png\", [\"cat\"]],\n[\"b.png\", [\"dgo\"]],\n[\"c.png\", \"cat\"],\n\
                [\"a.png\", []],\n[\"d.png\", [\"cat\", \"bird\"]]\n]}\n";
    fixture.write("list.json", text);
    let manifest = fixture.manifest(&json_manifest("json_list"));
    let (listed, count, text) = problems(import(&manifest, fixture.root()).expect_err("four problems"));
    assert_eq!(count, 4, "{text}");
    assert!(listed[0].ends_with("list.json`:3: unknown label `dgo`"), "{text}");
    assert!(listed[1].contains("list.json`: 4: expected [path, [label, ...]]"), "{text}");
    assert!(listed[2].ends_with("list.json`:6: unknown label `bird`"), "{text}");
    assert!(listed[3].ends_with("list.json`:5: image `a.png` already listed on line 2"), "{text}");
}

#[test]
fn sixty_bad_json_list_elements_list_fifty_and_count_the_rest() {
    let fixture = Fixture::new();
    let entries: Vec<String> = (0..60).map(|i| format!("[\"{i}.png\", [\"nope{i}\"]]")).collect();
    fixture.write("list.json", &format!("{{\"images\": [\n{}\n]}}", entries.join(",\n")));
    let manifest = fixture.manifest(&json_manifest("json_list"));
    let (listed, count, text) = problems(import(&manifest, fixture.root()).expect_err("sixty problems"));
    assert_eq!((listed.len(), count), (50, 60));
    assert!(listed[0].ends_with("list.json`:2: unknown label `nope0`"), "{text}");
    assert!(text.ends_with("\n  … and 10 more"), "{text}");
}

#[test]
fn a_syntax_error_keeps_what_was_found_before_it() {
    let fixture = Fixture::new();
    fixture.write("list.json", "{\"images\": [\n[\"a.png\", [\"dgo\"]],\n[\"b.png\", [\"cat\"]]\n[\"c.png\", []]\n]}");
    let manifest = fixture.manifest(&json_manifest("json_list"));
    let (listed, count, text) = problems(import(&manifest, fixture.root()).expect_err("two problems"));
    assert_eq!(count, 2, "{text}");
    assert!(listed[0].ends_with(":2: unknown label `dgo`"), "{text}");
    assert!(listed[1].contains("list.json`: 4:"), "the syntax error comes last: {text}");
}

#[test]
fn mmpretrain_reports_every_bad_element() {
    let fixture = Fixture::new();
    let text = "{\"metainfo\": {\"classes\": [\"cat\", \"dog\", \"bird\"]},\n\"data_list\": [\n\
                {\"img_path\": \"a.png\", \"gt_label\": 9},\n{\"img_path\": \"b.png\", \"gt_label\": [2]},\n\
                {\"img_path\": \"c.png\"},\n{\"img_path\": \"d.png\", \"gt_label\": [0, 1]}\n]}";
    fixture.write("list.json", text);
    let manifest = fixture.manifest(&json_manifest("mmpretrain"));
    let (listed, count, text) = problems(import(&manifest, fixture.root()).expect_err("three problems"));
    assert_eq!(count, 3, "{text}");
    assert!(listed[0].contains(": 3: `gt_label` `9` is outside `metainfo.classes` (3 classes)"), "{text}");
    assert!(listed[1].ends_with("list.json`:4: unknown label `bird`"), "{text}");
    assert!(listed[2].contains(": 5: expected {\"img_path\", \"gt_label\"}"), "{text}");
}

#[test]
fn coco_names_annotations_by_their_index() {
    let fixture = Fixture::new();
    let text = r#"{
  "images": [
    {"id": 7, "file_name": "a.jpg"},
    {"id": 7, "file_name": "b.jpg"},
    {"id": 8}
  ],
  "annotations": [
    {"image_id": 7, "category_id": 1},
    {"image_id": 99, "category_id": 1},
    {"image_id": 7, "category_id": 42},
    {"image_id": 7, "category_id": 2}
  ],
  "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "horse"}]
}"#;
    fixture.write("list.json", text);
    let manifest = fixture.manifest(&json_manifest("coco"));
    let (listed, count, text) = problems(import(&manifest, fixture.root()).expect_err("five problems"));
    assert_eq!(count, 5, "{text}");
    assert!(listed[0].contains("list.json`: 5: bad image entry"), "{text}");
    assert!(listed[1].ends_with("list.json`:13: unknown label `horse`"), "{text}");
    assert!(listed[2].ends_with(": 4: image id `7` appears twice"), "{text}");
    assert!(listed[3].ends_with("`annotations[1]` names image id `99`, which is not listed"), "{text}");
    assert!(listed[4].ends_with("`annotations[2]` names category id `42`, which is not listed"), "{text}");
}

#[test]
fn voc_reports_the_problems_of_every_xml() {
    let fixture = Fixture::new();
    fixture.write("VOC/ImageSets/Main/trainval.txt", "000001\n000002\n000003\n");
    let object = |name: &str| format!("  <object>\n    <name>{name}</name>\n  </object>\n");
    fixture.write(
        "VOC/Annotations/000001.xml",
        &format!("<annotation>\n{}{}</annotation>\n", object("cat"), object("cow")),
    );
    fixture.write("VOC/Annotations/000002.xml", "<annotation>\n  <object>\n  </object>\n</annotation>\n");
    fixture.write("VOC/Annotations/000003.xml", &format!("<annotation>\n{}</annotation>\n", object("horse")));
    let manifest = fixture.manifest(
        "name = \"toy\"\ndomain = \"test\"\n[labels]\nnames = [\"cat\", \"dog\"]\n[source]\nformat = \"voc\"\n\
         xml_dir = \"VOC/Annotations\"\n[splits.train]\nannotations = \"VOC/ImageSets/Main/trainval.txt\"\n",
    );
    let (listed, count, text) = problems(import(&manifest, fixture.root()).expect_err("three problems"));
    assert_eq!(count, 3, "{text}");
    assert!(listed[0].ends_with("000001.xml`:5: unknown label `cow`"), "{text}");
    assert!(listed[1].contains("000002.xml`: 2: an object has no `name`"), "{text}");
    assert!(listed[2].ends_with("000003.xml`:2: unknown label `horse`"), "{text}");
}
