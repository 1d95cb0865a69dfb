//! The two JSON list formats:
//! - JSON list: `{"classes": [...], "images": [[path, [label name, ...]], ...]}`;
//! - mmpretrain: `{"metainfo": {"classes": [...]}, "data_list": [{"img_path", "gt_label"}]}`
//!   where `gt_label` is a class index or a list of them, into `metainfo.classes`.
//!
//! Both are streamed ([`super::stream`]): entries are handed on one at a time with the line
//! they start on. mmpretrain takes one extra pass for `metainfo`, which may follow `data_list`.

use super::stream::{self, Field, Item};
use super::{LabelIndex, RawEntry, Row, Sink};
use crate::error::DataError;
use serde::Deserialize;
use std::path::Path;

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

pub(crate) fn json_list_classes(path: &Path) -> Result<Vec<String>, DataError> {
    let raw = stream::read_value(path, "classes")?.ok_or_else(|| DataError::annotation(path, "no `classes` list"))?;
    stream::parse_raw(&raw, path, None, "`classes`")
}

pub(crate) fn mmpretrain_classes(path: &Path) -> Result<Vec<String>, DataError> {
    let raw = stream::read_value(path, "metainfo")?.ok_or_else(|| DataError::annotation(path, "no `metainfo`"))?;
    let meta: MmMeta = stream::parse_raw(&raw, path, None, "`metainfo`")?;
    Ok(meta.classes)
}

/// Streams the elements of the top-level array `key`; an error when the key is missing.
fn stream_list(
    path: &Path,
    key: &str,
    each: &mut dyn FnMut(usize, &serde_json::value::RawValue) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let mut found = false;
    stream::read_object(path, &|k| if k == key { Field::Stream } else { Field::Skip }, &mut |item| match item {
        Item::Element { line, raw, .. } => {
            found = true;
            each(line, raw)
        }
        Item::Value { .. } => Ok(()),
    })?;
    // An empty list is found too: a missing key is told apart by a second look only then.
    if !found && stream::read_value(path, key)?.is_none() {
        return Err(DataError::annotation(path, format!("no `{key}` list")));
    }
    Ok(())
}

/// Hands on every element of `images`; an unparsable element or an unknown label is handed on
/// as a problem and the reading goes on.
pub(crate) fn read_json_list(path: &Path, labels: &LabelIndex, sink: &mut Sink<'_>) -> Result<(), DataError> {
    stream_list(path, "images", &mut |line, raw| {
        let (image, names): (String, Vec<String>) =
            match stream::parse_raw(raw, path, Some(line), "expected [path, [label, ...]]") {
                Ok(parsed) => parsed,
                Err(problem) => return sink(Row::Problem(problem)),
            };
        let mut targets = vec![0i8; labels.len()];
        for name in &names {
            match labels.require(name, path, line) {
                Ok(label) => targets[label] = 1,
                Err(problem) => sink(Row::Problem(problem))?,
            }
        }
        sink(Row::Entry(RawEntry { path: image, line, targets }))
    })
}

/// Hands on every element of `data_list`, like [`read_json_list`]; a `gt_label` outside
/// `metainfo.classes` is a problem too.
pub(crate) fn read_mmpretrain(path: &Path, labels: &LabelIndex, sink: &mut Sink<'_>) -> Result<(), DataError> {
    let classes = mmpretrain_classes(path)?;
    stream_list(path, "data_list", &mut |line, raw| {
        let entry: MmEntry = match stream::parse_raw(raw, path, Some(line), "expected {\"img_path\", \"gt_label\"}") {
            Ok(entry) => entry,
            Err(problem) => return sink(Row::Problem(problem)),
        };
        let indices = match entry.gt_label {
            GtLabel::One(i) => vec![i],
            GtLabel::Many(v) => v,
        };
        let mut targets = vec![0i8; labels.len()];
        for i in indices {
            let Some(name) = usize::try_from(i).ok().and_then(|i| classes.get(i)) else {
                sink(Row::Problem(DataError::annotation(
                    path,
                    format!("{line}: `gt_label` `{i}` is outside `metainfo.classes` ({} classes)", classes.len()),
                )))?;
                continue;
            };
            match labels.require(name, path, line) {
                Ok(label) => targets[label] = 1,
                Err(problem) => sink(Row::Problem(problem))?,
            }
        }
        sink(Row::Entry(RawEntry { path: entry.img_path, line, targets }))
    })
}
