//! Linux GPIO character device pins (`/dev/gpiochipN`) through `linux-embedded-hal`.

use std::fmt;
use std::path::{Path, PathBuf};

use embedded_hal::digital::{ErrorKind, ErrorType, InputPin, OutputPin};
use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
use linux_embedded_hal::{CdevPin, CdevPinError};

use super::{resolve, ActionSpec, Button, GpioError, LabelOutputs, PinRef};
use crate::board::GpioConfig;

/// The v1 ABI's `GPIOHANDLE_REQUEST_BIAS_PULL_UP` (Linux 5.5+); gpio-cdev 0.6 has no
/// name for it.
const BIAS_PULL_UP: u32 = 1 << 5;

/// Polls a button level must hold in [`open_button`] (about 30 ms at a 10 ms poll).
const BUTTON_DEBOUNCE_POLLS: u8 = 3;

/// A requested line of a GPIO chip, which knows its chip and line for messages.
pub struct LinePin {
    pin: CdevPin,
    chip: PathBuf,
    line: u32,
}

impl LinePin {
    /// The chip's device path.
    pub fn chip(&self) -> &Path {
        &self.chip
    }

    /// The line offset on the chip.
    pub fn line(&self) -> u32 {
        self.line
    }
}

impl fmt::Debug for LinePin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LinePin({}:{})", self.chip.display(), self.line)
    }
}

/// A read or write of a [`LinePin`] failed; names the chip and line.
pub struct LinePinError {
    chip: PathBuf,
    line: u32,
    source: CdevPinError,
}

impl fmt::Debug for LinePinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self)
    }
}

impl fmt::Display for LinePinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} line {}: {}",
            self.chip.display(),
            self.line,
            self.source
        )
    }
}

impl std::error::Error for LinePinError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl embedded_hal::digital::Error for LinePinError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

impl LinePin {
    fn wrap(&self, source: CdevPinError) -> LinePinError {
        LinePinError {
            chip: self.chip.clone(),
            line: self.line,
            source,
        }
    }
}

impl ErrorType for LinePin {
    type Error = LinePinError;
}

impl OutputPin for LinePin {
    fn set_low(&mut self) -> Result<(), LinePinError> {
        self.pin.set_low().map_err(|e| self.wrap(e))
    }

    fn set_high(&mut self) -> Result<(), LinePinError> {
        self.pin.set_high().map_err(|e| self.wrap(e))
    }
}

impl InputPin for LinePin {
    fn is_high(&mut self) -> Result<bool, LinePinError> {
        self.pin.is_high().map_err(|e| self.wrap(e))
    }

    fn is_low(&mut self) -> Result<bool, LinePinError> {
        self.pin.is_low().map_err(|e| self.wrap(e))
    }
}

fn request(
    chip_path: &Path,
    line: u32,
    consumer: &str,
    flags: LineRequestFlags,
) -> Result<LinePin, GpioError> {
    let device = |line: Option<u32>, problem: String| GpioError::Device {
        chip: chip_path.to_path_buf(),
        line,
        problem,
    };
    let mut chip = Chip::new(chip_path).map_err(|e| {
        let hint = if !chip_path.exists() {
            " (no such GPIO chip: `ls /dev/gpiochip*` or `gpiodetect` lists them)"
        } else {
            " (permission: add the user to the `gpio` group, or run as root)"
        };
        device(None, format!("cannot open GPIO chip: {e}{hint}"))
    })?;
    if line >= chip.num_lines() {
        return Err(device(
            Some(line),
            format!(
                "no such line: chip {:?} has lines 0..{}",
                chip.label(),
                chip.num_lines()
            ),
        ));
    }
    let handle = chip
        .get_line(line)
        .and_then(|l| l.request(flags.clone(), 0, consumer))
        .map_err(|e| {
            device(
                Some(line),
                format!("cannot request line (in use by another program or the kernel?): {e}"),
            )
        })?;
    let pin = CdevPin::new(handle)
        .map_err(|e| device(Some(line), format!("cannot read line info: {e}")))?;
    log::debug!(
        "GPIO {}:{line} requested ({flags:?}) as {consumer:?}",
        chip_path.display()
    );
    Ok(LinePin {
        pin,
        chip: chip_path.to_path_buf(),
        line,
    })
}

/// Requests `line` of the chip at `chip` as an output, initially low.
pub fn open_output(chip: &Path, line: u32, consumer: &str) -> Result<LinePin, GpioError> {
    request(chip, line, consumer, LineRequestFlags::OUTPUT)
}

/// Requests `line` of the chip at `chip` as an input, with no bias (the pin's
/// default pull, or an external resistor).
pub fn open_input(chip: &Path, line: u32, consumer: &str) -> Result<LinePin, GpioError> {
    request(chip, line, consumer, LineRequestFlags::INPUT)
}

/// Requests `line` as an input with the internal pull-up on (Linux 5.5+; older
/// kernels refuse the request): for a button wired to ground.
pub fn open_input_pull_up(chip: &Path, line: u32, consumer: &str) -> Result<LinePin, GpioError> {
    let flags = LineRequestFlags::INPUT | LineRequestFlags::from_bits_retain(BIAS_PULL_UP);
    request(chip, line, consumer, flags)
}

/// Resolves and opens the pins of `actions` (each distinct chip and line once, so two
/// labels may share a pin) and binds them: [`LabelOutputs::shared`].
pub fn open_outputs(
    actions: &[ActionSpec],
    board: Option<&GpioConfig>,
    consumer: &str,
) -> Result<LabelOutputs<LinePin>, GpioError> {
    let mut lines: Vec<(PathBuf, u32)> = Vec::new();
    let mut bindings = Vec::with_capacity(actions.len());
    for a in actions {
        let at = resolve(&a.pin, board)?;
        let i = match lines.iter().position(|l| *l == at) {
            Some(i) => i,
            None => {
                lines.push(at);
                lines.len() - 1
            }
        };
        bindings.push((a.label.clone(), i));
    }
    let mut pins = Vec::with_capacity(lines.len());
    for (chip, line) in &lines {
        pins.push(open_output(chip, *line, consumer)?);
    }
    log::info!(
        "GPIO actions: {}",
        actions
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    LabelOutputs::shared(pins, bindings)
}

/// Opens a push button wired from `pin` to ground: pull-up on, active low, debounced
/// over 3 polls.
pub fn open_button(
    pin: &PinRef,
    board: Option<&GpioConfig>,
    consumer: &str,
) -> Result<Button<LinePin>, GpioError> {
    let (chip, line) = resolve(pin, board)?;
    let pin = open_input_pull_up(&chip, line, consumer)?;
    Ok(Button::new(pin, true, BUTTON_DEBOUNCE_POLLS))
}
