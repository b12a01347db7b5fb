//! Files replaced whole or not at all, and durably: the new content goes into a file
//! with no name, in the target's folder, which is given its name only when complete
//! and flushed to disk; a failure, a full disk or a killed process at any point leaves
//! the old file as it was and nothing else behind.
//!
//! On Linux the file is made with `O_TMPFILE`: until [`PendingFile::commit`] it has no
//! name, so the kernel frees it when the process dies, even by `SIGKILL`. Commit
//! flushes it (`fsync`), links it in as `.NAME.tmp` and renames that over the target
//! (atomic on POSIX file systems), then flushes the folder, so that after a power
//! loss the target is either the old file or the new one, whole. Where `O_TMPFILE` is
//! not supported (other systems, some file systems) the file is `.NAME.tmp` from the
//! start, removed on failure; only a killed process can then leave it behind, and the
//! next write replaces it.
//!
//! Not `tempfile`: its files are created mode 0600, and a bundle copied to a board
//! with its modes (`rsync -a`, `scp -p`) would then be unreadable to the service's
//! user. Here the file is created as any other, under the umask.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use clip_edge_bundle::atomic::{parent_dir, sync_dir};

/// A file being written, not yet in place; dropped without [`PendingFile::commit`],
/// it is gone.
#[derive(Debug)]
pub struct PendingFile {
    file: File,
    target: PathBuf,
    /// `.NAME.tmp` beside the target: the name given on commit before the rename,
    /// or, without `O_TMPFILE`, the file's name from the start.
    temp: PathBuf,
    /// Whether `file` has no name yet (`O_TMPFILE`).
    unnamed: bool,
    committed: bool,
}

impl PendingFile {
    /// Starts a replacement of `target`, in `target`'s folder (which must exist).
    pub fn create(target: &Path) -> io::Result<Self> {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = target.with_file_name(format!(".{name}.tmp"));
        let (file, unnamed) = match open_unnamed(target) {
            Some(file) => (file, true),
            None => (File::create(&temp)?, false),
        };
        Ok(PendingFile {
            file,
            target: target.to_path_buf(),
            temp,
            unnamed,
            committed: false,
        })
    }

    /// The file to write the new content to.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// The file this replaces (the name to give in messages).
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Flushes the new content to disk and puts it in place of the target.
    pub fn commit(mut self) -> io::Result<()> {
        self.file.sync_all()?;
        if self.unnamed {
            link_unnamed(&self.file, &self.temp)?;
        }
        std::fs::rename(&self.temp, &self.target)?;
        self.committed = true;
        // The rename itself survives a power loss only once the folder is flushed.
        sync_dir(parent_dir(&self.target))
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.committed && !self.unnamed {
            // Best effort: an unnamed file needs nothing, closing it frees it.
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// An `O_TMPFILE` file in `target`'s folder, if the system and file system make one
/// (and `/proc` is there to link it in with).
#[cfg(target_os = "linux")]
fn open_unnamed(target: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !Path::new("/proc/self/fd").is_dir() {
        return None;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o666)
        .open(dir)
        .map_err(|e| {
            log::debug!(
                "no O_TMPFILE in {}: {e}; a named temporary file instead",
                dir.display()
            )
        })
        .ok()
}

#[cfg(not(target_os = "linux"))]
fn open_unnamed(_target: &Path) -> Option<File> {
    None
}

/// Gives the `O_TMPFILE` file `file` the name `temp` (replacing a leftover of an
/// earlier, killed run): `linkat` through `/proc/self/fd`, as open(2) documents.
#[cfg(target_os = "linux")]
fn link_unnamed(file: &File, temp: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let from = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    let to = CString::new(temp.as_os_str().as_bytes())?;
    for attempt in 0..2 {
        // SAFETY: both are valid NUL-terminated paths; linkat reads them only.
        let rc = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::AlreadyExists || attempt > 0 {
            return Err(err);
        }
        std::fs::remove_file(temp)?;
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn link_unnamed(_file: &File, _temp: &Path) -> io::Result<()> {
    Err(io::Error::other("no O_TMPFILE here"))
}

/// Writes `target` through `write` (given the new file) and puts it in place; on any
/// error the old `target` is untouched and nothing is left behind.
pub fn write_atomically<E: From<io::Error>>(
    target: &Path,
    write: impl FnOnce(&mut File) -> Result<(), E>,
) -> Result<(), E> {
    let mut pending = PendingFile::create(target)?;
    write(pending.file())?;
    Ok(pending.commit()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dirs::{names, scratch};
    use std::io::Write;

    #[test]
    fn a_failed_write_keeps_the_old_file_and_leaves_nothing() {
        let dir = scratch("atomic", "failed");
        let target = dir.join("kept.txt");
        std::fs::write(&target, "old").unwrap();
        let result: io::Result<()> = write_atomically(&target, |file| {
            file.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        });
        assert!(result.is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old");
        assert_eq!(names(&dir), ["kept.txt"]);
    }

    #[test]
    fn a_finished_write_replaces_the_file_and_leaves_nothing_else() {
        let dir = scratch("atomic", "finished");
        let target = dir.join("replaced.txt");
        std::fs::write(&target, "old").unwrap();
        // A leftover of an earlier run killed between link and rename.
        std::fs::write(dir.join(".replaced.txt.tmp"), "stale").unwrap();
        write_atomically(&target, |file| file.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(names(&dir), ["replaced.txt"]);
    }

    /// While being written, the new file has no name on Linux: a process killed then
    /// leaves nothing (the end-to-end tests kill `clip-quantize` mid-write).
    #[cfg(target_os = "linux")]
    #[test]
    fn the_file_being_written_has_no_name() {
        let dir = scratch("atomic", "unnamed");
        let mut pending = PendingFile::create(&dir.join("model.bin")).unwrap();
        pending.file().write_all(&[0; 4096]).unwrap();
        if pending.unnamed {
            assert!(names(&dir).is_empty(), "{:?}", names(&dir));
        } else {
            // A file system without O_TMPFILE (overlayfs before Linux 6.6): named.
            eprintln!("{}: no O_TMPFILE, a named temporary file", dir.display());
            assert_eq!(names(&dir), [".model.bin.tmp"]);
        }
        pending.commit().unwrap();
        assert_eq!(names(&dir), ["model.bin"]);
        assert_eq!(std::fs::read(dir.join("model.bin")).unwrap().len(), 4096);
    }
}
