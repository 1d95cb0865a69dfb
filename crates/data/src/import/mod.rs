//! Annotation importers: every format becomes a [`Split`] whose targets follow the manifest's
//! label order, 1 = present, 0 = absent, −1 = ignored (e.g. VOC objects marked `difficult` only).
//!
//! Checks shared by all formats: the annotation file's `[checksums]` entry, duplicate images
//! (error naming both lines), optionally image files that do not exist, empty splits (error) and
//! labels without a positive image in a split (a warning naming them, kept in
//! [`Split::labels_without_positives`]).
//!
//! A bad row does not stop the checking pass: the importers hand on every problem (unknown
//! label, unparsable entry, duplicate, missing image file) and the pass reports them all in one
//! error, the first [`PROBLEMS_LISTED`](crate::error::PROBLEMS_LISTED) with file and line
//! ([`DataError::Annotations`]; a single problem is returned as itself). Only what makes the
//! rest of the file unreadable (a JSON syntax error, an unterminated CSV quote, an I/O error)
//! stops it, and is reported after what was found before.
//!
//! Splits are read as streams ([`SplitSource`]): a first pass ([`SplitSource::check`]) runs the
//! checks, a second ([`SplitSource::for_each`]) hands on the entries; neither holds the split in
//! memory (duplicates are found by an external sort of path hashes, [`duplicates`]). COCO is the
//! exception that holds a compact per-image table (see [`coco`]). [`import_split`] collects a
//! whole split for small datasets and tests.

pub mod coco;
pub mod csv;
mod duplicates;
pub mod json;
mod problems;
mod stream;
pub mod voc;

use crate::error::DataError;
use crate::manifest::{Format, Manifest};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
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

/// What an importer hands on: an entry, or a problem of a row (the importer then goes on with the
/// next row). A row with a problem may still be handed on as an entry when its path is known, so
/// that duplicates and missing files are found too.
pub(crate) enum Row {
    Entry(RawEntry),
    Problem(DataError),
}

/// Where an importer sends its rows; an error it returns stops the reading.
pub(crate) type Sink<'a> = dyn FnMut(Row) -> Result<(), DataError> + 'a;

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
    let names = match manifest.source.format {
        Format::Coco => coco::classes(&path)?,
        Format::JsonList => json::json_list_classes(&path)?,
        Format::Mmpretrain => json::mmpretrain_classes(&path)?,
        Format::Voc | Format::Csv => {
            return Err(DataError::annotation(&path, "this format carries no label list"));
        }
    };
    crate::manifest::check_label_names(&names).map_err(|m| DataError::annotation(&path, m))?;
    Ok(names)
}

/// One split's annotations, read as a stream (see the module docs).
#[derive(Debug, Clone)]
pub struct SplitSource<'a> {
    manifest: &'a Manifest,
    pub name: String,
    /// The annotation file (VOC: the image-set list).
    pub annotations: PathBuf,
    /// Image paths in the annotations are relative to this directory.
    pub image_dir: PathBuf,
    labels: &'a [String],
    index: LabelIndex,
    data_root: PathBuf,
    /// Whether the checking pass also reports image files that do not exist.
    check_image_files: bool,
}

/// What the checking pass of a split found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SplitCheck {
    pub images: u64,
    /// Labels with no image marked 1 in this split (warned about).
    pub labels_without_positives: Vec<String>,
}

impl<'a> SplitSource<'a> {
    /// Opens split `split` of `manifest` and verifies its annotation file's `[checksums]` entry.
    pub fn open(
        manifest: &'a Manifest,
        data_root: &Path,
        split: &str,
        labels: &'a [String],
    ) -> Result<Self, DataError> {
        let section = manifest.split(split)?;
        let annotations = data_root.join(&section.annotations);
        manifest.verify_checksum(data_root, &annotations)?;
        let image_dir = match &section.images {
            Some(dir) => data_root.join(dir),
            None => data_root.to_path_buf(),
        };
        Ok(Self {
            manifest,
            name: split.to_string(),
            annotations,
            image_dir,
            labels,
            index: LabelIndex::new(labels),
            data_root: data_root.to_path_buf(),
            check_image_files: false,
        })
    }

    /// Makes the checking pass report every listed image file that does not exist, with the
    /// other problems of the annotations (one `stat` per image). Leave it off where missing
    /// images are to be skipped later instead (`data.on_bad_image = "skip"`).
    pub fn checking_image_files(mut self) -> Self {
        self.check_image_files = true;
        self
    }

    /// Every row as the annotations write it, in file order.
    fn raw(&self, sink: &mut Sink<'_>) -> Result<(), DataError> {
        let path = &self.annotations;
        let source = &self.manifest.source;
        match source.format {
            Format::Coco => coco::read(path, &self.index, sink),
            Format::JsonList => json::read_json_list(path, &self.index, sink),
            Format::Mmpretrain => json::read_mmpretrain(path, &self.index, sink),
            Format::Csv => csv::read(path, source, &self.index, sink),
            Format::Voc => {
                let xml_dir = self.data_root.join(source.xml_dir.as_deref().unwrap_or(Path::new("")));
                voc::read(path, &xml_dir, &source.image_extension, &self.index, sink)
            }
        }
    }

    /// The checking pass: parses every entry and reports every problem of the split at once
    /// (see the module docs), or an empty split; warns about labels without a positive image.
    pub fn check(&self) -> Result<SplitCheck, DataError> {
        let mut problems = problems::Problems::new(&self.annotations);
        let mut positives = vec![0u64; self.labels.len()];
        let mut duplicates = duplicates::DuplicateFinder::new();
        let mut images = 0u64;
        let read = self.raw(&mut |row| {
            let entry = match row {
                Row::Problem(problem) => {
                    problems.push(problem);
                    return Ok(());
                }
                Row::Entry(entry) => entry,
            };
            for (count, &t) in positives.iter_mut().zip(&entry.targets) {
                *count += u64::from(t == 1);
            }
            images += 1;
            if self.check_image_files {
                let looked_at = self.image_dir.join(&entry.path);
                if !looked_at.is_file() {
                    problems.push(DataError::MissingImage {
                        path: self.annotations.clone(),
                        line: entry.line,
                        image: entry.path.clone(),
                        looked_at,
                    });
                }
            }
            duplicates.push(&entry.path)
        });
        if let Err(error) = read {
            return Err(problems.stopped_by(error));
        }
        match duplicates.finish(problems.room()) {
            Ok(found) => self.add_duplicates(found, &mut problems),
            Err(error) => return Err(problems.stopped_by(error)),
        }
        problems.into_result()?;
        if images == 0 {
            return Err(DataError::EmptySplit { path: self.annotations.clone(), split: self.name.clone() });
        }
        let labels_without_positives: Vec<String> =
            self.labels.iter().zip(&positives).filter(|(_, c)| **c == 0).map(|(l, _)| l.clone()).collect();
        if !labels_without_positives.is_empty() {
            tracing::warn!(
                split = %self.name,
                file = %self.annotations.display(),
                labels = ?labels_without_positives,
                "labels without a positive image in this split: their AP is undefined"
            );
        }
        Ok(SplitCheck { images, labels_without_positives })
    }

    /// Adds the duplicates found: those listed are described by reading the entries again for
    /// their lines and path (one more pass, stopped after the last one needed).
    fn add_duplicates(&self, found: duplicates::Duplicates, problems: &mut problems::Problems) {
        problems.add_unlisted(found.count - found.listed.len());
        if found.listed.is_empty() {
            return;
        }
        let wanted: HashSet<u64> = found.listed.iter().flat_map(|d| [d.first, d.second]).collect();
        let last = found.listed.iter().map(|d| d.second).max().unwrap_or_default();
        let mut seen: HashMap<u64, (usize, String)> = HashMap::with_capacity(wanted.len());
        let mut ordinal = 0u64;
        let _ = self.raw(&mut |row| {
            let Row::Entry(entry) = row else { return Ok(()) };
            if wanted.contains(&ordinal) {
                seen.insert(ordinal, (entry.line, entry.path));
            }
            ordinal += 1;
            // Stops the reading early; the marker is never reported.
            if ordinal > last { Err(DataError::annotation("", "all duplicates found")) } else { Ok(()) }
        });
        for duplicate in &found.listed {
            problems.push(match (seen.get(&duplicate.first), seen.get(&duplicate.second)) {
                (Some((first_line, _)), Some((line, image))) => DataError::DuplicateImage {
                    path: self.annotations.clone(),
                    line: *line,
                    first_line: *first_line,
                    image: image.clone(),
                },
                _ => DataError::annotation(&self.annotations, "changed while it was being read"),
            });
        }
    }

    /// The reading pass: hands on every entry, its path joined to the image directory. A row
    /// problem (there is none after a successful [`SplitSource::check`]) stops it.
    pub fn for_each(&self, each: &mut dyn FnMut(ImageEntry) -> Result<(), DataError>) -> Result<(), DataError> {
        self.raw(&mut |row| match row {
            Row::Entry(entry) => each(ImageEntry { path: self.image_dir.join(&entry.path), targets: entry.targets }),
            Row::Problem(problem) => Err(problem),
        })
    }
}

/// Imports one split into memory: checks it, then collects its entries.
pub fn import_split(manifest: &Manifest, data_root: &Path, split: &str, labels: &[String]) -> Result<Split, DataError> {
    let source = SplitSource::open(manifest, data_root, split, labels)?;
    let check = source.check()?;
    let mut images = Vec::with_capacity(usize::try_from(check.images).unwrap_or_default());
    source.for_each(&mut |entry| {
        images.push(entry);
        Ok(())
    })?;
    Ok(Split { name: split.into(), images, labels_without_positives: check.labels_without_positives })
}

/// Imports every split of the manifest into memory.
pub fn import(manifest: &Manifest, data_root: &Path) -> Result<Dataset, DataError> {
    let labels = resolve_labels(manifest, data_root)?;
    let splits = manifest
        .splits
        .keys()
        .map(|name| import_split(manifest, data_root, name, &labels))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Dataset { labels, splits })
}
