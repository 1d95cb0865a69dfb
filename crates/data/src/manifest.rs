//! `data_manifest/*.toml`: what a dataset is, where its files are and how to read them.
//!
//! Every relative path in a manifest starts at the *data root*: the directory named by the
//! environment variable `data.root_env` (default `SSPA_DATA_ROOT`) when it is set, else
//! `data.root`, else `<project root>/data` (see [`data_root`]). Unknown keys are errors that name
//! the file, the key and its line and column.

use crate::error::{DataError, position_of};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A whole manifest file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Dataset identifier, e.g. `coco2014`.
    pub name: String,
    /// Domain it belongs to (`natural`, `pedestrian`, `remote_sensing`, `demo`).
    pub domain: String,
    /// Licence of the images and annotations, as the dataset's authors state it.
    #[serde(default)]
    pub licence: String,
    /// Free text: where to download, how the splits were made.
    #[serde(default)]
    pub notes: String,
    pub labels: LabelSource,
    pub source: SourceSection,
    /// Splits by name (`train`, `test`, `val`, …), sorted by name.
    pub splits: BTreeMap<String, SplitSection>,
    /// Expected BLAKE3 (hex) of files, keyed by their path relative to the data root.
    #[serde(default)]
    pub checksums: BTreeMap<String, String>,
    /// Present only for the Fashion-MNIST demo sets (mosaics or scenes): sspa-pipe builds the
    /// files itself.
    pub demo: Option<DemoSection>,
    /// The file the manifest was read from (not part of the TOML).
    #[serde(skip)]
    pub file: PathBuf,
}

/// `[labels]`: the ordered label list; exactly one source.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelSource {
    /// Labels inline, in class-index order.
    pub names: Option<Vec<String>>,
    /// Text file, one label per line (relative to the data root).
    pub file: Option<PathBuf>,
    /// Take the list from the annotation file of the first split (COCO `categories` ordered by
    /// id, JSON-list `classes`, mmpretrain `metainfo.classes`).
    #[serde(default)]
    pub from_annotations: bool,
}

/// Annotation formats the importers read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// COCO instances JSON (`images`, `annotations`, `categories`).
    Coco,
    /// Pascal VOC: an image-set list (`ImageSets/Main/*.txt`) plus one XML per image.
    Voc,
    /// CSV with a path column and either one 0/1/−1 column per label or a separated label list.
    Csv,
    /// `{"classes": [...], "images": [[path, [label, ...]], ...]}`.
    JsonList,
    /// mmpretrain `{"metainfo": {"classes": [...]}, "data_list": [{"img_path", "gt_label"}]}`.
    Mmpretrain,
}

/// `[source]`: the format and its options.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    pub format: Format,
    /// CSV: the column holding image paths.
    #[serde(default = "default_path_column")]
    pub path_column: String,
    /// CSV: a column holding all positive labels of a row, split by `label_separator`. When
    /// absent every column other than `path_column` must be a label name holding 1, 0 or −1.
    pub labels_column: Option<String>,
    /// CSV: separator inside `labels_column`.
    #[serde(default = "default_label_separator")]
    pub label_separator: String,
    /// CSV: field delimiter.
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// VOC: directory of `<id>.xml` files.
    pub xml_dir: Option<PathBuf>,
    /// VOC: extension of images named by id when the XML has no `filename`.
    #[serde(default = "default_image_extension")]
    pub image_extension: String,
}

fn default_path_column() -> String {
    "path".into()
}
fn default_label_separator() -> String {
    "|".into()
}
fn default_delimiter() -> char {
    ','
}
fn default_image_extension() -> String {
    "jpg".into()
}

/// `[splits.<name>]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSection {
    /// Annotation file (VOC: the image-set list), relative to the data root.
    pub annotations: PathBuf,
    /// Directory image paths in the annotations are relative to (default: the data root).
    pub images: Option<PathBuf>,
    /// Whether the split is used for training (stored with room for random-resized crops).
    /// Default: the split's name starts with `train`.
    pub train: Option<bool>,
}

/// How the demo set arranges Fashion-MNIST items in an image (`[demo] layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// A 2×2 grid of 28×28 tiles, each an item or blank ([`crate::demo`]).
    #[default]
    Mosaic,
    /// 1–5 items of random size and position, overlapping, over faint clutter ([`crate::scenes`]).
    Scenes,
}

impl Layout {
    /// Whether this is the default layout (left out of serialised build records, so that the
    /// records of mosaic sets built before layouts existed still match).
    pub fn is_mosaic(&self) -> bool {
        *self == Layout::Mosaic
    }
}

/// `[demo]`: the Fashion-MNIST demo set, 2×2 mosaics or scenes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoSection {
    /// `mosaic` (default) or `scenes`.
    #[serde(default, skip_serializing_if = "Layout::is_mosaic")]
    pub layout: Layout,
    /// Directory holding the Fashion-MNIST IDX `.gz` files (Debian `dataset-fashion-mnist`).
    #[serde(default = "default_fashion_dir")]
    pub source_dir: PathBuf,
    /// Where the set is written, relative to the data root.
    #[serde(default = "default_demo_dir")]
    pub dir: PathBuf,
    #[serde(default = "default_train_images")]
    pub train_images: u32,
    #[serde(default = "default_test_images")]
    pub test_images: u32,
    #[serde(default)]
    pub seed: u64,
    /// Integer nearest-neighbour upscaling of the 56×56 mosaic (`mosaic` only).
    #[serde(default = "default_scale")]
    pub scale: u32,
    /// Chance that a tile is left blank, at least one tile is always filled (`mosaic` only).
    #[serde(default = "default_blank_probability")]
    pub blank_probability: f64,
    /// Side of a scene in pixels (`scenes` only; default 112, the demo's `model.image_size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<u32>,
    /// A corrupted label column, for exercising `sspa-pipe retrain`'s promotion gate: each train
    /// image is annotated with the labels of the next one (the test split stays correct).
    #[serde(default)]
    pub shuffled_train_labels: bool,
    /// Photo-like images instead of grey PNGs: each image enlarged to `width × height`,
    /// tinted, with sensor grain, saved as a colour JPEG. For measuring the shard stage and the
    /// loader on images of the size and decode cost of real datasets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photo: Option<PhotoSection>,
}

/// `[demo.photo]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhotoSection {
    pub width: u32,
    pub height: u32,
    /// JPEG quality, 1–100 (default 90).
    #[serde(default = "default_photo_quality")]
    pub quality: u8,
    /// Largest grain added to each channel of each pixel, in grey levels (default 12).
    #[serde(default = "default_photo_grain")]
    pub grain: u8,
}

fn default_photo_quality() -> u8 {
    90
}
fn default_photo_grain() -> u8 {
    12
}

fn default_fashion_dir() -> PathBuf {
    "/usr/share/datasets/fashion-mnist".into()
}
fn default_demo_dir() -> PathBuf {
    "fashion-mosaic".into()
}
fn default_train_images() -> u32 {
    8000
}
fn default_test_images() -> u32 {
    2000
}
fn default_scale() -> u32 {
    1
}
fn default_blank_probability() -> f64 {
    0.35
}

impl Default for DemoSection {
    fn default() -> Self {
        Self {
            layout: Layout::Mosaic,
            source_dir: default_fashion_dir(),
            dir: default_demo_dir(),
            train_images: default_train_images(),
            test_images: default_test_images(),
            seed: 0,
            scale: default_scale(),
            blank_probability: default_blank_probability(),
            image_size: None,
            shuffled_train_labels: false,
            photo: None,
        }
    }
}

/// The data root for a `[data]` section: `$<root_env>` when set and non-empty, else `root`, else
/// `<project_root>/data`. Relative values start at `project_root`.
pub fn data_root(data: &sspa_config::DataSection, project_root: &Path) -> PathBuf {
    data_root_at(data.root.as_deref(), data.root_env.as_deref(), project_root)
}

/// [`data_root`] from its two keys alone (`data.root`, `data.root_env`).
pub fn data_root_at(root: Option<&Path>, root_env: Option<&str>, project_root: &Path) -> PathBuf {
    let from_env = root_env.and_then(std::env::var_os).filter(|value| !value.is_empty()).map(PathBuf::from);
    match from_env.or_else(|| root.map(Path::to_path_buf)) {
        Some(root) => project_root.join(root),
        None => project_root.join("data"),
    }
}

impl Manifest {
    /// Reads and checks a manifest file.
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::read(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses manifest text; `path` is used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, DataError> {
        let mut manifest: Manifest = toml::from_str(text).map_err(|e| toml_error(text, path, &e))?;
        manifest.file = path.to_path_buf();
        manifest.check()?;
        Ok(manifest)
    }

    fn invalid(&self, key: &str, message: impl Into<String>) -> DataError {
        DataError::ManifestInvalid { path: self.file.clone(), key: key.into(), message: message.into() }
    }

    fn check(&self) -> Result<(), DataError> {
        let sources = usize::from(self.labels.names.is_some())
            + usize::from(self.labels.file.is_some())
            + usize::from(self.labels.from_annotations);
        if sources != 1 {
            return Err(self.invalid("labels", "give exactly one of `names`, `file`, `from_annotations`"));
        }
        if let Some(names) = &self.labels.names {
            check_label_names(names).map_err(|m| self.invalid("labels.names", m))?;
        }
        if self.labels.from_annotations && matches!(self.source.format, Format::Voc | Format::Csv) {
            return Err(self.invalid("labels.from_annotations", "VOC and CSV annotations carry no label list"));
        }
        if self.splits.is_empty() {
            return Err(self.invalid("splits", "at least one split is needed"));
        }
        for name in self.splits.keys() {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                return Err(
                    self.invalid(&format!("splits.{name}"), "split names use letters, digits, `_` and `-` only")
                );
            }
        }
        if self.source.format == Format::Voc && self.source.xml_dir.is_none() {
            return Err(self.invalid("source.xml_dir", "VOC needs the directory of XML files"));
        }
        for (file, hash) in &self.checksums {
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(self.invalid(&format!("checksums.{file}"), "expected 64 hex digits"));
            }
        }
        if let Some(demo) = &self.demo {
            self.check_demo(demo)?;
        }
        Ok(())
    }

    /// The `[demo]` section: the layout's own keys only, and a manifest shaped as the demo writes it.
    fn check_demo(&self, demo: &DemoSection) -> Result<(), DataError> {
        if !(0.0..1.0).contains(&demo.blank_probability) {
            return Err(self.invalid("demo.blank_probability", "must be in [0, 1)"));
        }
        if demo.scale == 0 || demo.scale > 16 {
            return Err(self.invalid("demo.scale", "must be 1..=16"));
        }
        match demo.layout {
            Layout::Mosaic if demo.image_size.is_some() => {
                return Err(self.invalid("demo.image_size", "is for `layout = \"scenes\"`; a mosaic is 56·`scale` px"));
            }
            Layout::Scenes if demo.scale != default_scale() => {
                return Err(self.invalid("demo.scale", "is for `layout = \"mosaic\"`; scenes use `image_size`"));
            }
            Layout::Scenes if demo.blank_probability != default_blank_probability() => {
                return Err(
                    self.invalid("demo.blank_probability", "is for `layout = \"mosaic\"`; a scene holds 1–5 items")
                );
            }
            Layout::Scenes if !matches!(demo.image_size, None | Some(32..=1024)) => {
                return Err(self.invalid("demo.image_size", "must be 32..=1024"));
            }
            _ => {}
        }
        if demo.train_images == 0 || demo.test_images == 0 {
            return Err(self.invalid("demo", "`train_images` and `test_images` must be positive"));
        }
        if let Some(photo) = &demo.photo {
            if !(16..=8192).contains(&photo.width) || !(16..=8192).contains(&photo.height) {
                return Err(self.invalid("demo.photo", "`width` and `height` must be 16..=8192"));
            }
            if !(1..=100).contains(&photo.quality) {
                return Err(self.invalid("demo.photo.quality", "must be 1..=100"));
            }
        }
        if self.source.format != Format::JsonList {
            return Err(self.invalid("source.format", "the demo set is written as `json_list`"));
        }
        if let Some(names) = &self.labels.names {
            let mut seen = std::collections::HashSet::new();
            if names.is_empty()
                || names.iter().any(|n| !crate::demo::FASHION_CLASSES.contains(&n.as_str()) || !seen.insert(n))
            {
                return Err(self.invalid(
                    "labels.names",
                    "the demo labels are Fashion-MNIST classes (some or all of them, each once)",
                ));
            }
        }
        for (name, split) in &self.splits {
            if !split.annotations.starts_with(&demo.dir) || !matches!(name.as_str(), "train" | "test") {
                return Err(self.invalid(
                    &format!("splits.{name}"),
                    format!("the demo has splits `train` and `test` with annotations under `{}`", demo.dir.display()),
                ));
            }
        }
        Ok(())
    }

    /// Whether split `name` is a training split (see [`SplitSection::train`]).
    pub fn is_train_split(&self, name: &str) -> bool {
        self.splits.get(name).and_then(|s| s.train).unwrap_or_else(|| name.starts_with("train"))
    }

    /// The split section, or an error listing the manifest's splits.
    pub fn split(&self, name: &str) -> Result<&SplitSection, DataError> {
        self.splits.get(name).ok_or_else(|| DataError::UnknownSplit {
            split: name.into(),
            available: self.splits.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "),
        })
    }

    /// Files whose content decides what the importers produce, for the runner's input hashes:
    /// the label file, every split's annotation file and, for VOC, every XML the image-set lists
    /// name. For the demo it is the Fashion-MNIST IDX files the mosaics are built from (the
    /// built files are a deterministic function of them and of the manifest).
    pub fn annotation_files(&self, data_root: &Path) -> Result<Vec<PathBuf>, DataError> {
        if let Some(demo) = &self.demo {
            return Ok(crate::demo::source_files(demo));
        }
        let mut files = Vec::new();
        if let Some(file) = &self.labels.file {
            files.push(data_root.join(file));
        }
        for split in self.splits.values() {
            let annotations = data_root.join(&split.annotations);
            if self.source.format == Format::Voc {
                let xml_dir = data_root.join(self.source.xml_dir.as_deref().unwrap_or(Path::new("")));
                for (id, _) in crate::import::voc::read_image_set(&annotations)? {
                    files.push(xml_dir.join(format!("{id}.xml")));
                }
            }
            files.push(annotations);
        }
        Ok(files)
    }

    /// Checks the `[checksums]` entries that name `file` (a path under `data_root`).
    pub fn verify_checksum(&self, data_root: &Path, file: &Path) -> Result<(), DataError> {
        let relative = file.strip_prefix(data_root).unwrap_or(file);
        let key = relative.to_string_lossy().replace('\\', "/");
        if let Some(expected) = self.checksums.get(&key) {
            let actual = hash_file(file)?;
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(DataError::ChecksumMismatch {
                    path: file.to_path_buf(),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        Ok(())
    }
}

/// BLAKE3 of a file, hex.
pub fn hash_file(path: &Path) -> Result<String, DataError> {
    Ok(sspa_fsio::blake3_file(path).map_err(|e| DataError::read(path, e))?.blake3)
}

pub(crate) fn check_label_names(names: &[String]) -> Result<(), String> {
    if names.is_empty() {
        return Err("the label list is empty".into());
    }
    let mut seen = std::collections::HashSet::new();
    for name in names {
        if name.trim().is_empty() {
            return Err("a label name is empty".into());
        }
        if !seen.insert(name.as_str()) {
            return Err(format!("label `{name}` is listed twice"));
        }
    }
    Ok(())
}

fn toml_error(text: &str, path: &Path, error: &toml::de::Error) -> DataError {
    let message = error.message().trim().to_string();
    let position = error.span().map(|span| position_of(text, span.start));
    if let (Some(rest), Some(position)) = (message.strip_prefix("unknown field `"), position) {
        let key = rest.split('`').next().unwrap_or_default().to_string();
        return DataError::ManifestUnknownKey { path: path.to_path_buf(), key, position };
    }
    let message = match position {
        Some(position) => format!("{position}: {message}"),
        None => message,
    };
    DataError::ManifestToml { path: path.to_path_buf(), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "toy"
domain = "demo"
[labels]
names = ["cat", "dog"]
[source]
format = "json_list"
[splits.train]
annotations = "toy/train.json"
[splits.test]
annotations = "toy/test.json"
"#;

    #[test]
    fn minimal_manifest_parses() {
        let manifest = Manifest::parse(MINIMAL, Path::new("toy.toml")).expect("valid");
        assert_eq!(manifest.labels.names.as_deref(), Some(&["cat".to_string(), "dog".to_string()][..]));
        assert!(manifest.is_train_split("train"));
        assert!(!manifest.is_train_split("test"));
        assert_eq!(manifest.source.path_column, "path");
    }

    #[test]
    fn unknown_key_names_file_key_and_line() {
        let text = MINIMAL.replace("[splits.test]", "[splits.test]\nanotations_typo = 1");
        let error = Manifest::parse(&text, Path::new("toy.toml")).expect_err("typo");
        match &error {
            DataError::ManifestUnknownKey { key, position, .. } => {
                assert_eq!(key, "anotations_typo");
                assert_eq!(position.line, 11);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(error.to_string().contains("toy.toml"), "{error}");
    }

    #[test]
    fn two_label_sources_are_rejected() {
        let text = MINIMAL.replace("names = [", "from_annotations = true\nnames = [");
        let error = Manifest::parse(&text, Path::new("toy.toml")).expect_err("two sources");
        assert!(error.to_string().contains("labels"), "{error}");
    }

    #[test]
    fn data_root_prefers_the_environment() {
        let mut data: sspa_config::DataSection = toml::from_str("manifest = \"m.toml\"").expect("section");
        data.root_env = Some("SSPA_DATA_TEST_ROOT_UNSET_VARIABLE".into());
        assert_eq!(data_root(&data, Path::new("/p")), Path::new("/p/data"));
        data.root = Some("elsewhere".into());
        assert_eq!(data_root(&data, Path::new("/p")), Path::new("/p/elsewhere"));
        data.root_env = Some("PATH".into());
        let path = std::env::var("PATH").expect("PATH is set");
        assert_eq!(data_root(&data, Path::new("/p")), Path::new("/p").join(path));
    }
}
