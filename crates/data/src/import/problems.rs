//! The problems of one annotation file, collected in one pass instead of stopping at the first:
//! the first [`PROBLEMS_LISTED`] are kept, the rest only counted, so memory stays flat however
//! bad the file is.

use crate::error::{DataError, PROBLEMS_LISTED};
use std::path::{Path, PathBuf};

pub(crate) struct Problems {
    path: PathBuf,
    listed: Vec<DataError>,
    count: usize,
}

impl Problems {
    pub(crate) fn new(path: &Path) -> Self {
        Self { path: path.to_path_buf(), listed: Vec::new(), count: 0 }
    }

    pub(crate) fn push(&mut self, problem: DataError) {
        if self.listed.len() < PROBLEMS_LISTED {
            self.listed.push(problem);
        }
        self.count += 1;
    }

    /// Problems known to exist but not worth describing (the list is full).
    pub(crate) fn add_unlisted(&mut self, count: usize) {
        self.count += count;
    }

    /// How many more problems would be listed.
    pub(crate) fn room(&self) -> usize {
        PROBLEMS_LISTED - self.listed.len()
    }

    /// No problem: `Ok`; exactly one: that error itself; more: [`DataError::Annotations`].
    pub(crate) fn into_result(mut self) -> Result<(), DataError> {
        match self.count {
            0 => Ok(()),
            1 if self.listed.len() == 1 => Err(self.listed.remove(0)),
            count => Err(DataError::Annotations { path: self.path, count, problems: self.listed }),
        }
    }

    /// The collected problems and a last one that stopped the reading (a syntax or I/O error):
    /// nothing found before it is lost.
    pub(crate) fn stopped_by(mut self, error: DataError) -> DataError {
        if self.count == 0 {
            return error;
        }
        self.push(error);
        DataError::Annotations { path: self.path, count: self.count, problems: self.listed }
    }
}
