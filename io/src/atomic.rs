//! Crash-safe file writing and output names derived from user input.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::{IoError, Result};

/// Most threads staging the files of one [`write_atomic_all`].
const STAGING_THREADS: usize = 16;

/// Longest record name accepted by [`safe_output_path`], in bytes.
pub const MAX_NAME_BYTES: usize = 200;

/// Writes `bytes` to `path` so that readers see either the old file or the complete
/// new one: the data goes to a temporary file in the same directory, is flushed to
/// disk, then renamed over `path`.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    write_atomic_all(&[(path.as_ref(), bytes)])
}

/// Writes several files that belong together (a structure and its JSON): every one is
/// first written and flushed to a temporary file beside its target, and only when all
/// of them succeeded are they renamed into place, so an error while writing leaves none of
/// them. What would make a rename fail or clobber a sibling (two files for one exact path,
/// a directory in the way) is refused before anything is written; only the file system
/// failing between two renames could leave some files new and others old.
pub fn write_atomic_all(files: &[(&Path, &[u8])]) -> Result<()> {
    let refuse = |path: &Path, reason: &str| {
        IoError::file(path, io::Error::new(io::ErrorKind::InvalidInput, reason))
    };
    let mut targets = std::collections::HashSet::with_capacity(files.len());
    for (path, _) in files {
        if !targets.insert(*path) {
            return Err(refuse(path, "two outputs would be written to this path"));
        }
        if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
            return Err(refuse(path, "a directory is in the way of this output"));
        }
    }
    let cleanup = |staged: &[(PathBuf, &Path)]| {
        // Best effort: the temporary files are garbage whatever happens here.
        staged.iter().for_each(|(tmp, _)| {
            let _ = fs::remove_file(tmp);
        });
    };
    // Staged on threads of their own (each file's flush mostly waits on the disk, and the
    // file system commits concurrent flushes together), at most STAGING_THREADS.
    let next = AtomicUsize::new(0);
    let mut outcomes: Vec<(usize, Result<PathBuf>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..files.len().min(STAGING_THREADS))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some((path, bytes)) = files.get(k) else {
                            break done;
                        };
                        done.push((k, stage(path, bytes)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a staging thread does not panic"))
            .collect()
    });
    outcomes.sort_by_key(|&(k, _)| k);
    let outcomes = outcomes.into_iter().map(|(_, outcome)| outcome);
    let mut staged: Vec<(PathBuf, &Path)> = Vec::with_capacity(files.len());
    let mut failure = None;
    for (outcome, (path, _)) in outcomes.zip(files) {
        match outcome {
            Ok(tmp) => staged.push((tmp, path)),
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    if let Some(e) = failure {
        cleanup(&staged);
        return Err(e);
    }
    for (k, (tmp, path)) in staged.iter().enumerate() {
        if let Err(e) = fs::rename(tmp, path) {
            cleanup(&staged[k..]);
            return Err(IoError::file(*path, e));
        }
    }
    // Persist the renames, once per directory. Some file systems refuse to fsync
    // directories; the file contents are already durable, so that is not an error.
    let dirs: std::collections::BTreeSet<&Path> =
        staged.iter().map(|(_, path)| parent_dir(path)).collect();
    for dir in dirs {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Writes and flushes `bytes` to a new temporary file beside `path`; returns its path.
fn stage(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let file_name = path.file_name().ok_or_else(|| {
        IoError::file(
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
        )
    })?;
    let dir = parent_dir(path);
    let (tmp_path, mut file) =
        create_temp(dir, &file_name.to_string_lossy()).map_err(|e| IoError::file(dir, e))?;
    if let Err(e) = file.write_all(bytes).and_then(|()| file.sync_all()) {
        let _ = fs::remove_file(&tmp_path);
        return Err(IoError::file(path, e));
    }
    Ok(tmp_path)
}

/// Creates a new, uniquely named hidden temporary file in `dir`.
fn create_temp(dir: &Path, file_name: &str) -> io::Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut last_err = None;
    // Collisions only happen with stale files from a crashed process with the same id.
    for _ in 0..100 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{file_name}.{}.{n}.tmp", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::ErrorKind::AlreadyExists.into()))
}

/// Returns `dir/<record_name>.<ext>` after checking that `record_name` (typically a
/// FASTA record name) is a plain, visible file name that stays inside `dir`.
///
/// Rejected: empty names, names over [`MAX_NAME_BYTES`] bytes, path separators
/// (`/`, `\`), NUL and other control characters, and a leading `.` (hidden files,
/// `.` and `..`). `ext` is given without the dot and must be a plain name too.
pub fn safe_output_path(dir: impl AsRef<Path>, record_name: &str, ext: &str) -> Result<PathBuf> {
    check_name(record_name).map_err(|reason| IoError::OutputName {
        name: record_name.to_string(),
        reason: reason.to_string(),
    })?;
    check_name(ext).map_err(|reason| IoError::OutputName {
        name: record_name.to_string(),
        reason: format!("extension `{ext}`: {reason}"),
    })?;
    Ok(dir.as_ref().join(format!("{record_name}.{ext}")))
}

/// Why `name` is not a safe single path component, if it is not.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("the name is empty")
    } else if name.len() > MAX_NAME_BYTES {
        Err("the name is longer than 200 bytes")
    } else if name.contains(['/', '\\']) {
        Err("the name contains a path separator ('/' or '\\')")
    } else if name.contains('\0') {
        Err("the name contains a NUL byte")
    } else if name.chars().any(char::is_control) {
        Err("the name contains a control character")
    } else if name.starts_with('.') {
        Err("the name starts with '.' (hidden file or '..' directory reference)")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn write_atomic_all_leaves_nothing_when_one_file_fails() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("a.pdb");
        let bad = dir.path().join("missing-folder").join("a.json");
        let err = super::write_atomic_all(&[(good.as_path(), b"x"), (bad.as_path(), b"y")]);
        assert!(err.is_err());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no file, no temp left"
        );
        super::write_atomic_all(&[(good.as_path(), b"x")]).unwrap();
        assert_eq!(std::fs::read(&good).unwrap(), b"x");
    }

    use super::*;

    #[test]
    fn write_atomic_replaces_content_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.pdb");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["out.pdb"]);
    }

    #[test]
    fn write_atomic_reports_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("out.pdb");
        let msg = write_atomic(&path, b"x").unwrap_err().to_string();
        assert!(msg.contains("missing"), "{msg}");
    }

    #[test]
    fn write_atomic_into_directory_path_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("taken")).unwrap();
        assert!(write_atomic(dir.path().join("taken"), b"x").is_err());
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["taken"], "temporary file left behind");
    }

    #[test]
    fn write_atomic_all_refuses_a_directory_or_a_repeated_path_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("q.a3m");
        let taken = dir.path().join("q.tsv");
        fs::create_dir(&taken).unwrap();
        let msg = write_atomic_all(&[(first.as_path(), b"x"), (taken.as_path(), b"y")])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("q.tsv") && msg.contains("directory"), "{msg}");
        let msg = write_atomic_all(&[(first.as_path(), b"x"), (first.as_path(), b"y")])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("two outputs"), "{msg}");
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, vec!["q.tsv"], "an output was written");
    }

    #[test]
    fn safe_output_path_accepts_plain_names() {
        let p = safe_output_path("/out", "sp|P01234|AB_1 x", "pdb").unwrap();
        assert_eq!(p, PathBuf::from("/out/sp|P01234|AB_1 x.pdb"));
    }

    #[test]
    fn safe_output_path_rejects_escaping_or_unusable_names() {
        let long = "a".repeat(MAX_NAME_BYTES + 1);
        for bad in [
            "", "..", ".", ".hidden", "a/b", "../etc", "a\\b", "a\0b", "a\nb", "a\tb", &long,
        ] {
            let msg = safe_output_path("/out", bad, "pdb")
                .unwrap_err()
                .to_string();
            assert!(
                msg.starts_with(&format!("record {bad:?} cannot be used")),
                "{msg}"
            );
        }
        assert!(safe_output_path("/out", &"a".repeat(MAX_NAME_BYTES), "pdb").is_ok());
        assert!(safe_output_path("/out", "a", "x/y").is_err());
    }
}
