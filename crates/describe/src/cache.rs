//! The description cache of one describe stage: every answer ever received, keyed by request key.
//!
//! Layout under the stage's state directory:
//! - `descriptions.parquet`: the compacted rows;
//! - `segments/*.jsonl`: answers appended (and `fdatasync`ed) one line each as they arrive, so a
//!   killed run loses only the requests in flight; a torn last line is skipped on load;
//! - `.lock`: held while a run uses the cache.
//!
//! [`DescriptionCache::compact`] folds the segments into the Parquet file (temp file + rename)
//! and only then deletes them; rows are de-duplicated by request key, so a crash between the
//! two steps costs nothing.

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// File name of the compacted cache and of the stage output.
pub const DESCRIPTIONS_FILE: &str = "descriptions.parquet";
const SEGMENTS_DIR: &str = "segments";
const LOCK_FILE: &str = ".lock";

/// One answer: a row of `descriptions.parquet`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheRow {
    pub label_id: u32,
    pub label: String,
    pub domain: String,
    pub sample: u32,
    pub prompt_sha256: String,
    pub request_key: String,
    pub model: String,
    pub params_json: String,
    pub raw: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
    /// Tokens the server counted for the prompt (`usage.prompt_tokens`); absent when it did not
    /// say, and in rows written before token accounting.
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    /// Tokens of the answer (`usage.completion_tokens`), when the server said.
    #[serde(default)]
    pub completion_tokens: Option<u64>,
    /// Why the server stopped (`stop`, or `length` for an answer cut off by `llm.max_tokens`
    /// whose kept sentences ended before the cut), when it said; absent in rows written before.
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("description cache `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("description cache `{path}` is in use by another describe run (lock `{path}/{LOCK_FILE}`)")]
    Locked { path: PathBuf },
    #[error("description cache {0}")]
    Table(#[from] sspa_table::TableError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io { path: path.to_path_buf(), source }
}

/// The open cache: all rows in memory, new ones appended to this run's segment.
#[derive(Debug)]
pub struct DescriptionCache {
    dir: PathBuf,
    rows: Vec<CacheRow>,
    index: HashMap<String, usize>,
    /// Segment files whose rows are in `rows` (this run's included).
    segments: Vec<PathBuf>,
    writer: Option<(PathBuf, File)>,
    _lock: File,
}

impl DescriptionCache {
    /// Locks and loads the cache in `state_dir` (created when missing).
    pub fn open(state_dir: &Path) -> Result<Self, CacheError> {
        let segments_dir = state_dir.join(SEGMENTS_DIR);
        std::fs::create_dir_all(&segments_dir).map_err(io(&segments_dir))?;
        let lock_path = state_dir.join(LOCK_FILE);
        let lock =
            OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(CacheError::Locked { path: state_dir.to_path_buf() }),
            Err(std::fs::TryLockError::Error(source)) => return Err(CacheError::Io { path: lock_path, source }),
        }
        let mut cache = Self {
            dir: state_dir.to_path_buf(),
            rows: Vec::new(),
            index: HashMap::new(),
            segments: Vec::new(),
            writer: None,
            _lock: lock,
        };
        let parquet = state_dir.join(DESCRIPTIONS_FILE);
        if parquet.exists() {
            for row in read_parquet(&parquet)? {
                cache.insert(row);
            }
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(&segments_dir)
            .map_err(io(&segments_dir))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "jsonl"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read(&file).map_err(io(&file))?;
            for (number, line) in text.split(|&b| b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match serde_json::from_slice::<CacheRow>(line) {
                    Ok(row) => cache.insert(row),
                    // A run killed mid-write leaves a torn last line: that answer is simply asked again.
                    Err(error) => {
                        tracing::warn!(file = %file.display(), line = number + 1, %error, "skipping unreadable cache line")
                    }
                }
            }
            cache.segments.push(file);
        }
        Ok(cache)
    }

    fn insert(&mut self, row: CacheRow) {
        if !self.index.contains_key(&row.request_key) {
            self.index.insert(row.request_key.clone(), self.rows.len());
            self.rows.push(row);
        }
    }

    pub fn get(&self, request_key: &str) -> Option<&CacheRow> {
        self.index.get(request_key).map(|&i| &self.rows[i])
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Segment files not yet compacted.
    pub fn pending_segments(&self) -> usize {
        self.segments.len()
    }

    /// Makes one answer durable: appends it to this run's segment and syncs it to disk.
    pub fn append(&mut self, row: CacheRow) -> Result<(), CacheError> {
        if self.index.contains_key(&row.request_key) {
            return Ok(());
        }
        if self.writer.is_none() {
            let name = format!("{}-{}.jsonl", Utc::now().format("%Y%m%dT%H%M%S%.6f"), std::process::id());
            let path = self.dir.join(SEGMENTS_DIR).join(name);
            let file = OpenOptions::new().create(true).append(true).open(&path).map_err(io(&path))?;
            self.segments.push(path.clone());
            self.writer = Some((path, file));
        }
        if let Some((path, file)) = &mut self.writer {
            let mut line = serde_json::to_vec(&row)
                .map_err(|error| CacheError::Io { path: path.clone(), source: error.into() })?;
            line.push(b'\n');
            file.write_all(&line).map_err(io(path))?;
            file.sync_data().map_err(io(path))?;
        }
        self.insert(row);
        Ok(())
    }

    /// Writes every row to `descriptions.parquet` atomically, then deletes the merged segments.
    pub fn compact(&mut self) -> Result<(), CacheError> {
        if self.segments.is_empty() {
            return Ok(());
        }
        write_parquet(&self.dir.join(DESCRIPTIONS_FILE), &self.rows)?;
        self.writer = None;
        for segment in self.segments.drain(..) {
            if let Err(error) = std::fs::remove_file(&segment) {
                tracing::warn!(file = %segment.display(), %error, "cannot remove a compacted cache segment");
            }
        }
        Ok(())
    }
}

fn schema() -> Arc<Schema> {
    let text = |name: &str| Field::new(name, DataType::Utf8, false);
    Arc::new(Schema::new(vec![
        Field::new("label_id", DataType::UInt32, false),
        text("label"),
        text("domain"),
        Field::new("sample", DataType::UInt32, false),
        text("prompt_sha256"),
        text("request_key"),
        text("model"),
        text("params_json"),
        text("raw"),
        text("description"),
        Field::new("created_at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        Field::new("prompt_tokens", DataType::UInt64, true),
        Field::new("completion_tokens", DataType::UInt64, true),
        Field::new("finish_reason", DataType::Utf8, true),
    ]))
}

/// Writes rows as Parquet: temp file in the same directory, fsync, rename.
pub fn write_parquet(path: &Path, rows: &[CacheRow]) -> Result<(), CacheError> {
    let strings =
        |f: fn(&CacheRow) -> &str| -> ArrayRef { Arc::new(StringArray::from_iter_values(rows.iter().map(f))) };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.label_id))),
        strings(|r| &r.label),
        strings(|r| &r.domain),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.sample))),
        strings(|r| &r.prompt_sha256),
        strings(|r| &r.request_key),
        strings(|r| &r.model),
        strings(|r| &r.params_json),
        strings(|r| &r.raw),
        strings(|r| &r.description),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.created_at.timestamp_micros()))
                .with_timezone("UTC"),
        ),
        Arc::new(UInt64Array::from_iter(rows.iter().map(|r| r.prompt_tokens))),
        Arc::new(UInt64Array::from_iter(rows.iter().map(|r| r.completion_tokens))),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.finish_reason.as_deref()))),
    ];
    let batch = RecordBatch::try_new(schema(), columns)
        .map_err(|source| sspa_table::TableError::Arrow { path: path.to_path_buf(), source })?;
    Ok(sspa_table::write_batch(path, &batch)?)
}

/// Reads rows written by [`write_parquet`] (or any file with the same columns).
pub fn read_parquet(path: &Path) -> Result<Vec<CacheRow>, CacheError> {
    use sspa_table::{column, optional_column};
    let mut rows = Vec::new();
    for batch in sspa_table::read_batches(path)? {
        let text = |name: &str| column::<StringArray>(&batch, name, path);
        let number = |name: &str| column::<UInt32Array>(&batch, name, path);
        let (label_id, sample) = (number("label_id")?, number("sample")?);
        let (label, domain, prompt_sha256) = (text("label")?, text("domain")?, text("prompt_sha256")?);
        let (request_key, model, params_json) = (text("request_key")?, text("model")?, text("params_json")?);
        let (raw, description) = (text("raw")?, text("description")?);
        let created_at = column::<TimestampMicrosecondArray>(&batch, "created_at", path)?;
        // Token columns came later: files without them read as "not counted".
        let prompt_tokens = optional_column::<UInt64Array>(&batch, "prompt_tokens", path)?;
        let completion_tokens = optional_column::<UInt64Array>(&batch, "completion_tokens", path)?;
        let value = |column: Option<&UInt64Array>, i: usize| column.filter(|c| !c.is_null(i)).map(|c| c.value(i));
        // So did `finish_reason`.
        let finish_reason = optional_column::<StringArray>(&batch, "finish_reason", path)?;
        for i in 0..batch.num_rows() {
            if created_at.is_null(i) || request_key.is_null(i) {
                return Err(sspa_table::TableError::Invalid {
                    path: path.to_path_buf(),
                    message: format!("row {i} has no `request_key` or `created_at`"),
                }
                .into());
            }
            rows.push(CacheRow {
                label_id: label_id.value(i),
                label: label.value(i).to_owned(),
                domain: domain.value(i).to_owned(),
                sample: sample.value(i),
                prompt_sha256: prompt_sha256.value(i).to_owned(),
                request_key: request_key.value(i).to_owned(),
                model: model.value(i).to_owned(),
                params_json: params_json.value(i).to_owned(),
                raw: raw.value(i).to_owned(),
                description: description.value(i).to_owned(),
                created_at: DateTime::from_timestamp_micros(created_at.value(i)).unwrap_or_default(),
                prompt_tokens: value(prompt_tokens, i),
                completion_tokens: value(completion_tokens, i),
                finish_reason: finish_reason.filter(|c| !c.is_null(i)).map(|c| c.value(i).to_owned()),
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str) -> CacheRow {
        CacheRow {
            label_id: 0,
            label: format!("label {key}"),
            domain: "d".into(),
            sample: 0,
            prompt_sha256: "p".into(),
            request_key: key.into(),
            model: "m".into(),
            params_json: "{}".into(),
            raw: "raw".into(),
            description: "description".into(),
            created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap_or_default(),
            prompt_tokens: Some(11),
            completion_tokens: None,
            finish_reason: Some("stop".into()),
        }
    }

    #[test]
    fn append_survives_without_compaction_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut cache = DescriptionCache::open(dir.path()).expect("open");
            cache.append(row("a")).expect("append");
            cache.append(row("b")).expect("append");
            cache.append(row("a")).expect("a repeat is ignored");
            // Dropped without compaction, as after kill -9.
        }
        let segment = std::fs::read_dir(dir.path().join(SEGMENTS_DIR)).expect("dir").flatten().next().expect("segment");
        let mut file = OpenOptions::new().append(true).open(segment.path()).expect("segment");
        file.write_all(br#"{"label_id":0,"label":"torn","#).expect("torn write");
        let mut cache = DescriptionCache::open(dir.path()).expect("reopen");
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("b"), Some(&row("b")));
        cache.compact().expect("compact");
        assert_eq!(cache.pending_segments(), 0);
        assert_eq!(std::fs::read_dir(dir.path().join(SEGMENTS_DIR)).expect("dir").count(), 0);
        assert_eq!(read_parquet(&dir.path().join(DESCRIPTIONS_FILE)).expect("parquet"), [row("a"), row("b")]);
    }

    #[test]
    fn files_and_lines_from_before_token_accounting_still_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.parquet");
        write_parquet(&path, &[row("a")]).expect("write");
        // Drop the token columns, as files written before them lack them.
        let new = read_batch(&path);
        let old_fields: Vec<_> = new.schema().fields().iter().take(11).cloned().collect();
        let old = RecordBatch::try_new(Arc::new(Schema::new(old_fields)), new.columns()[..11].to_vec()).expect("batch");
        sspa_table::write_batch(&path, &old).expect("write");
        let rows = read_parquet(&path).expect("old file reads");
        assert_eq!(rows, [CacheRow { prompt_tokens: None, completion_tokens: None, finish_reason: None, ..row("a") }]);

        let mut line = serde_json::to_value(row("b")).expect("json");
        line.as_object_mut().expect("object").retain(|key, _| !key.ends_with("_tokens") && key != "finish_reason");
        let parsed: CacheRow = serde_json::from_value(line).expect("old line reads");
        assert_eq!((parsed.prompt_tokens, parsed.finish_reason), (None, None));
    }

    fn read_batch(path: &Path) -> RecordBatch {
        sspa_table::read_batches(path).expect("read").remove(0)
    }

    #[test]
    fn a_second_open_is_refused_while_the_first_holds_the_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = DescriptionCache::open(dir.path()).expect("open");
        let error = DescriptionCache::open(dir.path()).expect_err("locked");
        assert!(matches!(error, CacheError::Locked { .. }), "{error}");
        drop(first);
        DescriptionCache::open(dir.path()).expect("free again");
    }

    #[test]
    fn unreadable_parquet_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(DESCRIPTIONS_FILE), b"not parquet").expect("write");
        let error = DescriptionCache::open(dir.path()).expect_err("corrupt");
        assert!(error.to_string().contains(DESCRIPTIONS_FILE), "{error}");
    }
}
