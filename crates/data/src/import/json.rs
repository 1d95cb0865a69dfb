//! The two JSON list formats:
//! - JSON list: `{"classes": [...], "images": [[path, [label name, ...]], ...]}`;
//! - mmpretrain: `{"metainfo": {"classes": [...]}, "data_list": [{"img_path", "gt_label"}]}`
//!   where `gt_label` is a class index or a list of them, into `metainfo.classes`.
//!
//! Entries are kept as raw JSON slices first so that errors can name the line they start on.

use super::{LabelIndex, RawEntry, offset_in};
use crate::error::{DataError, LineCounter};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::path::Path;

#[derive(Deserialize)]
struct JsonList<'a> {
    #[serde(borrow)]
    images: Vec<&'a RawValue>,
    classes: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Mmpretrain<'a> {
    metainfo: MmMeta,
    #[serde(borrow)]
    data_list: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct MmMeta {
    classes: Vec<String>,
}

#[derive(Deserialize)]
struct MmEntry {
    img_path: String,
    gt_label: GtLabel,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum GtLabel {
    One(i64),
    Many(Vec<i64>),
}

fn parse<'a, T: Deserialize<'a>>(text: &'a str, path: &Path) -> Result<T, DataError> {
    serde_json::from_str(text).map_err(|e| DataError::annotation(path, format!("{}:{}: {e}", e.line(), e.column())))
}

fn line_of(lines: &mut LineCounter<'_>, text: &str, raw: &RawValue) -> usize {
    lines.line_at(offset_in(text, raw.get()))
}

pub(crate) fn json_list_classes(text: &str, path: &Path) -> Result<Vec<String>, DataError> {
    let list: JsonList<'_> = parse(text, path)?;
    list.classes.ok_or_else(|| DataError::annotation(path, "no `classes` list"))
}

pub(crate) fn mmpretrain_classes(text: &str, path: &Path) -> Result<Vec<String>, DataError> {
    let list: Mmpretrain<'_> = parse(text, path)?;
    Ok(list.metainfo.classes)
}

pub(crate) fn read_json_list(text: &str, path: &Path, labels: &LabelIndex) -> Result<Vec<RawEntry>, DataError> {
    let list: JsonList<'_> = parse(text, path)?;
    let mut entries = Vec::with_capacity(list.images.len());
    let mut lines = LineCounter::new(text);
    for raw in list.images {
        let line = line_of(&mut lines, text, raw);
        let (image, names): (String, Vec<String>) = serde_json::from_str(raw.get())
            .map_err(|e| DataError::annotation(path, format!("{line}: expected [path, [label, ...]]: {e}")))?;
        let mut targets = vec![0i8; labels.len()];
        for name in &names {
            targets[labels.require(name, path, line)?] = 1;
        }
        entries.push(RawEntry { path: image, line, targets });
    }
    Ok(entries)
}

pub(crate) fn read_mmpretrain(text: &str, path: &Path, labels: &LabelIndex) -> Result<Vec<RawEntry>, DataError> {
    let list: Mmpretrain<'_> = parse(text, path)?;
    let classes = list.metainfo.classes;
    let mut entries = Vec::with_capacity(list.data_list.len());
    let mut lines = LineCounter::new(text);
    for raw in list.data_list {
        let line = line_of(&mut lines, text, raw);
        let entry: MmEntry = serde_json::from_str(raw.get()).map_err(|e| {
            DataError::annotation(path, format!("{line}: expected {{\"img_path\", \"gt_label\"}}: {e}"))
        })?;
        let indices = match entry.gt_label {
            GtLabel::One(i) => vec![i],
            GtLabel::Many(v) => v,
        };
        let mut targets = vec![0i8; labels.len()];
        for i in indices {
            let name = usize::try_from(i).ok().and_then(|i| classes.get(i)).ok_or_else(|| {
                DataError::annotation(
                    path,
                    format!("{line}: `gt_label` `{i}` is outside `metainfo.classes` ({} classes)", classes.len()),
                )
            })?;
            targets[labels.require(name, path, line)?] = 1;
        }
        entries.push(RawEntry { path: entry.img_path, line, targets });
    }
    Ok(entries)
}
