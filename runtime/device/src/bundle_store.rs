//! Bundles installed on a board, switched atomically, with the last good one kept for
//! a rollback: updates that cannot leave a board without a bundle that loads.
//!
//! ```text
//! ROOT/                          /opt/clip-edge on a deployed board
//!   bundle -> bundles/ID         the bundle the service runs (a symlink)
//!   bundle.previous -> bundles/ID0   the one before, for `clip-edge bundle rollback`
//!   bundles/ID/                  installed bundles; ID is the first 16 hex digits of
//!                                the sha256 of their bundle.toml
//! ```
//!
//! [`install`] copies a bundle into `bundles/.incoming-PID`, flushed to disk, has it
//! verified (the caller loads it and classifies a frame), names it `bundles/ID`, and
//! only then points `bundle` at it by renaming a new symlink over the old one: one
//! atomic step. At every moment `ROOT/bundle` is the old bundle or the new one, whole
//! (`tests/tests/bundle_updates.rs` stops the process at every [`InstallStep`]). A
//! `ROOT/bundle` that is a directory (boards deployed before this layout) is moved
//! into `bundles/` in the same kind of step (`renameat2(RENAME_EXCHANGE)`).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use clip_edge_bundle::atomic;
use clip_edge_bundle::{LABELS_FILE, MANIFEST_FILE, MODEL_FILE, MODEL_FILE_NNEF, SIGNATURE_FILE};

/// The symlink the service loads.
pub const CURRENT: &str = "bundle";
/// The symlink to the bundle installed before the current one.
pub const PREVIOUS: &str = "bundle.previous";
/// The folder of installed bundles.
pub const BUNDLES: &str = "bundles";

/// What can go wrong installing or switching bundles.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file or folder of the store could not be read or written.
    #[error("{path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The new bundle failed verification; nothing was switched.
    #[error("{path}: the new bundle failed verification; the board keeps its current bundle")]
    Rejected {
        /// The bundle offered.
        path: PathBuf,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// There is no bundle to roll back to.
    #[error("{path}: no previous bundle to roll back to")]
    NoPrevious {
        /// The missing symlink.
        path: PathBuf,
    },
}

impl StoreError {
    /// The category of this error.
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::Io { .. } => StoreErrorKind::Io,
            StoreError::Rejected { .. } => StoreErrorKind::Rejected,
            StoreError::NoPrevious { .. } => StoreErrorKind::NoPrevious,
        }
    }
}

/// Coarse category of a [`StoreError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// File system trouble.
    Io,
    /// The bundle did not verify.
    Rejected,
    /// Nothing to roll back to.
    NoPrevious,
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The steps of [`install`], in order, as reported to its `on_step` callback just
/// before each is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallStep {
    /// Copying the bundle's files into `bundles/.incoming-PID`.
    Copy,
    /// Verifying the copy (the caller's check).
    Verify,
    /// Naming it `bundles/ID`.
    Place,
    /// Pointing `bundle.previous` at the current bundle.
    KeepPrevious,
    /// Pointing `bundle` at the new one.
    Switch,
    /// Removing bundles neither current nor previous.
    Prune,
}

impl InstallStep {
    /// Every step, in order.
    pub const ALL: [InstallStep; 6] = [
        InstallStep::Copy,
        InstallStep::Verify,
        InstallStep::Place,
        InstallStep::KeepPrevious,
        InstallStep::Switch,
        InstallStep::Prune,
    ];

    /// The step's name (`copy`, `verify`, ...).
    pub fn name(self) -> &'static str {
        match self {
            InstallStep::Copy => "copy",
            InstallStep::Verify => "verify",
            InstallStep::Place => "place",
            InstallStep::KeepPrevious => "keep-previous",
            InstallStep::Switch => "switch",
            InstallStep::Prune => "prune",
        }
    }
}

/// What [`status`] finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStatus {
    /// The bundle `ROOT/bundle` points at (its ID), if any.
    pub current: Option<String>,
    /// The bundle `ROOT/bundle.previous` points at, if any.
    pub previous: Option<String>,
    /// Every installed bundle's ID.
    pub installed: Vec<String>,
}

/// The ID of the bundle in `dir`: the first 16 hex digits of its manifest's sha256.
pub fn bundle_id(dir: &Path) -> Result<String, StoreError> {
    let manifest = dir.join(MANIFEST_FILE);
    clip_edge_bundle::sha256_file(&manifest)
        .map(|hash| hash[..16].to_string())
        .map_err(io_at(&manifest))
}

/// Installs the bundle in `src` under `root` and makes it current, keeping the
/// current one as previous. `verify` gets the copied bundle's folder and must load it
/// as the service would (signature, hashes, one frame); if it fails, nothing is
/// switched. `on_step` hears each [`InstallStep`] before it is taken. Returns the new
/// bundle's ID.
pub fn install<E>(
    root: &Path,
    src: &Path,
    verify: impl FnOnce(&Path) -> Result<(), E>,
    mut on_step: impl FnMut(InstallStep),
) -> Result<String, StoreError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let bundles = root.join(BUNDLES);
    std::fs::create_dir_all(&bundles).map_err(io_at(&bundles))?;
    adopt_plain_directory(root)?;

    on_step(InstallStep::Copy);
    let incoming = bundles.join(format!(".incoming-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&incoming);
    let guard = RemoveOnDrop(incoming.clone());
    copy_bundle(src, &incoming)?;

    on_step(InstallStep::Verify);
    verify(&incoming).map_err(|e| StoreError::Rejected {
        path: src.to_path_buf(),
        source: Box::new(e),
    })?;

    on_step(InstallStep::Place);
    let id = bundle_id(&incoming)?;
    let placed = bundles.join(&id);
    if placed.exists() {
        // The same manifest installed before: its files' hashes are the same too.
        log::info!("bundle {id} is installed already");
    } else {
        std::fs::rename(&incoming, &placed).map_err(io_at(&placed))?;
        sync_dir(&bundles)?;
    }
    drop(guard);

    let current = link_target_id(&root.join(CURRENT));
    if current.as_deref() != Some(id.as_str()) {
        on_step(InstallStep::KeepPrevious);
        if let Some(current) = &current {
            point(root, PREVIOUS, current)?;
        }
        on_step(InstallStep::Switch);
        point(root, CURRENT, &id)?;
    }
    on_step(InstallStep::Prune);
    prune(root)?;
    Ok(id)
}

/// Makes the previous bundle current again (and the current one previous). Returns the
/// ID now current.
pub fn rollback(root: &Path) -> Result<String, StoreError> {
    let previous_link = root.join(PREVIOUS);
    let Some(previous) = link_target_id(&previous_link) else {
        return Err(StoreError::NoPrevious {
            path: previous_link,
        });
    };
    if let Some(current) = link_target_id(&root.join(CURRENT)) {
        point(root, PREVIOUS, &current)?;
    }
    point(root, CURRENT, &previous)?;
    Ok(previous)
}

/// The current and previous bundles and all installed ones.
pub fn status(root: &Path) -> Result<StoreStatus, StoreError> {
    let bundles = root.join(BUNDLES);
    let mut installed = Vec::new();
    match std::fs::read_dir(&bundles) {
        Ok(entries) => {
            for entry in entries {
                let name = entry.map_err(io_at(&bundles))?.file_name();
                let name = name.to_string_lossy();
                if !name.starts_with('.') {
                    installed.push(name.into_owned());
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_at(&bundles)(e)),
    }
    installed.sort();
    Ok(StoreStatus {
        current: link_target_id(&root.join(CURRENT)),
        previous: link_target_id(&root.join(PREVIOUS)),
        installed,
    })
}

/// The ID a `bundles/ID` symlink points at.
fn link_target_id(link: &Path) -> Option<String> {
    let target = std::fs::read_link(link).ok()?;
    if target.parent() != Some(Path::new(BUNDLES)) {
        return None;
    }
    Some(target.file_name()?.to_string_lossy().into_owned())
}

/// Points the symlink `root/name` at `bundles/id`, atomically: a new symlink renamed
/// over the old one, then the folder flushed.
fn point(root: &Path, name: &str, id: &str) -> Result<(), StoreError> {
    let link = root.join(name);
    let temp = root.join(format!(".{name}.new-{}", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    std::os::unix::fs::symlink(Path::new(BUNDLES).join(id), &temp).map_err(io_at(&temp))?;
    std::fs::rename(&temp, &link).map_err(io_at(&link))?;
    sync_dir(root)
}

/// A `ROOT/bundle` that is a plain directory (a board deployed before `bundles/`)
/// becomes `bundles/ID` with `ROOT/bundle` a symlink to it, without a moment when
/// `ROOT/bundle` is missing.
fn adopt_plain_directory(root: &Path) -> Result<(), StoreError> {
    let current = root.join(CURRENT);
    match std::fs::symlink_metadata(&current) {
        Ok(meta) if meta.is_dir() => {}
        _ => return Ok(()),
    }
    let id = bundle_id(&current)?;
    let placed = root.join(BUNDLES).join(&id);
    // Copy, so that `current` stays whole until the exchange.
    if !placed.exists() {
        let incoming = root
            .join(BUNDLES)
            .join(format!(".adopting-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&incoming);
        let guard = RemoveOnDrop(incoming.clone());
        copy_bundle(&current, &incoming)?;
        std::fs::rename(&incoming, &placed).map_err(io_at(&placed))?;
        drop(guard);
    }
    let temp = root.join(format!(".{CURRENT}.new-{}", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    std::os::unix::fs::symlink(Path::new(BUNDLES).join(&id), &temp).map_err(io_at(&temp))?;
    if !atomic::exchange(&temp, &current).map_err(io_at(&current))? {
        let _ = std::fs::remove_file(&temp);
        return Err(StoreError::Io {
            path: current,
            source: io::Error::new(
                io::ErrorKind::Unsupported,
                "this file system cannot swap a folder for a link in one step \
                 (renameat2 RENAME_EXCHANGE); move the bundle into bundles/ by hand",
            ),
        });
    }
    sync_dir(root)?;
    // The old directory, now at the temporary name.
    let _ = std::fs::remove_dir_all(&temp);
    log::info!("moved {} to {}", current.display(), placed.display());
    Ok(())
}

/// Removes installed bundles that are neither current nor previous, and leftovers of
/// interrupted installs.
fn prune(root: &Path) -> Result<(), StoreError> {
    let keep = [
        link_target_id(&root.join(CURRENT)),
        link_target_id(&root.join(PREVIOUS)),
    ];
    let bundles = root.join(BUNDLES);
    for entry in std::fs::read_dir(&bundles).map_err(io_at(&bundles))? {
        let entry = entry.map_err(io_at(&bundles))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if keep.iter().flatten().any(|k| *k == name) {
            continue;
        }
        log::info!("removing {}", entry.path().display());
        std::fs::remove_dir_all(entry.path()).map_err(io_at(&entry.path()))?;
    }
    for entry in std::fs::read_dir(root).map_err(io_at(root))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!(".{CURRENT}.new-"))
            || name.starts_with(&format!(".{PREVIOUS}.new-"))
        {
            let _ = std::fs::remove_file(entry.path())
                .or_else(|_| std::fs::remove_dir_all(entry.path()));
        }
    }
    Ok(())
}

/// Copies a bundle's own files (manifest, model, labels, signature) into the new
/// folder `to`, each flushed, then the folder.
fn copy_bundle(from: &Path, to: &Path) -> Result<(), StoreError> {
    std::fs::create_dir(to).map_err(io_at(to))?;
    let mut copied = 0;
    for name in [
        MANIFEST_FILE,
        MODEL_FILE,
        MODEL_FILE_NNEF,
        LABELS_FILE,
        SIGNATURE_FILE,
    ] {
        let src = from.join(name);
        if !src.exists() {
            continue;
        }
        let dst = to.join(name);
        std::fs::copy(&src, &dst).map_err(io_at(&src))?;
        File::open(&dst)
            .and_then(|f| f.sync_all())
            .map_err(io_at(&dst))?;
        copied += 1;
    }
    if copied == 0 {
        return Err(StoreError::Io {
            path: from.join(MANIFEST_FILE),
            source: io::Error::new(io::ErrorKind::NotFound, "not a bundle"),
        });
    }
    sync_dir(to)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    atomic::sync_dir(dir).map_err(io_at(dir))
}

/// Removes a folder when dropped (an install that stops early leaves nothing).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
