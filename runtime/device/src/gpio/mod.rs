//! GPIO actions: drive output pins while a label is seen, read a push button.
//!
//! The drivers ([`LabelOutputs`], [`Button`]) are generic over the `embedded-hal` 1.0
//! digital traits, so they are tested with mock pins and would run on any HAL. On
//! Linux the pins are lines of a GPIO character device (`/dev/gpiochipN`), opened
//! with [`open_output`] / [`open_input`] through `linux-embedded-hal`'s `CdevPin`
//! (see the `linux` submodule; the kernel's v1 line-handle ABI, present on every
//! kernel from 4.8 with `CONFIG_GPIO_CDEV_V1`, the default).
//!
//! On the command line a pin is a name from the board profile (`led`, `button`, see
//! [`crate::board`]) or `CHIP:LINE` ([`PinRef`]); an action `--on LABEL=PIN`
//! ([`ActionSpec`]) drives the pin high while LABEL is seen. [`resolve`] turns a
//! [`PinRef`] into a chip path and line; [`check_labels`] checks the labels of the
//! actions against the bundle's.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::board::GpioConfig;

mod drivers;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(test)]
mod tests;

pub use drivers::{Button, LabelOutputs};
#[cfg(target_os = "linux")]
pub use linux::{
    open_button, open_input, open_input_pull_up, open_output, open_outputs, LinePin, LinePinError,
};

/// What can go wrong with GPIO: a bad `--on`/pin argument, a device that cannot be
/// opened, or a pin that fails to read or write.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GpioError {
    /// A pin or action argument does not parse.
    #[error("{spec:?}: {problem}")]
    Syntax {
        /// The argument as given.
        spec: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A pin name that the board profile does not define, or no profile to look it up in.
    #[error("{0}")]
    UnknownPin(String),
    /// An `--on` label that the bundle does not have.
    #[error("--on {label:?}: the bundle has no such label{}", suggestion_text(.suggestion))]
    UnknownLabel {
        /// The label as given.
        label: String,
        /// The closest label of the bundle, if one is close.
        suggestion: Option<String>,
    },
    /// Bindings that do not fit together (e.g. a pin index out of range).
    #[error("{0}")]
    Binding(String),
    /// A GPIO chip or line could not be opened or requested.
    #[error("{chip}{}: {problem}", line_text(.line))]
    Device {
        /// The chip's device path.
        chip: PathBuf,
        /// The line, when the line (not the chip) failed.
        line: Option<u32>,
        /// What failed, with the OS error.
        problem: String,
    },
    /// Reading or writing an opened pin failed.
    #[error("GPIO pin for {what}: {problem}")]
    Pin {
        /// Which pin: the label it is bound to, or "button".
        what: String,
        /// The HAL's error.
        problem: String,
    },
}

fn suggestion_text(s: &Option<String>) -> String {
    match s {
        Some(s) => format!(" (did you mean {s:?}?)"),
        None => " (labels are matched exactly, case and spaces included)".to_string(),
    }
}

fn line_text(line: &Option<u32>) -> String {
    line.map(|l| format!(" line {l}")).unwrap_or_default()
}

/// Coarse category of a [`GpioError`], for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GpioErrorKind {
    /// The arguments or the profile are wrong: fix the command line.
    Config,
    /// The device could not be opened: no such chip, line busy, permissions.
    Device,
    /// An opened pin failed to read or write.
    Pin,
}

impl GpioError {
    /// The category of this error.
    pub fn kind(&self) -> GpioErrorKind {
        match self {
            GpioError::Syntax { .. }
            | GpioError::UnknownPin(_)
            | GpioError::UnknownLabel { .. }
            | GpioError::Binding(_) => GpioErrorKind::Config,
            GpioError::Device { .. } => GpioErrorKind::Device,
            GpioError::Pin { .. } => GpioErrorKind::Pin,
        }
    }
}

/// Where a pin is: a name from the board profile, or a chip and line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PinRef {
    /// A pin name of the board profile's `[gpio.pins]` (`led`, `button`).
    Named(String),
    /// Line `line` of the chip at `chip` (`gpiochip0:17` means `/dev/gpiochip0`, line 17).
    Line {
        /// The chip's device path.
        chip: PathBuf,
        /// The line offset on that chip (not the header pin number).
        line: u32,
    },
    /// A bare number: that line of the board profile's chip.
    Offset(u32),
}

impl FromStr for PinRef {
    type Err = GpioError;

    /// `led` (a profile name), `17` (line 17 of the profile's chip), `gpiochip0:17` or
    /// `/dev/gpiochip0:17` (a chip and line).
    fn from_str(s: &str) -> Result<Self, GpioError> {
        let bad = |problem: &str| GpioError::Syntax {
            spec: s.to_string(),
            problem: problem.to_string(),
        };
        let t = s.trim();
        if t.is_empty() {
            return Err(bad("empty pin (expected a profile pin name like `led`, or CHIP:LINE like `gpiochip0:17`)"));
        }
        if let Some((chip, line)) = t.rsplit_once(':') {
            let line: u32 = line
                .trim()
                .parse()
                .map_err(|_| bad("the part after the last ':' must be a line number (CHIP:LINE, e.g. gpiochip0:17)"))?;
            let chip = chip.trim();
            if chip.is_empty() {
                return Err(bad("no chip before ':' (CHIP:LINE, e.g. gpiochip0:17)"));
            }
            let chip = if chip.contains('/') {
                PathBuf::from(chip)
            } else {
                PathBuf::from("/dev").join(chip)
            };
            return Ok(PinRef::Line { chip, line });
        }
        if let Ok(line) = t.parse::<u32>() {
            return Ok(PinRef::Offset(line));
        }
        if !t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(bad("a pin name has only letters, digits, '_' and '-' (or use CHIP:LINE, e.g. gpiochip0:17)"));
        }
        Ok(PinRef::Named(t.to_string()))
    }
}

impl fmt::Display for PinRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinRef::Named(n) => write!(f, "{n}"),
            PinRef::Line { chip, line } => write!(f, "{}:{line}", chip.display()),
            PinRef::Offset(line) => write!(f, "{line}"),
        }
    }
}

/// `--on LABEL=PIN`: drive PIN high while LABEL is seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionSpec {
    /// The bundle label, exactly as in the label table (may contain spaces and '=').
    pub label: String,
    /// The pin to drive.
    pub pin: PinRef,
}

impl FromStr for ActionSpec {
    type Err = GpioError;

    /// `red circle=led`, `cat=gpiochip0:17`: split at the last '='.
    fn from_str(s: &str) -> Result<Self, GpioError> {
        let bad = |problem: &str| GpioError::Syntax {
            spec: s.to_string(),
            problem: problem.to_string(),
        };
        let (label, pin) = s.rsplit_once('=').ok_or_else(|| {
            bad("expected LABEL=PIN, e.g. \"red circle=led\" or cat=gpiochip0:17")
        })?;
        let label = label.trim();
        if label.is_empty() {
            return Err(bad("no label before '=' (LABEL=PIN)"));
        }
        Ok(ActionSpec {
            label: label.to_string(),
            pin: pin.parse()?,
        })
    }
}

impl fmt::Display for ActionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.label, self.pin)
    }
}

/// Resolves a pin to a chip path and line, looking names and bare numbers up in the
/// board profile's `[gpio]` section.
pub fn resolve(pin: &PinRef, board: Option<&GpioConfig>) -> Result<(PathBuf, u32), GpioError> {
    match (pin, board) {
        (PinRef::Line { chip, line }, _) => Ok((chip.clone(), *line)),
        (PinRef::Offset(line), Some(g)) => Ok((g.chip.clone(), *line)),
        (PinRef::Offset(line), None) => Err(GpioError::UnknownPin(format!(
            "pin {line}: a bare line number needs a board profile (--board) for its chip; \
             or give CHIP:LINE, e.g. gpiochip0:{line}"
        ))),
        (PinRef::Named(name), None) => Err(GpioError::UnknownPin(format!(
            "pin {name:?} is a board profile name, but no board profile was given (--board); \
             or give CHIP:LINE, e.g. gpiochip0:17"
        ))),
        (PinRef::Named(name), Some(g)) => match g.pins.get(name) {
            Some(line) => Ok((g.chip.clone(), *line)),
            None => {
                let known: Vec<&str> = g.pins.keys().map(String::as_str).collect();
                let known = if known.is_empty() {
                    "it defines no pins".to_string()
                } else {
                    format!("its pins: {}", known.join(", "))
                };
                Err(GpioError::UnknownPin(format!(
                    "pin {name:?} is not in board profile {:?} ({known}); or give CHIP:LINE, e.g. gpiochip0:17",
                    g.board
                )))
            }
        },
    }
}

/// Checks that every action's label is one of the bundle's labels; the error names the
/// first unknown one and suggests the closest known label.
pub fn check_labels(actions: &[ActionSpec], known_labels: &[String]) -> Result<(), GpioError> {
    for a in actions {
        if !known_labels.contains(&a.label) {
            return Err(GpioError::UnknownLabel {
                label: a.label.clone(),
                suggestion: closest(&a.label, known_labels),
            });
        }
    }
    Ok(())
}

/// The known label closest to `label` (case-insensitive edit distance), if close enough
/// to be a likely typo: at most 2 edits, or a third of the label's length.
fn closest(label: &str, known: &[String]) -> Option<String> {
    let want = label.to_lowercase();
    let limit = (want.chars().count() / 3).max(2);
    known
        .iter()
        .map(|k| (edit_distance(&want, &k.to_lowercase()), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.clone())
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}
