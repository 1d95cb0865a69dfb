//! table: Parquet schemas shared between stages: `embeddings.parquet` (one row per description,
//! the embedding as a fixed-size list of f32).

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
use arrow_array::{Array, FixedSizeListArray, Float32Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
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
    let parquet_error = |source| TableError::Parquet { path: path.to_path_buf(), source };
    sspa_fsio::write_atomic_with(
        path,
        |file| {
            let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).map_err(parquet_error)?;
            writer.write(&batch).map_err(parquet_error)?;
            writer.close().map_err(parquet_error)?;
            Ok(())
        },
        |source| TableError::Io { path: path.to_path_buf(), source },
    )
}

/// Reads `embeddings.parquet`, checking every column's type.
pub fn read_embeddings(path: &Path) -> Result<Vec<EmbeddingRow>, TableError> {
    let invalid = |message: String| TableError::Invalid { path: path.to_path_buf(), message };
    let file = std::fs::File::open(path).map_err(|source| TableError::Io { path: path.to_path_buf(), source })?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|source| TableError::Parquet { path: path.to_path_buf(), source })?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|source| TableError::Arrow { path: path.to_path_buf(), source })?;
        let column = |name: &str| batch.column_by_name(name).ok_or_else(|| invalid(format!("no column `{name}`")));
        let u32s = |name: &str| {
            column(name)?
                .as_any()
                .downcast_ref::<UInt32Array>()
                .cloned()
                .ok_or_else(|| invalid(format!("`{name}` is not uint32")))
        };
        let strings = |name: &str| {
            column(name)?
                .as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .ok_or_else(|| invalid(format!("`{name}` is not utf8")))
        };
        let (ids, labels, samples, hashes, encoders) = (
            u32s("label_id")?,
            strings("label")?,
            u32s("sample")?,
            strings("description_sha256")?,
            strings("encoder")?,
        );
        let lists = column("embedding")?
            .as_any()
            .downcast_ref::<FixedSizeListArray>()
            .cloned()
            .ok_or_else(|| invalid("`embedding` is not a fixed-size list".into()))?;
        for i in 0..batch.num_rows() {
            let item = lists.value(i);
            let values = item
                .as_any()
                .downcast_ref::<Float32Array>()
                .ok_or_else(|| invalid("`embedding` items are not float32".into()))?;
            rows.push(EmbeddingRow {
                label_id: ids.value(i),
                label: labels.value(i).to_string(),
                sample: samples.value(i),
                description_sha256: hashes.value(i).to_string(),
                encoder: encoders.value(i).to_string(),
                embedding: values.values().to_vec(),
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
