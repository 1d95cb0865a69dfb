//! COCO instances JSON (`instances_train2014.json`, …): an image is positive for every category
//! it has an annotation of (crowd annotations included, as in the ASL reference loader); images
//! without annotations are kept with all targets 0. Category ids map to manifest labels by name.
//!
//! The file is streamed ([`super::stream`]), but a COCO split cannot be handed on image by image:
//! annotations name images by id and usually come after them, and `categories` comes last. What
//! is held until the end is compact: per image its id, file name and line, per annotation two
//! ids (about 60 bytes per image for COCO 2014), never the JSON text (330 MB for train2014).

use super::stream::{self, Field, Item};
use super::{LabelIndex, RawEntry};
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
    annotations: Vec<(u64, u64)>,
    categories: Vec<(u64, String, usize)>,
}

fn parse(path: &Path, with_images: bool) -> Result<Parsed, DataError> {
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
                "categories" => {
                    let category: Category = stream::parse_raw(raw, path, Some(line), "bad category")?;
                    parsed.categories.push((category.id, category.name, line));
                }
                "images" => {
                    let image: Image = stream::parse_raw(raw, path, Some(line), "bad image entry")?;
                    parsed.images.push((image.id, image.file_name, line));
                }
                _ => {
                    let annotation: Annotation = stream::parse_raw(raw, path, Some(line), "bad annotation")?;
                    parsed.annotations.push((annotation.image_id, annotation.category_id));
                }
            }
            Ok(())
        },
    )?;
    Ok(parsed)
}

/// Category names ordered by category id (COCO's usual class order).
pub(crate) fn classes(path: &Path) -> Result<Vec<String>, DataError> {
    let mut categories = parse(path, false)?.categories;
    categories.sort_by_key(|c| c.0);
    Ok(categories.into_iter().map(|c| c.1).collect())
}

pub(crate) fn read(
    path: &Path,
    labels: &LabelIndex,
    sink: &mut dyn FnMut(RawEntry) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let parsed = parse(path, true)?;
    let mut label_of_category = HashMap::new();
    for (id, name, line) in &parsed.categories {
        label_of_category.insert(*id, labels.require(name, path, *line)?);
    }
    let mut row_of_image = HashMap::with_capacity(parsed.images.len());
    for (row, (id, _, line)) in parsed.images.iter().enumerate() {
        if row_of_image.insert(*id, row).is_some() {
            return Err(DataError::annotation(path, format!("{line}: image id `{id}` appears twice")));
        }
    }
    let mut positives: Vec<(usize, usize)> = Vec::with_capacity(parsed.annotations.len());
    for (image_id, category_id) in &parsed.annotations {
        let row = row_of_image.get(image_id).ok_or_else(|| {
            DataError::annotation(path, format!("an annotation names image id `{image_id}`, which is not listed"))
        })?;
        let label = label_of_category.get(category_id).ok_or_else(|| {
            DataError::annotation(path, format!("an annotation names category id `{category_id}`, which is not listed"))
        })?;
        positives.push((*row, *label));
    }
    drop(row_of_image);
    positives.sort_unstable();
    let mut positives = positives.into_iter().peekable();
    for (row, (_, file_name, line)) in parsed.images.into_iter().enumerate() {
        let mut targets = vec![0i8; labels.len()];
        while let Some((_, label)) = positives.next_if(|(r, _)| *r == row) {
            targets[label] = 1;
        }
        sink(RawEntry { path: file_name, line, targets })?;
    }
    Ok(())
}
