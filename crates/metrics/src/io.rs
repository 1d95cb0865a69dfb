//! Parquet IO of score and target matrices: one utf8 column `image`, one column a label.
//!
//! Scores are float columns (`Float32` or `Float64`, probabilities in `[0, 1]`); targets are
//! integer columns (any width, values `1`, `0`, `−1` = ignored). Files are matched by `image`
//! and label name. Label columns are decoded in parallel, a group of columns a thread, straight
//! into the column-major matrix.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, Float32Array, Int8Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use rayon::prelude::*;

use crate::data::{EvalData, LabelMatrix, Scores, Targets, align, score_problem};
use crate::error::{MetricsError, ValueProblem};

/// The column that names images.
pub const IMAGE_COLUMN: &str = "image";

/// Rows a decoded batch.
const BATCH_ROWS: usize = 8192;

/// Reads a scores file and a targets file (in parallel) and matches them.
pub fn read_eval_data(scores: &Path, targets: &Path) -> Result<EvalData, MetricsError> {
    let (score_matrix, target_matrix) = rayon::join(|| read_scores(scores), || read_targets(targets));
    align(score_matrix?, target_matrix?, scores, targets)
}

/// Reads a scores Parquet file; every value must be a probability.
pub fn read_scores(path: &Path) -> Result<Scores, MetricsError> {
    read_matrix::<f32>(path)
}

/// Reads a targets Parquet file; every value must be 1, 0 or −1.
pub fn read_targets(path: &Path) -> Result<Targets, MetricsError> {
    read_matrix::<i8>(path)
}

/// Writes scores as `Float32` columns (temp file + rename).
pub fn write_scores(path: &Path, scores: &Scores) -> Result<(), MetricsError> {
    write_matrix(path, scores, DataType::Float32, false, |values| {
        Arc::new(Float32Array::from(values.to_vec())) as ArrayRef
    })
}

/// Writes targets as `Int8` columns (temp file + rename).
pub fn write_targets(path: &Path, targets: &Targets) -> Result<(), MetricsError> {
    write_matrix(path, targets, DataType::Int8, true, |values| Arc::new(Int8Array::from(values.to_vec())) as ArrayRef)
}

/// A matrix cell type and how it is read from Arrow.
trait Cell: Copy + Default + Send + Sync {
    /// For the wrong-type error.
    const EXPECTED: &'static str;

    fn accepts(data_type: &DataType) -> bool;

    /// Copies `array` into `out`; on a bad value, its index and what is wrong.
    fn copy(array: &dyn Array, out: &mut [Self]) -> Result<(), (usize, ValueProblem)>;
}

fn first_null(array: &dyn Array) -> Result<(), (usize, ValueProblem)> {
    if array.null_count() == 0 {
        return Ok(());
    }
    match (0..array.len()).find(|&index| array.is_null(index)) {
        Some(index) => Err((index, ValueProblem::Null)),
        None => Ok(()),
    }
}

impl Cell for f32 {
    const EXPECTED: &'static str = "a float column (`Float32` or `Float64`)";

    fn accepts(data_type: &DataType) -> bool {
        matches!(data_type, DataType::Float32 | DataType::Float64)
    }

    fn copy(array: &dyn Array, out: &mut [Self]) -> Result<(), (usize, ValueProblem)> {
        first_null(array)?;
        match array.data_type() {
            DataType::Float32 => {
                for (index, (slot, &value)) in
                    out.iter_mut().zip(array.as_primitive::<Float32Type>().values()).enumerate()
                {
                    if let Some(problem) = score_problem(value) {
                        return Err((index, problem));
                    }
                    *slot = value;
                }
            }
            _ => {
                for (index, (slot, &value)) in
                    out.iter_mut().zip(array.as_primitive::<Float64Type>().values()).enumerate()
                {
                    if value.is_nan() {
                        return Err((index, ValueProblem::NanScore));
                    }
                    if !(0.0..=1.0).contains(&value) {
                        return Err((index, ValueProblem::ScoreOutOfRange(value)));
                    }
                    // Narrowing a probability to f32 keeps it in [0, 1].
                    *slot = value as f32;
                }
            }
        }
        Ok(())
    }
}

fn copy_targets<T>(values: &[T], out: &mut [i8]) -> Result<(), (usize, ValueProblem)>
where
    T: Copy + TryInto<i64>,
{
    for (index, (slot, &value)) in out.iter_mut().zip(values).enumerate() {
        let value: i64 = value.try_into().unwrap_or(i64::MAX);
        match value {
            // Checked just above: −1, 0 and 1 fit `i8`.
            -1..=1 => *slot = value as i8,
            other => return Err((index, ValueProblem::TargetOutOfRange(other))),
        }
    }
    Ok(())
}

impl Cell for i8 {
    const EXPECTED: &'static str = "an integer column (values 1, 0, -1)";

    fn accepts(data_type: &DataType) -> bool {
        data_type.is_integer()
    }

    fn copy(array: &dyn Array, out: &mut [Self]) -> Result<(), (usize, ValueProblem)> {
        first_null(array)?;
        match array.data_type() {
            DataType::Int8 => copy_targets(array.as_primitive::<Int8Type>().values(), out),
            DataType::Int16 => copy_targets(array.as_primitive::<Int16Type>().values(), out),
            DataType::Int32 => copy_targets(array.as_primitive::<Int32Type>().values(), out),
            DataType::Int64 => copy_targets(array.as_primitive::<Int64Type>().values(), out),
            DataType::UInt8 => copy_targets(array.as_primitive::<UInt8Type>().values(), out),
            DataType::UInt16 => copy_targets(array.as_primitive::<UInt16Type>().values(), out),
            DataType::UInt32 => copy_targets(array.as_primitive::<UInt32Type>().values(), out),
            _ => copy_targets(array.as_primitive::<UInt64Type>().values(), out),
        }
    }
}

fn read_matrix<T: Cell>(path: &Path) -> Result<LabelMatrix<T>, MetricsError> {
    let (schema, n) = sspa_table::footer(path)?;

    let mut seen = HashMap::new();
    let mut image_column = None;
    let mut label_columns = Vec::new();
    for (index, field) in schema.fields().iter().enumerate() {
        if seen.insert(field.name().as_str(), index).is_some() {
            return Err(MetricsError::DuplicateColumn { path: path.to_owned(), column: field.name().clone() });
        }
        if field.name() == IMAGE_COLUMN {
            if !matches!(field.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
                return Err(MetricsError::ColumnType {
                    path: path.to_owned(),
                    column: IMAGE_COLUMN.to_owned(),
                    actual: field.data_type().to_string(),
                    expected: "a utf8 column",
                });
            }
            image_column = Some(index);
        } else if T::accepts(field.data_type()) {
            label_columns.push(index);
        } else {
            return Err(MetricsError::ColumnType {
                path: path.to_owned(),
                column: field.name().clone(),
                actual: field.data_type().to_string(),
                expected: T::EXPECTED,
            });
        }
    }
    let image_column = image_column.ok_or_else(|| MetricsError::MissingImageColumn { path: path.to_owned() })?;
    if label_columns.is_empty() {
        return Err(MetricsError::NoLabelColumns { path: path.to_owned() });
    }
    let labels: Vec<String> = label_columns.iter().map(|&index| schema.field(index).name().clone()).collect();

    let images = read_images(path, image_column)?;
    if images.len() != n {
        return Err(MetricsError::RowCount { path: path.to_owned(), expected: n, actual: images.len() });
    }
    let mut first_row: HashMap<&str, usize> = HashMap::with_capacity(n);
    for (row, image) in images.iter().enumerate() {
        if let Some(first) = first_row.insert(image.as_str(), row) {
            return Err(MetricsError::DuplicateFileImage {
                path: path.to_owned(),
                image: image.clone(),
                first,
                second: row,
            });
        }
    }
    drop(first_row);

    let mut values = vec![T::default(); n * labels.len()];
    if n > 0 {
        // A few more groups than threads, so one slow group does not leave a core idle.
        let groups = (rayon::current_num_threads() * 2).min(label_columns.len()).max(1);
        let per_group = label_columns.len().div_ceil(groups);
        let results: Vec<Result<(), MetricsError>> = values
            .par_chunks_mut(n * per_group)
            .zip(label_columns.par_chunks(per_group))
            .map(|(block, columns)| read_columns(path, &schema, columns, &images, block))
            .collect();
        // The first group's error comes first: errors are reported in label order.
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
    }
    LabelMatrix::from_columns(images, labels, values)
}

/// Decodes the label columns `columns` (ascending schema indices) into `block`, column-major.
fn read_columns<T: Cell>(
    path: &Path,
    schema: &SchemaRef,
    columns: &[usize],
    images: &[String],
    block: &mut [T],
) -> Result<(), MetricsError> {
    let n = images.len();
    let mut offset = 0;
    for batch in sspa_table::read_columns(path, columns, BATCH_ROWS)? {
        let batch = batch?;
        let rows = batch.num_rows();
        if offset + rows > n {
            return Err(MetricsError::RowCount { path: path.to_owned(), expected: n, actual: offset + rows });
        }
        for (position, array) in batch.columns().iter().enumerate() {
            let out = &mut block[position * n + offset..position * n + offset + rows];
            T::copy(array.as_ref(), out).map_err(|(index, problem)| MetricsError::InvalidFileValue {
                path: path.to_owned(),
                column: schema.field(columns[position]).name().clone(),
                row: offset + index,
                image: images[offset + index].clone(),
                problem,
            })?;
        }
        offset += rows;
    }
    if offset != n {
        return Err(MetricsError::RowCount { path: path.to_owned(), expected: n, actual: offset });
    }
    Ok(())
}

fn read_images(path: &Path, image_column: usize) -> Result<Vec<String>, MetricsError> {
    let mut images = Vec::new();
    for batch in sspa_table::read_columns(path, &[image_column], BATCH_ROWS)? {
        let batch = batch?;
        let column = batch.column(0);
        if let Some(index) = (0..column.len()).find(|&index| column.is_null(index)) {
            return Err(MetricsError::NullImage { path: path.to_owned(), row: images.len() + index });
        }
        match column.data_type() {
            DataType::Utf8 => images.extend(column.as_string::<i32>().iter().flatten().map(str::to_owned)),
            DataType::LargeUtf8 => images.extend(column.as_string::<i64>().iter().flatten().map(str::to_owned)),
            _ => images.extend(column.as_string_view().iter().flatten().map(str::to_owned)),
        }
    }
    Ok(images)
}

fn write_matrix<T: Copy + Default + Send + Sync>(
    path: &Path,
    matrix: &LabelMatrix<T>,
    data_type: DataType,
    dictionary: bool,
    to_array: impl Fn(&[T]) -> ArrayRef,
) -> Result<(), MetricsError> {
    let mut fields = vec![Field::new(IMAGE_COLUMN, DataType::Utf8, false)];
    fields.extend(matrix.labels().iter().map(|label| Field::new(label, data_type.clone(), false)));
    let schema = Arc::new(Schema::new(fields));
    // Probabilities rarely repeat: no dictionary for scores.
    let layout = sspa_table::Layout { snappy: true, plain: !dictionary, row_group_rows: None };
    sspa_table::write_with(path, schema.clone(), layout, |writer| {
        let n = matrix.n_images();
        let mut start = 0;
        while start < n || (n == 0 && start == 0) {
            let end = n.min(start + BATCH_ROWS * 8);
            let mut columns: Vec<ArrayRef> =
                vec![Arc::new(StringArray::from_iter_values(&matrix.images()[start..end]))];
            columns.extend((0..matrix.n_labels()).map(|label| to_array(&matrix.column(label)[start..end])));
            let batch = RecordBatch::try_new(schema.clone(), columns)
                .map_err(|source| MetricsError::Arrow { path: path.to_owned(), source })?;
            writer.write(&batch)?;
            if n == 0 {
                break;
            }
            start = end;
        }
        Ok(())
    })
}
