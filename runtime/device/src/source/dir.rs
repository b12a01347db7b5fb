//! Image files as frames: a folder (`dir:PATH`, recursive, sorted) or a list
//! (`files:A,B,C`).

use std::path::{Path, PathBuf};

use super::{Frame, FrameSource, SourceError};
use clip_edge_core::image_io::load_rgb8;

/// File extensions `dir:` picks up (compared case-insensitively).
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff", "ppm", "pgm",
];

/// Folders nested deeper than this are not searched (guards against symlink loops).
const MAX_DEPTH: usize = 32;

/// Image files decoded one per frame with [`clip_edge_core::image_io::load_rgb8`] (the
/// PIL-exact RGB conversion). Each file's decoded image becomes the frame's pixel
/// buffer, so this source allocates per frame (one image per file), unlike the
/// stream sources. A file that does not decode is a
/// [`SourceErrorKind::BadFrame`](super::SourceErrorKind) naming it; the next call
/// goes on with the next file.
#[derive(Debug, Clone)]
pub struct DirSource {
    origin: String,
    files: Vec<PathBuf>,
    next: usize,
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), SourceError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| SourceError::config(dir.display().to_string(), format!("cannot list: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| {
            SourceError::config(dir.display().to_string(), format!("cannot list: {e}"))
        })?;
        let path = entry.path();
        // Follows symlinks; an unreadable entry is skipped with a warning.
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => {
                if depth >= MAX_DEPTH {
                    log::warn!(
                        "{}: deeper than {MAX_DEPTH} folders, skipped",
                        path.display()
                    );
                } else {
                    walk(&path, depth + 1, out)?;
                }
            }
            Ok(_) if is_image(&path) => out.push(path),
            Ok(_) => {}
            Err(e) => log::warn!("{}: skipped: {e}", path.display()),
        }
    }
    Ok(())
}

impl DirSource {
    /// The image files under `path` (recursive, sorted by path, selected by
    /// extension: [`IMAGE_EXTENSIONS`]), or `path` alone if it is a file. A missing
    /// path or a folder without images is a
    /// [`SourceErrorKind::Config`](super::SourceErrorKind) error.
    pub fn open_dir(path: &Path) -> Result<Self, SourceError> {
        let origin = path.display().to_string();
        let meta = std::fs::metadata(path)
            .map_err(|e| SourceError::config(origin.clone(), format!("cannot open: {e}")))?;
        let files = if meta.is_dir() {
            let mut files = Vec::new();
            walk(path, 0, &mut files)?;
            files.sort();
            if files.is_empty() {
                return Err(SourceError::config(
                    origin,
                    format!(
                        "no image files in this folder or below (looked for .{})",
                        IMAGE_EXTENSIONS.join(" .")
                    ),
                ));
            }
            files
        } else {
            vec![path.to_path_buf()]
        };
        log::debug!("{origin}: {} image files", files.len());
        Ok(DirSource {
            origin: format!("dir:{origin}"),
            files,
            next: 0,
        })
    }

    /// These files, in this order. An empty list or a path that is not an existing
    /// file is a [`SourceErrorKind::Config`](super::SourceErrorKind) error.
    pub fn from_files(files: Vec<PathBuf>) -> Result<Self, SourceError> {
        if files.is_empty() {
            return Err(SourceError::config("files:", "no files given"));
        }
        for f in &files {
            if !f.is_file() {
                return Err(SourceError::config(
                    f.display().to_string(),
                    "no such file (or not a regular file)",
                ));
            }
        }
        Ok(DirSource {
            origin: format!("files ({})", files.len()),
            files,
            next: 0,
        })
    }

    /// The files this source reads, in order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

impl FrameSource for DirSource {
    fn describe(&self) -> String {
        format!("{}: {} image files", self.origin, self.files.len())
    }

    fn next_frame(&mut self, frame: &mut Frame) -> Result<bool, SourceError> {
        let Some(path) = self.files.get(self.next) else {
            return Ok(false);
        };
        self.next += 1;
        frame.name.clear();
        frame.name.push_str(&path.to_string_lossy());
        match load_rgb8(path) {
            Ok(img) => {
                frame.rgb = img;
                Ok(true)
            }
            // `load_rgb8`'s messages already name the file.
            Err(e) => Err(SourceError::bad_frame(
                path.display().to_string(),
                e.to_string(),
            )),
        }
    }
}
