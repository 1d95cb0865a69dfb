//! Frozen-image-encoder features: a split's global and patch features with its targets, and their
//! on-disk cache.
//!
//! Cache file layout (little-endian):
//! `b"SSPAFEAT"`, `u32` format version, `u64` header length, the JSON [`CacheHeader`], then the
//! payload: `global` as f32 `[n, d]`, `patches` as f32 `[n, N, d]`, `targets` as i8 `[n, C]`.
//! The header's `content_hash` is the BLAKE3 of the payload followed by every id (length-prefixed),
//! so a flipped bit anywhere but in the header's own sizes is caught; the sizes are checked
//! against the payload length. Files are written to a temporary file in the same directory and
//! renamed into place.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::TrainError;

const MAGIC: &[u8; 8] = b"SSPAFEAT";
const FORMAT_VERSION: u32 = 1;
/// Largest header accepted when reading (ids included), to fail fast on garbage lengths.
const MAX_HEADER_BYTES: u64 = 1 << 30;

/// One split's features, as plain row-major data.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSet {
    /// Image ids, one per image (`n`).
    pub ids: Vec<String>,
    /// Global features `f_g`, `[n, d]`.
    pub global: Vec<f32>,
    /// Patch features `F_p`, `[n, N, d]`.
    pub patches: Vec<f32>,
    /// Targets, `[n, C]`: 1 positive, 0 negative, −1 ignored.
    pub targets: Vec<i8>,
    /// Patches per image `N`.
    pub patches_per_image: usize,
    /// Feature width `d`.
    pub width: usize,
    /// Classes `C`.
    pub classes: usize,
}

/// The tensors of one mini-batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[B, d]`.
    pub global: Tensor<2>,
    /// `[B, N, d]`.
    pub patches: Tensor<3>,
    /// `[B, C]` as floats in `{1, 0, −1}`.
    pub targets: Tensor<2>,
}

impl FeatureSet {
    /// Number of images `n`.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Checks that every buffer matches `n`, `N`, `d`, `C` and that targets are 1, 0 or −1.
    ///
    /// # Errors
    /// [`TrainError::FeatureShape`], [`TrainError::Target`] or [`TrainError::Option`] (zero sizes).
    pub fn validate(&self) -> Result<(), TrainError> {
        if self.patches_per_image == 0 || self.width == 0 || self.classes == 0 {
            return Err(TrainError::Option {
                key: "features",
                value: format!("N = {}, d = {}, C = {}", self.patches_per_image, self.width, self.classes),
                reason: "patches, width and classes must be positive",
            });
        }
        let n = self.len();
        let (count, patches, width, classes) = (n, self.patches_per_image, self.width, self.classes);
        let check = check_buffer;
        check("global", self.global.len(), count * width, format!("[{count}, {width}]"))?;
        check("patches", self.patches.len(), count * patches * width, format!("[{count}, {patches}, {width}]"))?;
        check("targets", self.targets.len(), count * classes, format!("[{count}, {classes}]"))?;
        if let Some(index) = self.targets.iter().position(|&value| !matches!(value, -1..=1)) {
            return Err(TrainError::Target {
                image: index / classes,
                class: index % classes,
                value: self.targets[index],
            });
        }
        Ok(())
    }

    /// The images at `indices`, as tensors on `device` (indices must be `< n`).
    ///
    /// # Panics
    /// On an index out of range (the training loop only passes a permutation of `0..n`).
    pub fn batch(&self, indices: &[usize], device: &Device) -> Batch {
        let (patches, width, classes) = (self.patches_per_image, self.width, self.classes);
        let mut global = Vec::with_capacity(indices.len() * width);
        let mut patch_values = Vec::with_capacity(indices.len() * patches * width);
        let mut targets = Vec::with_capacity(indices.len() * classes);
        for &index in indices {
            global.extend_from_slice(&self.global[index * width..(index + 1) * width]);
            let stride = patches * width;
            patch_values.extend_from_slice(&self.patches[index * stride..(index + 1) * stride]);
            targets.extend(self.targets[index * classes..(index + 1) * classes].iter().map(|&t| f32::from(t)));
        }
        let b = indices.len();
        Batch {
            global: Tensor::from_data(TensorData::new(global, [b, width]), device),
            patches: Tensor::from_data(TensorData::new(patch_values, [b, patches, width]), device),
            targets: Tensor::from_data(TensorData::new(targets, [b, classes]), device),
        }
    }

    /// BLAKE3 of the payload and ids, as written in the cache header.
    pub fn content_hash(&self) -> String {
        let mut hasher = blake3::Hasher::new();
        for_le_bytes(&self.global, |bytes| {
            hasher.update(bytes);
        });
        for_le_bytes(&self.patches, |bytes| {
            hasher.update(bytes);
        });
        hasher.update(&self.targets.iter().map(|&t| t as u8).collect::<Vec<_>>());
        for id in &self.ids {
            hasher.update(&(id.len() as u64).to_le_bytes());
            hasher.update(id.as_bytes());
        }
        hasher.finalize().to_hex().to_string()
    }
}

/// [`TrainError::FeatureShape`] unless buffer `name` holds the `expected` number of values.
pub(crate) fn check_buffer(
    name: &'static str,
    actual: usize,
    expected: usize,
    shape: String,
) -> Result<(), TrainError> {
    if actual == expected { Ok(()) } else { Err(TrainError::FeatureShape { name, actual, expected, shape }) }
}

/// The JSON header of a feature cache file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheHeader {
    /// The caller's cache key (e.g. shard hash + encoder weights hash).
    pub key: String,
    /// Images `n`.
    pub images: usize,
    /// Patches per image `N`.
    pub patches_per_image: usize,
    /// Width `d`.
    pub width: usize,
    /// Classes `C`.
    pub classes: usize,
    /// BLAKE3 (hex) of the payload and ids.
    pub content_hash: String,
    /// Image ids.
    pub ids: Vec<String>,
}

/// Where the cache for `key` lives under `dir`: the file name is derived from the key's BLAKE3,
/// so any string is a valid key.
pub fn feature_cache_path(dir: &Path, key: &str) -> PathBuf {
    let digest = blake3::hash(key.as_bytes()).to_hex();
    dir.join(format!("features-{}.sspafeat", &digest.as_str()[..32]))
}

/// Writes `features` under `key` to `path` atomically (temporary file + rename).
///
/// # Errors
/// [`TrainError::Io`] on file system errors; validation errors of [`FeatureSet::validate`].
pub fn write_feature_cache(path: &Path, key: &str, features: &FeatureSet) -> Result<(), TrainError> {
    features.validate()?;
    let header = CacheHeader {
        key: key.to_owned(),
        images: features.len(),
        patches_per_image: features.patches_per_image,
        width: features.width,
        classes: features.classes,
        content_hash: features.content_hash(),
        ids: features.ids.clone(),
    };
    let header = serde_json::to_vec(&header).map_err(TrainError::json(path))?;
    atomic_write(path, |file| {
        let mut writer = BufWriter::new(file);
        writer.write_all(MAGIC)?;
        writer.write_all(&FORMAT_VERSION.to_le_bytes())?;
        writer.write_all(&(header.len() as u64).to_le_bytes())?;
        writer.write_all(&header)?;
        let mut result = Ok(());
        for values in [&features.global, &features.patches] {
            for_le_bytes(values, |bytes| {
                if result.is_ok() {
                    result = writer.write_all(bytes);
                }
            });
        }
        result?;
        writer.write_all(&features.targets.iter().map(|&t| t as u8).collect::<Vec<_>>())?;
        writer.flush()
    })
}

/// Reads the cache at `path`, checking its key, sizes, targets and content hash.
///
/// # Errors
/// [`TrainError::CorruptCache`] for a damaged file, [`TrainError::CacheKey`] for another key,
/// [`TrainError::Io`] when it cannot be read.
pub fn read_feature_cache(path: &Path, key: &str) -> Result<FeatureSet, TrainError> {
    let corrupt = |reason: String| TrainError::CorruptCache { path: path.to_owned(), reason };
    let file = File::open(path).map_err(TrainError::io(path))?;
    let file_len = file.metadata().map_err(TrainError::io(path))?.len();
    let mut reader = BufReader::new(file);

    let mut prefix = [0u8; 20];
    reader.read_exact(&mut prefix).map_err(|_| corrupt("shorter than its fixed prefix".into()))?;
    if &prefix[..8] != MAGIC {
        return Err(corrupt("not a feature cache (bad magic bytes)".into()));
    }
    let version = u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]);
    if version != FORMAT_VERSION {
        return Err(corrupt(format!("format version `{version}`, expected `{FORMAT_VERSION}`")));
    }
    let mut length = [0u8; 8];
    length.copy_from_slice(&prefix[12..20]);
    let header_len = u64::from_le_bytes(length);
    if header_len > MAX_HEADER_BYTES || header_len > file_len.saturating_sub(20) {
        return Err(corrupt(format!("header length `{header_len}` exceeds the file")));
    }
    let mut header = vec![0u8; header_len as usize];
    reader.read_exact(&mut header).map_err(|error| corrupt(format!("truncated header: {error}")))?;
    let header: CacheHeader =
        serde_json::from_slice(&header).map_err(|error| corrupt(format!("header is not valid JSON: {error}")))?;
    if header.key != key {
        return Err(TrainError::CacheKey { path: path.to_owned(), found: header.key, expected: key.to_owned() });
    }
    if header.ids.len() != header.images {
        return Err(corrupt(format!("`{}` ids for `{}` images", header.ids.len(), header.images)));
    }

    let sizes = (|| {
        let global = header.images.checked_mul(header.width)?;
        let patches = global.checked_mul(header.patches_per_image)?;
        let targets = header.images.checked_mul(header.classes)?;
        let bytes = global.checked_add(patches)?.checked_mul(4)?.checked_add(targets)?;
        Some((global, patches, targets, bytes))
    })();
    let Some((global_len, patches_len, targets_len, payload_len)) = sizes else {
        return Err(corrupt("sizes overflow".into()));
    };
    let expected_len = 20 + header_len + payload_len as u64;
    if file_len != expected_len {
        return Err(corrupt(format!("file has `{file_len}` bytes, its header implies `{expected_len}`")));
    }
    let mut payload = vec![0u8; payload_len];
    reader.read_exact(&mut payload).map_err(|error| corrupt(format!("truncated payload: {error}")))?;
    let (floats, targets) = payload.split_at(4 * (global_len + patches_len));
    let mut floats: Vec<f32> = floats.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let patches = floats.split_off(global_len);
    debug_assert_eq!((patches.len(), targets.len()), (patches_len, targets_len));
    let features = FeatureSet {
        ids: header.ids,
        global: floats,
        patches,
        targets: targets.iter().map(|&t| t as i8).collect(),
        patches_per_image: header.patches_per_image,
        width: header.width,
        classes: header.classes,
    };
    let hash = features.content_hash();
    if hash != header.content_hash {
        return Err(corrupt(format!("content hash `{hash}` differs from the header's `{}`", header.content_hash)));
    }
    features.validate().map_err(|error| corrupt(error.to_string()))?;
    Ok(features)
}

/// Calls `sink` with the little-endian bytes of `values`, a block at a time.
pub(crate) fn for_le_bytes(values: &[f32], mut sink: impl FnMut(&[u8])) {
    let mut buffer = Vec::with_capacity(4 * 16_384);
    for block in values.chunks(16_384) {
        buffer.clear();
        buffer.extend(block.iter().flat_map(|value| value.to_le_bytes()));
        sink(&buffer);
    }
}

/// Writes `path` through a temporary file in the same directory, synced, then renamed.
pub(crate) fn atomic_write(
    path: &Path,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<(), TrainError> {
    sspa_fsio::write_atomic_with(path, write, |e| e).map_err(TrainError::io(path))
}

/// [`atomic_write`] of a byte buffer.
pub(crate) fn atomic_write_bytes(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    atomic_write(path, |file| file.write_all(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FeatureSet {
        let (n, patches, width, classes) = (3, 2, 4, 2);
        FeatureSet {
            ids: (0..n).map(|i| format!("img-{i}")).collect(),
            global: (0..n * width).map(|i| i as f32 * 0.5 - 1.0).collect(),
            patches: (0..n * patches * width).map(|i| (i as f32).sin()).collect(),
            targets: vec![1, 0, -1, 1, 0, 0],
            patches_per_image: patches,
            width,
            classes,
        }
    }

    #[test]
    fn cache_round_trip_is_exact() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = feature_cache_path(dir.path(), "shard:abc/weights:def");
        write_feature_cache(&path, "shard:abc/weights:def", &sample()).expect("write");
        assert_eq!(read_feature_cache(&path, "shard:abc/weights:def").expect("read"), sample());
        let leftovers = std::fs::read_dir(dir.path()).expect("list").count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
    }

    #[test]
    fn corrupted_truncated_or_foreign_caches_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cache.sspafeat");
        write_feature_cache(&path, "k", &sample()).expect("write");
        let good = std::fs::read(&path).expect("read bytes");

        let mut flipped = good.clone();
        let last = flipped.len() - 10; // inside the patch floats
        flipped[last] ^= 0x40;
        std::fs::write(&path, &flipped).expect("write");
        let error = read_feature_cache(&path, "k").expect_err("bit flip");
        assert!(matches!(error, TrainError::CorruptCache { .. }), "{error}");
        assert!(error.to_string().contains("content hash"), "{error}");

        std::fs::write(&path, &good[..good.len() - 3]).expect("write");
        let error = read_feature_cache(&path, "k").expect_err("truncated");
        assert!(error.to_string().contains("its header implies"), "{error}");

        std::fs::write(&path, b"not a cache at all, just text").expect("write");
        let error = read_feature_cache(&path, "k").expect_err("garbage");
        assert!(error.to_string().contains("bad magic"), "{error}");

        std::fs::write(&path, &good).expect("write");
        let error = read_feature_cache(&path, "other").expect_err("key");
        assert!(matches!(error, TrainError::CacheKey { .. }), "{error}");
    }

    #[test]
    fn validation_names_the_bad_buffer_and_target() {
        let mut features = sample();
        features.patches.pop();
        assert!(matches!(features.validate(), Err(TrainError::FeatureShape { name: "patches", .. })));
        let mut features = sample();
        features.targets[3] = 2;
        assert!(matches!(features.validate(), Err(TrainError::Target { image: 1, class: 1, value: 2 })));
    }
}

/// Writes `set` as safetensors: `global` f32 `[n, c]`, `patches` f32 `[n, N, c]`, `targets` i8
/// `[n, C]`, the ids (JSON array) under `ids` in the metadata, beside `metadata`; atomically.
pub fn write_features(
    path: &Path,
    set: &FeatureSet,
    metadata: &std::collections::BTreeMap<String, String>,
) -> Result<(), TrainError> {
    use safetensors::tensor::TensorView;
    let bad = |reason: String| TrainError::Checkpoint { path: path.to_owned(), reason };
    let n = set.len();
    let f32_bytes = |values: &[f32]| values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
    let global = f32_bytes(&set.global);
    let patches = f32_bytes(&set.patches);
    let targets: Vec<u8> = set.targets.iter().map(|&t| t as u8).collect();
    let views = [
        ("global", TensorView::new(safetensors::Dtype::F32, vec![n, set.width], &global)),
        ("patches", TensorView::new(safetensors::Dtype::F32, vec![n, set.patches_per_image, set.width], &patches)),
        ("targets", TensorView::new(safetensors::Dtype::I8, vec![n, set.classes], &targets)),
    ];
    let mut tensors = Vec::new();
    for (name, view) in views {
        tensors.push((name, view.map_err(|e| bad(format!("tensor `{name}`: {e}")))?));
    }
    let mut meta: std::collections::HashMap<String, String> = metadata.clone().into_iter().collect();
    meta.insert("ids".into(), serde_json::to_string(&set.ids).map_err(TrainError::json(path))?);
    let bytes = safetensors::serialize(tensors, Some(meta)).map_err(|e| bad(e.to_string()))?;
    atomic_write(path, |file| file.write_all(&bytes))
}

/// Reads a file of [`write_features`]: the set and the metadata (without `ids`).
pub fn read_features(path: &Path) -> Result<(FeatureSet, std::collections::BTreeMap<String, String>), TrainError> {
    let bad = |reason: String| TrainError::Checkpoint { path: path.to_owned(), reason };
    let bytes = std::fs::read(path).map_err(TrainError::io(path))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let tensors = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut metadata: std::collections::BTreeMap<String, String> =
        header.metadata().clone().unwrap_or_default().into_iter().collect();
    let ids: Vec<String> = serde_json::from_str(&metadata.remove("ids").ok_or_else(|| bad("no `ids`".into()))?)
        .map_err(TrainError::json(path))?;
    let tensor = |name: &str, dtype: safetensors::Dtype| {
        let view = tensors.tensor(name).map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
        if view.dtype() != dtype {
            return Err(bad(format!("tensor `{name}` is {:?}, expected {dtype:?}", view.dtype())));
        }
        Ok(view)
    };
    let (global, patches, targets) = (
        tensor("global", safetensors::Dtype::F32)?,
        tensor("patches", safetensors::Dtype::F32)?,
        tensor("targets", safetensors::Dtype::I8)?,
    );
    let (n, width) = match global.shape() {
        [n, width] => (*n, *width),
        shape => return Err(bad(format!("`global` has shape {shape:?}"))),
    };
    let patches_per_image = match patches.shape() {
        [pn, p, w] if *pn == n && *w == width => *p,
        shape => return Err(bad(format!("`patches` has shape {shape:?}, `global` {:?}", global.shape()))),
    };
    let classes = match targets.shape() {
        [tn, c] if *tn == n => *c,
        shape => return Err(bad(format!("`targets` has shape {shape:?} for {n} images"))),
    };
    if ids.len() != n {
        return Err(bad(format!("{} ids for {n} images", ids.len())));
    }
    let floats = |data: &[u8]| data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let set = FeatureSet {
        ids,
        global: floats(global.data()),
        patches: floats(patches.data()),
        targets: targets.data().iter().map(|&b| b as i8).collect(),
        patches_per_image,
        width,
        classes,
    };
    Ok((set, metadata))
}
