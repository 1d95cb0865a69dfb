//! Annotation importers: every format becomes a [`Split`] whose targets follow the manifest's
//! label order, 1 = present, 0 = absent, −1 = ignored (e.g. VOC objects marked `difficult` only).
//!
//! Checks shared by all formats: the annotation file's `[checksums]` entry, duplicate images
//! (error naming both lines), empty splits (error) and labels without a positive image in a split
//! (a warning naming them, kept in [`Split::labels_without_positives`]).

pub mod coco;
pub mod csv;
pub mod json;
pub mod voc;

use crate::error::DataError;
use crate::manifest::{Format, Manifest};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One image and its targets, in manifest label order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageEntry {
    /// Where the image file is (data root and the split's image directory joined in).
    pub path: PathBuf,
    pub targets: Vec<i8>,
}

/// One split of a dataset after import.
#[derive(Debug, Clone, Serialize)]
pub struct Split {
    pub name: String,
    pub images: Vec<ImageEntry>,
    /// Labels with no image marked 1 in this split (the AP of those is undefined).
    pub labels_without_positives: Vec<String>,
}

/// A whole imported dataset.
#[derive(Debug, Clone, Serialize)]
pub struct Dataset {
    pub labels: Vec<String>,
    pub splits: Vec<Split>,
}

/// What an importer yields per image before the shared checks: the path as written in the
/// annotations and the line it was found on (1-based; 0 when the format has no useful line).
#[derive(Debug, Clone)]
pub(crate) struct RawEntry {
    pub path: String,
    pub line: usize,
    pub targets: Vec<i8>,
}

/// Label name → index, for the importers.
#[derive(Debug, Clone)]
pub(crate) struct LabelIndex {
    names: Vec<String>,
    index: HashMap<String, usize>,
}

impl LabelIndex {
    pub(crate) fn new(names: &[String]) -> Self {
        let index = names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        Self { names: names.to_vec(), index }
    }
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }
    pub(crate) fn get(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }
    /// Index of `name`, or an unknown-label error naming `file` and `line`.
    pub(crate) fn require(&self, name: &str, file: &Path, line: usize) -> Result<usize, DataError> {
        self.get(name).ok_or_else(|| DataError::UnknownLabel {
            path: file.to_path_buf(),
            line,
            label: name.to_string(),
        })
    }
}

/// The manifest's ordered label list (inline, from a file, or from the first split's annotations).
pub fn resolve_labels(manifest: &Manifest, data_root: &Path) -> Result<Vec<String>, DataError> {
    if let Some(names) = &manifest.labels.names {
        return Ok(names.clone());
    }
    if let Some(file) = &manifest.labels.file {
        let path = data_root.join(file);
        manifest.verify_checksum(data_root, &path)?;
        let text = std::fs::read_to_string(&path).map_err(|e| DataError::read(&path, e))?;
        let names: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
        crate::manifest::check_label_names(&names).map_err(|m| DataError::annotation(&path, m))?;
        return Ok(names);
    }
    let (_, first) = manifest
        .splits
        .iter()
        .next()
        .ok_or_else(|| DataError::annotation(&manifest.file, "the manifest has no split"))?;
    let path = data_root.join(&first.annotations);
    manifest.verify_checksum(data_root, &path)?;
    let text = std::fs::read_to_string(&path).map_err(|e| DataError::read(&path, e))?;
    let names = match manifest.source.format {
        Format::Coco => coco::classes(&text, &path)?,
        Format::JsonList => json::json_list_classes(&text, &path)?,
        Format::Mmpretrain => json::mmpretrain_classes(&text, &path)?,
        Format::Voc | Format::Csv => {
            return Err(DataError::annotation(&path, "this format carries no label list"));
        }
    };
    crate::manifest::check_label_names(&names).map_err(|m| DataError::annotation(&path, m))?;
    Ok(names)
}

/// Imports one split: reads the annotations, verifies their checksum, runs the shared checks.
pub fn import_split(manifest: &Manifest, data_root: &Path, split: &str, labels: &[String]) -> Result<Split, DataError> {
    let section = manifest.split(split)?;
    let annotations = data_root.join(&section.annotations);
    manifest.verify_checksum(data_root, &annotations)?;
    let index = LabelIndex::new(labels);
    let source = &manifest.source;
    let raw = match source.format {
        Format::Coco => coco::read(&read_text(&annotations)?, &annotations, &index)?,
        Format::JsonList => json::read_json_list(&read_text(&annotations)?, &annotations, &index)?,
        Format::Mmpretrain => json::read_mmpretrain(&read_text(&annotations)?, &annotations, &index)?,
        Format::Csv => csv::read(&read_text(&annotations)?, &annotations, source, &index)?,
        Format::Voc => {
            let xml_dir = data_root.join(source.xml_dir.as_deref().unwrap_or(Path::new("")));
            voc::read(&annotations, &xml_dir, &source.image_extension, &index)?
        }
    };
    let image_dir = match &section.images {
        Some(dir) => data_root.join(dir),
        None => data_root.to_path_buf(),
    };
    finish_split(split, &annotations, &image_dir, raw, labels)
}

/// Imports every split of the manifest.
pub fn import(manifest: &Manifest, data_root: &Path) -> Result<Dataset, DataError> {
    let labels = resolve_labels(manifest, data_root)?;
    let splits = manifest
        .splits
        .keys()
        .map(|name| import_split(manifest, data_root, name, &labels))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Dataset { labels, splits })
}

fn read_text(path: &Path) -> Result<String, DataError> {
    std::fs::read_to_string(path).map_err(|e| DataError::read(path, e))
}

fn finish_split(
    name: &str,
    annotations: &Path,
    image_dir: &Path,
    raw: Vec<RawEntry>,
    labels: &[String],
) -> Result<Split, DataError> {
    if raw.is_empty() {
        return Err(DataError::EmptySplit { path: annotations.to_path_buf(), split: name.into() });
    }
    let mut first_line: HashMap<&str, usize> = HashMap::with_capacity(raw.len());
    for entry in &raw {
        if let Some(&first) = first_line.get(entry.path.as_str()) {
            return Err(DataError::DuplicateImage {
                path: annotations.to_path_buf(),
                line: entry.line,
                first_line: first,
                image: entry.path.clone(),
            });
        }
        first_line.insert(&entry.path, entry.line);
    }
    let mut positives = vec![0usize; labels.len()];
    for entry in &raw {
        for (count, &t) in positives.iter_mut().zip(&entry.targets) {
            *count += usize::from(t == 1);
        }
    }
    let labels_without_positives: Vec<String> =
        labels.iter().zip(&positives).filter(|(_, c)| **c == 0).map(|(l, _)| l.clone()).collect();
    if !labels_without_positives.is_empty() {
        tracing::warn!(
            split = name,
            file = %annotations.display(),
            labels = ?labels_without_positives,
            "labels without a positive image in this split: their AP is undefined"
        );
    }
    let images =
        raw.into_iter().map(|entry| ImageEntry { path: image_dir.join(&entry.path), targets: entry.targets }).collect();
    Ok(Split { name: name.into(), images, labels_without_positives })
}

/// Byte offset of `inner` inside `outer` (both from the same allocation), for line numbers.
pub(crate) fn offset_in(outer: &str, inner: &str) -> usize {
    (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize)
}
