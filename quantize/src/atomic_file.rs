//! Files replaced whole or not at all: written under a temporary name beside the
//! target (`.name.tmp`, same folder, so the rename stays on one file system), then
//! renamed over it. A failure at any point leaves the old file as it was and no
//! temporary file behind.
//!
//! Not `tempfile`: its files are created mode 0600, and a bundle copied to a board
//! with its modes (`rsync -a`, `scp -p`) would then be unreadable to the service's
//! user. Here the file is created as any other, under the umask.

use std::io;
use std::path::{Path, PathBuf};

/// A file being written under a temporary name beside its target; dropped without
/// [`PendingFile::commit`], the temporary file is removed.
#[derive(Debug)]
pub struct PendingFile {
    temp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl PendingFile {
    /// A pending replacement of `target`, written at [`PendingFile::path`].
    pub fn new(target: &Path) -> Self {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        PendingFile {
            temp: target.with_file_name(format!(".{name}.tmp")),
            target: target.to_path_buf(),
            committed: false,
        }
    }

    /// Where to write the new content.
    pub fn path(&self) -> &Path {
        &self.temp
    }

    /// The file this replaces.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Renames the written file over the target.
    pub fn commit(mut self) -> io::Result<()> {
        std::fs::rename(&self.temp, &self.target)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: the file may never have been created.
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Writes `target` through `write` (given the temporary path) and renames it into
/// place; on any error the old `target` is untouched and the temporary file gone.
pub fn write_atomically<E: From<io::Error>>(
    target: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    let pending = PendingFile::new(target);
    write(pending.path())?;
    Ok(pending.commit()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("clip-quantize-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_leaves_nothing() {
        let target = scratch("kept.txt");
        std::fs::write(&target, "old").unwrap();
        let result: io::Result<()> = write_atomically(&target, |tmp| {
            std::fs::write(tmp, "half")?;
            Err(io::Error::other("disk full"))
        });
        assert!(result.is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old");
        assert!(!PendingFile::new(&target).path().exists());
    }

    #[test]
    fn a_finished_write_replaces_the_file() {
        let target = scratch("replaced.txt");
        std::fs::write(&target, "old").unwrap();
        write_atomically(&target, |tmp| std::fs::write(tmp, "new")).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        assert!(!PendingFile::new(&target).path().exists());
    }
}
