//! Reading a shard directory back: [`ShardSet`] opens `shards.json` and checks shard
//! checksums; [`SplitReader`] holds one split's index rows and reads single images by offset
//! (positioned reads, so any number of threads can share it), decoding them when the shards hold
//! PNG or JPEG ([`crate::codec`]).

use crate::codec::Codec;
use crate::error::DataError;
use crate::shard::{INDEX_FILE, META_FILE, ShardsMeta};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int8Type, UInt32Type, UInt64Type};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An opened shard directory.
#[derive(Debug, Clone)]
pub struct ShardSet {
    pub dir: PathBuf,
    pub meta: ShardsMeta,
}

/// Opens the shard directory written by [`crate::shard::shard`].
pub fn open_shards(dir: &Path) -> Result<ShardSet, DataError> {
    ShardSet::open(dir)
}

impl ShardSet {
    pub fn open(dir: &Path) -> Result<Self, DataError> {
        let path = dir.join(META_FILE);
        let bytes = std::fs::read(&path).map_err(|e| DataError::read(&path, e))?;
        let meta: ShardsMeta = serde_json::from_slice(&bytes)
            .map_err(|e| DataError::Shards { path: path.clone(), message: e.to_string() })?;
        if meta.version != crate::shard::SHARD_FORMAT_VERSION {
            return Err(DataError::Shards {
                path,
                message: format!("shard format version `{}` is not supported", meta.version),
            });
        }
        Ok(Self { dir: dir.to_path_buf(), meta })
    }

    pub fn labels(&self) -> &[String] {
        &self.meta.labels
    }

    /// Recomputes every shard's BLAKE3 and compares it with `shards.json`.
    pub fn verify(&self) -> Result<(), DataError> {
        for split in self.meta.splits.values() {
            for shard in &split.shards {
                let path = self.dir.join(&shard.file);
                let actual = crate::manifest::hash_file(&path)?;
                if actual != shard.blake3 {
                    return Err(DataError::ChecksumMismatch { path, expected: shard.blake3.clone(), actual });
                }
            }
        }
        Ok(())
    }

    /// How the images are stored.
    pub fn codec(&self) -> Codec {
        Codec {
            encoding: self.meta.encoding,
            jpeg_quality: self.meta.jpeg_quality.unwrap_or(sspa_config::DEFAULT_JPEG_QUALITY),
        }
    }

    /// Opens one split for reading.
    pub fn split(&self, name: &str) -> Result<SplitReader, DataError> {
        let meta = self.meta.splits.get(name).ok_or_else(|| DataError::UnknownSplit {
            split: name.into(),
            available: self.meta.splits.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "),
        })?;
        let files = meta
            .shards
            .iter()
            .map(|s| {
                let path = self.dir.join(&s.file);
                File::open(&path).map_err(|e| DataError::read(&path, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let index_path = self.dir.join(INDEX_FILE);
        let mut records = read_index(&index_path, name, self.meta.labels.len())?;
        if records.len() as u64 != meta.images {
            return Err(DataError::Shards {
                path: index_path,
                message: format!("{} rows for split `{name}`, `{META_FILE}` says {}", records.len(), meta.images),
            });
        }
        let shard_bytes: Vec<u64> = meta.shards.iter().map(|s| s.bytes).collect();
        set_lengths(&mut records, &shard_bytes, self.codec())
            .map_err(|message| DataError::Shards { path: index_path, message })?;
        Ok(SplitReader {
            name: name.into(),
            train: meta.train,
            codec: self.codec(),
            label_count: self.meta.labels.len(),
            files: Arc::new(files),
            records: Arc::new(records),
            shard_count: meta.shards.len(),
        })
    }
}

/// One row of `index.parquet`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub shard: u32,
    pub offset: u64,
    pub width: u32,
    pub height: u32,
    pub path: String,
    pub targets: Vec<i8>,
    /// Stored bytes: up to the next row's offset in the same shard, or to the shard's end.
    pub length: u64,
}

impl Record {
    /// Bytes of the decoded RGB pixels.
    pub fn pixel_bytes(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height) * 3
    }
}

/// Sets each record's `length` from the offsets that follow it in its shard (`shard_bytes[s]` is
/// shard `s`'s size) and checks that the rows tile their shards: no row outside its shard, none
/// overlapping the next, none empty, and for `raw` exactly `width · height · 3` bytes each.
fn set_lengths(records: &mut [Record], shard_bytes: &[u64], codec: Codec) -> Result<(), String> {
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by_key(|&i| (records[i].shard, records[i].offset));
    for (position, &i) in order.iter().enumerate() {
        let record = &records[i];
        let outside = || format!("row for `{}` points outside its shard", record.path);
        let size = *shard_bytes.get(record.shard as usize).ok_or_else(outside)?;
        let end = match order.get(position + 1).map(|&next| &records[next]) {
            Some(next) if next.shard == record.shard => next.offset,
            _ => size,
        };
        if record.offset >= end || end > size {
            return Err(outside());
        }
        let length = end - record.offset;
        if codec.encoding == sspa_config::ShardEncoding::Raw && length != record.pixel_bytes() {
            return Err(format!(
                "row for `{}` has {length} bytes in its shard, {}×{} RGB needs {}",
                record.path,
                record.width,
                record.height,
                record.pixel_bytes()
            ));
        }
        records[i].length = length;
    }
    Ok(())
}

/// The index rows of split `split`, in the order they were written.
fn read_index(path: &Path, split: &str, label_count: usize) -> Result<Vec<Record>, DataError> {
    let shape_error = |message: &str| DataError::Shards { path: path.to_path_buf(), message: message.into() };
    let mut records = Vec::new();
    for batch in sspa_table::read_batches(path)? {
        let column = |name: &str| batch.column_by_name(name).ok_or_else(|| shape_error(&format!("no `{name}` column")));
        let splits = column("split")?.as_string_opt::<i32>().ok_or_else(|| shape_error("`split` is not a string"))?;
        let shard =
            column("shard")?.as_primitive_opt::<UInt32Type>().ok_or_else(|| shape_error("`shard` is not u32"))?;
        let offset =
            column("offset")?.as_primitive_opt::<UInt64Type>().ok_or_else(|| shape_error("`offset` is not u64"))?;
        let width =
            column("width")?.as_primitive_opt::<UInt32Type>().ok_or_else(|| shape_error("`width` is not u32"))?;
        let height =
            column("height")?.as_primitive_opt::<UInt32Type>().ok_or_else(|| shape_error("`height` is not u32"))?;
        let paths = column("path")?.as_string_opt::<i32>().ok_or_else(|| shape_error("`path` is not a string"))?;
        let targets = column("targets")?.as_list_opt::<i32>().ok_or_else(|| shape_error("`targets` is not a list"))?;
        for row in (0..batch.num_rows()).filter(|&row| splits.value(row) == split) {
            let values = targets.value(row);
            let values =
                values.as_primitive_opt::<Int8Type>().ok_or_else(|| shape_error("`targets` items are not i8"))?;
            if values.len() != label_count {
                return Err(shape_error(&format!("row {row} has {} targets for {label_count} labels", values.len())));
            }
            records.push(Record {
                shard: shard.value(row),
                offset: offset.value(row),
                width: width.value(row),
                height: height.value(row),
                path: paths.value(row).to_string(),
                targets: values.values().to_vec(),
                length: 0,
            });
        }
    }
    Ok(records)
}

/// Random access to the images of one split.
#[derive(Debug, Clone)]
pub struct SplitReader {
    pub name: String,
    /// Stored whole-frame for training (see [`crate::preprocess`]).
    pub train: bool,
    pub label_count: usize,
    codec: Codec,
    files: Arc<Vec<File>>,
    records: Arc<Vec<Record>>,
    pub(crate) shard_count: usize,
}

impl SplitReader {
    pub fn len(&self) -> usize {
        self.records.len()
    }
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// The same split restricted to `rows` (in that order), e.g. a validation slice; rows of the
    /// result index into `rows`.
    ///
    /// # Errors
    /// [`DataError::Loader`] naming the first row outside the split.
    pub fn select(&self, rows: &[usize]) -> Result<SplitReader, DataError> {
        let records = rows
            .iter()
            .map(|&row| {
                self.records.get(row).cloned().ok_or_else(|| DataError::Loader {
                    key: "row".into(),
                    message: format!("`{row}` is outside split `{}` ({} images)", self.name, self.len()),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SplitReader { records: Arc::new(records), ..self.clone() })
    }

    /// The stored RGB pixels of row `row` (decoded when the shards hold PNG or JPEG).
    pub fn read_pixels(&self, row: usize) -> Result<Vec<u8>, DataError> {
        let record = self
            .records
            .get(row)
            .ok_or_else(|| DataError::Loader { key: "row".into(), message: format!("`{row}` is out of range") })?;
        let mut bytes = vec![0u8; record.length as usize];
        let file = self.files.get(record.shard as usize).ok_or_else(|| DataError::Loader {
            key: "shard".into(),
            message: format!("`{}` is out of range", record.shard),
        })?;
        let shown = || PathBuf::from(format!("shard {} of split {}", record.shard, self.name));
        read_at(file, &mut bytes, record.offset).map_err(|e| DataError::read(shown(), e))?;
        self.codec.decode(bytes, record.width, record.height).map_err(|message| DataError::Shards {
            path: shown(),
            message: format!("image `{}` at offset {}: {message}", record.path, record.offset),
        })
    }
}

#[cfg(unix)]
pub(crate) fn read_at(file: &File, buffer: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buffer, offset)
}

#[cfg(windows)]
pub(crate) fn read_at(file: &File, mut buffer: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    while !buffer.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_read(file, buffer, offset)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer = &mut buffer[n..];
        offset += n as u64;
    }
    Ok(())
}
