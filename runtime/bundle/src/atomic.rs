//! File-system steps that make a bundle replacement atomic, shared by `clip-quantize`'s
//! bundle writer and the board's bundle store: swapping two paths in one step, and
//! flushing a folder so that a rename in it survives a power loss.

use std::fs::File;
use std::io;
use std::path::Path;

/// Swaps `a` and `b` in one step (Linux `renameat2(RENAME_EXCHANGE)`, through the raw
/// system call so that it links against any libc). Both must exist. `Ok(false)` where
/// the kernel or the file system has no exchange (`ENOSYS`, `EINVAL`, `EOPNOTSUPP`):
/// nothing changed, and the caller picks a fallback.
#[cfg(target_os = "linux")]
pub fn exchange(a: &Path, b: &Path) -> io::Result<bool> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let a = CString::new(a.as_os_str().as_bytes())?;
    let b = CString::new(b.as_os_str().as_bytes())?;
    const RENAME_EXCHANGE: libc::c_uint = 2;
    // SAFETY: both are valid NUL-terminated paths; the kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => Ok(false),
        _ => Err(err),
    }
}

/// Swaps `a` and `b` in one step: not available off Linux (`Ok(false)`).
#[cfg(not(target_os = "linux"))]
pub fn exchange(_a: &Path, _b: &Path) -> io::Result<bool> {
    Ok(false)
}

/// Flushes `dir`'s entries to disk (`fsync` of the folder): a file created, renamed or
/// removed in it survives a power loss only after this.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The folder that holds `path`: its parent, or `.` for a bare name.
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_swaps_a_file_and_a_directory() {
        let dir = std::env::temp_dir().join(format!("clip-edge-atomic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a")).unwrap();
        std::fs::write(dir.join("a/inside"), b"a").unwrap();
        std::fs::write(dir.join("b"), b"b").unwrap();
        if !exchange(&dir.join("a"), &dir.join("b")).unwrap() {
            eprintln!("skipped: no RENAME_EXCHANGE on this file system");
            return;
        }
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"b");
        assert_eq!(std::fs::read(dir.join("b/inside")).unwrap(), b"a");
        assert!(exchange(&dir.join("a"), &dir.join("missing")).is_err());
        sync_dir(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_parent_of_a_bare_name_is_the_current_folder() {
        assert_eq!(parent_dir(Path::new("bundle")), Path::new("."));
        assert_eq!(parent_dir(Path::new("out/bundle")), Path::new("out"));
        assert_eq!(parent_dir(Path::new("/bundle")), Path::new("/"));
    }
}
