//! Duplicate image entries in bounded memory: an external sort of 16-byte path hashes.
//!
//! Each entry becomes a key (the first 16 bytes of the BLAKE3 of its path as written, and its
//! ordinal in the annotations). Keys are sorted in runs of [`RUN`] in memory; once there is more
//! than one run they are spilled to an anonymous temporary file and merged with [`MERGE_BUFFER`]
//! keys buffered per run. Memory: one run (192 KiB) plus 3 KiB per 8,192 images while merging.
//! Every repeat of a path is a duplicate (paired with the path's first occurrence); they are all
//! counted, and the `limit` whose repeat comes first are kept, in file order, as a scan that
//! remembered every path would report them.

use crate::error::DataError;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;

/// Keys sorted in memory at a time.
const RUN: usize = 8192;
/// Keys read ahead per run while merging.
const MERGE_BUFFER: usize = 128;
const KEY_BYTES: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    hash: [u8; 16],
    ordinal: u64,
}

impl Key {
    fn to_bytes(self) -> [u8; KEY_BYTES] {
        let mut bytes = [0u8; KEY_BYTES];
        bytes[..16].copy_from_slice(&self.hash);
        bytes[16..].copy_from_slice(&self.ordinal.to_le_bytes());
        bytes
    }

    fn from_bytes(bytes: &[u8]) -> Self {
        let mut hash = [0u8; 16];
        hash.copy_from_slice(&bytes[..16]);
        let mut ordinal = [0u8; 8];
        ordinal.copy_from_slice(&bytes[16..KEY_BYTES]);
        Self { hash, ordinal: u64::from_le_bytes(ordinal) }
    }
}

/// Collects path hashes; [`DuplicateFinder::finish`] says which entries repeat a path.
pub(crate) struct DuplicateFinder {
    run: Vec<Key>,
    spill: Option<std::io::BufWriter<std::fs::File>>,
    /// Number of keys in each spilled run.
    runs: Vec<usize>,
    next_ordinal: u64,
}

/// Two entries with the same path: ordinals (0-based positions in the annotations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Duplicate {
    pub first: u64,
    pub second: u64,
}

/// What [`DuplicateFinder::finish`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Duplicates {
    /// The earliest repeats, ordered by their second ordinal.
    pub listed: Vec<Duplicate>,
    /// All repeats, listed or not.
    pub count: usize,
}

fn spill_error(error: std::io::Error) -> DataError {
    DataError::write("<temporary file for duplicate detection>", error)
}

impl DuplicateFinder {
    pub(crate) fn new() -> Self {
        Self { run: Vec::new(), spill: None, runs: Vec::new(), next_ordinal: 0 }
    }

    /// Adds the next entry's path.
    pub(crate) fn push(&mut self, path: &str) -> Result<(), DataError> {
        let digest = blake3::hash(path.as_bytes());
        let mut hash = [0u8; 16];
        hash.copy_from_slice(&digest.as_bytes()[..16]);
        if self.run.capacity() == 0 {
            self.run.reserve_exact(RUN);
        }
        self.run.push(Key { hash, ordinal: self.next_ordinal });
        self.next_ordinal += 1;
        if self.run.len() >= RUN {
            self.spill_run()?;
        }
        Ok(())
    }

    fn spill_run(&mut self) -> Result<(), DataError> {
        if self.run.is_empty() {
            return Ok(());
        }
        self.run.sort_unstable();
        if self.spill.is_none() {
            let file = tempfile::tempfile().map_err(spill_error)?;
            self.spill = Some(std::io::BufWriter::with_capacity(64 * 1024, file));
        }
        if let Some(spill) = self.spill.as_mut() {
            for key in &self.run {
                spill.write_all(&key.to_bytes()).map_err(spill_error)?;
            }
        }
        self.runs.push(self.run.len());
        self.run.clear();
        Ok(())
    }

    /// Every repeated path: the `limit` repeats that come first, and how many there are.
    pub(crate) fn finish(mut self, limit: usize) -> Result<Duplicates, DataError> {
        let Some(_) = self.spill else {
            self.run.sort_unstable();
            return Ok(duplicates(self.run.iter().copied(), limit));
        };
        self.spill_run()?;
        let file = match self.spill.take() {
            Some(spill) => spill.into_inner().map_err(|e| spill_error(e.into_error()))?,
            None => return Ok(Duplicates { listed: Vec::new(), count: 0 }),
        };
        let mut readers = Vec::with_capacity(self.runs.len());
        let mut start = 0u64;
        for &len in &self.runs {
            readers.push(RunReader { start, remaining: len, buffer: Vec::new(), position: 0 });
            start += (len * KEY_BYTES) as u64;
        }
        let mut heap = BinaryHeap::with_capacity(readers.len());
        for (index, reader) in readers.iter_mut().enumerate() {
            if let Some(key) = reader.next(&file)? {
                heap.push(Reverse((key, index)));
            }
        }
        let merged = std::iter::from_fn(|| {
            let Reverse((key, index)) = heap.pop()?;
            match readers[index].next(&file) {
                Ok(Some(next)) => heap.push(Reverse((next, index))),
                Ok(None) => {}
                Err(error) => return Some(Err(error)),
            }
            Some(Ok(key))
        });
        let mut error = None;
        let keys = merged.map_while(|key| key.map_err(|e| error = Some(e)).ok());
        let found = duplicates(keys, limit);
        match error {
            Some(error) => Err(error),
            None => Ok(found),
        }
    }
}

/// Over keys sorted by (hash, ordinal): every repeat paired with its group's first occurrence;
/// the `limit` with the smallest second ordinal are kept (a bounded max-heap), all are counted.
fn duplicates(keys: impl Iterator<Item = Key>, limit: usize) -> Duplicates {
    let mut earliest: BinaryHeap<(u64, u64)> = BinaryHeap::with_capacity(limit + 1);
    let mut count = 0;
    let mut previous: Option<[u8; 16]> = None;
    let mut group_first = 0;
    for key in keys {
        if previous == Some(key.hash) {
            count += 1;
            earliest.push((key.ordinal, group_first));
            if earliest.len() > limit {
                earliest.pop();
            }
        } else {
            group_first = key.ordinal;
        }
        previous = Some(key.hash);
    }
    let listed = earliest.into_sorted_vec().into_iter().map(|(second, first)| Duplicate { first, second }).collect();
    Duplicates { listed, count }
}

struct RunReader {
    /// Byte offset of the run's next unread key.
    start: u64,
    remaining: usize,
    buffer: Vec<Key>,
    position: usize,
}

impl RunReader {
    fn next(&mut self, file: &std::fs::File) -> Result<Option<Key>, DataError> {
        if self.position == self.buffer.len() {
            if self.remaining == 0 {
                return Ok(None);
            }
            let count = self.remaining.min(MERGE_BUFFER);
            let mut bytes = vec![0u8; count * KEY_BYTES];
            crate::reader::read_at(file, &mut bytes, self.start).map_err(spill_error)?;
            self.buffer.clear();
            self.buffer.extend(bytes.chunks_exact(KEY_BYTES).map(Key::from_bytes));
            self.position = 0;
            self.start += bytes.len() as u64;
            self.remaining -= count;
        }
        let key = self.buffer.get(self.position).copied();
        self.position += 1;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(paths: &[String], limit: usize) -> Duplicates {
        let mut finder = DuplicateFinder::new();
        for path in paths {
            finder.push(path).expect("push");
        }
        finder.finish(limit).expect("finish")
    }

    fn pair(first: usize, second: usize) -> Duplicate {
        Duplicate { first: first as u64, second: second as u64 }
    }

    #[test]
    fn no_duplicates_in_memory_or_spilled() {
        assert_eq!(find(&["a".into(), "b".into()], 50).count, 0);
        let many: Vec<String> = (0..RUN * 3 + 17).map(|i| format!("img/{i}.png")).collect();
        assert_eq!(find(&many, 50), Duplicates { listed: Vec::new(), count: 0 });
    }

    #[test]
    fn every_repeat_is_found_across_runs_earliest_first() {
        let mut many: Vec<String> = (0..RUN * 3 + 17).map(|i| format!("img/{i}.png")).collect();
        // A repeat late in the last run and two repeats of one path spanning the first three runs.
        many[RUN * 3 + 10] = "img/5.png".into();
        many[RUN + 100] = "img/7.png".into();
        many[RUN * 2 + 1] = "img/7.png".into();
        let found = find(&many, 50);
        assert_eq!(found.count, 3);
        assert_eq!(found.listed, vec![pair(7, RUN + 100), pair(7, RUN * 2 + 1), pair(5, RUN * 3 + 10)]);
        let first_two = find(&many, 2);
        assert_eq!((first_two.count, first_two.listed), (3, vec![pair(7, RUN + 100), pair(7, RUN * 2 + 1)]));
        assert_eq!(find(&many, 0), Duplicates { listed: Vec::new(), count: 3 });
        let small: Vec<String> = ["a", "b", "c", "b", "a"].iter().map(|s| s.to_string()).collect();
        assert_eq!(find(&small, 50).listed, vec![pair(1, 3), pair(0, 4)]);
    }
}
