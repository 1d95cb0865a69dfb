//! table: Parquet schemas shared between stages — `embeddings.parquet` (one row per description,
//! the embedding as a fixed-size list of f32), `sspa-pipe encode`'s tables — and the Parquet
//! helpers every crate that reads or writes Parquet shares, the only code that touches the
//! `parquet` crate: [`write_with`] / [`write_batch`] (atomic, laid out by a [`Layout`]),
//! [`read_batches`], [`footer`] and [`read_columns`] (a projection, batch by batch), [`column`]
//! and [`optional_column`] (a typed column, or an error naming the file and the column).

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
use arrow_array::{Array, FixedSizeListArray, Float32Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One encoded description.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingRow {
    pub label_id: u32,
    pub label: String,
    pub sample: u32,
    pub description_sha256: String,
    /// Encoder name and weights hash, e.g. `minilm-l6@<blake3>`.
    pub encoder: String,
    pub embedding: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("`{path}`: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("`{path}`: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("`{path}`: {source}")]
    Arrow {
        path: PathBuf,
        #[source]
        source: arrow_schema::ArrowError,
    },
    #[error("`{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn schema(dim: i32) -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("label_id", DataType::UInt32, false),
        Field::new("label", DataType::Utf8, false),
        Field::new("sample", DataType::UInt32, false),
        Field::new("description_sha256", DataType::Utf8, false),
        Field::new("encoder", DataType::Utf8, false),
        Field::new("dim", DataType::UInt32, false),
        Field::new(
            "embedding",
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), dim),
            false,
        ),
    ]))
}

/// Writes rows (all of one width) atomically: temp file + rename.
pub fn write_embeddings(path: &Path, rows: &[EmbeddingRow]) -> Result<(), TableError> {
    let invalid = |message: String| TableError::Invalid { path: path.to_path_buf(), message };
    let dim = rows.first().map_or(0, |r| r.embedding.len());
    if let Some(bad) = rows.iter().find(|r| r.embedding.len() != dim) {
        return Err(invalid(format!("label `{}` has {} values, expected {dim}", bad.label, bad.embedding.len())));
    }
    let dim_i32 = i32::try_from(dim).map_err(|_| invalid(format!("embedding width {dim} is too large")))?;
    let mut list = FixedSizeListBuilder::new(Float32Builder::new(), dim_i32).with_field(Arc::new(Field::new(
        "item",
        DataType::Float32,
        false,
    )));
    for row in rows {
        list.values().append_slice(&row.embedding);
        list.append(true);
    }
    let batch = RecordBatch::try_new(
        schema(dim_i32),
        vec![
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.label_id))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.label.as_str()))),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.sample))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.description_sha256.as_str()))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.encoder.as_str()))),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|_| dim as u32))),
            Arc::new(list.finish()),
        ],
    )
    .map_err(|source| TableError::Arrow { path: path.to_path_buf(), source })?;
    write_batch(path, &batch)
}

/// Reads `embeddings.parquet`, checking every column's type.
pub fn read_embeddings(path: &Path) -> Result<Vec<EmbeddingRow>, TableError> {
    let mut rows = Vec::new();
    for batch in read_batches(path)? {
        let ids = column::<UInt32Array>(&batch, "label_id", path)?;
        let labels = column::<StringArray>(&batch, "label", path)?;
        let samples = column::<UInt32Array>(&batch, "sample", path)?;
        let hashes = column::<StringArray>(&batch, "description_sha256", path)?;
        let encoders = column::<StringArray>(&batch, "encoder", path)?;
        let embeddings = fixed_rows(path, column::<FixedSizeListArray>(&batch, "embedding", path)?, "embedding")?;
        for (i, embedding) in embeddings.into_iter().enumerate() {
            rows.push(EmbeddingRow {
                label_id: ids.value(i),
                label: labels.value(i).to_string(),
                sample: samples.value(i),
                description_sha256: hashes.value(i).to_string(),
                encoder: encoders.value(i).to_string(),
                embedding,
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_round_trip_and_reject_ragged_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("embeddings.parquet");
        let rows: Vec<EmbeddingRow> = (0..3)
            .map(|i| EmbeddingRow {
                label_id: i,
                label: format!("label {i}"),
                sample: 0,
                description_sha256: format!("{i:064}"),
                encoder: "test".into(),
                embedding: vec![i as f32, 0.5, -1.0],
            })
            .collect();
        write_embeddings(&path, &rows).expect("write");
        assert_eq!(read_embeddings(&path).expect("read"), rows);
        let mut ragged = rows.clone();
        ragged[1].embedding.push(2.0);
        let err = write_embeddings(&path, &ragged).expect_err("ragged");
        assert!(err.to_string().contains("label `label 1` has 4 values, expected 3"), "{err}");
        assert_eq!(read_embeddings(&path).expect("old file intact").len(), 3);
        std::fs::write(&path, b"not parquet").expect("write");
        assert!(read_embeddings(&path).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// `sspa-pipe encode` outputs: text embeddings and image features.

/// One encoded line of `sspa-pipe encode text`.
#[derive(Debug, Clone, PartialEq)]
pub struct TextEncoding {
    /// 0-based line number in the input file.
    pub index: u32,
    /// The text as read (without the line break).
    pub text: String,
    /// The sentence embedding.
    pub embedding: Vec<f32>,
}

/// One encoded image of `sspa-pipe encode image`.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageEncoding {
    /// The image file as given on the command line.
    pub path: String,
    /// The global feature.
    pub global: Vec<f32>,
    /// Patch features, one vector per patch (row-major over the feature map), when requested.
    pub patches: Option<Vec<Vec<f32>>>,
}

fn item_field() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Float32, false))
}

fn fixed_list_type(width: i32) -> DataType {
    DataType::FixedSizeList(item_field(), width)
}

fn width_of(path: &Path, what: &str, width: usize) -> Result<i32, TableError> {
    i32::try_from(width).map_err(|_| TableError::Invalid {
        path: path.to_path_buf(),
        message: format!("{what} width {width} is too large"),
    })
}

fn fixed_list<'a>(width: i32, rows: impl Iterator<Item = &'a [f32]>) -> FixedSizeListArray {
    let mut list = FixedSizeListBuilder::new(Float32Builder::new(), width).with_field(item_field());
    for row in rows {
        list.values().append_slice(row);
        list.append(true);
    }
    list.finish()
}

/// An open Parquet writer: [`TableWriter::write`] appends record batches, errors name the file.
pub struct TableWriter<'a> {
    writer: ArrowWriter<&'a mut File>,
    path: &'a Path,
}

impl TableWriter<'_> {
    /// Appends one record batch (its schema must be the file's).
    ///
    /// # Errors
    /// [`TableError::Parquet`] naming the file.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), TableError> {
        self.writer.write(batch).map_err(|source| TableError::Parquet { path: self.path.to_path_buf(), source })
    }

    /// Ends the current row group, so that what was appended is not held in memory.
    ///
    /// # Errors
    /// [`TableError::Parquet`] naming the file.
    pub fn flush(&mut self) -> Result<(), TableError> {
        self.writer.flush().map_err(|source| TableError::Parquet { path: self.path.to_path_buf(), source })
    }
}

/// How [`write_with`] lays a file out; the default is the `parquet` crate's (dictionary
/// encoding, no compression, its row-group size).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Layout {
    /// Compress pages with Snappy.
    pub snappy: bool,
    /// No dictionary encoding: for values that rarely repeat (probabilities), where a dictionary
    /// would be built and dropped for every page.
    pub plain: bool,
    /// At most this many rows a row group.
    pub row_group_rows: Option<usize>,
}

impl Layout {
    fn properties(self) -> WriterProperties {
        let mut builder = WriterProperties::builder().set_dictionary_enabled(!self.plain);
        if self.snappy {
            builder = builder.set_compression(Compression::SNAPPY);
        }
        if let Some(rows) = self.row_group_rows {
            builder = builder.set_max_row_group_row_count(Some(rows.max(1)));
        }
        builder.build()
    }
}

/// Writes a Parquet file of `schema` atomically (temp file, fsync, rename): `fill` appends the
/// batches; nothing appears at `path` unless it and the footer succeed.
///
/// # Errors
/// `fill`'s error, or [`TableError`] naming `path` (converted into `E`).
pub fn write_with<E: From<TableError>>(
    path: &Path,
    schema: SchemaRef,
    layout: Layout,
    fill: impl FnOnce(&mut TableWriter<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let properties = Some(layout.properties());
    let parquet_error = |source| E::from(TableError::Parquet { path: path.to_path_buf(), source });
    sspa_fsio::write_atomic_with(
        path,
        |file| {
            let writer = ArrowWriter::try_new(file, schema, properties).map_err(parquet_error)?;
            let mut table = TableWriter { writer, path };
            fill(&mut table)?;
            table.writer.close().map_err(parquet_error)?;
            Ok(())
        },
        |source| E::from(TableError::Io { path: path.to_path_buf(), source }),
    )
}

/// Writes one record batch as a Parquet file, atomically (temp file + rename).
///
/// # Errors
/// [`TableError`] naming `path`.
pub fn write_batch(path: &Path, batch: &RecordBatch) -> Result<(), TableError> {
    write_with(path, batch.schema(), Layout::default(), |writer| writer.write(batch))
}

/// Opens a Parquet file for reading.
///
/// # Errors
/// [`TableError::Io`] when the file cannot be opened, [`TableError::Parquet`] when it is not
/// Parquet; both name `path`.
fn open(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>, TableError> {
    let file = File::open(path).map_err(|source| TableError::Io { path: path.to_path_buf(), source })?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|source| TableError::Parquet { path: path.to_path_buf(), source })
}

/// Every record batch of a Parquet file.
///
/// # Errors
/// [`TableError`] naming `path`.
pub fn read_batches(path: &Path) -> Result<Vec<RecordBatch>, TableError> {
    let reader = open(path)?.build().map_err(|source| TableError::Parquet { path: path.to_path_buf(), source })?;
    reader.map(|batch| batch.map_err(|source| TableError::Arrow { path: path.to_path_buf(), source })).collect()
}

/// A Parquet file's Arrow schema and row count, read from its footer.
///
/// # Errors
/// [`TableError`] naming `path`.
pub fn footer(path: &Path) -> Result<(SchemaRef, usize), TableError> {
    let builder = open(path)?;
    let rows = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    Ok((builder.schema().clone(), rows))
}

/// The top-level columns at `columns` (indices into the file's schema) of a Parquet file, in
/// batches of at most `batch_rows` rows, in file order; each batch holds the columns in schema
/// order.
///
/// # Errors
/// [`TableError`] naming `path`, when opening (here) or decoding a batch (from the iterator).
pub fn read_columns<'a>(
    path: &'a Path,
    columns: &[usize],
    batch_rows: usize,
) -> Result<impl Iterator<Item = Result<RecordBatch, TableError>> + 'a, TableError> {
    let builder = open(path)?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), columns.iter().copied());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(batch_rows.max(1))
        .build()
        .map_err(|source| TableError::Parquet { path: path.to_path_buf(), source })?;
    Ok(reader.map(move |batch| batch.map_err(|source| TableError::Arrow { path: path.to_path_buf(), source })))
}

/// Column `name` of `batch` as the array type `A`.
///
/// # Errors
/// [`TableError::Invalid`] naming the file and the column when it is absent or of another type.
pub fn column<'a, A: Array + 'static>(batch: &'a RecordBatch, name: &str, path: &Path) -> Result<&'a A, TableError> {
    let invalid = |message: String| TableError::Invalid { path: path.to_path_buf(), message };
    let array = batch.column_by_name(name).ok_or_else(|| invalid(format!("no column `{name}`")))?;
    array
        .as_any()
        .downcast_ref::<A>()
        .ok_or_else(|| invalid(format!("column `{name}` is {}, not {}", array.data_type(), short_type_name::<A>())))
}

/// Column `name` of `batch` as `A` when present (columns added by a later version).
///
/// # Errors
/// [`TableError::Invalid`] naming the file and the column when it is of another type.
pub fn optional_column<'a, A: Array + 'static>(
    batch: &'a RecordBatch,
    name: &str,
    path: &Path,
) -> Result<Option<&'a A>, TableError> {
    match batch.column_by_name(name) {
        None => Ok(None),
        Some(_) => column(batch, name, path).map(Some),
    }
}

/// `PrimitiveArray<UInt32Type>` for `arrow_array::array::PrimitiveArray<arrow_array::types::UInt32Type>`.
fn short_type_name<T>() -> String {
    let mut out = String::new();
    let mut word = String::new();
    for character in std::any::type_name::<T>().chars().chain(std::iter::once(' ')) {
        if character.is_alphanumeric() || character == '_' || character == ':' {
            word.push(character);
        } else {
            out.push_str(word.rsplit("::").next().unwrap_or(&word));
            word.clear();
            if character != ' ' {
                out.push(character);
            }
        }
    }
    out
}

fn fixed_rows(path: &Path, column: &dyn Array, name: &str) -> Result<Vec<Vec<f32>>, TableError> {
    let invalid = |message: String| TableError::Invalid { path: path.to_path_buf(), message };
    let lists = column
        .as_any()
        .downcast_ref::<FixedSizeListArray>()
        .ok_or_else(|| invalid(format!("`{name}` is not a fixed-size list")))?;
    (0..lists.len())
        .map(|i| {
            let item = lists.value(i);
            let values = item
                .as_any()
                .downcast_ref::<Float32Array>()
                .ok_or_else(|| invalid(format!("`{name}` items are not float32")))?;
            Ok(values.values().to_vec())
        })
        .collect()
}

/// Writes `sspa-pipe encode text` output atomically: `index` (uint32), `text` (utf8),
/// `embedding` (fixed-size list of float32, the model's width).
pub fn write_text_encodings(path: &Path, rows: &[TextEncoding]) -> Result<(), TableError> {
    let dim = rows.first().map_or(0, |r| r.embedding.len());
    if let Some(bad) = rows.iter().find(|r| r.embedding.len() != dim) {
        return Err(TableError::Invalid {
            path: path.to_path_buf(),
            message: format!("text {} has {} values, expected {dim}", bad.index, bad.embedding.len()),
        });
    }
    let width = width_of(path, "embedding", dim)?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("index", DataType::UInt32, false),
        Field::new("text", DataType::Utf8, false),
        Field::new("embedding", fixed_list_type(width), false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.index))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.text.as_str()))),
            Arc::new(fixed_list(width, rows.iter().map(|r| r.embedding.as_slice()))),
        ],
    )
    .map_err(|source| TableError::Arrow { path: path.to_path_buf(), source })?;
    write_batch(path, &batch)
}

/// Reads a file written by [`write_text_encodings`], checking the column types.
pub fn read_text_encodings(path: &Path) -> Result<Vec<TextEncoding>, TableError> {
    let mut rows = Vec::new();
    for batch in read_batches(path)? {
        let indices = column::<UInt32Array>(&batch, "index", path)?;
        let texts = column::<StringArray>(&batch, "text", path)?;
        let embeddings = fixed_rows(path, column::<FixedSizeListArray>(&batch, "embedding", path)?, "embedding")?;
        for (i, embedding) in embeddings.into_iter().enumerate() {
            rows.push(TextEncoding { index: indices.value(i), text: texts.value(i).to_string(), embedding });
        }
    }
    Ok(rows)
}

/// Writes `sspa-pipe encode image` output atomically: `path` (utf8), `global` (fixed-size list
/// of float32) and, when `with_patches`, `patches`: a list (one entry per patch, row-major over
/// the feature map) of fixed-size lists of float32 of the global feature's width.
pub fn write_image_encodings(path: &Path, rows: &[ImageEncoding], with_patches: bool) -> Result<(), TableError> {
    let invalid = |message: String| TableError::Invalid { path: path.to_path_buf(), message };
    let dim = rows.first().map_or(0, |r| r.global.len());
    for row in rows {
        if row.global.len() != dim {
            return Err(invalid(format!("`{}` has {} global values, expected {dim}", row.path, row.global.len())));
        }
        if with_patches {
            let patches = row.patches.as_ref().ok_or_else(|| invalid(format!("`{}` has no patches", row.path)))?;
            if let Some(bad) = patches.iter().find(|p| p.len() != dim) {
                return Err(invalid(format!("`{}` has a patch of {} values, expected {dim}", row.path, bad.len())));
            }
        }
    }
    let width = width_of(path, "global", dim)?;
    let mut fields =
        vec![Field::new("path", DataType::Utf8, false), Field::new("global", fixed_list_type(width), false)];
    let mut columns: Vec<Arc<dyn Array>> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.path.as_str()))),
        Arc::new(fixed_list(width, rows.iter().map(|r| r.global.as_slice()))),
    ];
    if with_patches {
        let inner = Arc::new(Field::new("item", fixed_list_type(width), false));
        let mut list = arrow_array::builder::ListBuilder::new(
            FixedSizeListBuilder::new(Float32Builder::new(), width).with_field(item_field()),
        )
        .with_field(inner.clone());
        for row in rows {
            for patch in row.patches.iter().flatten() {
                list.values().values().append_slice(patch);
                list.values().append(true);
            }
            list.append(true);
        }
        fields.push(Field::new("patches", DataType::List(inner), false));
        columns.push(Arc::new(list.finish()));
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|source| TableError::Arrow { path: path.to_path_buf(), source })?;
    write_batch(path, &batch)
}

/// Reads a file written by [`write_image_encodings`] (`patches` is `None` when the column is
/// absent), checking the column types.
pub fn read_image_encodings(path: &Path) -> Result<Vec<ImageEncoding>, TableError> {
    let mut rows = Vec::new();
    for batch in read_batches(path)? {
        let paths = column::<StringArray>(&batch, "path", path)?;
        let globals = fixed_rows(path, column::<FixedSizeListArray>(&batch, "global", path)?, "global")?;
        let patches = match batch.column_by_name("patches") {
            None => None,
            Some(_) => {
                let lists = column::<arrow_array::ListArray>(&batch, "patches", path)?;
                let per_row = (0..lists.len())
                    .map(|i| fixed_rows(path, lists.value(i).as_ref(), "patches"))
                    .collect::<Result<Vec<_>, _>>()?;
                Some(per_row)
            }
        };
        for (i, global) in globals.into_iter().enumerate() {
            let patches = patches.as_ref().map(|all| all[i].clone());
            rows.push(ImageEncoding { path: paths.value(i).to_string(), global, patches });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod encoding_tests {
    use super::*;

    #[test]
    fn a_wrong_table_names_the_file_and_the_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("texts.parquet");
        let row = TextEncoding { index: 0, text: "a".into(), embedding: vec![1.0, 2.0] };
        write_text_encodings(&path, &[row]).expect("write");
        let error = read_embeddings(&path).expect_err("not an embeddings table").to_string();
        assert!(error.contains("texts.parquet") && error.contains("no column `label_id`"), "{error}");
        let batch = read_batches(&path).expect("read").remove(0);
        let error = column::<UInt32Array>(&batch, "text", &path).expect_err("utf8, not uint32").to_string();
        assert!(error.contains("column `text` is Utf8, not PrimitiveArray<UInt32Type>"), "{error}");
    }

    #[test]
    fn text_and_image_encodings_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text_path = dir.path().join("text.parquet");
        let texts: Vec<TextEncoding> = (0..3)
            .map(|i| TextEncoding { index: i, text: format!("text {i}"), embedding: vec![i as f32, -0.5] })
            .collect();
        write_text_encodings(&text_path, &texts).expect("write text");
        assert_eq!(read_text_encodings(&text_path).expect("read text"), texts);

        let image_path = dir.path().join("images.parquet");
        let images: Vec<ImageEncoding> = (0..2)
            .map(|i| ImageEncoding {
                path: format!("{i}.png"),
                global: vec![i as f32; 3],
                patches: Some((0..4).map(|p| vec![p as f32 + i as f32; 3]).collect()),
            })
            .collect();
        write_image_encodings(&image_path, &images, true).expect("write images");
        assert_eq!(read_image_encodings(&image_path).expect("read images"), images);
        let without: Vec<ImageEncoding> = images.iter().map(|r| ImageEncoding { patches: None, ..r.clone() }).collect();
        write_image_encodings(&image_path, &without, false).expect("write globals");
        assert_eq!(read_image_encodings(&image_path).expect("read globals"), without);

        let mut ragged = images.clone();
        ragged[1].patches.as_mut().expect("patches")[2].push(1.0);
        let error = write_image_encodings(&image_path, &ragged, true).expect_err("ragged patch");
        assert!(error.to_string().contains("`1.png` has a patch of 4 values, expected 3"), "{error}");
    }
}
