//! The shard stage: decode every image in parallel, apply the preset's geometry and store its
//! pixels in shard files of about `data.shard_size` images, as uint8 RGB or encoded
//! (`data.shard_encoding`, see [`crate::codec`]).
//!
//! Layout of the output directory:
//! ```text
//! shards.json                 ShardsMeta: labels, geometry, per split its shards and BLAKE3s
//! index.parquet               one row per stored image: split, shard, offset, width, height,
//!                             path, targets (one row group per shard)
//! bad_images.json             every image left out (or that failed the stage) and why
//! <split>/shard-00000.bin     the stored images back to back, no header: row-major RGB pixels
//!                             (`raw`), or one PNG or JPEG file each (`encoding` in shards.json)
//! ```
//! An image's bytes run from its `offset` to the next row's offset in the same shard, or to the
//! shard's end; for `raw` that is `width · height · 3`.
//! Memory does not grow with the dataset: annotations are streamed ([`SplitSource`]: a checking
//! pass, then a reading pass), images go through in chunks of a few per thread, and what is held
//! is the chunk, one open shard file with its pending index rows (one Parquet row group per
//! shard), one sorted run of path hashes while checking for duplicates, and the list of bad
//! images. Every file is written under a temporary name and renamed when complete.

use crate::codec::Codec;
use crate::demo;
use crate::error::DataError;
use crate::import::{self, Dataset, ImageEntry, Split, SplitCheck, SplitSource};
use crate::manifest::{Manifest, data_root};
use crate::preprocess::{self, BadImageReason, Geometry};
use arrow_array::builder::{Int8Builder, ListBuilder};
use arrow_array::{ArrayRef, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sspa_config::{DataSection, OnBadImage, ShardEncoding};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Version of the shard layout, recorded in `shards.json`.
pub const SHARD_FORMAT_VERSION: u32 = 1;
/// Name of the metadata file in a shard directory.
pub const META_FILE: &str = "shards.json";
/// Name of the Parquet index.
pub const INDEX_FILE: &str = "index.parquet";
/// Name of the bad-image report.
pub const BAD_IMAGES_FILE: &str = "bad_images.json";

/// What the shard stage reads.
#[derive(Debug, Clone, Copy)]
pub struct ShardRequest<'a> {
    pub data: &'a DataSection,
    /// The preset's resize/crop policy at `model.image_size` ([`Geometry::for_model`]).
    pub geometry: Geometry,
    /// Directory config paths (e.g. `data.manifest`) are relative to.
    pub project_root: &'a Path,
    /// Persistent scratch directory; on failure the full bad-image report is left here.
    pub state_dir: &'a Path,
    /// Decode threads; `None` uses rayon's default (one per core).
    pub threads: Option<usize>,
}

/// `shards.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardsMeta {
    pub version: u32,
    pub dataset: String,
    pub labels: Vec<String>,
    pub geometry: Geometry,
    /// Always 3 (RGB).
    pub channels: u32,
    /// How each image is stored; `raw` (left out of the file) when absent.
    #[serde(default, skip_serializing_if = "ShardEncoding::is_raw")]
    pub encoding: ShardEncoding,
    /// The JPEG quality the images were encoded at (`jpeg` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jpeg_quality: Option<u8>,
    pub splits: BTreeMap<String, SplitMeta>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SplitMeta {
    /// Stored for training (whole frame) or for evaluation (final crop).
    pub train: bool,
    pub images: u64,
    pub shards: Vec<ShardMeta>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardMeta {
    /// Relative to the shard directory.
    pub file: String,
    pub images: u64,
    pub bytes: u64,
    pub blake3: String,
}

/// An image that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadImage {
    pub split: String,
    pub path: PathBuf,
    pub reason: BadImageReason,
}

/// What the stage did, for the run record.
#[derive(Debug, Clone, Serialize)]
pub struct ShardSummary {
    pub dataset: String,
    pub labels: Vec<String>,
    /// Whether the demo set was (re)built by this call.
    pub demo_built: bool,
    pub splits: Vec<SplitSummary>,
    pub bad_images: Vec<BadImage>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SplitSummary {
    pub name: String,
    pub train: bool,
    /// Images listed in the annotations.
    pub listed: u64,
    /// Images stored.
    pub written: u64,
    /// Images left out (`on_bad_image = "skip"`).
    pub skipped: u64,
    pub shards: u64,
    pub bytes: u64,
    /// Labels with no positive image in this split (warned about at import).
    pub labels_without_positives: Vec<String>,
}

/// The loaded manifest and the data root for a `[data]` section, with the demo set built when
/// the manifest is the demo one and the data root lacks a current build.
pub struct Prepared {
    pub manifest: Manifest,
    pub data_root: PathBuf,
    pub demo_built: bool,
}

/// Loads the manifest and builds the demo set if needed.
pub fn prepare(
    data: &DataSection,
    project_root: &Path,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<Prepared, DataError> {
    let manifest = Manifest::load(&project_root.join(&data.manifest))?;
    let root = data_root(data, project_root);
    let demo_built = demo::ensure_demo(&manifest, &root, progress)?;
    Ok(Prepared { manifest, data_root: root, demo_built })
}

/// Files whose content the shard stage depends on besides the images: the manifest, the label
/// file and the annotation files (for the demo, the IDX files). For the runner's input hashes.
pub fn stage_inputs(data: &DataSection, project_root: &Path) -> Result<Vec<PathBuf>, DataError> {
    let manifest_path = project_root.join(&data.manifest);
    let manifest = Manifest::load(&manifest_path)?;
    let mut files = vec![manifest_path];
    files.extend(manifest.annotation_files(&data_root(data, project_root))?);
    Ok(files)
}

/// The shard stage: prepare, import every split, write shards into `out_dir`.
pub fn shard(
    request: &ShardRequest<'_>,
    out_dir: &Path,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<ShardSummary, DataError> {
    let prepared = prepare(request.data, request.project_root, progress)?;
    let options = WriteOptions {
        dataset: prepared.manifest.name.clone(),
        geometry: request.geometry,
        shard_size: request.data.shard_size.max(1) as usize,
        on_bad_image: request.data.on_bad_image,
        threads: request.threads,
        codec: Codec::for_data(request.data, request.geometry.image_size),
        data_root: prepared.data_root.clone(),
        failure_report_dir: Some(request.state_dir.to_path_buf()),
    };
    let manifest = &prepared.manifest;
    let mut summary = shard_manifest(
        manifest,
        &prepared.data_root,
        &|split| manifest.is_train_split(split),
        &options,
        out_dir,
        progress,
    )?;
    summary.demo_built = prepared.demo_built;
    Ok(summary)
}

/// Streams every split of `manifest` into shards: all splits are checked first (so bad
/// annotations fail before any image is decoded; with `on_bad_image = "fail"` missing image
/// files too, all in one error per annotation file), then read again and written.
/// `train(split)` says whether a split is stored for training.
pub fn shard_manifest(
    manifest: &Manifest,
    data_root: &Path,
    train: &dyn Fn(&str) -> bool,
    options: &WriteOptions,
    out_dir: &Path,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<ShardSummary, DataError> {
    let labels = import::resolve_labels(manifest, data_root)?;
    let sources = manifest
        .splits
        .keys()
        .map(|name| {
            let mut source = SplitSource::open(manifest, data_root, name, &labels)?;
            // Failing on bad images anyway: a missing file fails now, with the other
            // annotation problems, before any image is decoded.
            if options.on_bad_image == OnBadImage::Fail {
                source = source.checking_image_files();
            }
            let check = source.check()?;
            Ok(CheckedSplit { source, check })
        })
        .collect::<Result<Vec<_>, DataError>>()?;
    let splits: Vec<&dyn SplitEntries> = sources.iter().map(|s| s as &dyn SplitEntries).collect();
    let train: Vec<bool> = sources.iter().map(|s| train(&s.source.name)).collect();
    write_split_entries(&labels, &splits, &train, options, out_dir, progress)
}

/// A split to shard: its name, its number of images and its entries, in order.
pub trait SplitEntries: Sync {
    fn name(&self) -> &str;
    fn image_count(&self) -> u64;
    fn labels_without_positives(&self) -> &[String];
    /// Hands on every entry in order; stops at the first error `each` returns.
    fn for_each_entry(&self, each: &mut dyn FnMut(ImageEntry) -> Result<(), DataError>) -> Result<(), DataError>;
}

impl SplitEntries for Split {
    fn name(&self) -> &str {
        &self.name
    }
    fn image_count(&self) -> u64 {
        self.images.len() as u64
    }
    fn labels_without_positives(&self) -> &[String] {
        &self.labels_without_positives
    }
    fn for_each_entry(&self, each: &mut dyn FnMut(ImageEntry) -> Result<(), DataError>) -> Result<(), DataError> {
        self.images.iter().try_for_each(|entry| each(entry.clone()))
    }
}

/// A streamed split after its checking pass.
pub struct CheckedSplit<'a> {
    pub source: SplitSource<'a>,
    pub check: SplitCheck,
}

impl SplitEntries for CheckedSplit<'_> {
    fn name(&self) -> &str {
        &self.source.name
    }
    fn image_count(&self) -> u64 {
        self.check.images
    }
    fn labels_without_positives(&self) -> &[String] {
        &self.check.labels_without_positives
    }
    fn for_each_entry(&self, each: &mut dyn FnMut(ImageEntry) -> Result<(), DataError>) -> Result<(), DataError> {
        self.source.for_each(each)
    }
}

/// Settings of [`write_shards`].
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub dataset: String,
    pub geometry: Geometry,
    pub shard_size: usize,
    pub on_bad_image: OnBadImage,
    pub threads: Option<usize>,
    /// How each image is stored.
    pub codec: Codec,
    /// Paths in the index are written relative to this directory when under it.
    pub data_root: PathBuf,
    /// Where the full bad-image report goes when the stage fails on bad images.
    pub failure_report_dir: Option<PathBuf>,
}

/// Writes shards of an imported (in-memory) dataset. `train[i]` says whether split `i` is a
/// training split.
pub fn write_shards(
    dataset: &Dataset,
    train: &[bool],
    options: &WriteOptions,
    out_dir: &Path,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<ShardSummary, DataError> {
    let splits: Vec<&dyn SplitEntries> = dataset.splits.iter().map(|s| s as &dyn SplitEntries).collect();
    write_split_entries(&dataset.labels, &splits, train, options, out_dir, progress)
}

/// Writes shards of `splits` (in memory or streamed). `train[i]` says whether split `i` is a
/// training split.
pub fn write_split_entries(
    labels: &[String],
    splits: &[&dyn SplitEntries],
    train: &[bool],
    options: &WriteOptions,
    out_dir: &Path,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<ShardSummary, DataError> {
    let started = std::time::Instant::now();
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(threads) = options.threads {
        builder = builder.num_threads(threads.max(1));
    }
    let pool = builder.build().map_err(|e| DataError::Shards { path: out_dir.into(), message: e.to_string() })?;
    let total: u64 = splits.iter().map(|s| s.image_count()).sum();
    let mut done = 0u64;
    let mut bad = Vec::new();
    let mut metas = BTreeMap::new();
    let mut summaries = Vec::new();
    let mut report_bytes = Vec::new();
    // The index is published only when every split is written and no bad image fails the run.
    sspa_table::write_with(&out_dir.join(INDEX_FILE), index_schema(), sspa_table::Layout::default(), |index_writer| {
        for (&split, &is_train) in splits.iter().zip(train.iter().chain(std::iter::repeat(&false))) {
            let (meta, summary) = pool.install(|| {
                write_split(split, is_train, labels.len(), options, out_dir, &mut *index_writer, &mut bad, &mut |n| {
                    done += n;
                    progress(done, total);
                })
            })?;
            metas.insert(split.name().to_string(), meta);
            summaries.push(summary);
        }
        report_bytes = serde_json::to_vec_pretty(&bad)
            .map_err(|e| DataError::Shards { path: out_dir.into(), message: e.to_string() })?;
        if !bad.is_empty() && options.on_bad_image == OnBadImage::Fail {
            let mut report_note = String::new();
            if let Some(dir) = &options.failure_report_dir {
                let path = dir.join(BAD_IMAGES_FILE);
                if std::fs::create_dir_all(dir).is_ok() && write_atomic(&path, &report_bytes).is_ok() {
                    report_note = format!("; the full list is in `{}`", path.display());
                }
            }
            let mut listing: Vec<String> =
                bad.iter().take(20).map(|b| format!("`{}` ({}): {}", b.path.display(), b.split, b.reason)).collect();
            if bad.len() > 20 {
                listing.push(format!("… and {} more", bad.len() - 20));
            }
            return Err(DataError::BadImages {
                count: bad.len(),
                listing: format!(
                    "{}{report_note} (set `data.on_bad_image = \"skip\"` to leave them out)",
                    listing.join("; ")
                ),
            });
        }
        Ok(())
    })?;
    write_atomic(&out_dir.join(BAD_IMAGES_FILE), &report_bytes)?;
    let meta = ShardsMeta {
        version: SHARD_FORMAT_VERSION,
        dataset: options.dataset.clone(),
        labels: labels.to_vec(),
        geometry: options.geometry,
        channels: 3,
        encoding: options.codec.encoding,
        jpeg_quality: (options.codec.encoding == ShardEncoding::Jpeg).then_some(options.codec.jpeg_quality),
        splits: metas,
    };
    let meta_bytes = serde_json::to_vec_pretty(&meta)
        .map_err(|e| DataError::Shards { path: out_dir.into(), message: e.to_string() })?;
    write_atomic(&out_dir.join(META_FILE), &meta_bytes)?;
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(images = total, skipped = bad.len(), seconds, rate = total as f64 / seconds.max(1e-9), "sharded");
    Ok(ShardSummary {
        dataset: options.dataset.clone(),
        labels: labels.to_vec(),
        demo_built: false,
        splits: summaries,
        bad_images: bad,
    })
}

#[allow(clippy::too_many_arguments)]
fn write_split(
    split: &dyn SplitEntries,
    train: bool,
    label_count: usize,
    options: &WriteOptions,
    out_dir: &Path,
    index: &mut sspa_table::TableWriter<'_>,
    bad: &mut Vec<BadImage>,
    advance: &mut dyn FnMut(u64),
) -> Result<(SplitMeta, SplitSummary), DataError> {
    let name = split.name();
    let dir = out_dir.join(name);
    std::fs::create_dir_all(&dir).map_err(|e| DataError::write(&dir, e))?;
    let mut writer = SplitWriter::new(&dir, name, label_count, options.shard_size, index);
    // Enough images per chunk to keep every thread busy, few enough to bound memory.
    let chunk_size = (rayon::current_num_threads() * 8).max(16);
    let bad_before = bad.len();
    let mut listed = 0u64;
    let mut chunk: Vec<ImageEntry> = Vec::with_capacity(chunk_size);
    split.for_each_entry(&mut |entry| {
        listed += 1;
        chunk.push(entry);
        if chunk.len() >= chunk_size {
            write_chunk(&chunk, name, train, options, &mut writer, bad)?;
            advance(chunk.len() as u64);
            chunk.clear();
        }
        Ok(())
    })?;
    write_chunk(&chunk, name, train, options, &mut writer, bad)?;
    advance(chunk.len() as u64);
    drop(chunk);
    let skipped = (bad.len() - bad_before) as u64;
    let (shards, written) = writer.finish()?;
    if written == 0 && options.on_bad_image == OnBadImage::Skip {
        return Err(DataError::Shards { path: dir, message: format!("split `{name}` has no readable image") });
    }
    let bytes = shards.iter().map(|s| s.bytes).sum();
    let summary = SplitSummary {
        name: name.to_string(),
        train,
        listed,
        written,
        skipped,
        shards: shards.len() as u64,
        bytes,
        labels_without_positives: split.labels_without_positives().to_vec(),
    };
    let meta = SplitMeta { train, images: written, shards };
    Ok((meta, summary))
}

/// Decodes and fits a chunk of images in parallel and appends them in order.
fn write_chunk(
    images: &[ImageEntry],
    split: &str,
    train: bool,
    options: &WriteOptions,
    writer: &mut SplitWriter<'_, '_>,
    bad: &mut Vec<BadImage>,
) -> Result<(), DataError> {
    let geometry = options.geometry;
    let codec = options.codec;
    let results: Vec<Result<Stored, BadImageReason>> = images
        .par_iter()
        .map_init(fast_image_resize::Resizer::new, |resizer, entry| {
            let fitted = preprocess::decode(&entry.path)
                .and_then(|pixels| preprocess::fit(resizer, pixels, &geometry, train))?;
            let (width, height) = (fitted.width, fitted.height);
            let bytes = codec.encode(fitted).map_err(BadImageReason::Corrupt)?;
            Ok(Stored { width, height, bytes })
        })
        .collect();
    for (entry, result) in images.iter().zip(results) {
        let shown = entry.path.strip_prefix(&options.data_root).unwrap_or(&entry.path);
        match result {
            Ok(stored) => writer.push(&stored, &shown.to_string_lossy(), &entry.targets)?,
            Err(reason) => {
                tracing::warn!(split, image = %entry.path.display(), %reason, "bad image");
                bad.push(BadImage { split: split.to_string(), path: entry.path.clone(), reason });
            }
        }
    }
    Ok(())
}

/// One fitted image as it goes into a shard file: its size and its (maybe encoded) bytes.
struct Stored {
    width: u32,
    height: u32,
    bytes: Vec<u8>,
}

/// The Arrow schema of `index.parquet`.
pub fn index_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("split", DataType::Utf8, false),
        Field::new("shard", DataType::UInt32, false),
        Field::new("offset", DataType::UInt64, false),
        Field::new("width", DataType::UInt32, false),
        Field::new("height", DataType::UInt32, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("targets", DataType::List(Arc::new(Field::new("item", DataType::Int8, true))), false),
    ]))
}

struct PendingRow {
    offset: u64,
    width: u32,
    height: u32,
    path: String,
    targets: Vec<i8>,
}

struct OpenShard {
    number: u32,
    temporary: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    hasher: blake3::Hasher,
    bytes: u64,
    rows: Vec<PendingRow>,
}

/// Writes one split: shard files in turn and their index rows, one record batch per shard.
struct SplitWriter<'a, 'w> {
    dir: PathBuf,
    split: String,
    label_count: usize,
    shard_size: usize,
    open: Option<OpenShard>,
    shards: Vec<ShardMeta>,
    index: &'a mut sspa_table::TableWriter<'w>,
    written: u64,
}

impl<'a, 'w> SplitWriter<'a, 'w> {
    fn new(
        dir: &Path,
        split: &str,
        label_count: usize,
        shard_size: usize,
        index: &'a mut sspa_table::TableWriter<'w>,
    ) -> Self {
        Self {
            dir: dir.to_path_buf(),
            split: split.to_string(),
            label_count,
            shard_size,
            open: None,
            shards: Vec::new(),
            index,
            written: 0,
        }
    }

    fn push(&mut self, image: &Stored, path: &str, targets: &[i8]) -> Result<(), DataError> {
        if targets.len() != self.label_count {
            return Err(DataError::Shards {
                path: path.into(),
                message: "target count differs from the label count".into(),
            });
        }
        if self.open.is_none() {
            let number = self.shards.len() as u32;
            let temporary = self.dir.join(format!(".shard-{number:05}.bin.tmp"));
            let file = std::fs::File::create(&temporary).map_err(|e| DataError::write(&temporary, e))?;
            self.open = Some(OpenShard {
                number,
                temporary,
                file: std::io::BufWriter::with_capacity(1 << 20, file),
                hasher: blake3::Hasher::new(),
                bytes: 0,
                rows: Vec::new(),
            });
        }
        let Some(shard) = self.open.as_mut() else { return Ok(()) };
        shard.file.write_all(&image.bytes).map_err(|e| DataError::write(&shard.temporary, e))?;
        shard.hasher.update(&image.bytes);
        shard.rows.push(PendingRow {
            offset: shard.bytes,
            width: image.width,
            height: image.height,
            path: path.to_string(),
            targets: targets.to_vec(),
        });
        shard.bytes += image.bytes.len() as u64;
        self.written += 1;
        if shard.rows.len() >= self.shard_size {
            self.close_shard()?;
        }
        Ok(())
    }

    fn close_shard(&mut self) -> Result<(), DataError> {
        let Some(shard) = self.open.take() else { return Ok(()) };
        let name = format!("shard-{:05}.bin", shard.number);
        let final_path = self.dir.join(&name);
        let file = shard.file.into_inner().map_err(|e| DataError::write(&shard.temporary, e.into_error()))?;
        file.sync_all().map_err(|e| DataError::write(&shard.temporary, e))?;
        drop(file);
        std::fs::rename(&shard.temporary, &final_path).map_err(|e| DataError::write(&final_path, e))?;
        let rows = &shard.rows;
        let mut targets = ListBuilder::new(Int8Builder::new());
        for row in rows {
            targets.values().append_slice(&row.targets);
            targets.append(true);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![self.split.as_str(); rows.len()])),
            Arc::new(UInt32Array::from(vec![shard.number; rows.len()])),
            Arc::new(UInt64Array::from(rows.iter().map(|r| r.offset).collect::<Vec<_>>())),
            Arc::new(UInt32Array::from(rows.iter().map(|r| r.width).collect::<Vec<_>>())),
            Arc::new(UInt32Array::from(rows.iter().map(|r| r.height).collect::<Vec<_>>())),
            Arc::new(StringArray::from(rows.iter().map(|r| r.path.as_str()).collect::<Vec<_>>())),
            Arc::new(targets.finish()),
        ];
        let batch = RecordBatch::try_new(index_schema(), columns)
            .map_err(|source| DataError::Arrow { path: self.dir.clone(), source })?;
        self.index.write(&batch)?;
        // One row group per shard: the index is never held in memory as a whole.
        self.index.flush()?;
        self.shards.push(ShardMeta {
            file: format!("{}/{name}", self.dir.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()),
            images: rows.len() as u64,
            bytes: shard.bytes,
            blake3: shard.hasher.finalize().to_hex().to_string(),
        });
        Ok(())
    }

    fn finish(mut self) -> Result<(Vec<ShardMeta>, u64), DataError> {
        self.close_shard()?;
        Ok((self.shards, self.written))
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    sspa_fsio::write_atomic(path, bytes).map_err(|e| DataError::write(path, e))
}
