//! Board profiles: what a board has (CPU, cores, int8 kernel family, memory, camera,
//! GPIO pins), as TOML files in `boards/`.
//!
//! A profile is found by [`load`]: a path to a `.toml` file, or a name looked up as
//! `NAME.toml` in the search directories ([`default_search_dirs`]), and last among
//! the copies built into the binary ([`builtin_names`]), so a static binary copied
//! alone to a board still knows the five boards. A user adds or overrides a board by
//! dropping a file in one of the directories; no rebuild.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The built-in profiles: name and TOML text (the files of `boards/`).
const BUILTIN: &[(&str, &str)] = &[
    ("pi4", include_str!("../../../boards/pi4.toml")),
    ("pi5", include_str!("../../../boards/pi5.toml")),
    (
        "pi-zero-2w",
        include_str!("../../../boards/pi-zero-2w.toml"),
    ),
    (
        "jetson-nano",
        include_str!("../../../boards/jetson-nano.toml"),
    ),
    (
        "jetson-orin",
        include_str!("../../../boards/jetson-orin.toml"),
    ),
];

/// The builds a profile may name as its `target`.
pub const TARGETS: &[&str] = &[
    "aarch64-unknown-linux-musl",
    "aarch64-unknown-linux-gnu",
    "armv7-unknown-linux-gnueabihf",
];

/// Environment variable naming a directory of profiles searched first.
pub const BOARDS_DIR_ENV: &str = "CLIP_EDGE_BOARDS_DIR";

/// What can go wrong finding or reading a board profile.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BoardError {
    /// The profile file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Not valid TOML, a missing field, or an unknown field (the message names it).
    #[error("{origin}: invalid board profile: {message}")]
    Parse {
        /// The file, or `built-in NAME`.
        origin: String,
        /// The parser's message.
        message: String,
    },
    /// The profile parses but a value is wrong.
    #[error("{origin}: {problem}")]
    Invalid {
        /// The file, or `built-in NAME`.
        origin: String,
        /// What is wrong.
        problem: String,
    },
    /// No profile of that name.
    #[error("no board profile {name:?}; available: {} (or give a path to a .toml file)", .available.join(", "))]
    Unknown {
        /// The name asked for.
        name: String,
        /// Every name found: the built-in ones and those in the search directories.
        available: Vec<String>,
    },
}

/// Coarse category of a [`BoardError`], for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BoardErrorKind {
    /// A file could not be read.
    Io,
    /// The file is not a valid profile (syntax, missing or unknown field, bad value).
    Invalid,
    /// No profile of that name.
    Unknown,
}

impl BoardError {
    /// The category of this error.
    pub fn kind(&self) -> BoardErrorKind {
        match self {
            BoardError::Io { .. } => BoardErrorKind::Io,
            BoardError::Parse { .. } | BoardError::Invalid { .. } => BoardErrorKind::Invalid,
            BoardError::Unknown { .. } => BoardErrorKind::Unknown,
        }
    }
}

/// The int8 matmul kernel family tract should pick on the board's CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Int8Kernel {
    /// aarch64 without dot product (Cortex-A53/A57/A72), an operand that may hold -128:
    /// `SMLAL`.
    Smlal,
    /// aarch64 without dot product, int8 weights in [-127, 127] (what `clip-quantize` writes):
    /// `SMULL`/`SADALP`, 16 K per instruction triple.
    Sadalp,
    /// aarch64 with dot product (Cortex-A76/A78): `SDOT`.
    Sdot,
    /// 32-bit ARM with NEON: `VMULL.S8`/`VPADAL.S16` for int8 weights in [-127, 127] (the
    /// `VMLAL` 8x4, `armv7neon_mmm_i32_8x4`, when they hold -128).
    Neon,
}

impl Int8Kernel {
    /// The tract-linalg kernel this family runs (as `bench --json` reports kernels).
    pub fn tract_kernel(self) -> &'static str {
        match self {
            Int8Kernel::Smlal => "arm64simd_mmm_i32_8x8",
            Int8Kernel::Sadalp => "arm64simd_mmm_i32_4x4_sadalp",
            Int8Kernel::Sdot => "arm64simd_mmm_i32_8x8_dot",
            Int8Kernel::Neon => "armv7neon_mmm_i32_4x2_sadalp",
        }
    }
}

/// The `[gpio]` section: the chip of the 40-pin header and named lines on it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioConfig {
    /// Device path of the GPIO chip that carries the header's pins.
    pub chip: PathBuf,
    /// Pin names (`led`, `button`) and their line offsets on `chip`.
    #[serde(default)]
    pub pins: BTreeMap<String, u32>,
    /// The profile's name, for messages (filled in by [`load`], not read from TOML).
    #[serde(skip)]
    pub board: String,
}

/// A board profile (one `boards/NAME.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardProfile {
    /// Short name, the file's stem (`pi4`).
    pub name: String,
    /// One line for people.
    pub description: String,
    /// The Rust target of the build to deploy (one of [`TARGETS`]).
    pub target: String,
    /// CPU core model (`cortex-a72`).
    pub cpu: String,
    /// CPU cores.
    pub cores: u32,
    /// Threads for tract's matmul (`--threads`), at most `cores`.
    pub threads: u32,
    /// The int8 kernel family expected on this CPU.
    pub int8_kernel: Int8Kernel,
    /// The runtime warns when its peak RSS exceeds this.
    pub memory_budget_mb: u32,
    /// The default frame source (`--source`).
    pub camera: String,
    /// The GPIO header, if the board has one clip-edge knows.
    #[serde(default)]
    pub gpio: Option<GpioConfig>,
    /// Public keys (PEM, absolute paths) of which one must have signed a bundle for it
    /// to load (`--trust`); empty: any bundle whose hashes match loads.
    #[serde(default)]
    pub trusted_keys: Vec<PathBuf>,
    /// Where the profile came from: a file, or `built-in NAME`.
    #[serde(skip)]
    pub origin: String,
}

impl BoardProfile {
    /// Parses and validates a profile; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, BoardError> {
        let mut p: BoardProfile = toml::from_str(text).map_err(|e| BoardError::Parse {
            origin: origin.to_string(),
            message: e.message().to_string(),
        })?;
        p.origin = origin.to_string();
        if let Some(g) = &mut p.gpio {
            g.board = p.name.clone();
        }
        p.validate()?;
        Ok(p)
    }

    /// Checks the values: threads within cores, kernel matching the target, pins unique.
    pub fn validate(&self) -> Result<(), BoardError> {
        let bad = |problem: String| {
            Err(BoardError::Invalid {
                origin: self.origin.clone(),
                problem,
            })
        };
        if self.name.is_empty() || !self.name.chars().all(is_name_char) {
            return bad(format!(
                "name {:?}: use letters, digits, '-' and '_'",
                self.name
            ));
        }
        if !TARGETS.contains(&self.target.as_str()) {
            return bad(format!(
                "target {:?} is not one of {}",
                self.target,
                TARGETS.join(", ")
            ));
        }
        let arm32 = self.target.starts_with("armv7");
        if arm32 != (self.int8_kernel == Int8Kernel::Neon) {
            return bad(format!(
                "int8_kernel {:?} does not run on target {} (neon is for armv7, smlal/sadalp/sdot for aarch64)",
                self.int8_kernel, self.target
            ));
        }
        if self.cores == 0 || self.threads == 0 || self.threads > self.cores {
            return bad(format!(
                "threads = {} must be between 1 and cores = {}",
                self.threads, self.cores
            ));
        }
        if self.memory_budget_mb == 0 {
            return bad("memory_budget_mb must be positive".to_string());
        }
        if self.camera.trim().is_empty() {
            return bad("camera is empty".to_string());
        }
        if let Some(key) = self.trusted_keys.iter().find(|k| !k.is_absolute()) {
            return bad(format!(
                "trusted_keys: {} is not an absolute path (a service's working directory is not the profile's)",
                key.display()
            ));
        }
        if let Some(g) = &self.gpio {
            if g.chip.as_os_str().is_empty() {
                return bad("gpio.chip is empty".to_string());
            }
            let mut seen: BTreeMap<u32, &str> = BTreeMap::new();
            for (name, line) in &g.pins {
                if name.is_empty() || !name.chars().all(is_name_char) {
                    return bad(format!(
                        "gpio.pins: name {name:?}: use letters, digits, '-' and '_'"
                    ));
                }
                if let Some(other) = seen.insert(*line, name) {
                    return bad(format!(
                        "gpio.pins: {other:?} and {name:?} are both line {line}"
                    ));
                }
            }
        }
        Ok(())
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// The names of the profiles built into the binary.
pub fn builtin_names() -> &'static [&'static str] {
    &["pi4", "pi5", "pi-zero-2w", "jetson-nano", "jetson-orin"]
}

/// Where [`load`] looks, in order: `$CLIP_EDGE_BOARDS_DIR`, `/etc/clip-edge/boards`,
/// `boards/` next to the executable and one level up (the deploy layout
/// `/opt/clip-edge/{bin,boards}`), `boards/` in the current directory.
pub fn default_search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os(BOARDS_DIR_ENV).filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(PathBuf::from("/etc/clip-edge/boards"));
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.join("boards"));
        if let Some(up) = exe_dir.parent() {
            dirs.push(up.join("boards"));
        }
    }
    dirs.push(PathBuf::from("boards"));
    dirs
}

/// Loads a profile: `name_or_path` is a `.toml` file (or any path with a '/'), else a
/// name looked up as `NAME.toml` in `search_dirs` in order, then among the built-in
/// profiles.
pub fn load(name_or_path: &str, search_dirs: &[PathBuf]) -> Result<BoardProfile, BoardError> {
    if name_or_path.ends_with(".toml") || name_or_path.contains('/') {
        return load_file(Path::new(name_or_path));
    }
    let name = name_or_path;
    if !name.is_empty() && name.chars().all(is_name_char) {
        for dir in search_dirs {
            let path = dir.join(format!("{name}.toml"));
            if path.is_file() {
                let p = load_file(&path)?;
                if p.name != name {
                    log::warn!("{}: name is {:?}, not {name:?}", path.display(), p.name);
                }
                return Ok(p);
            }
        }
        if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name) {
            log::debug!("board profile {name}: built-in");
            return BoardProfile::parse(text, &format!("built-in {name}"));
        }
    }
    let mut available: Vec<String> = builtin_names().iter().map(|s| s.to_string()).collect();
    for dir in search_dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "toml") {
                if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                    if !available.iter().any(|a| a == stem) {
                        available.push(stem.to_string());
                    }
                }
            }
        }
    }
    Err(BoardError::Unknown {
        name: name.to_string(),
        available,
    })
}

/// Loads and validates the profile file at `path`.
pub fn load_file(path: &Path) -> Result<BoardProfile, BoardError> {
    let text = std::fs::read_to_string(path).map_err(|source| BoardError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    log::debug!("board profile from {}", path.display());
    BoardProfile::parse(&text, &path.display().to_string())
}

#[cfg(test)]
#[path = "board_tests.rs"]
mod tests;
