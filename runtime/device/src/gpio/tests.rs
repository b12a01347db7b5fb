//! Tests of the GPIO drivers with mock pins, argument parsing, and (Linux) the
//! character device: a missing chip, and gpio-sim when the kernel has it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

use embedded_hal::digital::{ErrorKind, ErrorType, InputPin, OutputPin};

use super::*;
use crate::board::GpioConfig;

#[derive(Debug)]
struct MockError;

impl embedded_hal::digital::Error for MockError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

/// A pin whose level (and number of writes) the test can see after handing it over.
#[derive(Clone, Default)]
struct MockPin {
    level: Rc<RefCell<Option<bool>>>,
    writes: Rc<RefCell<usize>>,
    /// Input levels to return, in order (the last one repeats).
    script: Rc<RefCell<Vec<bool>>>,
    fail: Rc<RefCell<bool>>,
}

impl MockPin {
    fn level(&self) -> Option<bool> {
        *self.level.borrow()
    }
    fn inputs(levels: &[bool]) -> Self {
        let p = MockPin::default();
        *p.script.borrow_mut() = levels.iter().rev().copied().collect();
        p
    }
}

impl ErrorType for MockPin {
    type Error = MockError;
}

impl OutputPin for MockPin {
    fn set_low(&mut self) -> Result<(), MockError> {
        self.set(false)
    }
    fn set_high(&mut self) -> Result<(), MockError> {
        self.set(true)
    }
}

impl MockPin {
    fn set(&mut self, v: bool) -> Result<(), MockError> {
        if *self.fail.borrow() {
            return Err(MockError);
        }
        *self.level.borrow_mut() = Some(v);
        *self.writes.borrow_mut() += 1;
        Ok(())
    }
}

impl InputPin for MockPin {
    fn is_high(&mut self) -> Result<bool, MockError> {
        if *self.fail.borrow() {
            return Err(MockError);
        }
        let mut s = self.script.borrow_mut();
        Ok(if s.len() > 1 {
            s.pop().unwrap_or(false)
        } else {
            s.last().copied().unwrap_or(false)
        })
    }
    fn is_low(&mut self) -> Result<bool, MockError> {
        self.is_high().map(|h| !h)
    }
}

fn outputs(labels: &[&str]) -> (LabelOutputs<MockPin>, Vec<MockPin>) {
    let pins: Vec<MockPin> = labels.iter().map(|_| MockPin::default()).collect();
    let bindings = labels
        .iter()
        .zip(&pins)
        .map(|(l, p)| (l.to_string(), p.clone()))
        .collect();
    (LabelOutputs::new(bindings).unwrap(), pins)
}

#[test]
fn new_drives_low_seen_high_lost_low() {
    let (mut out, pins) = outputs(&["red circle"]);
    assert_eq!(pins[0].level(), Some(false));
    out.seen("red circle").unwrap();
    assert_eq!(pins[0].level(), Some(true));
    out.seen("red circle").unwrap();
    assert_eq!(
        *pins[0].writes.borrow(),
        2,
        "no write when the level does not change"
    );
    out.lost("red circle").unwrap();
    assert_eq!(pins[0].level(), Some(false));
    out.seen("blue square").unwrap(); // not bound: ignored
    assert!(!out.is_bound("blue square"));
}

#[test]
fn two_labels_on_two_pins() {
    let (mut out, pins) = outputs(&["cat", "dog"]);
    out.seen("cat").unwrap();
    assert_eq!(
        (pins[0].level(), pins[1].level()),
        (Some(true), Some(false))
    );
    out.seen("dog").unwrap();
    out.lost("cat").unwrap();
    assert_eq!(
        (pins[0].level(), pins[1].level()),
        (Some(false), Some(true))
    );
    assert_eq!(out.levels(), &[false, true]);
}

#[test]
fn shared_pin_stays_high_while_either_label_is_seen() {
    let pin = MockPin::default();
    let bindings = vec![("cat".to_string(), 0), ("dog".to_string(), 0)];
    let mut out = LabelOutputs::shared(vec![pin.clone()], bindings).unwrap();
    out.seen("cat").unwrap();
    out.seen("dog").unwrap();
    out.lost("cat").unwrap();
    assert_eq!(pin.level(), Some(true), "dog still seen");
    out.lost("dog").unwrap();
    assert_eq!(pin.level(), Some(false));
    let err = LabelOutputs::shared(vec![pin], vec![("cat".to_string(), 1)]).unwrap_err();
    assert_eq!(err.kind(), GpioErrorKind::Config);
}

#[test]
fn one_label_drives_several_pins() {
    let pins = vec![MockPin::default(), MockPin::default()];
    let bindings = vec![("cat".to_string(), 0), ("cat".to_string(), 1)];
    let mut out = LabelOutputs::shared(pins.clone(), bindings).unwrap();
    out.seen("cat").unwrap();
    assert_eq!((pins[0].level(), pins[1].level()), (Some(true), Some(true)));
}

#[test]
fn release_and_drop_drive_all_low() {
    let (mut out, pins) = outputs(&["cat", "dog"]);
    out.seen("cat").unwrap();
    out.seen("dog").unwrap();
    out.release().unwrap();
    assert_eq!(
        (pins[0].level(), pins[1].level()),
        (Some(false), Some(false))
    );
    out.seen("dog").unwrap();
    drop(out);
    assert_eq!(pins[1].level(), Some(false), "drop releases");
}

#[test]
fn pin_error_names_the_label() {
    let (mut out, pins) = outputs(&["red circle"]);
    *pins[0].fail.borrow_mut() = true;
    let err = out.seen("red circle").unwrap_err();
    assert_eq!(err.kind(), GpioErrorKind::Pin);
    assert!(err.to_string().contains("red circle"), "{err}");
    assert!(err.to_string().contains("set high"), "{err}");
    let failing = MockPin::default();
    *failing.fail.borrow_mut() = true;
    let err = LabelOutputs::new(vec![("x".to_string(), failing)])
        .err()
        .unwrap();
    assert_eq!(err.kind(), GpioErrorKind::Pin);
}

#[test]
fn button_debounces_and_reports_one_edge() {
    // Active low: false = pressed. Released at start, a bounce, a held press, release, press.
    let seq = [
        true, true, true, false, true, false, false, false, false, false, true, true, true, false,
        false, false,
    ];
    let mut b = Button::new(MockPin::inputs(&seq), true, 3);
    let presses: Vec<usize> = (0..seq.len() + 5).filter(|_| b.poll().unwrap()).collect();
    assert_eq!(
        presses,
        vec![7, 15],
        "press reported once, after 3 stable polls"
    );
    assert!(b.is_pressed());
}

#[test]
fn button_held_at_start_does_not_fire() {
    let mut b = Button::new(MockPin::inputs(&[true]), false, 2);
    assert!((0..10).all(|_| !b.poll().unwrap()));
    assert!(b.is_pressed());
    let failing = MockPin::default();
    *failing.fail.borrow_mut() = true;
    let err = Button::new(failing, true, 1).poll().unwrap_err();
    assert_eq!(err.kind(), GpioErrorKind::Pin);
    assert!(err.to_string().contains("button"), "{err}");
}

#[test]
fn parses_pins_and_actions() {
    let line = |c: &str, l| PinRef::Line {
        chip: PathBuf::from(c),
        line: l,
    };
    assert_eq!(
        "gpiochip0:17".parse::<PinRef>().unwrap(),
        line("/dev/gpiochip0", 17)
    );
    assert_eq!(
        "/dev/gpiochip4:5".parse::<PinRef>().unwrap(),
        line("/dev/gpiochip4", 5)
    );
    assert_eq!(
        "led".parse::<PinRef>().unwrap(),
        PinRef::Named("led".into())
    );
    assert_eq!("22".parse::<PinRef>().unwrap(), PinRef::Offset(22));
    for bad in ["", "gpiochip0:x", ":3", "le d"] {
        let e = bad.parse::<PinRef>().unwrap_err();
        assert_eq!(e.kind(), GpioErrorKind::Config, "{bad}: {e}");
    }
    let a: ActionSpec = "red circle=led".parse().unwrap();
    assert_eq!(
        (a.label.as_str(), a.pin.clone()),
        ("red circle", PinRef::Named("led".into()))
    );
    let a: ActionSpec = "a=b=gpiochip1:3".parse().unwrap();
    assert_eq!(
        (a.label.as_str(), a.pin),
        ("a=b", line("/dev/gpiochip1", 3))
    );
    assert!("no-equals".parse::<ActionSpec>().is_err());
    assert!("=led".parse::<ActionSpec>().is_err());
    assert_eq!(
        "red circle=led".parse::<ActionSpec>().unwrap().to_string(),
        "red circle=led"
    );
}

fn gpio_config() -> GpioConfig {
    GpioConfig {
        chip: PathBuf::from("/dev/gpiochip0"),
        pins: BTreeMap::from([("led".to_string(), 17), ("button".to_string(), 27)]),
        board: "pi4".to_string(),
    }
}

#[test]
fn resolves_against_the_profile() {
    let g = gpio_config();
    let r = |s: &str, g: Option<&GpioConfig>| resolve(&s.parse().unwrap(), g);
    assert_eq!(
        r("led", Some(&g)).unwrap(),
        (PathBuf::from("/dev/gpiochip0"), 17)
    );
    assert_eq!(
        r("5", Some(&g)).unwrap(),
        (PathBuf::from("/dev/gpiochip0"), 5)
    );
    assert_eq!(
        r("gpiochip2:1", None).unwrap(),
        (PathBuf::from("/dev/gpiochip2"), 1)
    );
    let e = r("buzzer", Some(&g)).unwrap_err().to_string();
    assert!(
        e.contains("buzzer") && e.contains("pi4") && e.contains("button, led"),
        "{e}"
    );
    let e = r("led", None).unwrap_err();
    assert_eq!(e.kind(), GpioErrorKind::Config);
    assert!(e.to_string().contains("--board"), "{e}");
}

#[test]
fn unknown_labels_are_named_with_a_suggestion() {
    let known: Vec<String> = ["red circle", "blue square"].map(String::from).to_vec();
    let ok: Vec<ActionSpec> = vec!["red circle=led".parse().unwrap()];
    check_labels(&ok, &known).unwrap();
    let typo: Vec<ActionSpec> = vec!["red circel=led".parse().unwrap()];
    let e = check_labels(&typo, &known).unwrap_err().to_string();
    assert!(
        e.contains("\"red circel\"") && e.contains("did you mean \"red circle\""),
        "{e}"
    );
    let far: Vec<ActionSpec> = vec!["giraffe=led".parse().unwrap()];
    let e = check_labels(&far, &known).unwrap_err().to_string();
    assert!(e.contains("giraffe") && !e.contains("did you mean"), "{e}");
}

#[cfg(target_os = "linux")]
#[test]
fn missing_chip_is_a_device_error() {
    let chip = std::path::Path::new("/dev/gpiochip99");
    let e = open_output(chip, 17, "clip-edge-test").unwrap_err();
    assert_eq!(e.kind(), GpioErrorKind::Device);
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(
        msg.contains("/dev/gpiochip99") && msg.contains("no such GPIO chip"),
        "{msg}"
    );
    let e = open_input(chip, 3, "clip-edge-test").unwrap_err();
    assert_eq!(e.kind(), GpioErrorKind::Device);
    let actions: Vec<ActionSpec> = vec!["cat=gpiochip99:1".parse().unwrap()];
    let e = open_outputs(&actions, None, "clip-edge-test")
        .err()
        .unwrap();
    assert_eq!(e.kind(), GpioErrorKind::Device);
}

#[cfg(target_os = "linux")]
#[path = "sim_test.rs"]
mod sim_test;
