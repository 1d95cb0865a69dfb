//! Frozen-image-encoder features: a split's global and patch features with its targets, and their
//! file format.
//!
//! Files are safetensors, readable by the `safetensors` packages of Python, numpy and PyTorch:
//! tensors `global` (`[n, c]`), `patches` (`[n, N, c]`), both f32, f16 or bf16 (`features.dtype`;
//! read back as f32), and `targets` (i8 `[n, C]`: 1, 0, −1 = ignored); the image ids as a JSON
//! array under `ids` in the `__metadata__`, beside the caller's entries (encoder, weights hash,
//! split). Files are written to a temporary file in the same directory and renamed into place;
//! every inconsistency on reading names the file.
//!
//! The features stage writes a split as it encodes it ([`write_features_streamed`]): the file's
//! layout is fixed by the first batch and every batch is written at its place, so memory holds one
//! batch, not the split. [`write_features`] writes a set held in memory, in the same layout.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use burn::prelude::*;

use crate::error::TrainError;
pub use sspa_config::FeatureDtype;

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
        hasher.update(&le_bytes(&self.global));
        hasher.update(&le_bytes(&self.patches));
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

/// The little-endian bytes of `values`: the values' own memory on little-endian targets (no
/// per-value loop: the demo's feature sets are ~10⁸ values), a converted copy elsewhere.
pub(crate) fn le_bytes(values: &[f32]) -> std::borrow::Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        std::borrow::Cow::Borrowed(bytemuck::cast_slice(values))
    } else {
        std::borrow::Cow::Owned(values.iter().flat_map(|value| value.to_le_bytes()).collect())
    }
}

/// The values of `data`, stored as `dtype` little-endian, as f32.
pub(crate) fn decode(data: &[u8], dtype: FeatureDtype) -> Vec<f32> {
    match dtype {
        FeatureDtype::F32 => from_le_bytes(data),
        // The bits copied out whole, then converted by `half`'s slice kernels (eight values at a
        // time with the CPU's F16C instructions where it has them, detected at run time): a
        // conversion a value in this crate (opt-level 0 in dev builds) made f16 training 1.4–1.7×
        // slower than f32's on the demo.
        FeatureDtype::F16 | FeatureDtype::Bf16 => {
            use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
            let bits = half_bits(data);
            let mut values = vec![0.0; bits.len()];
            match dtype {
                FeatureDtype::F16 => bits.reinterpret_cast::<half::f16>().convert_to_f32_slice(&mut values),
                _ => bits.reinterpret_cast::<half::bf16>().convert_to_f32_slice(&mut values),
            }
            values
        }
    }
}

/// `u16` values from little-endian bytes at any alignment (an odd length drops the last byte).
fn half_bits(data: &[u8]) -> Vec<u16> {
    let data = &data[..data.len() - data.len() % 2];
    if cfg!(target_endian = "little") {
        bytemuck::pod_collect_to_vec(data)
    } else {
        data.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect()
    }
}

/// `values` stored as `dtype`, little-endian (f32 exactly; f16 and bf16 rounded to nearest).
pub(crate) fn encode(values: &[f32], dtype: FeatureDtype) -> std::borrow::Cow<'_, [u8]> {
    match dtype {
        FeatureDtype::F32 => le_bytes(values),
        FeatureDtype::F16 | FeatureDtype::Bf16 => {
            use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
            let mut bits = vec![0_u16; values.len()];
            match dtype {
                FeatureDtype::F16 => bits.reinterpret_cast_mut::<half::f16>().convert_from_f32_slice(values),
                _ => bits.reinterpret_cast_mut::<half::bf16>().convert_from_f32_slice(values),
            }
            if cfg!(target_endian = "little") {
                std::borrow::Cow::Owned(bytemuck::cast_slice(&bits).to_vec())
            } else {
                std::borrow::Cow::Owned(bits.iter().flat_map(|b| b.to_le_bytes()).collect())
            }
        }
    }
}

/// The safetensors name of `dtype`.
pub(crate) fn dtype_name(dtype: FeatureDtype) -> &'static str {
    match dtype {
        FeatureDtype::F32 => "F32",
        FeatureDtype::F16 => "F16",
        FeatureDtype::Bf16 => "BF16",
    }
}

/// `f32` values from little-endian bytes at any alignment (a length not a multiple of 4 drops
/// the tail; callers check shapes).
pub(crate) fn from_le_bytes(data: &[u8]) -> Vec<f32> {
    let data = &data[..data.len() - data.len() % 4];
    if cfg!(target_endian = "little") {
        bytemuck::pod_collect_to_vec(data)
    } else {
        data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
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

/// Writes `set` as safetensors: `global` f32 `[n, c]`, `patches` f32 `[n, N, c]`, `targets` i8
/// `[n, C]`, the ids (JSON array) under `ids` in the metadata, beside `metadata`; atomically.
///
/// The same writer as [`write_features_streamed`], with the whole set as one batch.
///
/// # Errors
/// [`FeatureSet::validate`]'s errors; [`TrainError`] naming `path` when writing fails.
pub fn write_features(
    path: &Path,
    set: &FeatureSet,
    metadata: &std::collections::BTreeMap<String, String>,
) -> Result<(), TrainError> {
    set.validate()?;
    write_features_streamed::<TrainError>(path, &set.ids, set.classes, metadata, FeatureDtype::F32, |writer| {
        writer.append(&set.global, &set.patches, &set.targets, set.patches_per_image, set.width)
    })
}

/// Where each tensor of a features file lies, once the widths are known.
struct Layout {
    dtype: FeatureDtype,
    width: usize,
    patches_per_image: usize,
    /// Offsets in the file of the `global`, `patches` and `targets` data.
    global_at: u64,
    patches_at: u64,
    targets_at: u64,
}

/// The safetensors header of a features file of `n` images (`__metadata__` with the sorted
/// entries and `ids`, then `global`, `patches`, `targets` in data order), padded with spaces to a
/// multiple of 8 bytes, and the length of the data after it.
fn header(
    ids: &[String],
    classes: usize,
    (patches_per_image, width, dtype): (usize, usize, FeatureDtype),
    metadata: &std::collections::BTreeMap<String, String>,
) -> Result<(Vec<u8>, [usize; 3]), serde_json::Error> {
    let n = ids.len();
    let size = dtype.size();
    let sizes = [n * width * size, n * patches_per_image * width * size, n * classes];
    let mut meta = serde_json::Map::new();
    for (key, value) in metadata {
        meta.insert(key.clone(), value.clone().into());
    }
    meta.insert("ids".into(), serde_json::to_string(ids)?.into());
    let tensor = |dtype: &str, shape: Vec<usize>, from: usize, size: usize| serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [from, from + size]});
    let mut json = serde_json::Map::new();
    json.insert("__metadata__".into(), meta.into());
    let name = dtype_name(dtype);
    json.insert("global".into(), tensor(name, vec![n, width], 0, sizes[0]));
    json.insert("patches".into(), tensor(name, vec![n, patches_per_image, width], sizes[0], sizes[1]));
    json.insert("targets".into(), tensor("I8", vec![n, classes], sizes[0] + sizes[1], sizes[2]));
    let mut bytes = serde_json::to_vec(&json)?;
    bytes.resize(bytes.len().next_multiple_of(8), b' ');
    Ok((bytes, sizes))
}

/// Appends encoded images to a features file being written by [`write_features_streamed`].
pub struct FeatureWriter<'a> {
    file: &'a mut File,
    path: &'a Path,
    ids: &'a [String],
    classes: usize,
    metadata: &'a std::collections::BTreeMap<String, String>,
    dtype: FeatureDtype,
    layout: Option<Layout>,
    written: usize,
    targets: Vec<i8>,
}

impl FeatureWriter<'_> {
    /// Writes the next `b` images: `global` `[b, c]`, `patches` `[b, N, c]` and `targets`
    /// `[b, C]`, row-major. The first call fixes `N` and `c` and lays the file out.
    ///
    /// # Errors
    /// [`TrainError::CorruptCache`] naming the file when the sizes disagree with each other, with
    /// the first batch's or with the image count; [`TrainError::Io`] when writing fails.
    pub fn append(
        &mut self,
        global: &[f32],
        patches: &[f32],
        targets: &[i8],
        patches_per_image: usize,
        width: usize,
    ) -> Result<(), TrainError> {
        use std::io::{Seek, SeekFrom};
        let bad = |reason: String| TrainError::CorruptCache { path: self.path.to_owned(), reason };
        if width == 0 || patches_per_image == 0 || !global.len().is_multiple_of(width) {
            return Err(bad(format!(
                "a batch of {} global values for c = {width}, N = {patches_per_image}",
                global.len()
            )));
        }
        let images = global.len() / width;
        if patches.len() != images * patches_per_image * width || targets.len() != images * self.classes {
            return Err(bad(format!(
                "a batch of {images} images with {} patch values and {} targets (N = {patches_per_image}, c = \
                 {width}, C = {})",
                patches.len(),
                targets.len(),
                self.classes
            )));
        }
        if self.written + images > self.ids.len() {
            return Err(bad(format!("more than the {} images of its ids", self.ids.len())));
        }
        if let Some(index) = targets.iter().position(|target| !matches!(target, -1..=1)) {
            let image = self.written + index / self.classes;
            return Err(bad(format!("target {} of image `{}`", targets[index], self.ids[image])));
        }
        if self.layout.is_none() {
            let shape = (patches_per_image, width, self.dtype);
            let (header, sizes) =
                header(self.ids, self.classes, shape, self.metadata).map_err(TrainError::json(self.path))?;
            let start = 8 + header.len() as u64;
            let io = TrainError::io(self.path);
            let total = start + sizes.iter().sum::<usize>() as u64;
            let written = self
                .file
                .write_all(&(header.len() as u64).to_le_bytes())
                .and_then(|()| self.file.write_all(&header))
                .and_then(|()| self.file.set_len(total));
            written.map_err(io)?;
            let (global_at, patches_at) = (start, start + sizes[0] as u64);
            let targets_at = patches_at + sizes[1] as u64;
            self.layout =
                Some(Layout { dtype: self.dtype, width, patches_per_image, global_at, patches_at, targets_at });
        }
        let layout = self.layout.as_ref().ok_or_else(|| bad("no layout".into()))?;
        if (layout.width, layout.patches_per_image) != (width, patches_per_image) {
            return Err(bad(format!(
                "a batch with N = {patches_per_image}, c = {width} after N = {}, c = {}",
                layout.patches_per_image, layout.width
            )));
        }
        let (row, size) = (self.written as u64, layout.dtype.size());
        let global_at = layout.global_at + row * (width * size) as u64;
        let patches_at = layout.patches_at + row * (patches_per_image * width * size) as u64;
        let (global, patches) = (encode(global, layout.dtype), encode(patches, layout.dtype));
        let file = &mut *self.file;
        let written = file
            .seek(SeekFrom::Start(global_at))
            .and_then(|_| file.write_all(&global))
            .and_then(|()| file.seek(SeekFrom::Start(patches_at)))
            .and_then(|_| file.write_all(&patches));
        written.map_err(TrainError::io(self.path))?;
        self.targets.extend_from_slice(targets);
        self.written += images;
        Ok(())
    }

    /// Writes the targets once every image came.
    fn finish(self) -> Result<(), TrainError> {
        use std::io::{Seek, SeekFrom};
        let bad = |reason: String| TrainError::CorruptCache { path: self.path.to_owned(), reason };
        if self.written != self.ids.len() {
            return Err(bad(format!("{} of its {} images were written", self.written, self.ids.len())));
        }
        let Some(layout) = &self.layout else {
            return Err(bad("no image was written: the features' sizes are unknown".into()));
        };
        let targets: Vec<u8> = self.targets.iter().map(|&target| target as u8).collect();
        let file = self.file;
        let written = file.seek(SeekFrom::Start(layout.targets_at)).and_then(|_| file.write_all(&targets));
        written.map_err(TrainError::io(self.path))
    }
}

/// Writes a features file of the images `ids` (in order) and `classes` labels as `fill` appends
/// their features ([`FeatureWriter::append`]), in [`write_features`]'s format with the feature
/// values stored as `dtype`: memory holds the targets (a byte a label) and the caller's batch,
/// never the split. The file appears at `path` (temporary file, synced, renamed) only when `fill`
/// succeeded and every image was written.
///
/// # Errors
/// `fill`'s error; [`TrainError`] (converted into `E`) naming `path` when the batches disagree,
/// images are missing, or writing fails.
pub fn write_features_streamed<E: From<TrainError>>(
    path: &Path,
    ids: &[String],
    classes: usize,
    metadata: &std::collections::BTreeMap<String, String>,
    dtype: FeatureDtype,
    fill: impl FnOnce(&mut FeatureWriter<'_>) -> Result<(), E>,
) -> Result<(), E> {
    sspa_fsio::write_atomic_with(
        path,
        |file| {
            let mut writer = FeatureWriter {
                file,
                path,
                ids,
                classes,
                metadata,
                dtype,
                layout: None,
                written: 0,
                targets: Vec::new(),
            };
            fill(&mut writer)?;
            writer.finish().map_err(E::from)
        },
        |source| E::from(TrainError::io(path)(source)),
    )
}

/// Reads a file of [`write_features`]: the set and the metadata (without `ids`). The file is
/// checked and copied out by [`crate::MappedFeatures`], the one reader of the format.
///
/// # Errors
/// As [`crate::MappedFeatures::open`].
pub fn read_features(path: &Path) -> Result<(FeatureSet, std::collections::BTreeMap<String, String>), TrainError> {
    let (mapped, metadata) = crate::MappedFeatures::open(path)?;
    Ok((mapped.to_feature_set(), metadata))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

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
    fn safetensors_round_trip_is_exact_and_keeps_the_metadata() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("train.safetensors");
        let metadata = BTreeMap::from([("encoder".to_string(), "efficientnet-lite0".to_string())]);
        write_features(&path, &sample(), &metadata).expect("write");
        let (set, read) = read_features(&path).expect("read");
        assert_eq!(set, sample());
        assert_eq!(read, metadata);
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1, "no temporary file left behind");
        // What other readers see: the three tensors with their dtypes and shapes.
        let bytes = std::fs::read(&path).expect("bytes");
        let tensors = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
        let shape = |name: &str| tensors.tensor(name).map(|t| (t.dtype(), t.shape().to_vec())).expect(name);
        assert_eq!(shape("global"), (safetensors::Dtype::F32, vec![3, 4]));
        assert_eq!(shape("patches"), (safetensors::Dtype::F32, vec![3, 2, 4]));
        assert_eq!(shape("targets"), (safetensors::Dtype::I8, vec![3, 2]));
    }

    /// Streamed batch by batch, a split reads back as the same set and metadata as when written
    /// whole, through both readers; an unfinished or inconsistent stream leaves no file.
    #[test]
    fn a_streamed_file_reads_as_the_whole_set_and_a_broken_stream_leaves_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let set = sample();
        let metadata = BTreeMap::from([("split".to_string(), "train".to_string()), ("encoder".into(), "e".into())]);
        let (c, n_p) = (set.width, set.patches_per_image);
        let rows = |from: usize, to: usize| {
            (
                set.global[from * c..to * c].to_vec(),
                set.patches[from * n_p * c..to * n_p * c].to_vec(),
                set.targets[from * set.classes..to * set.classes].to_vec(),
            )
        };
        let path = dir.path().join("streamed.safetensors");
        write_features_streamed::<TrainError>(&path, &set.ids, set.classes, &metadata, FeatureDtype::F32, |writer| {
            for (from, to) in [(0, 2), (2, 3)] {
                let (global, patches, targets) = rows(from, to);
                writer.append(&global, &patches, &targets, n_p, c)?;
            }
            Ok(())
        })
        .expect("streamed");
        let (back, meta) = read_features(&path).expect("read");
        assert_eq!(back, set);
        assert_eq!(meta, metadata);
        let whole = dir.path().join("whole.safetensors");
        write_features(&whole, &set, &metadata).expect("whole");
        assert_eq!(std::fs::metadata(&path).expect("size").len(), std::fs::metadata(&whole).expect("size").len());
        // Other tools read it as safetensors too (the crate's own validating reader).
        let bytes = std::fs::read(&path).expect("bytes");
        let tensors = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
        assert_eq!(tensors.tensor("patches").expect("patches").shape(), [3, n_p, c]);

        let cut = dir.path().join("cut.safetensors");
        let error = write_features_streamed::<TrainError>(
            &cut,
            &set.ids,
            set.classes,
            &metadata,
            FeatureDtype::F32,
            |writer| {
                let (global, patches, targets) = rows(0, 2);
                writer.append(&global, &patches, &targets, n_p, c)
            },
        )
        .expect_err("an image short");
        assert!(error.to_string().contains("2 of its 3 images"), "{error}");
        let error = write_features_streamed::<TrainError>(
            &cut,
            &set.ids,
            set.classes,
            &metadata,
            FeatureDtype::F32,
            |writer| {
                let (global, patches, targets) = rows(0, 1);
                writer.append(&global, &patches, &targets, n_p, c)?;
                let (global, patches, targets) = rows(1, 3);
                writer.append(&global[..c], &patches, &targets, n_p, c)
            },
        )
        .expect_err("sizes disagree");
        assert!(error.to_string().contains("cut.safetensors"), "{error}");
        assert!(!cut.exists(), "nothing published");
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 2, "no temporary file left");
    }

    /// f16 and bf16 files hold each feature value rounded once to nearest, take half the bytes
    /// of f32's for the features, and read back (whole or by rows) as those rounded values.
    #[test]
    fn half_precision_files_round_each_value_once_and_read_back_as_f32() {
        let dir = tempfile::tempdir().expect("temp dir");
        let set = sample();
        let metadata = BTreeMap::new();
        let values = set.global.len() + set.patches.len();
        let f32_path = dir.path().join("f32.safetensors");
        write_features(&f32_path, &set, &metadata).expect("f32");
        for (dtype, round) in [
            (FeatureDtype::F16, (|v: f32| half::f16::from_f32(v).to_f32()) as fn(f32) -> f32),
            (FeatureDtype::Bf16, |v: f32| half::bf16::from_f32(v).to_f32()),
        ] {
            let path = dir.path().join(format!("{dtype:?}.safetensors"));
            write_features_streamed::<TrainError>(&path, &set.ids, set.classes, &metadata, dtype, |writer| {
                writer.append(&set.global, &set.patches, &set.targets, set.patches_per_image, set.width)
            })
            .expect("half");
            let (mapped, _) = crate::MappedFeatures::open(&path).expect("open");
            assert_eq!(mapped.dtype(), dtype);
            let back = mapped.to_feature_set();
            let rounded = |values: &[f32]| values.iter().map(|&v| round(v)).collect::<Vec<_>>();
            assert_eq!(back.global, rounded(&set.global), "{dtype:?}");
            assert_eq!(back.patches, rounded(&set.patches), "{dtype:?}");
            assert_eq!((back.ids.clone(), back.targets.clone()), (set.ids.clone(), set.targets.clone()));
            assert!(back.patches.iter().zip(&set.patches).any(|(a, b)| a != b), "{dtype:?}: some value rounds");
            let rows = mapped.rows(vec![2, 0]).expect("rows").to_feature_set();
            assert_eq!(rows.global[..set.width], back.global[2 * set.width..3 * set.width]);
            // The data after the header: two bytes a feature value instead of four.
            let data = |path: &Path| {
                let bytes = std::fs::read(path).expect("bytes");
                let header = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
                bytes.len() - 8 - header
            };
            assert_eq!(data(&f32_path), values * 4 + set.targets.len());
            assert_eq!(data(&path), values * 2 + set.targets.len(), "{dtype:?}");
        }
    }

    #[test]
    fn truncated_foreign_or_inconsistent_files_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("test.safetensors");
        write_features(&path, &sample(), &BTreeMap::new()).expect("write");
        let good = std::fs::read(&path).expect("bytes");
        let refused = |bytes: &[u8]| {
            std::fs::write(&path, bytes).expect("write");
            let error = read_features(&path).expect_err("refused").to_string();
            assert!(error.contains("test.safetensors"), "{error}");
            error
        };
        refused(&good[..good.len() - 3]);
        refused(b"not a feature file at all");
        // `targets` stored as f32 instead of i8.
        let set = sample();
        let floats = |values: &[f32]| values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
        let (global, patches) = (floats(&set.global), floats(&set.patches));
        let targets = floats(&set.targets.iter().map(|&t| f32::from(t)).collect::<Vec<_>>());
        let views = vec![
            (
                "global",
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3, 4], &global).expect("view"),
            ),
            (
                "patches",
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3, 2, 4], &patches).expect("view"),
            ),
            (
                "targets",
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3, 2], &targets).expect("view"),
            ),
        ];
        let metadata = std::collections::HashMap::from([("ids".to_string(), "[\"a\",\"b\",\"c\"]".to_string())]);
        let error = refused(&safetensors::serialize(views, Some(metadata)).expect("serialise"));
        assert!(error.contains("`targets` is F32, expected I8"), "{error}");
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
