//! `clip-edge run`: classify a stream of frames and act on what is seen.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use clip_edge::run::{Event, EventSink, Fanout, JsonLines, LogLines, RunConfig, Trigger};
use clip_edge_core::scoring::MAX_TOP_K;
use clip_edge_device::board::BoardProfile;
use clip_edge_device::gpio::{ActionSpec, PinRef};
use clip_edge_device::source::SourceSpec;
use clip_edge_device::watchdog::Watchdog;

/// Name the GPIO lines are requested under (shown by `gpioinfo`).
const GPIO_CONSUMER: &str = "clip-edge";

/// Options of `clip-edge run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Bundle directory (bundle.toml, model.nnef.tar or model.onnx, labels.safetensors).
    #[arg(long)]
    bundle: PathBuf,
    /// Where frames come from: v4l2:/dev/video0[:WxH[:yuyv|mjpeg]], stdin:mjpeg,
    /// stdin:rgb24:WxH, stdin:yuv420:WxH, dir:PATH (recursive, sorted), files:A,B,..,
    /// synthetic[:WxH[:N]]. Default: the board profile's camera.
    #[arg(long)]
    source: Option<String>,
    /// Classify at most this many frames a second (default: as fast as possible).
    #[arg(long, value_parser = positive_f32)]
    fps: Option<f32>,
    /// Classify every N-th frame read; the others are read and dropped (keeps a
    /// camera's queue fresh).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    every: u32,
    /// Lowest top-label probability that counts towards a label being seen: its
    /// share of the softmax over the labels, or with a sigmoid-scored bundle
    /// (SigLIP) the label's own probability, independent of the other labels.
    #[arg(long, default_value_t = 0.5, value_parser = unit_f32)]
    threshold: f32,
    /// Consecutive classified frames with a label on top (at or above the
    /// threshold) before it is reported seen; as many without it before it is lost.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    stable: u32,
    /// Labels reported per frame (at most 16).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=MAX_TOP_K as i64))]
    top_k: u16,
    /// Stop after this many frames read (default: until the source ends or SIGINT/SIGTERM).
    #[arg(long)]
    max_frames: Option<u64>,
    /// Drive a GPIO output high while LABEL is seen: LABEL=PIN, PIN being a pin name
    /// of the board profile (led), a line on its chip (17) or CHIP:LINE
    /// (gpiochip0:17). Repeatable; quote labels with spaces: --on "red circle=led".
    #[arg(long = "on", value_name = "LABEL=PIN")]
    on: Vec<ActionSpec>,
    /// Classify only when this push button (to ground, pull-up) is pressed: one
    /// frame per press. PIN as for --on, e.g. `button`.
    #[arg(long, value_name = "PIN")]
    button: Option<PinRef>,
    /// One JSON object per line on stdout: {"type":"frame",...} per classified
    /// frame, {"type":"seen"|"lost","label":...} on changes, {"type":"skipped",...}
    /// for unusable frames. Without it, the same as log lines on stderr.
    #[arg(long)]
    json: bool,
}

fn positive_f32(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

fn unit_f32(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number from 0 to 1")),
    }
}

/// Raised by SIGINT/SIGTERM: the loop finishes the current frame, releases the
/// device and pins and exits 0. A second signal exits at once (status 1).
fn stop_flag() -> Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // Order matters: the conditional shutdown sees the flag already set only
        // on the second signal.
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop))
            .context("cannot install signal handlers")?;
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install signal handlers")?;
    }
    Ok(stop)
}

/// Feeds the systemd watchdog on every pass of the loop, says READY after the first
/// classified frame and keeps STATUS= up to date (about once a second).
struct WatchdogSink {
    watchdog: Watchdog,
    ready: bool,
    classified: u64,
    seen: Option<String>,
    last_status: Option<(Instant, u64)>,
    memory_budget_mb: Option<u32>,
}

impl WatchdogSink {
    fn update_status(&mut self) {
        let now = Instant::now();
        let Some((since, count)) = self.last_status else {
            self.last_status = Some((now, self.classified));
            return;
        };
        let elapsed = now.duration_since(since);
        if elapsed < Duration::from_secs(1) {
            return;
        }
        let fps = (self.classified - count) as f64 / elapsed.as_secs_f64();
        let seen = self.seen.as_deref().unwrap_or("nothing");
        self.watchdog.status(&format!("{fps:.1} fps, seen: {seen}"));
        self.last_status = Some((now, self.classified));
    }
}

impl EventSink for WatchdogSink {
    fn event(&mut self, event: &Event<'_>) -> std::io::Result<()> {
        match event {
            Event::Frame { .. } => {
                self.classified += 1;
                if !self.ready {
                    self.ready = true;
                    let rss = clip_edge::bench::peak_rss_mb();
                    if let (Some(rss), Some(budget)) = (rss, self.memory_budget_mb) {
                        if rss > f64::from(budget) {
                            log::warn!(
                                "peak RSS {rss:.0} MB is over the board's memory budget of {budget} MB"
                            );
                        }
                    }
                    let rss = rss.map_or_else(String::new, |r| format!(", peak RSS {r:.0} MB"));
                    log::info!("first frame classified{rss}");
                    self.watchdog.ready(&format!("first frame classified{rss}"));
                }
                self.update_status();
            }
            Event::Seen { label, .. } => self.seen = Some((*label).to_owned()),
            Event::Lost { .. } => self.seen = None,
            Event::Skipped { .. } => {}
        }
        Ok(())
    }

    fn tick(&mut self) {
        self.watchdog.feed();
    }
}

/// Drives the `--on` outputs from seen/lost events. A pin that fails to switch is
/// logged, not fatal: classification goes on.
#[cfg(target_os = "linux")]
struct GpioSink(clip_edge_device::gpio::LabelOutputs<clip_edge_device::gpio::LinePin>);

#[cfg(target_os = "linux")]
impl EventSink for GpioSink {
    fn event(&mut self, event: &Event<'_>) -> std::io::Result<()> {
        let result = match event {
            Event::Seen { label, .. } => self.0.seen(label),
            Event::Lost { label, .. } => self.0.lost(label),
            _ => Ok(()),
        };
        if let Err(err) = result {
            log::error!("{err}");
        }
        Ok(())
    }
}

/// `--button`: fires once per press.
#[cfg(target_os = "linux")]
struct ButtonTrigger(clip_edge_device::gpio::Button<clip_edge_device::gpio::LinePin>);

#[cfg(target_os = "linux")]
impl Trigger for ButtonTrigger {
    fn fire(&mut self) -> bool {
        match self.0.poll() {
            Ok(pressed) => pressed,
            Err(err) => {
                log::error!("{err}");
                false
            }
        }
    }
}

/// Runs `clip-edge run`.
pub fn run(
    args: RunArgs,
    board: Option<&BoardProfile>,
    trusted: Option<&clip_edge_bundle::TrustedKeys>,
) -> Result<()> {
    let mut watchdog = WatchdogSink {
        watchdog: Watchdog::from_env(),
        ready: false,
        classified: 0,
        seen: None,
        last_status: None,
        memory_budget_mb: board.map(|b| b.memory_budget_mb),
    };
    let spec_text = match (&args.source, board) {
        (Some(s), _) => s.clone(),
        (None, Some(b)) => {
            log::info!("source: {} (the camera of board {})", b.camera, b.name);
            b.camera.clone()
        }
        (None, None) => anyhow::bail!("no --source given (and no --board whose camera to use)"),
    };
    let spec: SourceSpec = spec_text
        .parse()
        .with_context(|| format!("bad --source {spec_text:?}"))?;
    let stop = stop_flag()?;
    let mut classifier = crate::load_classifier(&args.bundle, trusted)?;
    clip_edge_device::gpio::check_labels(&args.on, classifier.labels().labels())?;
    let gpio_config = board.and_then(|b| b.gpio.as_ref());
    #[cfg(target_os = "linux")]
    let mut outputs = if args.on.is_empty() {
        None
    } else {
        Some(GpioSink(clip_edge_device::gpio::open_outputs(
            &args.on,
            gpio_config,
            GPIO_CONSUMER,
        )?))
    };
    #[cfg(target_os = "linux")]
    let mut button = match &args.button {
        Some(pin) => Some(ButtonTrigger(clip_edge_device::gpio::open_button(
            pin,
            gpio_config,
            GPIO_CONSUMER,
        )?)),
        None => None,
    };
    #[cfg(not(target_os = "linux"))]
    if !args.on.is_empty() || args.button.is_some() {
        anyhow::bail!("GPIO (--on, --button) needs Linux's GPIO character device");
    }
    let mut source = clip_edge_device::source::open(&spec)?;
    log::info!(
        "classifying {} with {}",
        source.describe(),
        args.bundle.display()
    );
    let config = RunConfig {
        fps: args.fps,
        every: args.every,
        threshold: args.threshold,
        stable: args.stable,
        top_k: usize::from(args.top_k),
        max_frames: args.max_frames,
        ..RunConfig::default()
    };
    let mut json = JsonLines::new(std::io::BufWriter::new(std::io::stdout().lock()));
    let mut logs = LogLines;
    let mut sinks: Vec<&mut dyn EventSink> = vec![if args.json { &mut json } else { &mut logs }];
    sinks.push(&mut watchdog);
    #[cfg(target_os = "linux")]
    if let Some(outputs) = outputs.as_mut() {
        sinks.push(outputs);
    }
    #[cfg(target_os = "linux")]
    let trigger = button.as_mut().map(|b| b as &mut dyn Trigger);
    #[cfg(not(target_os = "linux"))]
    let trigger = None;
    let result = clip_edge::run::run(
        &mut classifier,
        source.as_mut(),
        &config,
        trigger,
        &mut Fanout(sinks),
        &stop,
    );
    watchdog.watchdog.stopping();
    #[cfg(target_os = "linux")]
    if let Some(GpioSink(outputs)) = outputs.as_mut() {
        if let Err(err) = outputs.release() {
            log::error!("{err}");
        }
    }
    let summary = result?;
    log::info!(
        "{} frames read, {} classified, {} skipped, {} reconnects{}",
        summary.frames_read,
        summary.classified,
        summary.skipped,
        summary.reconnects,
        if summary.stopped {
            ", stopped by signal"
        } else {
            ""
        }
    );
    Ok(())
}
