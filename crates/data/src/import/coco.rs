//! COCO instances JSON (`instances_train2014.json`, …): an image is positive for every category
//! it has an annotation of (crowd annotations included, as in the ASL reference loader); images
//! without annotations are kept with all targets 0. Category ids map to manifest labels by name.
//!
//! The file is streamed ([`super::stream`]), but a COCO split cannot be handed on image by image:
//! annotations name images by id and usually come after them, and `categories` comes last. What
//! is held until the end is compact: per image its id, file name and line, per annotation two
//! ids (about 60 bytes per image for COCO 2014), never the JSON text (330 MB for train2014).

use super::stream::{self, Field, Item};
use super::{LabelIndex, RawEntry, Row, Sink};
use crate::error::DataError;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

#[derive(Deserialize)]
struct Image {
    id: u64,
    file_name: String,
}

#[derive(Deserialize)]
struct Annotation {
    image_id: u64,
    category_id: u64,
}

#[derive(Deserialize)]
struct Category {
    id: u64,
    name: String,
}

#[derive(Default)]
struct Parsed {
    images: Vec<(u64, String, usize)>,
    /// `(image id, category id)` per element of `annotations`, in order, so that an element's
    /// index names it in messages; an element that did not parse holds [`UNPARSED`].
    annotations: Vec<(u64, u64)>,
    categories: Vec<(u64, String, usize)>,
}

/// Stands for an annotation that did not parse (its problem is already reported).
const UNPARSED: (u64, u64) = (u64::MAX, u64::MAX);

/// Reads the top-level lists; an element that does not parse goes to `problem` (which may stop
/// the reading by returning an error).
fn parse(
    path: &Path,
    with_images: bool,
    problem: &mut dyn FnMut(DataError) -> Result<(), DataError>,
) -> Result<Parsed, DataError> {
    let mut parsed = Parsed::default();
    stream::read_object(
        path,
        &|key| match key {
            "categories" => Field::Stream,
            "images" | "annotations" if with_images => Field::Stream,
            _ => Field::Skip,
        },
        &mut |item| {
            let Item::Element { key, line, raw } = item else { return Ok(()) };
            match key {
                "categories" => match stream::parse_raw::<Category>(raw, path, Some(line), "bad category") {
                    Ok(category) => parsed.categories.push((category.id, category.name, line)),
                    Err(error) => problem(error)?,
                },
                "images" => match stream::parse_raw::<Image>(raw, path, Some(line), "bad image entry") {
                    Ok(image) => parsed.images.push((image.id, image.file_name, line)),
                    Err(error) => problem(error)?,
                },
                _ => match stream::parse_raw::<Annotation>(raw, path, Some(line), "bad annotation") {
                    Ok(annotation) => parsed.annotations.push((annotation.image_id, annotation.category_id)),
                    Err(error) => {
                        parsed.annotations.push(UNPARSED);
                        problem(error)?;
                    }
                },
            }
            Ok(())
        },
    )?;
    Ok(parsed)
}

/// Category names ordered by category id (COCO's usual class order).
pub(crate) fn classes(path: &Path) -> Result<Vec<String>, DataError> {
    let mut categories = parse(path, false, &mut |error| Err(error))?.categories;
    categories.sort_by_key(|c| c.0);
    Ok(categories.into_iter().map(|c| c.1).collect())
}

/// Hands on every image with its targets. Problems (an element that does not parse, a category
/// that is not a manifest label, an image id listed twice, an annotation naming an image or a
/// category that is not listed) are handed on first and the reading goes on; annotations have
/// no line kept, so they are named by their index (`annotations[12]`).
pub(crate) fn read(path: &Path, labels: &LabelIndex, sink: &mut Sink<'_>) -> Result<(), DataError> {
    let parsed = parse(path, true, &mut |problem| sink(Row::Problem(problem)))?;
    // `None`: the category's name is not a label (reported once, here).
    let mut label_of_category = HashMap::new();
    for (id, name, line) in &parsed.categories {
        let label = match labels.require(name, path, *line) {
            Ok(label) => Some(label),
            Err(problem) => {
                sink(Row::Problem(problem))?;
                None
            }
        };
        label_of_category.insert(*id, label);
    }
    let mut row_of_image = HashMap::with_capacity(parsed.images.len());
    for (row, (id, _, line)) in parsed.images.iter().enumerate() {
        if row_of_image.contains_key(id) {
            sink(Row::Problem(DataError::annotation(path, format!("{line}: image id `{id}` appears twice"))))?;
        } else {
            row_of_image.insert(*id, row);
        }
    }
    let mut positives: Vec<(usize, usize)> = Vec::with_capacity(parsed.annotations.len());
    for (index, &(image_id, category_id)) in parsed.annotations.iter().enumerate() {
        if (image_id, category_id) == UNPARSED {
            continue;
        }
        let Some(row) = row_of_image.get(&image_id) else {
            sink(Row::Problem(DataError::annotation(
                path,
                format!("`annotations[{index}]` names image id `{image_id}`, which is not listed"),
            )))?;
            continue;
        };
        match label_of_category.get(&category_id) {
            Some(Some(label)) => positives.push((*row, *label)),
            Some(None) => {}
            None => sink(Row::Problem(DataError::annotation(
                path,
                format!("`annotations[{index}]` names category id `{category_id}`, which is not listed"),
            )))?,
        }
    }
    drop(row_of_image);
    positives.sort_unstable();
    let mut positives = positives.into_iter().peekable();
    for (row, (_, file_name, line)) in parsed.images.into_iter().enumerate() {
        let mut targets = vec![0i8; labels.len()];
        while let Some((_, label)) = positives.next_if(|(r, _)| *r == row) {
            targets[label] = 1;
        }
        sink(Row::Entry(RawEntry { path: file_name, line, targets }))?;
    }
    Ok(())
}
