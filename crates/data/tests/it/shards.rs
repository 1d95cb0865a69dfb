//! Shard round trip, checksums, the loader, and the whole stage on a small demo set.

use crate::{Fixture, no_progress};
use sspa_config::OnBadImage;
use sspa_data::import::import;
use sspa_data::loader::{LoaderConfig, build_batch, epoch_order};
use sspa_data::shard::{WriteOptions, shard_manifest, write_shards};
use sspa_data::{DataError, Geometry, Loader, ShardRequest, open_shards};

const COLOURS: [[u8; 3]; 10] = [
    [255, 0, 0],
    [0, 255, 0],
    [0, 0, 255],
    [10, 20, 30],
    [200, 100, 50],
    [0, 0, 0],
    [255, 255, 255],
    [90, 180, 45],
    [1, 2, 3],
    [128, 128, 128],
];

/// Ten solid-colour images of various sizes in a train and a test split (same files).
fn solid_dataset(fixture: &Fixture) -> sspa_data::Dataset {
    import(&solid_manifest(fixture), fixture.root()).expect("import")
}

fn solid_manifest(fixture: &Fixture) -> sspa_data::Manifest {
    let mut entries = Vec::new();
    for (i, colour) in COLOURS.iter().enumerate() {
        let (w, h) = (20 + 13 * i as u32, 60 - 3 * i as u32);
        fixture.png(&format!("img/{i}.png"), w, h, *colour);
        let labels: Vec<&str> = [("a", i % 2 == 0), ("b", i % 3 == 0), ("c", i >= 5)]
            .iter()
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect();
        entries.push(format!("[\"{i}.png\", {}]", serde_json::to_string(&labels).expect("json")));
    }
    fixture.write("list.json", &format!("{{\"images\": [\n{}\n]}}", entries.join(",\n")));
    fixture.manifest(
        r#"
name = "solid"
domain = "test"
[labels]
names = ["a", "b", "c"]
[source]
format = "json_list"
[splits.train]
annotations = "list.json"
images = "img"
[splits.test]
annotations = "list.json"
images = "img"
"#,
    )
}

fn solid_options(fixture: &Fixture) -> WriteOptions {
    WriteOptions {
        dataset: "solid".into(),
        geometry: Geometry::for_preset("clip-rn50", 32).expect("preset"),
        shard_size: 3,
        on_bad_image: OnBadImage::Fail,
        threads: Some(2),
        codec: sspa_data::codec::Codec::RAW,
        data_root: fixture.root().to_path_buf(),
        failure_report_dir: None,
    }
}

fn write(fixture: &Fixture, out: &std::path::Path) -> sspa_data::ShardSummary {
    let dataset = solid_dataset(fixture);
    // Splits come sorted by name: test, train.
    write_shards(&dataset, &[false, true], &solid_options(fixture), out, &no_progress).expect("shards")
}

const MEAN: [f32; 3] = [0.5, 0.25, 0.75];
const STD: [f32; 3] = [0.5, 0.2, 0.1];

#[test]
fn shards_round_trip_with_checksums() {
    let fixture = Fixture::new();
    let out = tempfile::tempdir().expect("out");
    let summary = write(&fixture, out.path());
    assert_eq!(summary.splits.iter().map(|s| (s.written, s.shards)).collect::<Vec<_>>(), vec![(10, 4), (10, 4)]);
    assert!(out.path().join("index.parquet").is_file() && out.path().join("shards.json").is_file());
    let leftovers: Vec<_> = std::fs::read_dir(out.path())
        .expect("out")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    let set = open_shards(out.path()).expect("open");
    set.verify().expect("checksums match");
    assert_eq!(set.labels(), ["a", "b", "c"]);
    let dataset = solid_dataset(&fixture);
    for split_name in ["test", "train"] {
        let split = set.split(split_name).expect("split");
        assert_eq!(split.len(), 10);
        for (row, record) in split.records().iter().enumerate() {
            assert_eq!(record.path, format!("img/{row}.png"));
            assert_eq!(record.targets, dataset.splits[0].images[row].targets);
            let (w, h) = (20 + 13 * row as u32, 60 - 3 * row as u32);
            let expected = if split.train {
                let shorter = w.min(h) as f64;
                if shorter <= 37.0 {
                    (w, h)
                } else {
                    ((w as f64 * 37.0 / shorter).round() as u32, (h as f64 * 37.0 / shorter).round() as u32)
                }
            } else {
                (32, 32)
            };
            assert_eq!((record.width, record.height), expected, "{split_name} row {row}");
            let pixels = split.read_pixels(row).expect("pixels");
            for pixel in pixels.chunks(3) {
                for c in 0..3 {
                    assert!(pixel[c].abs_diff(COLOURS[row][c]) <= 1, "{split_name} row {row}: {pixel:?}");
                }
            }
        }
    }
    // A flipped byte is caught.
    let shard = out.path().join("train/shard-00001.bin");
    let mut bytes = std::fs::read(&shard).expect("shard");
    bytes[5] ^= 1;
    std::fs::write(&shard, bytes).expect("tamper");
    assert!(matches!(set.verify(), Err(DataError::ChecksumMismatch { .. })));
}

#[test]
fn streamed_shards_equal_in_memory_shards() {
    let fixture = Fixture::new();
    let memory = tempfile::tempdir().expect("out");
    let streamed = tempfile::tempdir().expect("out");
    let from_memory = write(&fixture, memory.path());
    let manifest = solid_manifest(&fixture);
    let from_stream = shard_manifest(
        &manifest,
        fixture.root(),
        &|split| split == "train",
        &solid_options(&fixture),
        streamed.path(),
        &no_progress,
    )
    .expect("streamed shards");
    assert_eq!(serde_json::to_value(&from_memory).expect("json"), serde_json::to_value(&from_stream).expect("json"));
    for file in ["shards.json", "index.parquet", "test/shard-00000.bin", "train/shard-00003.bin"] {
        let a = std::fs::read(memory.path().join(file)).expect("memory file");
        let b = std::fs::read(streamed.path().join(file)).expect("streamed file");
        assert!(a == b, "{file} differs");
    }
}

#[test]
fn streamed_sharding_fails_on_bad_annotations_before_writing_shards() {
    let fixture = Fixture::new();
    let manifest = solid_manifest(&fixture);
    let list = std::fs::read_to_string(fixture.root().join("list.json")).expect("list");
    fixture.write("list.json", &list.replace("[\"7.png\"", "[\"2.png\""));
    let out = tempfile::tempdir().expect("out");
    let error =
        shard_manifest(&manifest, fixture.root(), &|_| false, &solid_options(&fixture), out.path(), &no_progress)
            .expect_err("duplicate");
    match error {
        DataError::DuplicateImage { line, first_line, image, .. } => {
            assert_eq!((line, first_line, image.as_str()), (9, 4, "2.png"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(std::fs::read_dir(out.path()).expect("out").count(), 0, "nothing written");
}

#[test]
fn loader_tensors_match_the_batches() {
    let fixture = Fixture::new();
    let out = tempfile::tempdir().expect("out");
    write(&fixture, out.path());
    let split = open_shards(out.path()).expect("open").split("train").expect("split");
    let config = LoaderConfig { drop_last: false, ..LoaderConfig::train(4, 24, MEAN, STD, 3) };
    let device = burn::prelude::Device::default();
    let batches: Vec<_> = Loader::new(&split, &config, 2).expect("loader").collect::<Result<_, _>>().expect("batches");
    let tensors: Vec<_> =
        Loader::new(&split, &config, 2).expect("loader").tensors(&device).collect::<Result<_, _>>().expect("tensors");
    assert_eq!(tensors.len(), batches.len());
    for (batch, tensor) in batches.iter().zip(&tensors) {
        assert_eq!(tensor.images.dims(), batch.shape);
        assert_eq!(tensor.targets.dims(), [batch.shape[0], 3]);
        assert_eq!(tensor.rows, batch.rows);
        assert_eq!(tensor.images.to_data().try_to_vec::<f32>().expect("f32"), batch.images);
        let targets: Vec<i64> = tensor.targets.to_data().convert::<i64>().try_to_vec().expect("int");
        assert_eq!(targets, batch.targets.iter().map(|&t| i64::from(t)).collect::<Vec<_>>());
    }
}

#[test]
fn eval_loader_normalises_in_order() {
    let fixture = Fixture::new();
    let out = tempfile::tempdir().expect("out");
    write(&fixture, out.path());
    let split = open_shards(out.path()).expect("open").split("test").expect("split");
    let config = LoaderConfig { workers: 3, prefetch: 2, ..LoaderConfig::eval(4, 32, MEAN, STD) };
    let batches: Vec<_> = Loader::new(&split, &config, 0).expect("loader").collect::<Result<_, _>>().expect("batches");
    assert_eq!(batches.iter().map(|b| b.shape[0]).collect::<Vec<_>>(), vec![4, 4, 2]);
    let rows: Vec<usize> = batches.iter().flat_map(|b| b.rows.clone()).collect();
    assert_eq!(rows, (0..10).collect::<Vec<_>>());
    let plane = 32 * 32;
    for batch in &batches {
        assert_eq!(batch.images.len(), batch.shape.iter().product::<usize>());
        for (slot, &row) in batch.rows.iter().enumerate() {
            assert_eq!(&batch.targets[slot * 3..slot * 3 + 3], split.records()[row].targets.as_slice());
            for c in 0..3 {
                let expected = (f32::from(COLOURS[row][c]) / 255.0 - MEAN[c]) / STD[c];
                let values = &batch.images[(slot * 3 + c) * plane..(slot * 3 + c + 1) * plane];
                let tolerance = 1.5 / 255.0 / STD[c];
                assert!(values.iter().all(|v| (v - expected).abs() <= tolerance), "row {row} channel {c}");
            }
        }
    }
}

#[test]
fn train_loader_shuffles_per_epoch_and_augments() {
    let fixture = Fixture::new();
    let out = tempfile::tempdir().expect("out");
    write(&fixture, out.path());
    let split = open_shards(out.path()).expect("open").split("train").expect("split");
    let config = LoaderConfig { drop_last: false, shuffle_window: 2, ..LoaderConfig::train(3, 24, MEAN, STD, 11) };
    let first = epoch_order(&split, &config, 0);
    assert_eq!(first, epoch_order(&split, &config, 0), "same seed and epoch, same order");
    let second = epoch_order(&split, &config, 1);
    assert_ne!(first, second);
    let mut sorted = second.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    let other_seed = LoaderConfig { seed: 12, ..config.clone() };
    assert_ne!(first, epoch_order(&split, &other_seed, 0));

    // Thread pool output equals batches built one by one.
    let pooled: Vec<_> = Loader::new(&split, &config, 1).expect("loader").collect::<Result<_, _>>().expect("batches");
    let direct: Vec<_> = second.chunks(3).map(|rows| build_batch(&split, &config, 1, rows).expect("batch")).collect();
    assert_eq!(pooled, direct);
    // Solid colours stay solid under crops and flips.
    for batch in &pooled {
        for (slot, &row) in batch.rows.iter().enumerate() {
            let plane = 24 * 24;
            let values = &batch.images[slot * 3 * plane..(slot * 3 + 1) * plane];
            let expected = (f32::from(COLOURS[row][0]) / 255.0 - MEAN[0]) / STD[0];
            assert!(values.iter().all(|v| (v - expected).abs() < 0.02), "row {row}");
        }
    }
}

#[test]
fn flip_mirrors_the_image() {
    let fixture = Fixture::new();
    let gradient = image::RgbImage::from_fn(16, 16, |x, y| image::Rgb([(x * 16) as u8, (y * 16) as u8, 7]));
    gradient.save(fixture.root().join("g.png")).expect("png");
    fixture.write("list.json", "{\"images\": [[\"g.png\", [\"a\"]]]}");
    let manifest = fixture.manifest(
        "name = \"g\"\ndomain = \"t\"\n[labels]\nnames = [\"a\"]\n[source]\nformat = \"json_list\"\n[splits.train]\nannotations = \"list.json\"\n",
    );
    let dataset = import(&manifest, fixture.root()).expect("import");
    let out = tempfile::tempdir().expect("out");
    let options = WriteOptions {
        dataset: "g".into(),
        geometry: Geometry::for_preset("clip-rn50", 16).expect("preset"),
        shard_size: 8,
        on_bad_image: OnBadImage::Fail,
        threads: Some(1),
        codec: sspa_data::codec::Codec::RAW,
        data_root: fixture.root().to_path_buf(),
        failure_report_dir: None,
    };
    write_shards(&dataset, &[true], &options, out.path(), &no_progress).expect("shards");
    let split = open_shards(out.path()).expect("open").split("train").expect("split");
    let plain = LoaderConfig::eval(1, 16, [0.0; 3], [1.0; 3]);
    let augment = sspa_data::Augment { scale: (1.0, 1.0), ratio: (1.0, 1.0), flip_probability: 1.0 };
    let flipped = LoaderConfig { augment: Some(augment), ..plain.clone() };
    let a = build_batch(&split, &plain, 0, &[0]).expect("plain");
    let b = build_batch(&split, &flipped, 0, &[0]).expect("flipped");
    for y in 0..16 {
        for x in 0..16 {
            assert_eq!(a.images[y * 16 + x], b.images[y * 16 + 15 - x], "({x}, {y})");
        }
    }
    assert!((a.images[15] - 240.0 / 255.0).abs() < 1e-6, "unnormalised red at the right edge");
}

#[test]
fn shard_stage_runs_end_to_end_on_a_small_demo_set() {
    let project = Fixture::new();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data_manifest/demo.toml");
    let text = std::fs::read_to_string(shipped)
        .expect("demo manifest")
        .replace("train_images = 8000", "train_images = 120")
        .replace("test_images = 2000", "test_images = 40");
    project.write("data_manifest/demo.toml", &text);
    let data: sspa_config::DataSection = toml::from_str(
        "manifest = \"data_manifest/demo.toml\"\nroot = \"my-data\"\nroot_env = \"SSPA_DATA_TEST_VARIABLE_NOT_SET\"\nshard_size = 50",
    )
    .expect("data section");
    let model = sspa_config::ModelSection { image_size: 64, ..Default::default() };
    let state = tempfile::tempdir().expect("state");
    let out = tempfile::tempdir().expect("out");
    let request = ShardRequest {
        data: &data,
        geometry: sspa_data::Geometry::for_model(&model).expect("geometry"),
        project_root: project.root(),
        state_dir: state.path(),
        threads: Some(2),
    };
    let inputs = sspa_data::stage_inputs(&data, project.root()).expect("inputs");
    assert!(inputs.iter().any(|p| p.ends_with("train-images-idx3-ubyte.gz")), "{inputs:?}");
    let calls = std::sync::Mutex::new(Vec::new());
    let progress = |done: u64, total: u64| calls.lock().expect("lock").push((done, total));
    let summary = sspa_data::shard(&request, out.path(), &progress).expect("stage");
    assert!(summary.demo_built);
    assert!(project.root().join("my-data/fashion-mosaic/train.json").exists());
    let counts: Vec<(String, u64, u64, bool)> =
        summary.splits.iter().map(|s| (s.name.clone(), s.written, s.shards, s.train)).collect();
    assert_eq!(counts, vec![("test".into(), 40, 1, false), ("train".into(), 120, 3, true)]);
    assert!(summary.bad_images.is_empty());
    assert_eq!(calls.lock().expect("lock").last(), Some(&(160, 160)));
    let set = open_shards(out.path()).expect("open");
    set.verify().expect("checksums");
    let test = set.split("test").expect("test");
    assert!(test.records().iter().all(|r| (r.width, r.height) == (64, 64)));
    let train = set.split("train").expect("train");
    assert!(train.records().iter().all(|r| (r.width, r.height) == (56, 56)), "small training images are not enlarged");
    let json = serde_json::to_value(&summary).expect("summary serialises");
    assert_eq!(json["splits"][1]["written"], 120);
    // Second run: the demo set is reused.
    let again = tempfile::tempdir().expect("out");
    assert!(!sspa_data::shard(&request, again.path(), &no_progress).expect("stage").demo_built);
}

/// Writes the solid dataset with `encoding` (and the given quality).
fn write_encoded(fixture: &Fixture, out: &std::path::Path, encoding: sspa_config::ShardEncoding) {
    let options =
        WriteOptions { codec: sspa_data::codec::Codec { encoding, jpeg_quality: 90 }, ..solid_options(fixture) };
    write_shards(&solid_dataset(fixture), &[false, true], &options, out, &no_progress).expect("shards");
}

#[test]
fn png_shards_read_back_as_raw_ones_and_jpeg_shards_closely_in_fewer_bytes() {
    use sspa_config::ShardEncoding;
    let fixture = Fixture::new();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("out")).collect();
    write(&fixture, dirs[0].path());
    write_encoded(&fixture, dirs[1].path(), ShardEncoding::Png);
    write_encoded(&fixture, dirs[2].path(), ShardEncoding::Jpeg);
    let sets: Vec<_> = dirs.iter().map(|d| open_shards(d.path()).expect("open")).collect();
    assert_eq!(sets[1].meta.encoding, ShardEncoding::Png);
    assert_eq!((sets[2].meta.encoding, sets[2].meta.jpeg_quality), (ShardEncoding::Jpeg, Some(90)));
    let meta = std::fs::read_to_string(dirs[0].path().join("shards.json")).expect("meta");
    assert!(!meta.contains("encoding") && !meta.contains("jpeg_quality"), "raw keeps the old file: {meta}");
    let bytes = |set: &sspa_data::ShardSet| set.meta.splits["train"].shards.iter().map(|s| s.bytes).sum::<u64>();
    assert!(
        bytes(&sets[1]) < bytes(&sets[0]) / 4,
        "solid colours compress: {} vs {}",
        bytes(&sets[1]),
        bytes(&sets[0])
    );
    for split_name in ["test", "train"] {
        let splits: Vec<_> = sets.iter().map(|s| s.split(split_name).expect("split")).collect();
        for row in 0..splits[0].len() {
            let raw = splits[0].read_pixels(row).expect("raw");
            assert_eq!(splits[1].read_pixels(row).expect("png"), raw, "{split_name} row {row}: png is lossless");
            let jpeg = splits[2].read_pixels(row).expect("jpeg");
            let worst = jpeg.iter().zip(&raw).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0);
            assert!(worst <= 8, "{split_name} row {row}: jpeg off by {worst}");
        }
        // The loader sees the same batches from png as from raw shards.
        let config = LoaderConfig::train(4, 16, MEAN, STD, 3);
        let order = epoch_order(&splits[0], &config, 0);
        assert_eq!(order, epoch_order(&splits[1], &config, 0));
        let batch = |split| build_batch(split, &config, 0, &order[..4]).expect("batch");
        assert_eq!(batch(&splits[0]), batch(&splits[1]));
    }
    // A damaged encoded image names itself when read, and does not pass as pixels.
    let set = &sets[2];
    let record = set.split("train").expect("split").records()[1].clone();
    let shard = dirs[2].path().join(&set.meta.splits["train"].shards[record.shard as usize].file);
    let mut stored = std::fs::read(&shard).expect("shard");
    stored[record.offset as usize..(record.offset + record.length) as usize].fill(7);
    std::fs::write(&shard, stored).expect("damage");
    let err = set.split("train").expect("split").read_pixels(1).expect_err("damaged");
    let shown = err.to_string();
    assert!(shown.contains(&format!("image `{}`", record.path)) && shown.contains("jpeg decoding"), "{shown}");
}

#[test]
fn rows_that_do_not_tile_their_raw_shard_are_refused_when_opened() {
    let fixture = Fixture::new();
    let out = tempfile::tempdir().expect("out");
    write(&fixture, out.path());
    // One shard file grown by a byte: its last row no longer ends where the shard does.
    let meta_path = out.path().join("shards.json");
    let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta_path).expect("meta")).expect("json");
    let bytes = &mut meta["splits"]["train"]["shards"][0]["bytes"];
    *bytes = serde_json::json!(bytes.as_u64().expect("bytes") + 1);
    std::fs::write(&meta_path, serde_json::to_vec(&meta).expect("json")).expect("write");
    let err = open_shards(out.path()).expect("open").split("train").expect_err("misfit");
    assert!(err.to_string().contains("row for `img/2.png` has"), "{err}");
}
