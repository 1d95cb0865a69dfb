//! The `scenes` layout of the demo set, built from the Debian package
//! (`apt-get install -y dataset-fashion-mnist`): reproducibility, labels, sizes, the rebuild on a
//! layout change, and the manifest checks of the layout's keys.

use crate::{Fixture, no_progress};
use sspa_data::demo::{FASHION_CLASSES, ensure_demo, read_idx, source_files};
use sspa_data::import::import;
use sspa_data::manifest::DemoSection;
use sspa_data::scenes::{self, ITEMS, item_sizes};
use std::collections::BTreeSet;

fn scenes_manifest_text(train: u32, test: u32, seed: u64) -> String {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data_manifest/scenes.toml");
    std::fs::read_to_string(shipped)
        .expect("data_manifest/scenes.toml")
        .replace("train_images = 8000", &format!("train_images = {train}"))
        .replace("test_images = 2000", &format!("test_images = {test}"))
        .replace("seed = 0", &format!("seed = {seed}"))
}

fn scenes_manifest(fixture: &Fixture, train: u32, test: u32, seed: u64) -> sspa_data::Manifest {
    fixture.manifest(&scenes_manifest_text(train, test, seed))
}

fn source(split: &str) -> sspa_data::demo::IdxImages {
    let files = source_files(&DemoSection::default());
    let (images, labels) = if split == "train" { (&files[0], &files[1]) } else { (&files[2], &files[3]) };
    read_idx(images, labels).expect("Fashion-MNIST from the Debian package dataset-fashion-mnist")
}

#[test]
fn scenes_are_their_plans_and_labelled_with_their_items() {
    let fixture = Fixture::new();
    let manifest = scenes_manifest(&fixture, 60, 20, 2);
    assert!(ensure_demo(&manifest, fixture.root(), &no_progress).expect("build"));
    let demo = manifest.demo.as_ref().expect("[demo]");
    let dataset = import(&manifest, fixture.root()).expect("import the built set");
    assert_eq!(dataset.labels, FASHION_CLASSES.map(String::from).to_vec());
    let sizes = item_sizes(112);
    let mut item_counts = BTreeSet::new();
    for split in &dataset.splits {
        let source = source(&split.name);
        for (index, entry) in split.images.iter().enumerate() {
            let plan = scenes::plan(demo, &split.name, index as u64, source.len());
            assert!(ITEMS.contains(&(plan.items.len() as u32)), "{}: {} items", entry.path.display(), plan.items.len());
            item_counts.insert(plan.items.len());
            for item in &plan.items {
                assert!(sizes.contains(&item.size) && item.x + item.size <= 112 && item.y + item.size <= 112);
            }
            // The PNG is the plan rendered, and its labels are exactly the items' classes.
            let image = image::open(&entry.path).expect("scene png").into_luma8();
            assert_eq!(image, scenes::render(&plan, &source), "{}", entry.path.display());
            let annotated: BTreeSet<usize> =
                entry.targets.iter().enumerate().filter(|(_, t)| **t == 1).map(|(c, _)| c).collect();
            let items: BTreeSet<usize> = scenes::classes(&plan, &source).into_iter().collect();
            assert_eq!(annotated, items, "labels of {}", entry.path.display());
            assert!(entry.targets.iter().all(|&t| t == 0 || t == 1));
            // Every item shows: max-blending never darkens it below its own resized pixels.
            for item in &plan.items {
                let tile = image::GrayImage::from_raw(28, 28, source.image(item.source).to_vec()).expect("28×28");
                let resized =
                    image::imageops::resize(&tile, item.size, item.size, image::imageops::FilterType::Triangle);
                for (x, y, pixel) in resized.enumerate_pixels() {
                    assert!(image.get_pixel(item.x + x, item.y + y).0[0] >= pixel.0[0]);
                }
            }
        }
    }
    assert!(item_counts.len() >= 4, "item counts seen: {item_counts:?}");
}

#[test]
fn scene_i_depends_only_on_seed_split_and_i() {
    let (first, second, reseeded) = (Fixture::new(), Fixture::new(), Fixture::new());
    // A different number of images does not change image i.
    ensure_demo(&scenes_manifest(&first, 12, 6, 4), first.root(), &no_progress).expect("build");
    ensure_demo(&scenes_manifest(&second, 20, 8, 4), second.root(), &no_progress).expect("build");
    ensure_demo(&scenes_manifest(&reseeded, 12, 6, 5), reseeded.root(), &no_progress).expect("build");
    let read =
        |fixture: &Fixture, file: &str| std::fs::read(fixture.root().join("fashion-scenes").join(file)).expect(file);
    let mut differs = 0;
    for file in ["train/000000.png", "train/000011.png", "test/000005.png"] {
        assert!(read(&first, file) == read(&second, file), "{file} differs between two builds with the same seed");
        differs += usize::from(read(&first, file) != read(&reseeded, file));
    }
    assert_eq!(differs, 3, "another seed gives other scenes");
}

#[test]
fn changing_the_layout_rebuilds_the_set() {
    let fixture = Fixture::new();
    let scenes_text = scenes_manifest_text(10, 5, 0);
    let mosaic_text = scenes_text.replace("layout = \"scenes\"\n", "").replace("image_size = 112\n", "");
    let mosaic = fixture.manifest(&mosaic_text);
    assert!(ensure_demo(&mosaic, fixture.root(), &no_progress).expect("build mosaics"));
    assert!(!ensure_demo(&mosaic, fixture.root(), &no_progress).expect("up to date"));
    let png = fixture.root().join("fashion-scenes/train/000000.png");
    assert_eq!(image::image_dimensions(&png).expect("png"), (56, 56));
    let scenes = fixture.manifest(&scenes_text);
    assert!(ensure_demo(&scenes, fixture.root(), &no_progress).expect("rebuild as scenes"));
    assert_eq!(image::image_dimensions(&png).expect("png"), (112, 112));
    let record = std::fs::read_to_string(fixture.root().join("fashion-scenes/BUILD.json")).expect("record");
    assert!(record.contains("\"layout\": \"scenes\""), "{record}");
}

#[test]
fn layout_keys_are_checked_against_the_layout() {
    let fixture = Fixture::new();
    let text = scenes_manifest_text(10, 5, 0);
    let layout_line = text.lines().position(|line| line.starts_with("layout =")).expect("a layout line") + 1;
    let unknown_layout = format!("{layout_line}:10: unknown variant `grid`, expected `mosaic` or `scenes`");
    let cases = [
        (text.replace("image_size = 112", "scale = 2"), "demo.scale"),
        (text.replace("image_size = 112", "blank_probability = 0.1"), "demo.blank_probability"),
        (text.replace("image_size = 112", "image_size = 16"), "demo.image_size"),
        (text.replace("layout = \"scenes\"\n", ""), "demo.image_size"),
        // An unknown layout: the line and the layouts there are.
        (text.replace("layout = \"scenes\"", "layout = \"grid\""), unknown_layout.as_str()),
    ];
    for (text, key) in cases {
        let path = fixture.write("bad.toml", &text);
        let error = sspa_data::Manifest::load(&path).expect_err(key).to_string();
        assert!(error.contains("bad.toml") && error.contains(key), "{key}: {error}");
    }
}
