//! Shard throughput (images/s), bytes per stored image, loader throughput (batches/s) and peak
//! RSS, on the Fashion-MNIST mosaic demo set, as 56-px PNGs or as photo-like JPEGs
//! (`[demo.photo]`). Compare with `scripts/bench_shard_pil.py`, which does the same decode and
//! resize with PIL and multiprocessing, and `scripts/bench_loader_torch.py` (torchvision's
//! `DataLoader` over the same images).
//!
//! ```text
//! cargo bench -p sspa-data --bench shard_throughput -- [all|build|shard|load]
//! ```
//! Environment: `SSPA_BENCH_DIR` (default `target/sspa-bench`), `SSPA_BENCH_TRAIN` (8000),
//! `SSPA_BENCH_TEST` (2000), `SSPA_BENCH_SIZE` (224), `SSPA_BENCH_THREADS` (all cores),
//! `SSPA_BENCH_POLICY` (`eval`: every split resized and centre-cropped to SIZE, as the PIL script
//! does; `manifest`: training splits kept whole, as the stage does), `SSPA_BENCH_BATCHES` (200),
//! `SSPA_BENCH_PHOTO` (e.g. `640x480`: the set as JPEGs of that size, quality 90),
//! `SSPA_BENCH_ENCODING` (`raw`, `png` or `jpeg`: `data.shard_encoding`), `SSPA_BENCH_JPEG_QUALITY`
//! (95), `SSPA_BENCH_WORKERS` (loader threads, 2), `SSPA_BENCH_TORCH_PYTHON` (a Python with torch,
//! torchvision and Pillow: `load` then runs `scripts/bench_loader_torch.py` over the training
//! split's image files right after the loader, with the same size, batch, workers and batch
//! count, and prints `sspa / torchvision`).
//! Each step prints its peak resident memory (VmHWM) so that `build`, `shard` and `load` can be
//! measured apart.
//!
//! Measured (release, 2 shared cores, eval policy, 224 px): `shard` 10,000 images 2,250–2,800
//! images/s, peak RSS 14.6 MiB; 70,000 images (`SSPA_BENCH_TRAIN=60000 SSPA_BENCH_TEST=10000`)
//! 1,700 images/s, peak RSS 15.1 MiB (before streaming the annotations: 16.9 and 35.1 MiB).
//! `load`: 52 batches/s eval, 58 batches/s with random resized crop + flip (32×3×224×224).

use sspa_config::{OnBadImage, ShardEncoding};
use sspa_data::codec::Codec;
use sspa_data::loader::LoaderConfig;
use sspa_data::shard::{WriteOptions, shard_manifest};
use sspa_data::{Geometry, Loader, Manifest, open_shards};
use std::path::{Path, PathBuf};
use std::time::Instant;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

struct Paths {
    data_root: PathBuf,
    shards: PathBuf,
    manifest: Manifest,
}

fn paths() -> Paths {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bench_dir: PathBuf = std::env::var_os("SSPA_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_dir.join("../../target/sspa-bench"));
    let train: u32 = env_or("SSPA_BENCH_TRAIN", 8000);
    let test: u32 = env_or("SSPA_BENCH_TEST", 2000);
    let mut text = std::fs::read_to_string(crate_dir.join("../../data_manifest/demo.toml"))
        .expect("data_manifest/demo.toml")
        .replace("train_images = 8000", &format!("train_images = {train}"))
        .replace("test_images = 2000", &format!("test_images = {test}"));
    let mut name = format!("{train}-{test}");
    if let Ok(photo) = std::env::var("SSPA_BENCH_PHOTO") {
        let (width, height) = photo.split_once('x').expect("SSPA_BENCH_PHOTO is WIDTHxHEIGHT");
        text.push_str(&format!("\n[demo.photo]\nwidth = {width}\nheight = {height}\n"));
        name.push_str(&format!("-{photo}"));
    }
    let manifest = Manifest::parse(&text, Path::new("demo.toml")).expect("demo manifest");
    let data_root = bench_dir.join(format!("data-{name}"));
    let shards = bench_dir.join(format!("shards-{name}"));
    Paths { data_root, shards, manifest }
}

fn build(paths: &Paths) {
    let started = Instant::now();
    let built = sspa_data::demo::ensure_demo(&paths.manifest, &paths.data_root, &|_, _| {}).expect("demo build");
    println!(
        "build: {} in {:.2} s ({}), peak RSS {:.1} MiB",
        paths.data_root.display(),
        started.elapsed().as_secs_f64(),
        if built { "built" } else { "already there" },
        peak_rss_mib()
    );
}

fn codec() -> Codec {
    let encoding = match std::env::var("SSPA_BENCH_ENCODING").as_deref() {
        Err(_) | Ok("raw") => ShardEncoding::Raw,
        Ok("png") => ShardEncoding::Png,
        Ok("jpeg") => ShardEncoding::Jpeg,
        Ok(other) => panic!("SSPA_BENCH_ENCODING `{other}`: use raw, png or jpeg"),
    };
    Codec { encoding, jpeg_quality: env_or("SSPA_BENCH_JPEG_QUALITY", 95) }
}

fn shard(paths: &Paths) {
    let size: u32 = env_or("SSPA_BENCH_SIZE", 224);
    let policy = std::env::var("SSPA_BENCH_POLICY").unwrap_or_else(|_| "eval".into());
    let threads = std::env::var("SSPA_BENCH_THREADS").ok().and_then(|t| t.parse().ok());
    if paths.shards.exists() {
        std::fs::remove_dir_all(&paths.shards).expect("clear old shards");
    }
    std::fs::create_dir_all(&paths.shards).expect("shard dir");
    let options = WriteOptions {
        dataset: "demo".into(),
        geometry: Geometry::for_preset("clip-vit-b32", size).expect("preset"),
        shard_size: 1000,
        on_bad_image: OnBadImage::Fail,
        threads,
        codec: codec(),
        data_root: paths.data_root.clone(),
        failure_report_dir: None,
    };
    let started = Instant::now();
    // Streams the annotations as the shard stage does (checking pass, then reading pass).
    let train = |split: &str| policy == "manifest" && paths.manifest.is_train_split(split);
    let summary = shard_manifest(&paths.manifest, &paths.data_root, &train, &options, &paths.shards, &|_, _| {})
        .expect("shard (run `build` first)");
    let seconds = started.elapsed().as_secs_f64();
    let images: u64 = summary.splits.iter().map(|s| s.listed).sum();
    let bytes: u64 = summary.splits.iter().map(|s| s.bytes).sum();
    let codec = codec();
    let quality =
        if codec.encoding == ShardEncoding::Jpeg { format!(" q{}", codec.jpeg_quality) } else { String::new() };
    println!(
        "shard: {images} images ({policy} policy, {size} px, {}{quality}, {} threads) in {seconds:.2} s = {:.0} images/s, {:.1} MiB written ({:.1} KB/image; sources {:.1} KB/image), peak RSS {:.1} MiB",
        codec.encoding.name(),
        threads.unwrap_or_else(rayon::current_num_threads),
        images as f64 / seconds,
        bytes as f64 / (1 << 20) as f64,
        bytes as f64 / images as f64 / 1e3,
        source_bytes(&paths.data_root) as f64 / images as f64 / 1e3,
        peak_rss_mib()
    );
}

/// Bytes of the images of the built set (its `train` and `test` directories).
fn source_bytes(data_root: &Path) -> u64 {
    ["fashion-mosaic/train", "fashion-mosaic/test"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(data_root.join(dir)).into_iter().flatten())
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .map(|meta| meta.len())
        .sum()
}

fn load(paths: &Paths) {
    let size: u32 = env_or("SSPA_BENCH_SIZE", 224);
    let workers: usize = env_or("SSPA_BENCH_WORKERS", 2);
    let limit: usize = env_or("SSPA_BENCH_BATCHES", 200);
    let set = open_shards(&paths.shards).expect("open shards (run `shard` first)");
    let (mean, std) = sspa_data::mean_std("clip-vit-b32").expect("preset");
    let mut trained_rate = f64::NAN;
    for (split, augment) in [("test", false), ("train", true)] {
        let reader = set.split(split).expect("split");
        let config = if augment {
            LoaderConfig { workers, prefetch: 4, ..LoaderConfig::train(32, size, mean, std, 0) }
        } else {
            LoaderConfig { workers, prefetch: 4, ..LoaderConfig::eval(32, size, mean, std) }
        };
        let started = Instant::now();
        let mut batches = 0usize;
        let mut checksum = 0f64;
        for batch in Loader::new(&reader, &config, 0).expect("loader").take(limit) {
            let batch = batch.expect("batch");
            checksum += f64::from(batch.images[batch.images.len() / 2]);
            batches += 1;
        }
        let seconds = started.elapsed().as_secs_f64();
        if augment {
            trained_rate = (batches * 32) as f64 / seconds;
        }
        println!(
            "load {split} ({}, {} shards, {workers} workers): {batches} batches of 32×3×{size}×{size} in {seconds:.2} s = {:.1} batches/s ({:.0} images/s), peak RSS {:.1} MiB [{checksum:.3}]",
            if augment { "random resized crop + flip" } else { "eval" },
            set.meta.encoding.name(),
            batches as f64 / seconds,
            (batches * 32) as f64 / seconds,
            peak_rss_mib()
        );
    }
    if let Ok(python) = std::env::var("SSPA_BENCH_TORCH_PYTHON") {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench_loader_torch.py");
        let output = std::process::Command::new(&python)
            .arg(script)
            .arg(paths.data_root.join("fashion-mosaic"))
            .args(["--size", &size.to_string(), "--workers", &workers.to_string(), "--batches", &limit.to_string()])
            .output()
            .expect("run the torchvision loader script");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{python}: {text}{}", String::from_utf8_lossy(&output.stderr));
        print!("{text}");
        let torch_rate: f64 = text
            .split(" images/s)")
            .next()
            .and_then(|head| head.rsplit('(').next())
            .and_then(|number| number.parse().ok())
            .expect("images/s in the script's output");
        println!("sspa / torchvision (train loader): {:.2}", trained_rate / torch_rate);
    }
}

fn main() {
    let step = std::env::args().skip(1).find(|a| !a.starts_with("--")).unwrap_or_else(|| "all".into());
    let paths = paths();
    match step.as_str() {
        "build" => build(&paths),
        "shard" => shard(&paths),
        "load" => load(&paths),
        "all" => {
            build(&paths);
            shard(&paths);
            load(&paths);
        }
        other => {
            eprintln!("unknown step `{other}`: use all, build, shard or load");
            std::process::exit(2);
        }
    }
}
