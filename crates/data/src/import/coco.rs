//! COCO instances JSON (`instances_train2014.json`, …): an image is positive for every category
//! it has an annotation of (crowd annotations included, as in the ASL reference loader); images
//! without annotations are kept with all targets 0. Category ids map to manifest labels by name.

use super::{LabelIndex, RawEntry, offset_in};
use crate::error::{DataError, LineCounter};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::path::Path;

#[derive(Deserialize)]
struct Coco<'a> {
    #[serde(borrow)]
    images: Vec<&'a RawValue>,
    #[serde(default)]
    annotations: Vec<Annotation>,
    #[serde(borrow)]
    categories: Vec<&'a RawValue>,
}

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

fn parse<'a>(text: &'a str, path: &Path) -> Result<Coco<'a>, DataError> {
    serde_json::from_str(text).map_err(|e| DataError::annotation(path, format!("{}:{}: {e}", e.line(), e.column())))
}

fn categories(text: &str, path: &Path, raw: &[&RawValue]) -> Result<Vec<(u64, String, usize)>, DataError> {
    let mut lines = LineCounter::new(text);
    raw.iter()
        .map(|raw| {
            let line = lines.line_at(offset_in(text, raw.get()));
            let category: Category = serde_json::from_str(raw.get())
                .map_err(|e| DataError::annotation(path, format!("{line}: bad category: {e}")))?;
            Ok((category.id, category.name, line))
        })
        .collect()
}

/// Category names ordered by category id (COCO's usual class order).
pub(crate) fn classes(text: &str, path: &Path) -> Result<Vec<String>, DataError> {
    let coco = parse(text, path)?;
    let mut categories = categories(text, path, &coco.categories)?;
    categories.sort_by_key(|c| c.0);
    Ok(categories.into_iter().map(|c| c.1).collect())
}

pub(crate) fn read(text: &str, path: &Path, labels: &LabelIndex) -> Result<Vec<RawEntry>, DataError> {
    let coco = parse(text, path)?;
    let mut label_of_category = HashMap::new();
    for (id, name, line) in categories(text, path, &coco.categories)? {
        label_of_category.insert(id, labels.require(&name, path, line)?);
    }
    let mut entries = Vec::with_capacity(coco.images.len());
    let mut row_of_image = HashMap::with_capacity(coco.images.len());
    let mut lines = LineCounter::new(text);
    for raw in &coco.images {
        let line = lines.line_at(offset_in(text, raw.get()));
        let image: Image = serde_json::from_str(raw.get())
            .map_err(|e| DataError::annotation(path, format!("{line}: bad image entry: {e}")))?;
        if row_of_image.insert(image.id, entries.len()).is_some() {
            return Err(DataError::annotation(path, format!("{line}: image id `{}` appears twice", image.id)));
        }
        entries.push(RawEntry { path: image.file_name, line, targets: vec![0; labels.len()] });
    }
    for annotation in &coco.annotations {
        let row = row_of_image.get(&annotation.image_id).ok_or_else(|| {
            DataError::annotation(
                path,
                format!("an annotation names image id `{}`, which is not listed", annotation.image_id),
            )
        })?;
        let label = label_of_category.get(&annotation.category_id).ok_or_else(|| {
            DataError::annotation(
                path,
                format!("an annotation names category id `{}`, which is not listed", annotation.category_id),
            )
        })?;
        if let Some(entry) = entries.get_mut(*row) {
            entry.targets[*label] = 1;
        }
    }
    Ok(entries)
}
