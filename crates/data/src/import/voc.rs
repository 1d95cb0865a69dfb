//! Pascal VOC 2007: the split's annotation file is an image-set list
//! (`ImageSets/Main/trainval.txt`, one id a line); each id has `<xml_dir>/<id>.xml`. A label is 1
//! when some object of that class is not `difficult`, −1 when all its objects are `difficult`
//! (ignored in loss and metrics, as in the VOC devkit), else 0.

use super::{LabelIndex, RawEntry, Row, Sink};
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

/// One annotation XML: the image file name, the targets, and the problems of its objects (an
/// object without a `name`, a class that is not a label), each naming the XML file and line.
pub(crate) struct Xml {
    pub file_name: String,
    pub targets: Vec<i8>,
    pub problems: Vec<DataError>,
}

/// Reads one annotation XML; an error when it cannot be read or parsed at all.
pub(crate) fn read_xml(xml: &Path, default_name: &str, labels: &LabelIndex) -> Result<Xml, DataError> {
    let text = std::fs::read_to_string(xml).map_err(|e| DataError::read(xml, e))?;
    let document = roxmltree::Document::parse(&text).map_err(|e| DataError::annotation(xml, e.to_string()))?;
    let root = document.root_element();
    let file_name = child_text(root, "filename").filter(|f| !f.is_empty()).unwrap_or(default_name).to_string();
    // 0 = unseen, 1 = a non-difficult object, −1 = difficult objects only.
    let mut targets = vec![0i8; labels.len()];
    let mut problems = Vec::new();
    for object in root.children().filter(|c| c.has_tag_name("object")) {
        let line = document.text_pos_at(object.range().start).row as usize;
        let Some(name) = child_text(object, "name") else {
            problems.push(DataError::annotation(xml, format!("{line}: an object has no `name`")));
            continue;
        };
        let label = match labels.require(name, xml, line) {
            Ok(label) => label,
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
        let difficult = matches!(child_text(object, "difficult"), Some("1"));
        targets[label] = match (targets[label], difficult) {
            (1, _) | (_, false) => 1,
            (_, true) => -1,
        };
    }
    Ok(Xml { file_name, targets, problems })
}

/// Ids read from the image-set list and parsed in parallel per chunk, handed on in list order.
const XML_CHUNK: usize = 256;

/// Hands on every id of the image-set list; an XML that cannot be read or parsed, and every
/// problem inside one, are handed on as problems and the reading goes on.
pub(crate) fn read(
    image_set: &Path,
    xml_dir: &Path,
    image_extension: &str,
    labels: &LabelIndex,
    sink: &mut Sink<'_>,
) -> Result<(), DataError> {
    let file = std::fs::File::open(image_set).map_err(|e| DataError::read(image_set, e))?;
    let reader = std::io::BufReader::with_capacity(super::stream::READ_BUFFER, file);
    let mut ids: Vec<(String, usize)> = Vec::with_capacity(XML_CHUNK);
    let mut flush = |ids: &mut Vec<(String, usize)>| -> Result<(), DataError> {
        let parsed: Vec<(usize, Result<Xml, DataError>)> = ids
            .par_iter()
            .map(|(id, line)| {
                let default_name = format!("{id}.{image_extension}");
                (*line, read_xml(&xml_dir.join(format!("{id}.xml")), &default_name, labels))
            })
            .collect();
        ids.clear();
        for (line, xml) in parsed {
            match xml {
                Ok(xml) => {
                    for problem in xml.problems {
                        sink(Row::Problem(problem))?;
                    }
                    sink(Row::Entry(RawEntry { path: xml.file_name, line, targets: xml.targets }))?;
                }
                Err(problem) => sink(Row::Problem(problem))?,
            }
        }
        Ok(())
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
