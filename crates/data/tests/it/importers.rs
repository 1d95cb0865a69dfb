//! Each format on a small hand-written annotation file.

use crate::{Fixture, names, targets_by_name};
use sspa_data::import::{import, import_split, resolve_labels};

fn manifest_for(format: &str, labels: &str, extra_source: &str, annotations: &str) -> String {
    format!(
        r#"
name = "toy"
domain = "test"
[labels]
{labels}
[source]
format = "{format}"
{extra_source}
[splits.train]
annotations = "{annotations}"
images = "images"
"#
    )
}

const COCO: &str = r#"{
  "images": [
    {"id": 7, "file_name": "a.jpg", "width": 10, "height": 10},
    {"id": 9, "file_name": "b.jpg", "width": 10, "height": 10},
    {"id": 11, "file_name": "empty.jpg", "width": 10, "height": 10}
  ],
  "annotations": [
    {"id": 1, "image_id": 7, "category_id": 18, "iscrowd": 0, "bbox": [0, 0, 1, 1]},
    {"id": 2, "image_id": 7, "category_id": 1, "iscrowd": 1},
    {"id": 3, "image_id": 9, "category_id": 18},
    {"id": 4, "image_id": 9, "category_id": 18}
  ],
  "categories": [
    {"id": 18, "name": "dog", "supercategory": "animal"},
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 3, "name": "car", "supercategory": "vehicle"}
  ]
}"#;

#[test]
fn coco_maps_category_ids_to_manifest_order() {
    let fixture = Fixture::new();
    fixture.write("ann/instances.json", COCO);
    // Manifest order differs from the category-id order on purpose.
    let manifest =
        fixture.manifest(&manifest_for("coco", r#"names = ["car", "dog", "person"]"#, "", "ann/instances.json"));
    let dataset = import(&manifest, fixture.root()).expect("import");
    assert_eq!(dataset.labels, names(&["car", "dog", "person"]));
    let split = &dataset.splits[0];
    let targets = targets_by_name(split);
    assert_eq!(targets["a.jpg"], vec![0, 1, 1]);
    assert_eq!(targets["b.jpg"], vec![0, 1, 0]);
    assert_eq!(targets["empty.jpg"], vec![0, 0, 0]);
    assert_eq!(split.labels_without_positives, names(&["car"]));
    assert_eq!(split.images[0].path, fixture.root().join("images/a.jpg"));
}

#[test]
fn coco_labels_from_annotations_follow_category_ids() {
    let fixture = Fixture::new();
    fixture.write("ann/instances.json", COCO);
    let manifest = fixture.manifest(&manifest_for("coco", "from_annotations = true", "", "ann/instances.json"));
    assert_eq!(resolve_labels(&manifest, fixture.root()).expect("labels"), names(&["person", "car", "dog"]));
}

fn voc_fixture() -> Fixture {
    let fixture = Fixture::new();
    fixture.write("VOC/ImageSets/Main/trainval.txt", "000001\n000002\n\n000003\n");
    let object = |name: &str, difficult: u8| {
        format!("  <object>\n    <name>{name}</name>\n    <difficult>{difficult}</difficult>\n  </object>\n")
    };
    fixture.write(
        "VOC/Annotations/000001.xml",
        &format!(
            "<annotation>\n  <filename>000001.jpg</filename>\n{}{}</annotation>\n",
            object("dog", 0),
            object("cat", 1)
        ),
    );
    // A class seen both as difficult and not is positive.
    fixture.write(
        "VOC/Annotations/000002.xml",
        &format!(
            "<annotation>\n  <filename>000002.jpg</filename>\n{}{}</annotation>\n",
            object("cat", 1),
            object("cat", 0)
        ),
    );
    // No <filename>: the id and the manifest's extension name the image.
    fixture.write("VOC/Annotations/000003.xml", &format!("<annotation>\n{}</annotation>\n", object("person", 0)));
    fixture
}

const VOC_SOURCE: &str = "xml_dir = \"VOC/Annotations\"\nimage_extension = \"png\"";

#[test]
fn voc_difficult_only_labels_are_ignored() {
    let fixture = voc_fixture();
    let manifest = fixture.manifest(&manifest_for(
        "voc",
        r#"names = ["cat", "dog", "person"]"#,
        VOC_SOURCE,
        "VOC/ImageSets/Main/trainval.txt",
    ));
    let dataset = import(&manifest, fixture.root()).expect("import");
    let targets = targets_by_name(&dataset.splits[0]);
    assert_eq!(targets["000001.jpg"], vec![-1, 1, 0]);
    assert_eq!(targets["000002.jpg"], vec![1, 0, 0]);
    assert_eq!(targets["000003.png"], vec![0, 0, 1]);
    let files = manifest.annotation_files(fixture.root()).expect("files");
    assert_eq!(files.len(), 4, "three XMLs and the image-set list: {files:?}");
}

#[test]
fn voc_unknown_label_names_the_xml_and_line() {
    let fixture = voc_fixture();
    let manifest = fixture.manifest(&manifest_for(
        "voc",
        r#"names = ["cat", "dog"]"#,
        VOC_SOURCE,
        "VOC/ImageSets/Main/trainval.txt",
    ));
    let error = import(&manifest, fixture.root()).expect_err("person is unknown");
    let message = error.to_string();
    assert!(message.contains("000003.xml") && message.contains(":2:") && message.contains("`person`"), "{message}");
}

#[test]
fn csv_one_column_per_label() {
    let fixture = Fixture::new();
    fixture.write("t.csv", "path,dog,cat\r\na.png,1,0\r\n\"b,c.png\",-1,1\r\nd.png,0,\r\n");
    let manifest = fixture.manifest(&manifest_for("csv", r#"names = ["cat", "dog"]"#, "", "t.csv"));
    let dataset = import(&manifest, fixture.root()).expect("import");
    let targets = targets_by_name(&dataset.splits[0]);
    assert_eq!(targets["a.png"], vec![0, 1]);
    assert_eq!(targets["b,c.png"], vec![1, -1]);
    assert_eq!(targets["d.png"], vec![0, 0]);
}

#[test]
fn csv_labels_column_with_separator() {
    let fixture = Fixture::new();
    fixture.write("t.csv", "id;file;tags\n1;a.png;cat | dog\n2;b.png;\n3;c.png;dog\n");
    let manifest = fixture.manifest(&manifest_for(
        "csv",
        r#"names = ["cat", "dog"]"#,
        "path_column = \"file\"\nlabels_column = \"tags\"\nlabel_separator = \"|\"\ndelimiter = \";\"",
        "t.csv",
    ));
    let dataset = import(&manifest, fixture.root()).expect("import");
    let targets = targets_by_name(&dataset.splits[0]);
    assert_eq!(targets["a.png"], vec![1, 1]);
    assert_eq!(targets["b.png"], vec![0, 0]);
    assert_eq!(targets["c.png"], vec![0, 1]);
}

#[test]
fn csv_label_file_source() {
    let fixture = Fixture::new();
    fixture.write("labels.txt", "cat\n\ndog\n");
    fixture.write("t.csv", "path,labels\na.png,dog\n");
    let manifest =
        fixture.manifest(&manifest_for("csv", r#"file = "labels.txt""#, "labels_column = \"labels\"", "t.csv"));
    let dataset = import(&manifest, fixture.root()).expect("import");
    assert_eq!(dataset.labels, names(&["cat", "dog"]));
    assert_eq!(dataset.splits[0].images[0].targets, vec![0, 1]);
}

#[test]
fn json_list_by_label_names() {
    let fixture = Fixture::new();
    fixture
        .write("list.json", r#"{"classes": ["cat", "dog"], "images": [["x/a.png", ["dog", "cat"]], ["x/b.png", []]]}"#);
    let manifest = fixture.manifest(&manifest_for("json_list", "from_annotations = true", "", "list.json"));
    let dataset = import(&manifest, fixture.root()).expect("import");
    assert_eq!(dataset.labels, names(&["cat", "dog"]));
    let targets = targets_by_name(&dataset.splits[0]);
    assert_eq!(targets["a.png"], vec![1, 1]);
    assert_eq!(targets["b.png"], vec![0, 0]);
}

#[test]
fn mmpretrain_indices_map_through_metainfo() {
    let fixture = Fixture::new();
    fixture.write(
        "mm.json",
        r#"{"metainfo": {"classes": ["dog", "cat", "bird"]},
            "data_list": [{"img_path": "a.png", "gt_label": [0, 2]}, {"img_path": "b.png", "gt_label": 1}]}"#,
    );
    // Manifest order differs from metainfo order.
    let manifest = fixture.manifest(&manifest_for("mmpretrain", r#"names = ["bird", "cat", "dog"]"#, "", "mm.json"));
    let dataset = import(&manifest, fixture.root()).expect("import");
    let targets = targets_by_name(&dataset.splits[0]);
    assert_eq!(targets["a.png"], vec![1, 0, 1]);
    assert_eq!(targets["b.png"], vec![0, 1, 0]);
    let from_file = fixture.manifest(&manifest_for("mmpretrain", "from_annotations = true", "", "mm.json"));
    assert_eq!(resolve_labels(&from_file, fixture.root()).expect("labels"), names(&["dog", "cat", "bird"]));
}

#[test]
fn mmpretrain_out_of_range_index_names_line() {
    let fixture = Fixture::new();
    fixture.write(
        "mm.json",
        "{\"metainfo\": {\"classes\": [\"dog\"]},\n\"data_list\": [\n{\"img_path\": \"a.png\", \"gt_label\": 0},\n{\"img_path\": \"b.png\", \"gt_label\": 4}\n]}",
    );
    let manifest = fixture.manifest(&manifest_for("mmpretrain", "from_annotations = true", "", "mm.json"));
    let error = import_split(&manifest, fixture.root(), "train", &names(&["dog"])).expect_err("index 4");
    assert!(error.to_string().contains("4: `gt_label` `4`"), "{error}");
}

#[test]
fn shipped_manifests_parse() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data_manifest");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("data_manifest/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let manifest = sspa_data::Manifest::load(&path).unwrap_or_else(|e| panic!("{e}"));
            seen.push(manifest.name);
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        names(&[
            "aid",
            "coco2014",
            "demo",
            "mlrsnet",
            "multiscene",
            "nuswide",
            "pa100k",
            "peta",
            "rap",
            "scenes",
            "voc2007"
        ])
    );
}

#[test]
fn stage_inputs_list_manifest_label_file_and_annotations() {
    let project = Fixture::new();
    project.write("labels.txt", "cat\ndog\n");
    project.write("train.csv", "path,labels\na.png,dog\n");
    project.write("test.csv", "path,labels\nb.png,cat\n");
    project.write(
        "m/toy.toml",
        r#"
name = "toy"
domain = "test"
[labels]
file = "labels.txt"
[source]
format = "csv"
labels_column = "labels"
[splits.train]
annotations = "train.csv"
[splits.test]
annotations = "test.csv"
"#,
    );
    // The data root is the project itself here (`root = "."`).
    let data: sspa_config::DataSection =
        toml::from_str("manifest = \"m/toy.toml\"\nroot = \".\"\nroot_env = \"SSPA_DATA_TEST_VARIABLE_NOT_SET\"")
            .expect("data");
    let inputs = sspa_data::stage_inputs(&data, project.root()).expect("inputs");
    let relative: Vec<String> = inputs
        .iter()
        .map(|p| p.strip_prefix(project.root()).expect("under root").to_string_lossy().replace("./", ""))
        .collect();
    assert_eq!(relative, names(&["m/toy.toml", "labels.txt", "test.csv", "train.csv"]));
}
