//! The Fashion-MNIST mosaic demo set, built from the Debian package
//! (`apt-get install -y dataset-fashion-mnist`), and its labels checked against the tiles.

use crate::{Fixture, no_progress};
use sspa_data::demo::{FASHION_CLASSES, TILE, ensure_demo, read_idx, source_files};
use sspa_data::import::import;
use sspa_data::manifest::DemoSection;
use std::collections::{BTreeSet, HashMap};

fn demo_manifest(fixture: &Fixture, train: u32, test: u32, seed: u64, scale: u32) -> sspa_data::Manifest {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data_manifest/demo.toml");
    let text = std::fs::read_to_string(shipped).expect("data_manifest/demo.toml");
    let text = text
        .replace("train_images = 8000", &format!("train_images = {train}"))
        .replace("test_images = 2000", &format!("test_images = {test}"))
        .replace("seed = 0", &format!("seed = {seed}"))
        .replace("scale = 1", &format!("scale = {scale}"));
    fixture.manifest(&text)
}

/// Source pixels → the labels of every Fashion-MNIST image with exactly those pixels.
fn pixel_index(split: &str) -> HashMap<Vec<u8>, BTreeSet<usize>> {
    let files = source_files(&DemoSection::default());
    let (images, labels) = if split == "train" { (&files[0], &files[1]) } else { (&files[2], &files[3]) };
    let source = read_idx(images, labels).expect("Fashion-MNIST from the Debian package dataset-fashion-mnist");
    let mut index: HashMap<Vec<u8>, BTreeSet<usize>> = HashMap::new();
    for i in 0..source.len() {
        index.entry(source.image(i).to_vec()).or_default().insert(usize::from(source.labels[i]));
    }
    index
}

/// Checks that every mosaic's labels are exactly the classes of its non-blank tiles.
fn check_labels_match_tiles(dataset: &sspa_data::Dataset, scale: usize) {
    for split in &dataset.splits {
        let index = pixel_index(&split.name);
        let mut label_counts = BTreeSet::new();
        for entry in &split.images {
            let image = image::open(&entry.path).expect("mosaic png").into_luma8();
            assert_eq!(image.dimensions(), ((2 * TILE * scale) as u32, (2 * TILE * scale) as u32));
            let mut from_tiles = BTreeSet::new();
            let mut filled = 0;
            for tile in 0..4 {
                let (ty, tx) = (tile / 2, tile % 2);
                let mut pixels = Vec::with_capacity(TILE * TILE);
                for y in 0..TILE {
                    for x in 0..TILE {
                        let px = (tx * TILE + x) * scale;
                        let py = (ty * TILE + y) * scale;
                        pixels.push(image.get_pixel(px as u32, py as u32).0[0]);
                    }
                }
                if pixels.iter().all(|&p| p == 0) {
                    continue;
                }
                filled += 1;
                let classes = index
                    .get(&pixels)
                    .unwrap_or_else(|| panic!("a tile of {} is not a Fashion-MNIST image", entry.path.display()));
                assert_eq!(classes.len(), 1, "ambiguous source image");
                from_tiles.extend(classes.iter().copied());
            }
            assert!((1..=4).contains(&filled), "{} has {filled} filled tiles", entry.path.display());
            let annotated: BTreeSet<usize> =
                entry.targets.iter().enumerate().filter(|(_, t)| **t == 1).map(|(i, _)| i).collect();
            assert_eq!(annotated, from_tiles, "labels of {} differ from its tiles", entry.path.display());
            assert!(entry.targets.iter().all(|&t| t == 0 || t == 1));
            label_counts.insert(annotated.len());
        }
        if split.images.len() >= 50 {
            assert!(label_counts.contains(&1) && label_counts.iter().any(|&c| c >= 3), "{label_counts:?}");
        }
    }
}

#[test]
fn demo_builds_from_the_debian_package_and_labels_match_tiles() {
    let fixture = Fixture::new();
    let manifest = demo_manifest(&fixture, 150, 50, 3, 1);
    assert!(ensure_demo(&manifest, fixture.root(), &no_progress).expect("build"));
    let dataset = import(&manifest, fixture.root()).expect("import the built set");
    assert_eq!(dataset.labels, FASHION_CLASSES.map(String::from).to_vec());
    let sizes: Vec<(String, usize)> = dataset.splits.iter().map(|s| (s.name.clone(), s.images.len())).collect();
    assert_eq!(sizes, vec![("test".into(), 50), ("train".into(), 150)]);
    check_labels_match_tiles(&dataset, 1);

    // Same parameters: nothing to do. Another root: byte-identical files (deterministic build).
    assert!(!ensure_demo(&manifest, fixture.root(), &no_progress).expect("cached"));
    let other = Fixture::new();
    let again = demo_manifest(&other, 150, 50, 3, 1);
    assert!(ensure_demo(&again, other.root(), &no_progress).expect("build"));
    for file in ["fashion-mosaic/train.json", "fashion-mosaic/test.json", "fashion-mosaic/train/000149.png"] {
        let a = std::fs::read(fixture.root().join(file)).expect("first");
        let b = std::fs::read(other.root().join(file)).expect("second");
        assert!(a == b, "{file} differs between two builds");
    }

    // Another seed rebuilds with different content.
    let reseeded = demo_manifest(&fixture, 150, 50, 4, 1);
    assert!(ensure_demo(&reseeded, fixture.root(), &no_progress).expect("rebuild"));
    let before = std::fs::read(other.root().join("fashion-mosaic/train.json")).expect("old");
    let after = std::fs::read(fixture.root().join("fashion-mosaic/train.json")).expect("new");
    assert_ne!(before, after);
}

#[test]
fn upscaled_demo_keeps_labels() {
    let fixture = Fixture::new();
    let manifest = demo_manifest(&fixture, 12, 12, 0, 2);
    ensure_demo(&manifest, fixture.root(), &no_progress).expect("build");
    let dataset = import(&manifest, fixture.root()).expect("import");
    check_labels_match_tiles(&dataset, 2);
}

/// Fashion-MNIST classes of the non-blank tiles of a scale-1 mosaic.
fn tile_classes(path: &std::path::Path, index: &HashMap<Vec<u8>, BTreeSet<usize>>) -> BTreeSet<usize> {
    let image = image::open(path).expect("mosaic png").into_luma8();
    let mut classes = BTreeSet::new();
    for tile in 0..4 {
        let (ty, tx) = (tile / 2, tile % 2);
        let pixels: Vec<u8> = (0..TILE)
            .flat_map(|y| (0..TILE).map(move |x| (x, y)))
            .map(|(x, y)| image.get_pixel((tx * TILE + x) as u32, (ty * TILE + y) as u32).0[0])
            .collect();
        if pixels.iter().any(|&p| p != 0) {
            classes.extend(index.get(&pixels).expect("a Fashion-MNIST tile").iter().copied());
        }
    }
    classes
}

#[test]
fn a_label_subset_annotates_only_those_classes_and_shuffled_labels_belong_to_the_next_mosaic() {
    let fixture = Fixture::new();
    let nine =
        r#"names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag"]"#;
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data_manifest/demo.toml");
    let text: String = std::fs::read_to_string(shipped)
        .expect("manifest")
        .replace("train_images = 8000", "train_images = 60")
        .replace("test_images = 2000", "test_images = 30")
        .replace("blank_probability = 0.35", "blank_probability = 0.35\nshuffled_train_labels = true")
        .lines()
        .map(|line| if line.starts_with("names = ") { nine.to_owned() } else { line.to_owned() })
        .collect::<Vec<_>>()
        .join("\n");
    let manifest = fixture.manifest(&text);
    ensure_demo(&manifest, fixture.root(), &no_progress).expect("build");
    let dataset = import(&manifest, fixture.root()).expect("import");
    assert_eq!(dataset.labels, FASHION_CLASSES[..9].iter().map(|c| (*c).to_owned()).collect::<Vec<_>>());
    let boot = FASHION_CLASSES.iter().position(|c| *c == "Ankle boot").expect("class");
    let mut boots_drawn = 0;
    for split in &dataset.splits {
        let index = pixel_index(&split.name);
        let tiles: Vec<BTreeSet<usize>> = split.images.iter().map(|e| tile_classes(&e.path, &index)).collect();
        boots_drawn += tiles.iter().filter(|t| t.contains(&boot)).count();
        for (i, entry) in split.images.iter().enumerate() {
            let annotated: BTreeSet<usize> =
                entry.targets.iter().enumerate().filter(|(_, t)| **t == 1).map(|(c, _)| c).collect();
            // The train split is annotated with the next mosaic's tiles; the test split with its own.
            let source = if split.name == "train" { &tiles[(i + 1) % tiles.len()] } else { &tiles[i] };
            let expected: BTreeSet<usize> = source.iter().copied().filter(|&c| c != boot).collect();
            assert_eq!(annotated, expected, "{} ({})", entry.path.display(), split.name);
        }
    }
    assert!(boots_drawn > 0, "the unlisted class is still drawn");

    let unknown = fixture.root().join("unknown.toml");
    std::fs::write(&unknown, text.replace("\"Bag\"]", "\"Bag\", \"Hat\"]")).expect("write");
    let error = sspa_data::Manifest::load(&unknown).expect_err("not a Fashion class").to_string();
    assert!(error.contains("unknown.toml") && error.contains("labels.names"), "{error}");
}

/// BLAKE3 of files of a small mosaic build (seed 5, 30 + 10 images), recorded before the `scenes`
/// layout existed: the mosaics, their annotations and the build record stay byte-identical, so
/// sets built before keep matching and are not rebuilt.
const MOSAIC_CHECKSUMS: [(&str, &str); 6] = [
    ("fashion-mosaic/BUILD.json", "4430db6310dae6391cb8ab424d0642655622008537f210fa5e455212177b1338"),
    ("fashion-mosaic/train.json", "b1150dbc931e35382f4362dea564b4274f8cd5ac306059d4fda4170016448b74"),
    ("fashion-mosaic/test.json", "c98740848a6749314df1475d5417db9661b23b7632ffe9c79b505ec53c8a0ff1"),
    ("fashion-mosaic/train/000000.png", "bc93c6640b7583d11a4eaec3085c8fa86f3080db5e62c5f713f3dda2d2a6710e"),
    ("fashion-mosaic/train/000029.png", "324acf24a18001fa4714fdc6b5296ca7d2a790796ae2fbca431c2cace291bae5"),
    ("fashion-mosaic/test/000009.png", "a95fc7bd6c12448bd499a80987582aa4fa63b44f0fbaad3420579741f1db034c"),
];

#[test]
fn mosaics_stay_byte_identical() {
    let fixture = Fixture::new();
    let manifest = demo_manifest(&fixture, 30, 10, 5, 1);
    assert!(ensure_demo(&manifest, fixture.root(), &no_progress).expect("build"));
    let actual: Vec<(&str, String)> = MOSAIC_CHECKSUMS
        .iter()
        .map(|(file, _)| {
            let bytes = std::fs::read(fixture.root().join(file)).expect("built file");
            (*file, blake3::hash(&bytes).to_hex().to_string())
        })
        .collect();
    let expected: Vec<(&str, String)> = MOSAIC_CHECKSUMS.iter().map(|(f, h)| (*f, (*h).to_owned())).collect();
    assert_eq!(actual, expected);
}

#[test]
fn photo_demo_writes_deterministic_colour_jpegs_of_the_asked_size_with_the_same_labels() {
    let photo = "\n[demo.photo]\nwidth = 160\nheight = 120\nquality = 85\n";
    let build = |fixture: &Fixture| {
        let manifest = demo_manifest(fixture, 6, 4, 5, 1);
        let shipped = std::fs::read_to_string(&manifest.file).expect("manifest");
        let manifest = fixture.manifest(&format!("{shipped}{photo}"));
        assert!(ensure_demo(&manifest, fixture.root(), &no_progress).expect("build"));
        manifest
    };
    let (fixture, other) = (Fixture::new(), Fixture::new());
    let manifest = build(&fixture);
    build(&other);
    let dataset = import(&manifest, fixture.root()).expect("import");
    let plain = Fixture::new();
    ensure_demo(&demo_manifest(&plain, 6, 4, 5, 1), plain.root(), &no_progress).expect("grey build");
    let grey = import(&demo_manifest(&plain, 6, 4, 5, 1), plain.root()).expect("grey");
    for (split, grey_split) in dataset.splits.iter().zip(&grey.splits) {
        for (entry, grey_entry) in split.images.iter().zip(&grey_split.images) {
            assert_eq!(entry.targets, grey_entry.targets, "same mosaic, same labels");
            let bytes = std::fs::read(&entry.path).expect("photo");
            assert!(bytes.starts_with(&[0xFF, 0xD8]) && entry.path.extension().is_some_and(|e| e == "jpg"));
            let image = image::load_from_memory(&bytes).expect("decodes");
            assert_eq!((image.width(), image.height(), image.color()), (160, 120, image::ColorType::Rgb8));
            let relative = entry.path.strip_prefix(fixture.root()).expect("under the root");
            assert_eq!(bytes, std::fs::read(other.root().join(relative)).expect("other"), "deterministic");
        }
    }
    let kept = Fixture::new();
    let bad = demo_manifest(&kept, 6, 4, 5, 1);
    let text = std::fs::read_to_string(&bad.file).expect("manifest");
    let err = sspa_data::Manifest::parse(&format!("{text}\n[demo.photo]\nwidth = 8\nheight = 120\n"), &bad.file)
        .expect_err("too small");
    assert!(err.to_string().contains("demo.photo"), "{err}");
}
