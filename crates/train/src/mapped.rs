//! Feature files read through a memory map: a split's rows are copied out batch by batch, so
//! training on cached features holds the model and a few batches, not the split (the OS keeps
//! what it chooses of the file in its page cache, shared and reclaimable).
//!
//! [`MappedFeatures::open`] checks a file of [`crate::write_features`] (tensors, dtypes, shapes,
//! ids, target values) without copying its payload; it is the format's one reader
//! ([`crate::read_features`] copies what it maps);
//! [`MappedFeatures::rows`] selects a subset of rows ([`MappedRows`], e.g. the train and validation
//! slices of the train split); [`MappedSource`] trains on two such subsets. Batches, content hashes
//! and so every trained weight are those of the same rows held in a [`FeatureSet`].

use std::collections::BTreeMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use burn::prelude::*;

use crate::error::TrainError;
use crate::features::{Batch, FeatureDtype, FeatureSet, decode};
use crate::source::{FeatureRows, FeatureSource};

/// A features file mapped into memory.
#[derive(Debug)]
pub struct MappedFeatures {
    path: PathBuf,
    map: memmap2::Mmap,
    /// How `global` and `patches` store their values.
    dtype: FeatureDtype,
    /// Byte ranges of `global`, `patches` and `targets` in `map`.
    global: Range<usize>,
    patches: Range<usize>,
    targets: Range<usize>,
    /// Image ids, one per row.
    pub ids: Vec<String>,
    /// Patches per image `N`.
    pub patches_per_image: usize,
    /// Feature width `d`.
    pub width: usize,
    /// Classes `C`.
    pub classes: usize,
}

impl MappedFeatures {
    /// Maps `path` and checks it; returns it with the metadata (without `ids`).
    ///
    /// The file must not be changed in place while it is mapped: the features stage publishes its
    /// files by rename, so a mapped file is never rewritten under a reader.
    ///
    /// # Errors
    /// [`TrainError::Io`] naming the file, [`TrainError::CorruptCache`] naming it for a file that
    /// is not a features file, disagrees with itself or holds a target outside `{1, 0, −1}`.
    pub fn open(path: &Path) -> Result<(Self, BTreeMap<String, String>), TrainError> {
        let bad = |reason: String| TrainError::CorruptCache { path: path.to_owned(), reason };
        let file = File::open(path).map_err(TrainError::io(path))?;
        // SAFETY: the mapping is read-only and the project never writes a published features file
        // in place (atomic temp + rename); a file truncated by someone else would fault on access.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(TrainError::io(path))?;
        let (header_len, header) = safetensors::SafeTensors::read_metadata(&map).map_err(|e| bad(e.to_string()))?;
        let start = 8 + header_len;
        let mut metadata: BTreeMap<String, String> =
            header.metadata().clone().unwrap_or_default().into_iter().collect();
        let ids: Vec<String> = serde_json::from_str(&metadata.remove("ids").ok_or_else(|| bad("no `ids`".into()))?)
            .map_err(TrainError::json(path))?;
        let tensor = |name: &str, dtype: safetensors::Dtype| {
            let info = header.info(name).ok_or_else(|| bad(format!("tensor `{name}`: not in the file")))?;
            if info.dtype != dtype {
                return Err(bad(format!("`{name}` is {:?}, expected {dtype:?}", info.dtype)));
            }
            let (from, to) = info.data_offsets;
            let bytes = info.shape.iter().product::<usize>() * dtype.bitsize() / 8;
            if to - from != bytes || start + to > map.len() {
                return Err(bad(format!("tensor `{name}`: {} bytes for shape {:?}", to - from, info.shape)));
            }
            Ok((info.shape.clone(), start + from..start + to))
        };
        let stored = header.info("global").map(|info| info.dtype);
        let (dtype, stored) = match stored {
            Some(safetensors::Dtype::F16) => (FeatureDtype::F16, safetensors::Dtype::F16),
            Some(safetensors::Dtype::BF16) => (FeatureDtype::Bf16, safetensors::Dtype::BF16),
            _ => (FeatureDtype::F32, safetensors::Dtype::F32),
        };
        let (global_shape, global) = tensor("global", stored)?;
        let (patches_shape, patches) = tensor("patches", stored)?;
        let (targets_shape, targets) = tensor("targets", safetensors::Dtype::I8)?;
        let (n, width) = match global_shape[..] {
            [n, width] => (n, width),
            ref shape => return Err(bad(format!("`global` has shape {shape:?}"))),
        };
        let patches_per_image = match patches_shape[..] {
            [pn, p, w] if pn == n && w == width => p,
            ref shape => return Err(bad(format!("`patches` has shape {shape:?}, `global` {global_shape:?}"))),
        };
        let classes = match targets_shape[..] {
            [tn, c] if tn == n => c,
            ref shape => return Err(bad(format!("`targets` has shape {shape:?} for {n} images"))),
        };
        if ids.len() != n {
            return Err(bad(format!("{} ids for {n} images", ids.len())));
        }
        if patches_per_image == 0 || width == 0 || classes == 0 {
            // The words of `FeatureSet::validate`, as `read_features` reported them.
            let sizes = TrainError::Option {
                key: "features",
                value: format!("N = {patches_per_image}, d = {width}, C = {classes}"),
                reason: "patches, width and classes must be positive",
            };
            return Err(bad(sizes.to_string()));
        }
        let features = Self {
            path: path.to_owned(),
            map,
            dtype,
            global,
            patches,
            targets,
            ids,
            patches_per_image,
            width,
            classes,
        };
        if let Some(index) = features.map[features.targets.clone()].iter().position(|&b| !matches!(b as i8, -1..=1)) {
            let target = TrainError::Target {
                image: index / classes,
                class: index % classes,
                value: features.map[features.targets.start + index] as i8,
            };
            return Err(bad(target.to_string()));
        }
        Ok((features, metadata))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows `n`.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the file holds no row.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The rows `rows` (in that order) as a split of their own.
    ///
    /// # Errors
    /// [`TrainError::Option`] naming a row outside the file.
    pub fn rows(&self, rows: Vec<usize>) -> Result<MappedRows<'_>, TrainError> {
        if let Some(row) = rows.iter().find(|&&row| row >= self.len()) {
            return Err(TrainError::Option {
                key: "rows",
                value: format!("{row} of {} in `{}`", self.len(), self.path.display()),
                reason: "outside the features file",
            });
        }
        Ok(MappedRows { file: self, rows })
    }

    /// Every row, copied into memory.
    pub fn to_feature_set(&self) -> FeatureSet {
        FeatureSet {
            ids: self.ids.clone(),
            global: decode(&self.map[self.global.clone()], self.dtype),
            patches: decode(&self.map[self.patches.clone()], self.dtype),
            targets: self.map[self.targets.clone()].iter().map(|&b| b as i8).collect(),
            patches_per_image: self.patches_per_image,
            width: self.width,
            classes: self.classes,
        }
    }

    /// Every row, selected in file order.
    pub fn all_rows(&self) -> MappedRows<'_> {
        MappedRows { file: self, rows: (0..self.len()).collect() }
    }

    /// The targets `[n, C]` (1, 0, −1), copied out (one byte a value).
    pub fn targets(&self) -> Vec<i8> {
        self.map[self.targets.clone()].iter().map(|&b| b as i8).collect()
    }

    /// How the feature values are stored (read back as f32).
    pub fn dtype(&self) -> FeatureDtype {
        self.dtype
    }

    fn global_row(&self, row: usize) -> &[u8] {
        let stride = self.width * self.dtype.size();
        &self.map[self.global.start + row * stride..][..stride]
    }

    fn patches_row(&self, row: usize) -> &[u8] {
        let stride = self.patches_per_image * self.width * self.dtype.size();
        &self.map[self.patches.start + row * stride..][..stride]
    }

    fn targets_row(&self, row: usize) -> &[u8] {
        &self.map[self.targets.start + row * self.classes..][..self.classes]
    }
}

/// Some rows of a [`MappedFeatures`], in a fixed order.
#[derive(Debug, Clone)]
pub struct MappedRows<'a> {
    file: &'a MappedFeatures,
    rows: Vec<usize>,
}

impl MappedRows<'_> {
    /// Rows selected.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no row is selected.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The file the rows are in.
    pub fn file(&self) -> &MappedFeatures {
        self.file
    }

    /// The selected rows, copied into memory (for a few rows, e.g. the images whose maps are drawn).
    pub fn to_feature_set(&self) -> FeatureSet {
        let file = self.file;
        let mut set = FeatureSet {
            ids: Vec::with_capacity(self.rows.len()),
            global: Vec::with_capacity(self.rows.len() * file.width),
            patches: Vec::with_capacity(self.rows.len() * file.patches_per_image * file.width),
            targets: Vec::with_capacity(self.rows.len() * file.classes),
            patches_per_image: file.patches_per_image,
            width: file.width,
            classes: file.classes,
        };
        for &row in &self.rows {
            set.ids.push(file.ids[row].clone());
            set.global.extend(decode(file.global_row(row), file.dtype));
            set.patches.extend(decode(file.patches_row(row), file.dtype));
            set.targets.extend(file.targets_row(row).iter().map(|&t| t as i8));
        }
        set
    }

    /// A hash of the rows as stored: for an f32 file, [`FeatureSet::content_hash`] of the same rows
    /// held in memory.
    pub fn content_hash(&self) -> String {
        let file = self.file;
        let mut hasher = blake3::Hasher::new();
        for &row in &self.rows {
            hasher.update(file.global_row(row));
        }
        for &row in &self.rows {
            hasher.update(file.patches_row(row));
        }
        for &row in &self.rows {
            hasher.update(file.targets_row(row));
        }
        for &row in &self.rows {
            let id = &file.ids[row];
            hasher.update(&(id.len() as u64).to_le_bytes());
            hasher.update(id.as_bytes());
        }
        hasher.finalize().to_hex().to_string()
    }

    /// The selected rows at `positions` (indices into this selection) as tensors on `device`.
    pub fn batch(&self, positions: &[usize], device: &Device) -> Batch {
        let file = self.file;
        let (patches, width, classes) = (file.patches_per_image, file.width, file.classes);
        let mut global = Vec::with_capacity(positions.len() * width);
        let mut patch_values = Vec::with_capacity(positions.len() * patches * width);
        let mut targets = Vec::with_capacity(positions.len() * classes);
        for &position in positions {
            let row = self.rows[position];
            global.extend(decode(file.global_row(row), file.dtype));
            patch_values.extend(decode(file.patches_row(row), file.dtype));
            targets.extend(file.targets_row(row).iter().map(|&t| f32::from(t as i8)));
        }
        let b = positions.len();
        Batch {
            global: Tensor::from_data(TensorData::new(global, [b, width]), device),
            patches: Tensor::from_data(TensorData::new(patch_values, [b, patches, width]), device),
            targets: Tensor::from_data(TensorData::new(targets, [b, classes]), device),
        }
    }
}

impl FeatureRows for MappedRows<'_> {
    fn len(&self) -> usize {
        MappedRows::len(self)
    }

    fn sizes(&self) -> (usize, usize, usize) {
        (self.file.patches_per_image, self.file.width, self.file.classes)
    }

    /// Checked when the file was opened.
    fn validate(&self) -> Result<(), TrainError> {
        Ok(())
    }

    fn content_hash(&self) -> String {
        MappedRows::content_hash(self)
    }

    fn batch(&self, positions: &[usize], device: &Device) -> Batch {
        MappedRows::batch(self, positions, device)
    }
}

/// Training and validation rows of a memory-mapped features file: the memory-bounded
/// [`crate::CachedFeatures`].
pub type MappedSource<'a> = FeatureSource<'a, MappedRows<'a>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::write_features;
    use crate::source::{CachedFeatures, Inputs, SourceBatches, TrainingSource};

    fn sample(n: usize) -> FeatureSet {
        let (patches, width, classes) = (3, 4, 2);
        FeatureSet {
            ids: (0..n).map(|i| format!("img-{i}")).collect(),
            global: (0..n * width).map(|i| (i as f32 * 0.37).sin()).collect(),
            patches: (0..n * patches * width).map(|i| (i as f32 * 0.11).cos()).collect(),
            targets: (0..n * classes).map(|i| (i % 3) as i8 - 1).collect(),
            patches_per_image: patches,
            width,
            classes,
        }
    }

    /// The rows `rows` of `set`, copied.
    fn subset(set: &FeatureSet, rows: &[usize]) -> FeatureSet {
        let (p, w, c) = (set.patches_per_image, set.width, set.classes);
        FeatureSet {
            ids: rows.iter().map(|&r| set.ids[r].clone()).collect(),
            global: rows.iter().flat_map(|&r| set.global[r * w..(r + 1) * w].to_vec()).collect(),
            patches: rows.iter().flat_map(|&r| set.patches[r * p * w..(r + 1) * p * w].to_vec()).collect(),
            targets: rows.iter().flat_map(|&r| set.targets[r * c..(r + 1) * c].to_vec()).collect(),
            ..set.clone()
        }
    }

    fn values(batches: SourceBatches<'_>) -> Vec<Vec<f32>> {
        batches
            .map(|batch| {
                let batch = batch.expect("batch");
                let Inputs::Features { global, patches } = batch.inputs else { panic!("features") };
                [global.into_data(), patches.into_data(), batch.targets.into_data()]
                    .into_iter()
                    .flat_map(|data| data.iter::<f32>().collect::<Vec<_>>())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn mapped_rows_give_the_batches_and_hashes_of_the_same_rows_in_memory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("train.safetensors");
        let set = sample(11);
        let metadata = BTreeMap::from([("split".to_string(), "train".to_string())]);
        write_features(&path, &set, &metadata).expect("write");
        let (mapped, read) = MappedFeatures::open(&path).expect("open");
        assert_eq!(read, metadata);
        assert_eq!(mapped.to_feature_set(), set);
        let (train_rows, validation_rows) = (vec![0, 2, 3, 5, 6, 7, 9, 10], vec![1, 4, 8]);
        let (train, validation) = (subset(&set, &train_rows), subset(&set, &validation_rows));
        let in_memory = CachedFeatures { train: &train, validation: &validation };
        let (train_mapped, validation_mapped) =
            (mapped.rows(train_rows).expect("rows"), mapped.rows(validation_rows).expect("rows"));
        let on_disk = MappedSource { train: &train_mapped, validation: &validation_mapped };
        assert_eq!(on_disk.check(2).expect("shape"), in_memory.check(2).expect("shape"));
        assert_eq!(train_mapped.content_hash(), train.content_hash());
        let fingerprint = |source: &dyn TrainingSource| {
            let mut hasher = blake3::Hasher::new();
            source.fingerprint(&mut hasher);
            hasher.finalize()
        };
        assert_eq!(fingerprint(&on_disk), fingerprint(&in_memory));
        let device = Device::flex();
        for epoch in 0..3 {
            let expected = values(in_memory.epoch(4, epoch, 3, &device).expect("epoch"));
            assert_eq!(values(on_disk.epoch(4, epoch, 3, &device).expect("epoch")), expected, "epoch {epoch}");
        }
        let expected = values(in_memory.validation(2, &device).expect("validation").expect("rows"));
        assert_eq!(values(on_disk.validation(2, &device).expect("validation").expect("rows")), expected);
        assert_eq!(mapped.rows(vec![3, 1]).expect("rows").to_feature_set(), subset(&set, &[3, 1]));
        assert_eq!(mapped.targets(), set.targets);
        let error = mapped.rows(vec![11]).expect_err("outside").to_string();
        assert!(error.contains("train.safetensors"), "{error}");
    }

    #[test]
    fn damaged_files_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("test.safetensors");
        write_features(&path, &sample(4), &BTreeMap::new()).expect("write");
        let good = std::fs::read(&path).expect("bytes");
        std::fs::write(&path, &good[..good.len() - 3]).expect("truncate");
        let error = MappedFeatures::open(&path).expect_err("truncated").to_string();
        assert!(error.contains("test.safetensors"), "{error}");
        let mut bad_target = good.clone();
        *bad_target.last_mut().expect("bytes") = 5;
        std::fs::write(&path, &bad_target).expect("write");
        let error = MappedFeatures::open(&path).expect_err("target 5");
        assert!(matches!(error, TrainError::CorruptCache { .. }), "{error}");
        let message = error.to_string();
        assert!(
            message.contains("test.safetensors") && message.contains("target `5` at image `3`, class `1`"),
            "{message}"
        );
    }
}
