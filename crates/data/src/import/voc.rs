//! Pascal VOC 2007: the split's annotation file is an image-set list
//! (`ImageSets/Main/trainval.txt`, one id a line); each id has `<xml_dir>/<id>.xml`. A label is 1
//! when some object of that class is not `difficult`, −1 when all its objects are `difficult`
//! (ignored in loss and metrics, as in the VOC devkit), else 0.

use super::{LabelIndex, RawEntry};
use crate::error::DataError;
use rayon::prelude::*;
use std::path::Path;

/// Image ids of an image-set list with their line numbers.
pub(crate) fn read_image_set(path: &Path) -> Result<Vec<(String, usize)>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::read(path, e))?;
    Ok(text
        .lines()
        .enumerate()
        .filter_map(|(i, line)| line.split_whitespace().next().map(|id| (id.to_string(), i + 1)))
        .collect())
}

fn child_text<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> Option<&'a str> {
    node.children().find(|c| c.has_tag_name(name)).and_then(|c| c.text()).map(str::trim)
}

/// Reads one annotation XML: the image file name and targets.
pub(crate) fn read_xml(xml: &Path, default_name: &str, labels: &LabelIndex) -> Result<(String, Vec<i8>), DataError> {
    let text = std::fs::read_to_string(xml).map_err(|e| DataError::read(xml, e))?;
    let document = roxmltree::Document::parse(&text).map_err(|e| DataError::annotation(xml, e.to_string()))?;
    let root = document.root_element();
    let file_name = child_text(root, "filename").filter(|f| !f.is_empty()).unwrap_or(default_name).to_string();
    // 0 = unseen, 1 = a non-difficult object, −1 = difficult objects only.
    let mut targets = vec![0i8; labels.len()];
    for object in root.children().filter(|c| c.has_tag_name("object")) {
        let line = document.text_pos_at(object.range().start).row as usize;
        let name = child_text(object, "name")
            .ok_or_else(|| DataError::annotation(xml, format!("{line}: an object has no `name`")))?;
        let label = labels.require(name, xml, line)?;
        let difficult = matches!(child_text(object, "difficult"), Some("1"));
        targets[label] = match (targets[label], difficult) {
            (1, _) | (_, false) => 1,
            (_, true) => -1,
        };
    }
    Ok((file_name, targets))
}

/// Ids read from the image-set list and parsed in parallel per chunk, handed on in list order.
const XML_CHUNK: usize = 256;

pub(crate) fn read(
    image_set: &Path,
    xml_dir: &Path,
    image_extension: &str,
    labels: &LabelIndex,
    sink: &mut dyn FnMut(RawEntry) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let file = std::fs::File::open(image_set).map_err(|e| DataError::read(image_set, e))?;
    let reader = std::io::BufReader::with_capacity(super::stream::READ_BUFFER, file);
    let mut ids: Vec<(String, usize)> = Vec::with_capacity(XML_CHUNK);
    let mut flush = |ids: &mut Vec<(String, usize)>| -> Result<(), DataError> {
        let entries = ids
            .par_iter()
            .map(|(id, line)| {
                let default_name = format!("{id}.{image_extension}");
                let (path, targets) = read_xml(&xml_dir.join(format!("{id}.xml")), &default_name, labels)?;
                Ok(RawEntry { path, line: *line, targets })
            })
            .collect::<Result<Vec<_>, DataError>>()?;
        ids.clear();
        entries.into_iter().try_for_each(&mut *sink)
    };
    for (i, line) in std::io::BufRead::lines(reader).enumerate() {
        let line = line.map_err(|e| DataError::read(image_set, e))?;
        if let Some(id) = line.split_whitespace().next() {
            ids.push((id.to_string(), i + 1));
        }
        if ids.len() >= XML_CHUNK {
            flush(&mut ids)?;
        }
    }
    flush(&mut ids)
}
