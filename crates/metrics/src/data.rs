//! Score and target matrices, stored column-major, and their matching by image and label name.

use std::collections::HashMap;
use std::path::Path;

use rayon::prelude::*;

use crate::error::{MetricsError, ValueProblem, name_sample};

/// `images × labels` values, stored column-major: `values[label * n_images + image]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelMatrix<T> {
    images: Vec<String>,
    labels: Vec<String>,
    values: Vec<T>,
}

/// Probabilities in `[0, 1]`, one column a label.
pub type Scores = LabelMatrix<f32>;
/// Targets `1`, `0` or `−1` (ignored), one column a label.
pub type Targets = LabelMatrix<i8>;

impl<T: Copy + Default + Send + Sync> LabelMatrix<T> {
    /// `values` column-major: all images of the first label, then the second label, ...
    pub fn from_columns(images: Vec<String>, labels: Vec<String>, values: Vec<T>) -> Result<Self, MetricsError> {
        check_shape("values", values.len(), images.len(), labels.len())?;
        check_unique_labels(&labels)?;
        check_unique_images(&images)?;
        Ok(Self { images, labels, values })
    }

    /// `values` row-major, as a model emits them: all labels of the first image, then the second.
    pub fn from_row_major(images: Vec<String>, labels: Vec<String>, values: &[T]) -> Result<Self, MetricsError> {
        check_shape("values", values.len(), images.len(), labels.len())?;
        let columns = transpose(values, images.len(), labels.len());
        Self::from_columns(images, labels, columns)
    }

    pub fn images(&self) -> &[String] {
        &self.images
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn n_images(&self) -> usize {
        self.images.len()
    }

    pub fn n_labels(&self) -> usize {
        self.labels.len()
    }

    /// Column-major values.
    pub fn values(&self) -> &[T] {
        &self.values
    }

    /// All images' values for one label.
    pub fn column(&self, label: usize) -> &[T] {
        let n = self.images.len();
        &self.values[label * n..(label + 1) * n]
    }

    /// Row-major copy: all labels of the first image, then the second, ...
    pub fn to_row_major(&self) -> Vec<T> {
        transpose(&self.values, self.labels.len(), self.images.len())
    }

    pub fn into_parts(self) -> (Vec<String>, Vec<String>, Vec<T>) {
        (self.images, self.labels, self.values)
    }

    /// The same matrix with images in the order of `order` (indices into `images()`).
    fn select_images(&self, order: &[usize]) -> Vec<T> {
        let n = self.images.len();
        let mut out = vec![T::default(); order.len() * self.labels.len()];
        if order.is_empty() {
            return out;
        }
        out.par_chunks_mut(order.len()).enumerate().for_each(|(label, column)| {
            let source = &self.values[label * n..(label + 1) * n];
            for (value, &row) in column.iter_mut().zip(order) {
                *value = source[row];
            }
        });
        out
    }
}

impl Scores {
    /// The first invalid score (NaN or outside `[0, 1]`) in label-major order, if any.
    pub fn first_invalid(&self) -> Option<(usize, usize, ValueProblem)> {
        first_invalid(&self.values, self.images.len(), score_problem)
    }
}

impl Targets {
    /// The first target that is not 1, 0 or −1, in label-major order, if any.
    pub fn first_invalid(&self) -> Option<(usize, usize, ValueProblem)> {
        first_invalid(&self.values, self.images.len(), |target| {
            (!(-1..=1).contains(&target)).then_some(ValueProblem::TargetOutOfRange(target.into()))
        })
    }
}

pub(crate) fn score_problem(score: f32) -> Option<ValueProblem> {
    if score.is_nan() {
        Some(ValueProblem::NanScore)
    } else if !(0.0..=1.0).contains(&score) {
        Some(ValueProblem::ScoreOutOfRange(score.into()))
    } else {
        None
    }
}

/// `(image, label, problem)` of the first bad value; columns are scanned in parallel.
fn first_invalid<T: Copy + Sync>(
    values: &[T],
    n_images: usize,
    check: impl Fn(T) -> Option<ValueProblem> + Sync,
) -> Option<(usize, usize, ValueProblem)> {
    if n_images == 0 {
        return None;
    }
    values
        .par_chunks(n_images)
        .enumerate()
        .filter_map(|(label, column)| {
            column.iter().enumerate().find_map(|(image, &value)| check(value).map(|problem| (image, label, problem)))
        })
        .min_by_key(|&(image, label, _)| (label, image))
}

/// Scores and targets over the same images and labels, in the same order, all values valid.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalData {
    scores: Scores,
    targets: Targets,
}

impl EvalData {
    /// Matches `scores` to `targets` by image and label name (the targets' order is kept) and
    /// validates every value.
    pub fn new(scores: Scores, targets: Targets) -> Result<Self, MetricsError> {
        align(scores, targets, Path::new("scores"), Path::new("targets"))
    }

    /// Row-major scores and targets over the same images and labels.
    pub fn from_row_major(
        images: Vec<String>,
        labels: Vec<String>,
        scores: &[f32],
        targets: &[i8],
    ) -> Result<Self, MetricsError> {
        check_shape("targets", targets.len(), images.len(), labels.len())?;
        let scores = Scores::from_row_major(images.clone(), labels.clone(), scores)?;
        let targets = Targets::from_row_major(images, labels, targets)?;
        Self::validated(scores, targets)
    }

    fn validated(scores: Scores, targets: Targets) -> Result<Self, MetricsError> {
        let invalid = scores.first_invalid().or_else(|| targets.first_invalid());
        if let Some((image, label, problem)) = invalid {
            return Err(MetricsError::InvalidValue {
                image: scores.images[image].clone(),
                label: scores.labels[label].clone(),
                problem,
            });
        }
        Ok(Self { scores, targets })
    }

    pub fn scores(&self) -> &Scores {
        &self.scores
    }

    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    pub fn images(&self) -> &[String] {
        &self.targets.images
    }

    pub fn labels(&self) -> &[String] {
        &self.targets.labels
    }

    pub fn n_images(&self) -> usize {
        self.targets.images.len()
    }

    pub fn n_labels(&self) -> usize {
        self.targets.labels.len()
    }

    /// Index of a label by name.
    pub fn label_index(&self, label: &str) -> Option<usize> {
        self.targets.labels.iter().position(|name| name == label)
    }
}

/// Puts `scores` in the image and label order of `targets`; names the files in errors.
pub(crate) fn align(
    scores: Scores,
    targets: Targets,
    scores_path: &Path,
    targets_path: &Path,
) -> Result<EvalData, MetricsError> {
    let score_labels: HashMap<&str, usize> =
        scores.labels.iter().enumerate().map(|(index, label)| (label.as_str(), index)).collect();
    let target_labels: HashMap<&str, usize> =
        targets.labels.iter().enumerate().map(|(index, label)| (label.as_str(), index)).collect();
    let only_scores: Vec<&str> =
        scores.labels.iter().map(String::as_str).filter(|l| !target_labels.contains_key(l)).collect();
    let only_targets: Vec<&str> =
        targets.labels.iter().map(String::as_str).filter(|l| !score_labels.contains_key(l)).collect();
    if !only_scores.is_empty() || !only_targets.is_empty() {
        return Err(MetricsError::LabelMismatch {
            scores: scores_path.to_owned(),
            targets: targets_path.to_owned(),
            only_in_scores: name_sample(only_scores.iter().copied(), only_scores.len()),
            only_in_targets: name_sample(only_targets.iter().copied(), only_targets.len()),
        });
    }

    let score_images: HashMap<&str, usize> =
        scores.images.iter().enumerate().map(|(index, image)| (image.as_str(), index)).collect();
    let target_images: HashMap<&str, usize> =
        targets.images.iter().enumerate().map(|(index, image)| (image.as_str(), index)).collect();
    let only_scores: Vec<&str> =
        scores.images.iter().map(String::as_str).filter(|i| !target_images.contains_key(i)).collect();
    let only_targets: Vec<&str> =
        targets.images.iter().map(String::as_str).filter(|i| !score_images.contains_key(i)).collect();
    if !only_scores.is_empty() || !only_targets.is_empty() {
        return Err(MetricsError::ImageMismatch {
            scores: scores_path.to_owned(),
            targets: targets_path.to_owned(),
            only_in_scores: only_scores.len(),
            scores_examples: name_sample(only_scores.iter().copied(), only_scores.len()),
            only_in_targets: only_targets.len(),
            targets_examples: name_sample(only_targets.iter().copied(), only_targets.len()),
        });
    }

    let image_order: Vec<usize> = targets.images.iter().map(|image| score_images[image.as_str()]).collect();
    let label_order: Vec<usize> = targets.labels.iter().map(|label| score_labels[label.as_str()]).collect();
    let same_images = image_order.iter().enumerate().all(|(index, &row)| index == row);
    let same_labels = label_order.iter().enumerate().all(|(index, &column)| index == column);
    let scores = if same_images && same_labels {
        scores
    } else {
        let by_image = if same_images { scores.values.clone() } else { scores.select_images(&image_order) };
        let n = targets.images.len();
        let mut values = Vec::with_capacity(by_image.len());
        for &column in &label_order {
            values.extend_from_slice(&by_image[column * n..(column + 1) * n]);
        }
        Scores { images: targets.images.clone(), labels: targets.labels.clone(), values }
    };
    EvalData::validated(scores, targets)
}

fn check_shape(what: &'static str, actual: usize, images: usize, labels: usize) -> Result<(), MetricsError> {
    let expected = images * labels;
    if actual == expected { Ok(()) } else { Err(MetricsError::Shape { what, actual, expected, images, labels }) }
}

fn check_unique_labels(labels: &[String]) -> Result<(), MetricsError> {
    let mut seen = HashMap::with_capacity(labels.len());
    for label in labels {
        if seen.insert(label.as_str(), ()).is_some() {
            return Err(MetricsError::DuplicateLabel { label: label.clone() });
        }
    }
    Ok(())
}

fn check_unique_images(images: &[String]) -> Result<(), MetricsError> {
    let mut seen = HashMap::with_capacity(images.len());
    for image in images {
        if seen.insert(image.as_str(), ()).is_some() {
            return Err(MetricsError::DuplicateImage { image: image.clone() });
        }
    }
    Ok(())
}

/// Transposes a row-major `rows × cols` matrix. A task gathers a tile of columns (512 bytes of
/// each row: 128 `f32`, 512 `i8`) over all rows: each source row segment is read once, in few
/// page visits, while the tile's output columns are written as sequential streams.
pub(crate) fn transpose<T: Copy + Default + Send + Sync>(values: &[T], rows: usize, cols: usize) -> Vec<T> {
    let tile = (512 / std::mem::size_of::<T>().max(1)).max(1);
    let mut out = vec![T::default(); rows * cols];
    if rows == 0 || cols == 0 {
        return out;
    }
    out.par_chunks_mut(rows * tile).enumerate().for_each(|(index, block)| {
        let first = index * tile;
        let width = block.len() / rows;
        for row in 0..rows {
            let source = &values[row * cols + first..row * cols + first + width];
            for (offset, &value) in source.iter().enumerate() {
                block[offset * rows + row] = value;
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(prefix: &str, count: usize) -> Vec<String> {
        (0..count).map(|index| format!("{prefix}{index}")).collect()
    }

    #[test]
    fn transpose_round_trips_odd_shapes() {
        for (rows, cols) in [(1, 1), (3, 17), (17, 3), (40, 33)] {
            let values: Vec<u32> = (0..(rows * cols) as u32).collect();
            let columns = transpose(&values, rows, cols);
            for row in 0..rows {
                for col in 0..cols {
                    assert_eq!(columns[col * rows + row], values[row * cols + col]);
                }
            }
            assert_eq!(transpose(&columns, cols, rows), values);
        }
    }

    #[test]
    fn align_reorders_images_and_labels_by_name() {
        let scores =
            Scores::from_row_major(vec!["b".into(), "a".into()], vec!["y".into(), "x".into()], &[0.1, 0.2, 0.3, 0.4])
                .expect("valid");
        let targets =
            Targets::from_row_major(vec!["a".into(), "b".into()], vec!["x".into(), "y".into()], &[1, 0, 0, 1])
                .expect("valid");
        let data = EvalData::new(scores, targets).expect("aligned");
        // image a: y=0.3, x=0.4; image b: y=0.1, x=0.2
        assert_eq!(data.scores().column(0), &[0.4, 0.2]);
        assert_eq!(data.scores().column(1), &[0.3, 0.1]);
        assert_eq!(data.scores().images(), data.targets().images());
    }

    #[test]
    fn invalid_values_are_named() {
        let error = EvalData::from_row_major(names("i", 2), names("l", 2), &[0.1, f32::NAN, 0.2, 0.3], &[0; 4])
            .expect_err("NaN");
        assert_eq!(error.to_string(), "image `i0`, label `l1`: score is NaN");
        let error =
            EvalData::from_row_major(names("i", 2), names("l", 2), &[0.1, 0.2, 1.5, 0.3], &[0; 4]).expect_err("range");
        assert_eq!(error.to_string(), "image `i1`, label `l0`: score `1.5` is outside [0, 1]");
        let error =
            EvalData::from_row_major(names("i", 2), names("l", 2), &[0.1; 4], &[0, 0, 0, 2]).expect_err("target");
        assert!(error.to_string().contains("image `i1`, label `l1`: target `2`"), "{error}");
    }

    #[test]
    fn shape_and_duplicates_are_errors() {
        assert!(matches!(
            Scores::from_columns(names("i", 2), names("l", 2), vec![0.0; 3]),
            Err(MetricsError::Shape { actual: 3, expected: 4, .. })
        ));
        assert!(matches!(
            Scores::from_columns(vec!["a".into(), "a".into()], names("l", 1), vec![0.0; 2]),
            Err(MetricsError::DuplicateImage { .. })
        ));
        assert!(matches!(
            Targets::from_columns(names("i", 1), vec!["x".into(), "x".into()], vec![0; 2]),
            Err(MetricsError::DuplicateLabel { .. })
        ));
    }
}
