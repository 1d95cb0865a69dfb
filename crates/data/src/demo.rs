//! The offline demo datasets: Fashion-MNIST (Debian `dataset-fashion-mnist`, IDX `.gz` files)
//! turned into multi-label images, in one of two layouts (`[demo] layout`):
//! - `mosaic` (default): 2×2 mosaics. Each 28×28 tile is a real Fashion-MNIST image or blank (all
//!   zero), at least one tile is filled, so a mosaic has 1–4 labels: the classes of its filled
//!   tiles.
//! - `scenes` ([`crate::scenes`]): 1–5 items of random size and position, overlapping, over faint
//!   clutter; the labels are the classes of the items.
//!
//! The set is written under `<data root>/<demo.dir>` (default
//! `${SSPA_DATA_ROOT:-<project>/data}/fashion-mosaic`) as PNG files plus a JSON-list annotation
//! file per split (`train.json`, `test.json`), so the shard stage reads it through the ordinary
//! importer. Image `i` of a split depends only on `(seed, split, i)`: the build is deterministic
//! and parallel. A `BUILD.json` records the parameters (the layout included); a different one
//! causes a rebuild. The directory is built beside its final place and renamed into it.

use crate::error::DataError;
use crate::manifest::{DemoSection, Layout, Manifest, PhotoSection};
use crate::scenes::{self, ScenePlan};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sspa_rng::{SplitMix64, stream_id};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Fashion-MNIST class names in label-index order.
pub const FASHION_CLASSES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// Side of one Fashion-MNIST image.
pub const TILE: usize = 28;

const BUILD_FILE: &str = "BUILD.json";
const BUILD_VERSION: u32 = 1;

/// Images and labels of one IDX split.
#[derive(Debug, Clone)]
pub struct IdxImages {
    pub rows: usize,
    pub cols: usize,
    /// `count × rows × cols` bytes.
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
}

impl IdxImages {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn image(&self, index: usize) -> &[u8] {
        let size = self.rows * self.cols;
        &self.pixels[index * size..(index + 1) * size]
    }
}

/// The IDX files a demo build reads.
pub fn source_files(demo: &DemoSection) -> Vec<PathBuf> {
    ["train", "t10k"]
        .iter()
        .flat_map(|prefix| {
            [
                demo.source_dir.join(format!("{prefix}-images-idx3-ubyte.gz")),
                demo.source_dir.join(format!("{prefix}-labels-idx1-ubyte.gz")),
            ]
        })
        .collect()
}

fn read_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::Demo {
        message: format!(
            "cannot open `{}` ({e}); install it with `apt-get install -y dataset-fashion-mnist`",
            path.display()
        ),
    })?;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::io::BufReader::new(file))
        .read_to_end(&mut bytes)
        .map_err(|e| DataError::read(path, e))?;
    Ok(bytes)
}

fn be_u32(bytes: &[u8], at: usize, path: &Path) -> Result<usize, DataError> {
    bytes
        .get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(|b| u32::from_be_bytes(b) as usize)
        .ok_or_else(|| DataError::annotation(path, "IDX header is truncated"))
}

/// Reads an IDX image file (magic 2051) and its label file (magic 2049).
pub fn read_idx(images: &Path, labels: &Path) -> Result<IdxImages, DataError> {
    let image_bytes = read_gz(images)?;
    let label_bytes = read_gz(labels)?;
    if be_u32(&image_bytes, 0, images)? != 0x0803 {
        return Err(DataError::annotation(images, "not an IDX image file (magic 2051)"));
    }
    if be_u32(&label_bytes, 0, labels)? != 0x0801 {
        return Err(DataError::annotation(labels, "not an IDX label file (magic 2049)"));
    }
    let count = be_u32(&image_bytes, 4, images)?;
    let rows = be_u32(&image_bytes, 8, images)?;
    let cols = be_u32(&image_bytes, 12, images)?;
    let label_count = be_u32(&label_bytes, 4, labels)?;
    if label_count != count {
        return Err(DataError::annotation(labels, format!("{label_count} labels for {count} images")));
    }
    let pixels = image_bytes
        .get(16..16 + count * rows * cols)
        .ok_or_else(|| DataError::annotation(images, "fewer pixels than the header says"))?
        .to_vec();
    let label_values = label_bytes
        .get(8..8 + count)
        .ok_or_else(|| DataError::annotation(labels, "fewer labels than the header says"))?
        .to_vec();
    if let Some(bad) = label_values.iter().find(|&&l| usize::from(l) >= FASHION_CLASSES.len()) {
        return Err(DataError::annotation(labels, format!("label `{bad}` is not a Fashion-MNIST class")));
    }
    if rows != TILE || cols != TILE {
        return Err(DataError::annotation(images, format!("images are {rows}×{cols}, expected 28×28")));
    }
    Ok(IdxImages { rows, cols, pixels, labels: label_values })
}

/// Which source image fills each tile (row-major: top-left, top-right, bottom-left, bottom-right).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MosaicPlan {
    pub tiles: [Option<usize>; 4],
}

/// The plan of mosaic `index` of `split`: deterministic in `(seed, split, index)`.
pub fn plan(demo: &DemoSection, split: &str, index: u64, source_len: usize) -> MosaicPlan {
    let mut rng = SplitMix64::for_item(demo.seed, stream_id(split), index);
    let mut tiles = [None; 4];
    for tile in &mut tiles {
        if rng.unit() >= demo.blank_probability {
            *tile = Some(rng.below(source_len as u64) as usize);
        }
    }
    if tiles.iter().all(Option::is_none) {
        let which = rng.below(4) as usize;
        tiles[which] = Some(rng.below(source_len as u64) as usize);
    }
    MosaicPlan { tiles }
}

/// Renders a plan: `56·scale` square, grey.
pub fn render(plan: &MosaicPlan, source: &IdxImages, scale: usize) -> image::GrayImage {
    let side = 2 * TILE * scale;
    let mut out = image::GrayImage::new(side as u32, side as u32);
    for (t, tile) in plan.tiles.iter().enumerate() {
        let Some(index) = tile else { continue };
        let pixels = source.image(*index);
        let (ty, tx) = (t / 2, t % 2);
        for y in 0..TILE * scale {
            for x in 0..TILE * scale {
                let value = pixels[(y / scale) * TILE + x / scale];
                out.put_pixel((tx * TILE * scale + x) as u32, (ty * TILE * scale + y) as u32, image::Luma([value]));
            }
        }
    }
    out
}

/// Class indices of a plan's filled tiles (with repeats, in tile order).
pub fn tile_classes(plan: &MosaicPlan, source: &IdxImages) -> Vec<usize> {
    plan.tiles.iter().flatten().map(|&i| usize::from(source.labels[i])).collect()
}

/// Sorted, deduplicated names of the `classes` that are among `annotated`.
pub fn class_labels(classes: impl IntoIterator<Item = usize>, annotated: &[bool; 10]) -> Vec<String> {
    let mut classes: Vec<usize> = classes.into_iter().filter(|&c| annotated[c]).collect();
    classes.sort_unstable();
    classes.dedup();
    classes.into_iter().map(|c| FASHION_CLASSES[c].to_string()).collect()
}

/// The plan of one demo image, in the manifest's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DemoPlan {
    /// A 2×2 mosaic.
    Mosaic(MosaicPlan),
    /// A scene.
    Scene(ScenePlan),
}

impl DemoPlan {
    /// The plan of image `index` of `split`: deterministic in `(seed, split, index)`.
    pub fn new(demo: &DemoSection, split: &str, index: u64, source_len: usize) -> Self {
        match demo.layout {
            Layout::Mosaic => DemoPlan::Mosaic(plan(demo, split, index, source_len)),
            Layout::Scenes => DemoPlan::Scene(scenes::plan(demo, split, index, source_len)),
        }
    }

    /// Renders the image.
    pub fn render(&self, source: &IdxImages, demo: &DemoSection) -> image::GrayImage {
        match self {
            DemoPlan::Mosaic(plan) => render(plan, source, demo.scale as usize),
            DemoPlan::Scene(plan) => scenes::render(plan, source),
        }
    }

    /// Class indices of the items drawn (with repeats).
    pub fn classes(&self, source: &IdxImages) -> Vec<usize> {
        match self {
            DemoPlan::Mosaic(plan) => tile_classes(plan, source),
            DemoPlan::Scene(plan) => scenes::classes(plan, source),
        }
    }
}

/// The Fashion-MNIST classes the manifest's inline `[labels] names` list (all ten without one):
/// the mosaics are drawn from every class, and only these are annotated, so a label can join the
/// set later (its images were there all along, unlabelled).
pub fn annotated_classes(manifest: &Manifest) -> Result<Vec<String>, DataError> {
    let Some(names) = &manifest.labels.names else {
        return Ok(FASHION_CLASSES.iter().map(|c| (*c).to_owned()).collect());
    };
    if let Some(unknown) = names.iter().find(|n| !FASHION_CLASSES.contains(&n.as_str())) {
        return Err(DataError::Demo {
            message: format!(
                "`{}`: label `{unknown}` is not a Fashion-MNIST class ({})",
                manifest.file.display(),
                FASHION_CLASSES.join(", ")
            ),
        });
    }
    Ok(names.clone())
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct BuildRecord {
    version: u32,
    demo: DemoSection,
    /// Annotated classes, in the manifest's order.
    labels: Vec<String>,
}

/// The directory the demo set of `manifest` lives in, when the manifest has a `[demo]` section.
pub fn demo_dir(manifest: &Manifest, data_root: &Path) -> Option<PathBuf> {
    manifest.demo.as_ref().map(|demo| data_root.join(&demo.dir))
}

/// Builds the demo set if `manifest` has a `[demo]` section and the data root does not already
/// hold a build with the same parameters. Returns whether it built. `progress(done, total)`.
pub fn ensure_demo(
    manifest: &Manifest,
    data_root: &Path,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<bool, DataError> {
    let Some(demo) = &manifest.demo else { return Ok(false) };
    let target = data_root.join(&demo.dir);
    let labels = annotated_classes(manifest)?;
    let record = BuildRecord { version: BUILD_VERSION, demo: demo.clone(), labels: labels.clone() };
    let existing = std::fs::read(target.join(BUILD_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<BuildRecord>(&bytes).ok());
    if existing.as_ref() == Some(&record) {
        return Ok(false);
    }
    build_demo(demo, &labels, &target, progress)?;
    Ok(true)
}

/// Builds the set into `target` (replaced atomically by a rename), annotating the classes
/// in `labels` (Fashion-MNIST names, in the order the annotation file lists them).
pub fn build_demo(
    demo: &DemoSection,
    labels: &[String],
    target: &Path,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<(), DataError> {
    let started = std::time::Instant::now();
    let parent = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| DataError::write(parent, e))?;
    let staging = tempfile::Builder::new()
        .prefix(".fashion-demo-build-")
        .tempdir_in(parent)
        .map_err(|e| DataError::write(parent, e))?;
    let files = source_files(demo);
    let train = read_idx(&files[0], &files[1])?;
    let test = read_idx(&files[2], &files[3])?;
    if train.is_empty() || test.is_empty() {
        return Err(DataError::Demo { message: "the Fashion-MNIST IDX files hold no images".into() });
    }
    let mut annotated = [false; 10];
    for label in labels {
        let class = FASHION_CLASSES
            .iter()
            .position(|c| c == label)
            .ok_or_else(|| DataError::Demo { message: format!("label `{label}` is not a Fashion-MNIST class") })?;
        annotated[class] = true;
    }
    let total = u64::from(demo.train_images) + u64::from(demo.test_images);
    let done = AtomicU64::new(0);
    for (split, source, count) in [("train", &train, demo.train_images), ("test", &test, demo.test_images)] {
        let dir = staging.path().join(split);
        std::fs::create_dir_all(&dir).map_err(|e| DataError::write(&dir, e))?;
        // Images are made in parallel a chunk at a time and their annotation lines appended in
        // order, so memory does not grow with the number of images.
        let annotation_path = staging.path().join(format!("{split}.json"));
        let mut annotations = JsonLinesWriter::create(&annotation_path, count, labels)?;
        for chunk_start in (0..u64::from(count)).step_by(DEMO_CHUNK) {
            let chunk_end = (chunk_start + DEMO_CHUNK as u64).min(u64::from(count));
            let entries = (chunk_start..chunk_end)
                .into_par_iter()
                .map(|index| {
                    let plan = DemoPlan::new(demo, split, index, source.len());
                    let image = plan.render(source, demo);
                    let extension = if demo.photo.is_some() { "jpg" } else { "png" };
                    let relative = format!("{split}/{index:06}.{extension}");
                    let path = staging.path().join(&relative);
                    let saved = match &demo.photo {
                        None => image.save(&path),
                        Some(look) => save_photo(&image, look, demo.seed, split, index, &path),
                    };
                    saved.map_err(|source| DataError::Encode { path: path.clone(), source })?;
                    let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if finished.is_multiple_of(256) || finished == total {
                        progress(finished, total);
                    }
                    let classes = if split == "train" && demo.shuffled_train_labels {
                        DemoPlan::new(demo, split, (index + 1) % u64::from(count), source.len()).classes(source)
                    } else {
                        plan.classes(source)
                    };
                    Ok(serde_json::json!([relative, class_labels(classes, &annotated)]))
                })
                .collect::<Result<Vec<_>, DataError>>()?;
            for entry in &entries {
                annotations.push(entry)?;
            }
        }
        annotations.finish()?;
    }
    let record = BuildRecord { version: BUILD_VERSION, demo: demo.clone(), labels: labels.to_vec() };
    let record_path = staging.path().join(BUILD_FILE);
    let text = serde_json::to_vec_pretty(&record).map_err(|e| DataError::Demo { message: e.to_string() })?;
    std::fs::write(&record_path, text).map_err(|e| DataError::write(&record_path, e))?;
    // A rebuilt set replaces the old one without a moment where neither is there.
    let staging = staging.keep();
    sspa_fsio::publish_dir(&staging, target).map_err(|e| DataError::write(target, e))?;
    let layout = match demo.layout {
        Layout::Mosaic => "mosaic",
        Layout::Scenes => "scenes",
    };
    tracing::info!(dir = %target.display(), images = total, layout, seconds = started.elapsed().as_secs_f64(), "built the Fashion-MNIST demo set");
    Ok(())
}

/// Saves `grey` as a photo-like colour JPEG (`[demo.photo]`): enlarged bilinearly to the
/// section's size, the garment tinted and the blank area filled with a gradient between two
/// colours, uniform grain of ±`grain` on every channel; all of it drawn from `(seed, split,
/// index)`. The grain is what gives the file the entropy (and so the size and decode cost) of a
/// camera image.
fn save_photo(
    grey: &image::GrayImage,
    look: &PhotoSection,
    seed: u64,
    split: &str,
    index: u64,
    path: &Path,
) -> Result<(), image::ImageError> {
    use fast_image_resize as fir;
    let (width, height) = (look.width, look.height);
    let parameter = |e: &dyn std::fmt::Display| {
        image::ImageError::Parameter(image::error::ParameterError::from_kind(
            image::error::ParameterErrorKind::Generic(e.to_string()),
        ))
    };
    let source = fir::images::ImageRef::new(grey.width(), grey.height(), grey.as_raw(), fir::PixelType::U8)
        .map_err(|e| parameter(&e))?;
    let mut large = fir::images::Image::new(width, height, fir::PixelType::U8);
    fir::Resizer::new()
        .resize(
            &source,
            &mut large,
            &fir::ResizeOptions::new().resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear)),
        )
        .map_err(|e| parameter(&e))?;
    let mut rng = SplitMix64::for_item(seed ^ 0x9407_0C01, stream_id(split), index);
    let mut colour =
        |low: f64, high: f64| -> [f32; 3] { std::array::from_fn(|_| (low + (high - low) * rng.unit()) as f32) };
    let (tint, top, bottom) = (colour(0.45, 1.0), colour(10.0, 140.0), colour(10.0, 140.0));
    let grain = i32::from(look.grain);
    let mut noise = 0u64;
    let mut pixels = Vec::with_capacity(width as usize * height as usize * 3);
    for (y, row) in large.buffer().chunks_exact(width as usize).enumerate() {
        let t = y as f32 / (height.max(2) - 1) as f32;
        let backdrop: [f32; 3] = std::array::from_fn(|c| top[c] * (1.0 - t) + bottom[c] * t);
        for &value in row {
            let v = f32::from(value) / 255.0;
            for c in 0..3 {
                if noise < 1 << 8 {
                    noise = rng.next_u64() | 1 << 63;
                }
                let jitter = (noise & 0xFF) as i32 % (2 * grain + 1) - grain;
                noise >>= 8;
                let clean = v * 255.0 * tint[c] + (1.0 - v) * backdrop[c];
                pixels.push((clean.round() as i32 + jitter).clamp(0, 255) as u8);
            }
        }
    }
    // The same encoder as JPEG shards.
    let codec = crate::codec::Codec { encoding: sspa_config::ShardEncoding::Jpeg, jpeg_quality: look.quality };
    let bytes = codec.encode(crate::preprocess::RgbPixels { width, height, pixels }).map_err(|e| parameter(&e))?;
    std::fs::write(path, bytes).map_err(image::ImageError::IoError)
}

/// Images made in parallel before their annotation lines are written.
const DEMO_CHUNK: usize = 4096;

/// Writes a JSON-list annotation with one image entry a line, so errors can name lines.
struct JsonLinesWriter {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    remaining: u32,
}

impl JsonLinesWriter {
    fn create(path: &Path, count: u32, labels: &[String]) -> Result<Self, DataError> {
        let file = std::fs::File::create(path).map_err(|e| DataError::write(path, e))?;
        let mut writer = Self { path: path.to_path_buf(), file: std::io::BufWriter::new(file), remaining: count };
        let classes = serde_json::to_string(labels).map_err(|e| DataError::Demo { message: e.to_string() })?;
        writer.write(&format!("{{\n\"classes\": {classes},\n\"images\": [\n"))?;
        Ok(writer)
    }

    fn write(&mut self, text: &str) -> Result<(), DataError> {
        use std::io::Write;
        self.file.write_all(text.as_bytes()).map_err(|e| DataError::write(&self.path, e))
    }

    fn push(&mut self, entry: &serde_json::Value) -> Result<(), DataError> {
        let text = serde_json::to_string(entry).map_err(|e| DataError::Demo { message: e.to_string() })?;
        self.remaining = self.remaining.saturating_sub(1);
        self.write(&text)?;
        self.write(if self.remaining > 0 { ",\n" } else { "\n" })
    }

    fn finish(mut self) -> Result<(), DataError> {
        self.write("]\n}\n")?;
        let file = self.file.into_inner().map_err(|e| DataError::write(&self.path, e.into_error()))?;
        file.sync_all().map_err(|e| DataError::write(&self.path, e))
    }
}
