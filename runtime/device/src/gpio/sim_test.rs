//! The character device path end to end on the kernel's GPIO simulator (gpio-sim,
//! configured through configfs), when this kernel has it; skipped otherwise.

use std::fs;
use std::path::{Path, PathBuf};

use embedded_hal::digital::{InputPin, OutputPin};

use super::super::*;

const CONFIGFS: &str = "/sys/kernel/config/gpio-sim";

/// A live gpio-sim chip, torn down on drop.
struct SimChip {
    dir: PathBuf,
    chip: PathBuf,
    sysfs: PathBuf,
}

impl SimChip {
    fn create() -> std::io::Result<SimChip> {
        let dir = Path::new(CONFIGFS).join(format!("clip-edge-test-{}", std::process::id()));
        fs::create_dir(&dir)?;
        fs::create_dir(dir.join("bank0"))?;
        fs::write(dir.join("bank0/num_lines"), "8")?;
        fs::write(dir.join("live"), "1")?;
        let chip_name = fs::read_to_string(dir.join("bank0/chip_name"))?;
        let dev_name = fs::read_to_string(dir.join("dev_name"))?;
        Ok(SimChip {
            chip: Path::new("/dev").join(chip_name.trim()),
            sysfs: Path::new("/sys/devices/platform")
                .join(dev_name.trim())
                .join(chip_name.trim()),
            dir,
        })
    }

    fn attr(&self, line: u32, name: &str) -> PathBuf {
        self.sysfs.join(format!("sim_gpio{line}/{name}"))
    }
}

impl Drop for SimChip {
    fn drop(&mut self) {
        let _ = fs::write(self.dir.join("live"), "0");
        let _ = fs::remove_dir(self.dir.join("bank0"));
        let _ = fs::remove_dir(&self.dir);
    }
}

#[test]
fn gpio_sim_output_and_input() {
    if !Path::new(CONFIGFS).is_dir() {
        eprintln!("skipped: gpio-sim not available ({CONFIGFS} does not exist)");
        return;
    }
    let sim = match SimChip::create() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skipped: gpio-sim not available (cannot create a chip: {e})");
            return;
        }
    };
    let read = |line, name| {
        fs::read_to_string(sim.attr(line, name))
            .unwrap()
            .trim()
            .to_string()
    };

    let mut led = open_output(&sim.chip, 3, "clip-edge-test").unwrap();
    assert_eq!(read(3, "value"), "0", "requested low");
    led.set_high().unwrap();
    assert_eq!(read(3, "value"), "1");
    let mut out = LabelOutputs::new(vec![("cat".to_string(), led)]).unwrap();
    out.seen("cat").unwrap();
    assert_eq!(read(3, "value"), "1");
    out.release().unwrap();
    assert_eq!(read(3, "value"), "0");

    fs::write(sim.attr(4, "pull"), "pull-down").unwrap();
    let mut button = open_input(&sim.chip, 4, "clip-edge-test").unwrap();
    assert!(button.is_low().unwrap());
    fs::write(sim.attr(4, "pull"), "pull-up").unwrap();
    assert!(button.is_high().unwrap());

    let e = open_output(&sim.chip, 8, "clip-edge-test").unwrap_err();
    assert_eq!(e.kind(), GpioErrorKind::Device);
    assert!(e.to_string().contains("line 8"), "{e}");
    let e = open_output(&sim.chip, 3, "clip-edge-test-2");
    // Line 3 was released with `out` still alive: it is busy.
    assert!(e.is_err());
    drop(out);
}
