//! fsio: the one way sspa-pipe publishes what others may read, and hashes a file.
//!
//! - **A file** ([`write_atomic`], [`write_atomic_with`]): a temporary file in the target
//!   directory, synced, then renamed over the target, so readers see the old content or the whole
//!   new content, never a torn file, even after `kill -9`; the directory is synced after the
//!   rename. The file gets the mode an ordinary `create` gives (`0666` less the umask), so a group
//!   or service account sharing a workspace reads it as it reads everything else there (a
//!   temporary file's own default, `0600`, would lock them out).
//!   [`write_json_atomic`] writes a value as pretty JSON that way.
//! - **A directory** ([`publish_dir`]): a staging directory, complete, renamed onto the target.
//!   When the target already exists (a forced rerun replaces a result) the two are swapped in one
//!   step with Linux's `renameat2(RENAME_EXCHANGE)` and the old tree, now under the staging name,
//!   is removed afterwards: a reader sees the old tree or the new one, never a mix and never
//!   nothing. Where the file system cannot exchange (not Linux, or a file system without
//!   `RENAME_EXCHANGE`), the old tree is first renamed aside (`.old-<name>-…`), the new one renamed
//!   in, then the old one removed: a reader may then find the target missing for that moment,
//!   never half of either. The old tree is never deleted before the new one is in place.
//! - **BLAKE3 of a file** ([`blake3_file`]): memory-mapped when the file is large, with its size.
//! - **What records share**: the timestamp every record writes ([`timestamp`]: RFC 3339, UTC,
//!   milliseconds) and the dotted-path lookup into the JSON documents the project reads back
//!   ([`json_path`]: `train.asl.clip` in a config, `top3.CF1` in a metrics report).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `path` through `write`, atomically. `io_error` turns I/O failures into the caller's
/// error type (so it can name `path`); errors of `write` itself pass through unchanged.
pub fn write_atomic_with<E>(
    path: &Path,
    write: impl FnOnce(&mut File) -> Result<(), E>,
    io_error: impl Fn(std::io::Error) -> E,
) -> Result<(), E> {
    let dir = parent_dir(path);
    std::fs::create_dir_all(dir).map_err(&io_error)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".sspa-").suffix(".tmp");
    #[cfg(unix)]
    {
        // `open(2)` applies the umask to this mode, as for any file the process creates.
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut temporary = builder.tempfile_in(dir).map_err(&io_error)?;
    write(temporary.as_file_mut())?;
    temporary.as_file().sync_all().map_err(&io_error)?;
    temporary.persist(path).map_err(|e| io_error(e.error))?;
    sync_dir(dir);
    Ok(())
}

/// Writes `bytes` to `path`, atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |file| file.write_all(bytes), |e| e)
}

/// Writes `value` as pretty JSON with a final newline to `path`, atomically.
pub fn write_json_atomic<T: serde::Serialize + ?Sized>(path: &Path, value: &T) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// How [`publish_dir`] put the new tree in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Nothing was there: one rename.
    Renamed,
    /// The old tree was swapped out in one step (`RENAME_EXCHANGE`) and removed.
    Exchanged,
    /// The old tree was renamed aside, the new one renamed in, the old one removed (this file
    /// system cannot exchange two directories).
    RenamedAside,
}

/// Moves the complete directory `staging` to `target` (same file system), replacing a tree
/// already there without ever deleting it before the new one is in place (see the crate docs).
/// The old tree's removal is best effort: what a failure leaves is under a hidden name
/// (`staging`'s, or `.old-<name>-<pid>-<n>` beside `target`) for the caller's sweep.
///
/// # Errors
/// The rename's I/O error; `staging` is then still where it was and `target` unchanged.
pub fn publish_dir(staging: &Path, target: &Path) -> std::io::Result<Published> {
    let published = match std::fs::rename(staging, target) {
        Ok(()) => Published::Renamed,
        // A non-empty directory is in the way (ENOTEMPTY, or EEXIST on some systems).
        Err(error) if target.is_dir() => {
            match exchange(staging, target) {
                Ok(()) => {
                    // The old tree now has the staging name.
                    let _ = std::fs::remove_dir_all(staging);
                    Published::Exchanged
                }
                Err(exchange_error) if exchange_unsupported(&exchange_error) => {
                    rename_aside(staging, target)?;
                    Published::RenamedAside
                }
                Err(_) => return Err(error),
            }
        }
        Err(error) => return Err(error),
    };
    sync_dir(parent_dir(target));
    Ok(published)
}

/// The no-exchange fallback: old tree aside, new one in, old one removed.
fn rename_aside(staging: &Path, target: &Path) -> std::io::Result<()> {
    let aside = aside_name(target);
    std::fs::rename(target, &aside)?;
    if let Err(error) = std::fs::rename(staging, target) {
        // Put the old tree back: the target keeps its old content.
        let _ = std::fs::rename(&aside, target);
        return Err(error);
    }
    let _ = std::fs::remove_dir_all(&aside);
    Ok(())
}

/// `.old-<name>-<pid>-<n>` beside `target`.
fn aside_name(target: &Path) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = target.file_name().map_or_else(|| "dir".into(), |n| n.to_string_lossy().into_owned());
    parent_dir(target).join(format!(".old-{name}-{}-{count}", std::process::id()))
}

#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(std::io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn exchange(_: &Path, _: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

/// `renameat2` missing (ENOSYS), or the file system without `RENAME_EXCHANGE` (EINVAL).
fn exchange_unsupported(error: &std::io::Error) -> bool {
    const ENOSYS: i32 = 38;
    const EINVAL: i32 = 22;
    const EOPNOTSUPP: i32 = 95;
    error.kind() == std::io::ErrorKind::Unsupported
        || matches!(error.raw_os_error(), Some(ENOSYS | EINVAL | EOPNOTSUPP))
}

/// Size and BLAKE3 (hex) of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    pub size: u64,
    pub blake3: String,
}

/// Hashes the file at `path` with BLAKE3 (memory-mapped when large, read otherwise).
pub fn blake3_file(path: &Path) -> std::io::Result<FileDigest> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_mmap(path)?;
    Ok(FileDigest { size: hasher.count(), blake3: hasher.finalize().to_hex().to_string() })
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Makes a rename in `dir` durable (best effort: not every file system syncs directories).
fn sync_dir(dir: &Path) {
    if let Ok(directory) = File::open(dir) {
        let _ = directory.sync_all();
    }
}

/// Now, as every record of the project writes it: RFC 3339 in UTC to the millisecond
/// (`2026-12-07T14:32:26.746Z`).
pub fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The value at the dotted path `path` (`train.asl.clip`, `top3.CF1`) in `document`; `None` when
/// a key on the way is missing.
pub fn json_path<'a>(document: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.').try_fold(document, |value, key| value.get(key))
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

    /// Issue 26: atomic writes were mode 0600 (a temporary file's default), so a group sharing a
    /// workspace could not read aliases or run records. They get what `File::create` gives.
    #[cfg(unix)]
    #[test]
    fn files_written_atomically_get_the_umasks_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let reference = dir.path().join("plain.txt");
        std::fs::File::create(&reference).expect("create");
        let expected = std::fs::metadata(&reference).expect("meta").permissions().mode() & 0o777;
        let path = dir.path().join("atomic.json");
        write_atomic(&path, b"{}").expect("write");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, expected, "mode {mode:o}, a plain create gives {expected:o}");
        // Replacing a file gives the new file the same mode.
        write_atomic(&path, b"{\"a\": 1}").expect("rewrite");
        assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, expected);
    }

    fn tree(dir: &Path, files: &[(&str, &str)]) {
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
    }

    #[test]
    fn a_directory_is_published_and_replaced_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("result");
        let staging = dir.path().join(".tmp-1");
        tree(&staging, &[("a.txt", "one"), ("sub/b.txt", "two")]);
        assert_eq!(publish_dir(&staging, &target).expect("publish"), Published::Renamed);
        assert!(!staging.exists());
        assert_eq!(std::fs::read_to_string(target.join("sub/b.txt")).expect("read"), "two");

        // Replacing: the new tree only (no file of the old one survives), nothing left beside it.
        tree(&staging, &[("a.txt", "new")]);
        let how = publish_dir(&staging, &target).expect("replace");
        assert!(matches!(how, Published::Exchanged | Published::RenamedAside), "{how:?}");
        assert_eq!(std::fs::read_to_string(target.join("a.txt")).expect("read"), "new");
        assert!(!target.join("sub").exists(), "the old tree is gone, not merged");
        let names: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, ["result"], "no staging or old tree left behind");

        // A failed publish (no staging directory) leaves the target as it was.
        assert!(publish_dir(&dir.path().join(".tmp-missing"), &target).is_err());
        assert_eq!(std::fs::read_to_string(target.join("a.txt")).expect("read"), "new");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn replacing_a_directory_on_linux_is_one_exchange() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("result");
        tree(&target, &[("old.txt", "old")]);
        let staging = dir.path().join(".tmp-2");
        tree(&staging, &[("new.txt", "new")]);
        // tmpfs and ext4 (where tests run) support RENAME_EXCHANGE.
        assert_eq!(publish_dir(&staging, &target).expect("publish"), Published::Exchanged);
        assert!(target.join("new.txt").exists() && !target.join("old.txt").exists());
    }

    #[test]
    fn the_fallback_renames_aside_and_restores_on_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("result");
        tree(&target, &[("old.txt", "old")]);
        // The new tree cannot be renamed in (it does not exist): the old one is put back.
        assert!(rename_aside(&dir.path().join(".tmp-none"), &target).is_err());
        assert!(target.join("old.txt").exists());
        let staging = dir.path().join(".tmp-3");
        tree(&staging, &[("new.txt", "new")]);
        rename_aside(&staging, &target).expect("aside");
        assert!(target.join("new.txt").exists() && !target.join("old.txt").exists());
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
    }

    #[test]
    fn blake3_of_a_file_matches_the_hash_of_its_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        for size in [0usize, 5, 300_000] {
            let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let path = dir.path().join(format!("f{size}"));
            std::fs::write(&path, &bytes).expect("write");
            let digest = blake3_file(&path).expect("hash");
            assert_eq!(digest.size, size as u64);
            assert_eq!(digest.blake3, blake3::hash(&bytes).to_hex().to_string());
        }
        assert!(blake3_file(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn timestamps_are_rfc3339_utc_to_the_millisecond() {
        let stamp = timestamp();
        let parsed = chrono::DateTime::parse_from_rfc3339(&stamp).expect("RFC 3339");
        assert_eq!(parsed.offset().local_minus_utc(), 0, "{stamp}");
        assert_eq!(stamp.len(), "2026-12-07T14:32:26.746Z".len(), "{stamp}");
        assert!(stamp.ends_with('Z'), "{stamp}");
    }

    #[test]
    fn json_paths_walk_nested_keys() {
        let document = serde_json::json!({"top3": {"CF1": 71.5}, "mAP": 80.0});
        assert_eq!(json_path(&document, "top3.CF1"), Some(&serde_json::json!(71.5)));
        assert_eq!(json_path(&document, "mAP"), Some(&serde_json::json!(80.0)));
        assert_eq!(json_path(&document, "top3.OF1"), None);
        assert_eq!(json_path(&document, "mAP.x"), None);
    }
}
