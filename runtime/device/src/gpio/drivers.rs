//! The HAL-independent drivers: outputs bound to labels, and a debounced button.

use embedded_hal::digital::{InputPin, OutputPin};

use super::GpioError;

/// Drives output pins from seen/lost events of labels.
///
/// Each pin is high while at least one of the labels bound to it is seen (a logical
/// OR), low otherwise. A label may drive several pins. Pins are written only when
/// their level changes. All pins are driven low at construction, by [`release`]
/// and, if `release` was not called, on drop.
///
/// [`release`]: LabelOutputs::release
pub struct LabelOutputs<P: OutputPin> {
    pins: Vec<P>,
    /// The level each pin was last driven to.
    high: Vec<bool>,
    /// Distinct labels, with the indices of their pins and whether each is seen.
    labels: Vec<(String, Vec<usize>, bool)>,
    released: bool,
}

impl<P: OutputPin> LabelOutputs<P> {
    /// One pin per binding (`(label, pin)`); drives every pin low.
    pub fn new(bindings: Vec<(String, P)>) -> Result<Self, GpioError> {
        let mut pins = Vec::with_capacity(bindings.len());
        let mut index = Vec::with_capacity(bindings.len());
        for (i, (label, pin)) in bindings.into_iter().enumerate() {
            pins.push(pin);
            index.push((label, i));
        }
        Self::shared(pins, index)
    }

    /// Pins that several labels may share: `bindings` are `(label, index into pins)`.
    /// Drives every pin low. Use this when two actions name the same line, which the
    /// kernel lets one process request only once.
    pub fn shared(pins: Vec<P>, bindings: Vec<(String, usize)>) -> Result<Self, GpioError> {
        let mut labels: Vec<(String, Vec<usize>, bool)> = Vec::new();
        for (label, pin) in bindings {
            if pin >= pins.len() {
                return Err(GpioError::Binding(format!(
                    "label {label:?} is bound to pin #{pin}, but there are only {} pins",
                    pins.len()
                )));
            }
            match labels.iter_mut().find(|(l, _, _)| *l == label) {
                Some((_, idx, _)) if !idx.contains(&pin) => idx.push(pin),
                Some(_) => {}
                None => labels.push((label, vec![pin], false)),
            }
        }
        let mut out = LabelOutputs {
            high: vec![true; pins.len()],
            pins,
            labels,
            released: false,
        };
        out.drive_all_low()?;
        log::debug!(
            "GPIO outputs: {} pins for labels {:?}",
            out.pins.len(),
            out.labels.iter().map(|(l, _, _)| l).collect::<Vec<_>>()
        );
        Ok(out)
    }

    /// `label` is seen: its pins go high. A label with no pin is ignored.
    pub fn seen(&mut self, label: &str) -> Result<(), GpioError> {
        self.set_seen(label, true)
    }

    /// `label` is no longer seen: its pins go low unless another seen label holds them.
    pub fn lost(&mut self, label: &str) -> Result<(), GpioError> {
        self.set_seen(label, false)
    }

    /// Whether any of `label`'s pins is bound (a label with no pin is ignored by
    /// [`seen`](Self::seen) and [`lost`](Self::lost)).
    pub fn is_bound(&self, label: &str) -> bool {
        self.labels.iter().any(|(l, _, _)| l == label)
    }

    /// The level each pin was last driven to, in the order of the pins.
    pub fn levels(&self) -> &[bool] {
        &self.high
    }

    /// Drives every pin low and forgets which labels are seen (on exit). Tries every
    /// pin and returns the first error.
    pub fn release(&mut self) -> Result<(), GpioError> {
        for (_, _, seen) in &mut self.labels {
            *seen = false;
        }
        let r = self.drive_all_low();
        self.released = r.is_ok();
        r
    }

    fn set_seen(&mut self, label: &str, seen: bool) -> Result<(), GpioError> {
        let Some(i) = self.labels.iter().position(|(l, _, _)| l == label) else {
            return Ok(());
        };
        self.labels[i].2 = seen;
        self.released = false;
        for k in 0..self.labels[i].1.len() {
            let pin = self.labels[i].1[k];
            let want = self
                .labels
                .iter()
                .any(|(_, pins, s)| *s && pins.contains(&pin));
            self.drive(pin, want)?;
        }
        Ok(())
    }

    fn drive(&mut self, pin: usize, high: bool) -> Result<(), GpioError> {
        if self.high[pin] == high {
            return Ok(());
        }
        let r = if high {
            self.pins[pin].set_high()
        } else {
            self.pins[pin].set_low()
        };
        r.map_err(|e| GpioError::Pin {
            what: self.describe(pin),
            problem: format!("set {}: {e:?}", if high { "high" } else { "low" }),
        })?;
        log::debug!("GPIO {} -> {}", self.describe(pin), u8::from(high));
        self.high[pin] = high;
        Ok(())
    }

    fn drive_all_low(&mut self) -> Result<(), GpioError> {
        let mut first = None;
        for pin in 0..self.pins.len() {
            if let Err(e) = self.drive(pin, false) {
                log::warn!("{e}");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn describe(&self, pin: usize) -> String {
        let labels: Vec<&str> = self
            .labels
            .iter()
            .filter(|(_, pins, _)| pins.contains(&pin))
            .map(|(l, _, _)| l.as_str())
            .collect();
        format!("label {:?} (pin #{pin})", labels.join("\", \""))
    }
}

impl<P: OutputPin> Drop for LabelOutputs<P> {
    fn drop(&mut self) {
        if !self.released && self.high.iter().any(|h| *h) {
            if let Err(e) = self.drive_all_low() {
                log::warn!("releasing GPIO outputs on drop: {e}");
            }
        }
    }
}

/// A push button on an input pin, debounced, reporting each press once.
///
/// The level must read the same for `debounce_polls` consecutive [`poll`]s before it
/// counts. The first stable level is taken as the starting state without reporting a
/// press, so a button held (or a floating input) at start does not fire; a press is a
/// stable change from released to pressed.
///
/// [`poll`]: Button::poll
pub struct Button<P: InputPin> {
    pin: P,
    active_low: bool,
    debounce_polls: u8,
    /// The debounced state: `None` until the first stable level.
    stable: Option<bool>,
    /// The raw state being timed, and for how many polls it has held.
    candidate: bool,
    count: u8,
}

impl<P: InputPin> Button<P> {
    /// A button on `pin`; `active_low`: pressed reads low (a button to ground with a
    /// pull-up); `debounce_polls`: polls a level must hold (0 counts as 1).
    pub fn new(pin: P, active_low: bool, debounce_polls: u8) -> Self {
        Button {
            pin,
            active_low,
            debounce_polls: debounce_polls.max(1),
            stable: None,
            candidate: false,
            count: 0,
        }
    }

    /// Reads the pin once; true exactly once per debounced press.
    pub fn poll(&mut self) -> Result<bool, GpioError> {
        let high = self.pin.is_high().map_err(|e| GpioError::Pin {
            what: "button".to_string(),
            problem: format!("read: {e:?}"),
        })?;
        let pressed = high != self.active_low;
        if pressed == self.candidate {
            self.count = self.count.saturating_add(1);
        } else {
            self.candidate = pressed;
            self.count = 1;
        }
        if self.count < self.debounce_polls || self.stable == Some(pressed) {
            return Ok(false);
        }
        let first = self.stable.is_none();
        self.stable = Some(pressed);
        if pressed && !first {
            log::debug!("button pressed");
            return Ok(true);
        }
        Ok(false)
    }

    /// Whether the button is (debounced) pressed now.
    pub fn is_pressed(&self) -> bool {
        self.stable == Some(true)
    }

    /// Gives the pin back.
    pub fn into_inner(self) -> P {
        self.pin
    }
}

impl<P: OutputPin> std::fmt::Debug for LabelOutputs<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabelOutputs")
            .field("labels", &self.labels)
            .field("levels", &self.high)
            .finish()
    }
}

impl<P: InputPin> std::fmt::Debug for Button<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Button")
            .field("active_low", &self.active_low)
            .field("debounce_polls", &self.debounce_polls)
            .field("pressed", &self.stable)
            .finish()
    }
}
