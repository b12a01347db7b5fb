//! Directories replaced whole or not at all: a bundle is written into a hidden
//! sibling (`.NAME.new-PID`), flushed, and swapped with the old directory in one
//! step, so the path always holds a complete bundle, the old one or the new one.
//!
//! On Linux the swap is `renameat2(RENAME_EXCHANGE)`; the old directory then sits at
//! the sibling's name and is removed. Where the exchange is not supported, the old
//! directory is first renamed aside (`.NAME.old-PID`), leaving the path empty for the
//! moment between two renames. A failure removes the sibling; a killed process can
//! leave it behind (empty or partly written, never at the bundle's path), and the
//! next write into the same directory removes it.

use std::io;
use std::path::{Path, PathBuf};

use clip_edge_bundle::atomic::{exchange, parent_dir, sync_dir};

/// A directory being written beside the one it will replace.
#[derive(Debug)]
pub struct StagedDir {
    staging: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl StagedDir {
    /// Starts a replacement of the directory `target` (which need not exist yet; its
    /// parent is created). Leftovers of earlier, killed writes of `target` are removed.
    pub fn create(target: &Path) -> io::Result<Self> {
        let target = match std::fs::canonicalize(target) {
            Ok(real) => real,
            Err(_) => target.to_path_buf(),
        };
        let name = target
            .file_name()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the output must be a named directory (not `.`, `..` or `/`)",
                )
            })?
            .to_string_lossy()
            .into_owned();
        let parent = parent_dir(&target).to_path_buf();
        std::fs::create_dir_all(&parent)?;
        remove_stale_siblings(&parent, &name);
        let staging = parent.join(format!(".{name}.new-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir(&staging)?;
        Ok(StagedDir {
            staging,
            target,
            committed: false,
        })
    }

    /// Where to write the new directory's files.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// The directory this replaces.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Hard-links (or copies) into the new directory the old one's files that
    /// `keep_out` does not claim, so that replacing a bundle keeps a user's other
    /// files. A subdirectory in the old directory is an error: a bundle directory
    /// holds files.
    pub fn carry_over(&self, keep_out: impl Fn(&str) -> bool) -> io::Result<()> {
        let entries = match std::fs::read_dir(&self.target) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if keep_out(&name.to_string_lossy()) {
                continue;
            }
            let (from, to) = (entry.path(), self.staging.join(&name));
            let kind = entry.file_type()?;
            if kind.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is a directory; a bundle directory holds only files (move it, or write the bundle elsewhere)",
                        from.display()
                    ),
                ));
            }
            if kind.is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
            } else if std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to)?;
            }
        }
        Ok(())
    }

    /// Flushes the new directory and puts it in place of the target.
    pub fn commit(mut self) -> io::Result<()> {
        sync_dir(&self.staging)?;
        if self.target.exists() {
            if !exchange(&self.staging, &self.target)? {
                let aside = self.staging.with_file_name(format!(
                    ".{}.old-{}",
                    self.target
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy(),
                    std::process::id()
                ));
                std::fs::rename(&self.target, &aside)?;
                std::fs::rename(&self.staging, &self.target)?;
                std::fs::rename(&aside, &self.staging)?;
            }
        } else {
            std::fs::rename(&self.staging, &self.target)?;
        }
        self.committed = true;
        sync_dir(parent_dir(&self.target))?;
        // The old directory, now at the staging name.
        let _ = std::fs::remove_dir_all(&self.staging);
        Ok(())
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

/// Removes `.NAME.new-PID` and `.NAME.old-PID` in `parent` whose process is gone
/// (left by a killed write); best effort.
fn remove_stale_siblings(parent: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let pid = [".new-", ".old-"].iter().find_map(|tag| {
            file_name
                .strip_prefix(&format!(".{name}{tag}"))
                .and_then(|pid| pid.parse::<u32>().ok())
        });
        if let Some(pid) = pid {
            let alive = Path::new(&format!("/proc/{pid}")).exists() && pid != std::process::id();
            if !alive {
                log::info!(
                    "removing {}, left by an interrupted write",
                    entry.path().display()
                );
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dirs::{names, scratch};

    #[test]
    fn a_committed_directory_replaces_the_old_one_keeping_other_files() {
        let parent = scratch("atomic-dir", "commit");
        let target = parent.join("bundle");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("model"), "old").unwrap();
        std::fs::write(target.join("NOTES"), "mine").unwrap();
        // A leftover of a killed write (a process id that cannot be running).
        std::fs::create_dir(parent.join(".bundle.new-4294967295")).unwrap();

        let staged = StagedDir::create(&target).unwrap();
        std::fs::write(staged.path().join("model"), "new").unwrap();
        staged.carry_over(|name| name == "model").unwrap();
        staged.commit().unwrap();
        assert_eq!(names(&parent), ["bundle"]);
        assert_eq!(names(&target), ["NOTES", "model"]);
        assert_eq!(
            std::fs::read_to_string(target.join("model")).unwrap(),
            "new"
        );
        assert_eq!(
            std::fs::read_to_string(target.join("NOTES")).unwrap(),
            "mine"
        );
    }

    #[test]
    fn an_abandoned_directory_leaves_the_old_one_and_nothing_else() {
        let parent = scratch("atomic-dir", "abandon");
        let target = parent.join("bundle");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("model"), "old").unwrap();
        {
            let staged = StagedDir::create(&target).unwrap();
            std::fs::write(staged.path().join("model"), "half").unwrap();
        }
        assert_eq!(names(&parent), ["bundle"]);
        assert_eq!(
            std::fs::read_to_string(target.join("model")).unwrap(),
            "old"
        );
    }

    #[test]
    fn a_new_directory_is_created_and_a_subdirectory_is_refused() {
        let parent = scratch("atomic-dir", "new");
        let target = parent.join("a/bundle");
        let staged = StagedDir::create(&target).unwrap();
        std::fs::write(staged.path().join("model"), "new").unwrap();
        staged.commit().unwrap();
        assert_eq!(names(&target), ["model"]);

        std::fs::create_dir(target.join("sub")).unwrap();
        let staged = StagedDir::create(&target).unwrap();
        let err = staged.carry_over(|_| false).unwrap_err();
        assert!(err.to_string().contains("holds only files"), "{err}");
    }
}
