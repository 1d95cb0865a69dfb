//! fsio: the one way sspa-pipe writes a file that others may read: a temporary file in the target
//! directory, synced, then renamed over the target, so readers see the old content or the whole
//! new content, never a torn file, even after `kill -9`; the directory is synced after the rename.

use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Writes `path` through `write`, atomically. `io_error` turns I/O failures into the caller's
/// error type (so it can name `path`); errors of `write` itself pass through unchanged.
pub fn write_atomic_with<E>(
    path: &Path,
    write: impl FnOnce(&mut File) -> Result<(), E>,
    io_error: impl Fn(std::io::Error) -> E,
) -> Result<(), E> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(&io_error)?;
    let mut temporary = tempfile::Builder::new().prefix(".sspa-").suffix(".tmp").tempfile_in(dir).map_err(&io_error)?;
    write(temporary.as_file_mut())?;
    temporary.as_file().sync_all().map_err(&io_error)?;
    temporary.persist(path).map_err(|e| io_error(e.error))?;
    // Make the rename itself durable (best effort: not every file system syncs directories).
    if let Ok(directory) = File::open(dir) {
        let _ = directory.sync_all();
    }
    Ok(())
}

/// Writes `bytes` to `path`, atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |file| file.write_all(bytes), |e| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_files_and_keeps_the_old_one_on_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/out.txt");
        write_atomic(&path, b"first").expect("write");
        write_atomic(&path, b"second").expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"second");
        let failed: Result<(), std::io::Error> =
            write_atomic_with(&path, |file| file.write_all(b"torn").and(Err(std::io::Error::other("boom"))), |e| e);
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&path).expect("read"), b"second");
        let leftovers = std::fs::read_dir(path.parent().expect("parent")).expect("dir").count();
        assert_eq!(leftovers, 1, "the temporary file is removed on failure");
    }
}
