//! Scratch folders for the file-writing tests of this crate.

use std::path::{Path, PathBuf};

/// An empty folder `TMP/clip-quantize-GROUP-PID/NAME`, emptied if it exists.
pub fn scratch(group: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("clip-quantize-{group}-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The names in `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
