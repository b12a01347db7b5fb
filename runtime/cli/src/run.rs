//! The long-running loop behind `clip-edge run`: frames in, decisions out.
//!
//! [`run`] reads frames from a [`FrameSource`] into one reused [`Frame`],
//! classifies every `every`-th frame (optionally only when a [`Trigger`] fires, and
//! at most `fps` a second), feeds the top label to a [`Tracker`] for hysteresis, and
//! reports [`Event`]s to an [`EventSink`]: one per classified frame, one per label
//! seen or lost, one per skipped frame. Sinks write JSON lines ([`JsonLines`]), log
//! lines ([`LogLines`]), drive GPIO pins or feed a watchdog.
//!
//! Failures of the source are handled here, not by the caller: a bad frame (corrupt
//! JPEG, wrong size) is counted and skipped; a lost device is retried with
//! exponential backoff until it comes back, while the sinks keep ticking (so a
//! systemd watchdog stays fed) and the stop flag is honoured. Only a source that
//! cannot work at all ([`SourceErrorKind::Config`]) ends the loop with an error.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clip_edge_core::classifier::{Classifier, ClassifyError};
use clip_edge_core::scoring::TopK;
use clip_edge_core::ErrorChain;

use crate::json::{json_display, json_f32, json_str, write_top_k};
use clip_edge_core::tracker::{Change, Tracker};
use clip_edge_device::source::{Frame, FrameSource, SourceError, SourceErrorKind};

/// How the loop paces, filters and retries.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// At most this many classified frames a second (`None`: as fast as possible).
    pub fps: Option<f32>,
    /// Classify every `every`-th frame read (1: every frame); the others are read and dropped.
    pub every: u32,
    /// Lowest top probability that counts towards a label being seen.
    pub threshold: f32,
    /// Consecutive classified frames before a label is seen (or lost).
    pub stable: u32,
    /// Labels reported per frame (1 to [`clip_edge_core::scoring::MAX_TOP_K`]).
    pub top_k: usize,
    /// First wait before reopening a lost source; doubles up to `retry_max`.
    pub retry_initial: Duration,
    /// Longest wait between reopening attempts.
    pub retry_max: Duration,
    /// Stop after this many frames read (`None`: until the source ends or a stop signal).
    pub max_frames: Option<u64>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            fps: None,
            every: 1,
            threshold: 0.5,
            stable: 3,
            top_k: 3,
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(10),
            max_frames: None,
        }
    }
}

/// Something the loop reports.
#[derive(Debug)]
pub enum Event<'a> {
    /// A frame was classified.
    Frame {
        /// Wall-clock time, seconds since the Unix epoch.
        t: f64,
        /// Index of the frame in the source (counting every frame read, from 0).
        frame: u64,
        /// Where the frame came from (the file path for `dir:`).
        source: &'a str,
        /// The best labels, best first.
        top: &'a TopK,
        /// Label names, indexed like the label table.
        labels: &'a [String],
        /// Preprocessing + encoding + scoring time.
        latency_ms: f64,
    },
    /// A label became stable.
    Seen {
        /// Wall-clock time, seconds since the Unix epoch.
        t: f64,
        /// The frame that made it stable.
        frame: u64,
        /// The label.
        label: &'a str,
        /// Its probability in that frame.
        prob: f32,
    },
    /// A label stopped being stable (also reported when the loop ends or the source is lost).
    Lost {
        /// Wall-clock time, seconds since the Unix epoch.
        t: f64,
        /// The frame at which it was lost.
        frame: u64,
        /// The label.
        label: &'a str,
    },
    /// A frame could not be used (corrupt, wrong size, unreadable) and was skipped.
    Skipped {
        /// Wall-clock time, seconds since the Unix epoch.
        t: f64,
        /// Index of the frame in the source.
        frame: u64,
        /// Why.
        error: &'a dyn std::error::Error,
    },
}

/// Receives the loop's events.
pub trait EventSink {
    /// Handles one event. An error ends the loop (e.g. stdout closed).
    fn event(&mut self, event: &Event<'_>) -> std::io::Result<()>;
    /// Called on every pass of the loop, also while waiting for a lost source (for
    /// watchdogs). Default: nothing.
    fn tick(&mut self) {}
}

/// Decides whether the next frame is classified (e.g. a push button for single shots).
pub trait Trigger {
    /// True when the current frame should be classified.
    fn fire(&mut self) -> bool;
}

/// Classifies one frame; implemented by [`Classifier`], and by fakes in tests.
pub trait FrameClassifier {
    /// The best `k` labels of an RGB8 frame.
    fn classify_frame(&mut self, rgb: &image::RgbImage, k: usize) -> Result<TopK, ClassifyError>;
    /// Label names, indexed like the label table.
    fn label_names(&self) -> &[String];
}

impl FrameClassifier for Classifier {
    fn classify_frame(&mut self, rgb: &image::RgbImage, k: usize) -> Result<TopK, ClassifyError> {
        self.classify(rgb, k)
    }

    fn label_names(&self) -> &[String] {
        self.labels().labels()
    }
}

/// Why the loop ended with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The source cannot work (bad spec, missing directory, unsupported format).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A sink failed to write (e.g. stdout closed).
    #[error("writing the output failed: {0}")]
    Output(#[from] std::io::Error),
}

/// What happened over a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Frames read from the source.
    pub frames_read: u64,
    /// Frames classified.
    pub classified: u64,
    /// Frames skipped as unusable.
    pub skipped: u64,
    /// Times the source was lost and reopened.
    pub reconnects: u64,
    /// True when the loop ended because of the stop flag.
    pub stopped: bool,
}

fn now_t() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Sleeps up to `duration` in short steps, ticking the sink; returns false if
/// `stop` was raised meanwhile.
fn sleep_while_ticking(duration: Duration, stop: &AtomicBool, sink: &mut dyn EventSink) -> bool {
    let end = Instant::now() + duration;
    loop {
        sink.tick();
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// Runs the loop until the source ends, `stop` is raised or `config.max_frames`
/// frames were read. See the module doc.
pub fn run(
    classifier: &mut dyn FrameClassifier,
    source: &mut dyn FrameSource,
    config: &RunConfig,
    mut trigger: Option<&mut dyn Trigger>,
    sink: &mut dyn EventSink,
    stop: &AtomicBool,
) -> Result<RunSummary, RunError> {
    let mut frame = Frame::new();
    let mut tracker = Tracker::new(config.threshold, config.stable);
    let mut summary = RunSummary::default();
    let every = u64::from(config.every.max(1));
    let min_interval = config
        .fps
        .filter(|f| f.is_finite() && *f > 0.0)
        .map(|f| Duration::from_secs_f64(1.0 / f64::from(f)));
    let mut next_slot = Instant::now();
    let mut backoff = config.retry_initial;
    let mut index: u64 = 0;

    let result = loop {
        sink.tick();
        if stop.load(Ordering::Relaxed) {
            summary.stopped = true;
            break Ok(());
        }
        if config
            .max_frames
            .is_some_and(|max| summary.frames_read >= max)
        {
            break Ok(());
        }
        match source.next_frame(&mut frame) {
            Ok(true) => {
                backoff = config.retry_initial;
            }
            Ok(false) => break Ok(()),
            Err(err) => match err.kind() {
                SourceErrorKind::BadFrame => {
                    summary.frames_read += 1;
                    summary.skipped += 1;
                    log::warn!("skipping frame {index}: {}", ErrorChain(&err));
                    let ev = Event::Skipped {
                        t: now_t(),
                        frame: index,
                        error: &err,
                    };
                    index += 1;
                    if let Err(e) = sink.event(&ev) {
                        break Err(e.into());
                    }
                    continue;
                }
                SourceErrorKind::Disconnected => {
                    log::warn!(
                        "{}: {err}; retrying in {:.1} s",
                        source.describe(),
                        backoff.as_secs_f32()
                    );
                    if let Err(e) = report_lost(&mut tracker, classifier, index, sink) {
                        break Err(e.into());
                    }
                    if !sleep_while_ticking(backoff, stop, sink) {
                        summary.stopped = true;
                        break Ok(());
                    }
                    backoff = (backoff * 2).min(config.retry_max);
                    match source.reopen() {
                        Ok(()) => {
                            summary.reconnects += 1;
                            log::info!("{}: reopened", source.describe());
                        }
                        Err(e) if e.kind() == SourceErrorKind::Config => break Err(e.into()),
                        Err(e) => log::warn!("{}: reopening failed: {e}", source.describe()),
                    }
                    continue;
                }
                // Config, and any kind a later version adds: stop.
                _ => break Err(err.into()),
            },
        }
        let this = index;
        index += 1;
        summary.frames_read += 1;
        if !this.is_multiple_of(every) {
            continue;
        }
        if let Some(trigger) = trigger.as_deref_mut() {
            if !trigger.fire() {
                continue;
            }
        }
        if let Some(interval) = min_interval {
            let now = Instant::now();
            if now < next_slot && !sleep_while_ticking(next_slot - now, stop, sink) {
                summary.stopped = true;
                break Ok(());
            }
            next_slot = next_slot.max(now) + interval;
        }
        let started = Instant::now();
        let top = match classifier.classify_frame(&frame.rgb, config.top_k) {
            Ok(top) => top,
            Err(err) => {
                summary.skipped += 1;
                log::warn!(
                    "skipping frame {this} ({}): {}",
                    frame.name,
                    ErrorChain(&err)
                );
                let ev = Event::Skipped {
                    t: now_t(),
                    frame: this,
                    error: &err,
                };
                if let Err(e) = sink.event(&ev) {
                    break Err(e.into());
                }
                continue;
            }
        };
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        summary.classified += 1;
        let t = now_t();
        let labels = classifier.label_names();
        let ev = Event::Frame {
            t,
            frame: this,
            source: &frame.name,
            top: &top,
            labels,
            latency_ms,
        };
        if let Err(e) = sink.event(&ev) {
            break Err(e.into());
        }
        let best = top.first().map(|p| (p.index, p.prob));
        if let Err(e) = report_changes(tracker.update(best), &top, labels, t, this, sink) {
            break Err(e.into());
        }
    };
    // Whatever ended the loop, a label still seen is reported lost, so outputs
    // driven by seen/lost (GPIO) are released.
    report_lost(&mut tracker, classifier, index, sink)?;
    result.map(|()| summary)
}

fn report_changes(
    changes: clip_edge_core::tracker::Changes,
    top: &TopK,
    labels: &[String],
    t: f64,
    frame: u64,
    sink: &mut dyn EventSink,
) -> std::io::Result<()> {
    for change in changes {
        match change {
            Change::Seen(i) => {
                let prob = top.iter().find(|p| p.index == i).map_or(0.0, |p| p.prob);
                let label = labels.get(i).map_or("?", String::as_str);
                sink.event(&Event::Seen {
                    t,
                    frame,
                    label,
                    prob,
                })?;
            }
            Change::Lost(i) => {
                let label = labels.get(i).map_or("?", String::as_str);
                sink.event(&Event::Lost { t, frame, label })?;
            }
        }
    }
    Ok(())
}

fn report_lost(
    tracker: &mut Tracker,
    classifier: &dyn FrameClassifier,
    frame: u64,
    sink: &mut dyn EventSink,
) -> std::io::Result<()> {
    if let Some(i) = tracker.reset() {
        let label = classifier.label_names().get(i).map_or("?", String::as_str);
        sink.event(&Event::Lost {
            t: now_t(),
            frame,
            label,
        })?;
    }
    Ok(())
}

/// Writes events as JSON lines (one object per line, flushed per line):
/// `{"type":"frame","t":..,"frame":N,"source":NAME,"top":[{"label":L,"score":S,"prob":P},..],"latency_ms":X}`,
/// `{"type":"seen","t":..,"frame":N,"label":L,"prob":P}`, `{"type":"lost","t":..,"frame":N,"label":L}`,
/// `{"type":"skipped","t":..,"frame":N,"error":E}`. Writing allocates nothing.
pub struct JsonLines<W: Write> {
    out: W,
}

impl<W: Write> JsonLines<W> {
    /// JSON lines into `out` (e.g. a locked, buffered stdout).
    pub fn new(out: W) -> Self {
        JsonLines { out }
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> EventSink for JsonLines<W> {
    fn event(&mut self, event: &Event<'_>) -> std::io::Result<()> {
        let o = &mut self.out;
        match *event {
            Event::Frame {
                t,
                frame,
                source,
                top,
                labels,
                latency_ms,
            } => {
                write!(
                    o,
                    r#"{{"type":"frame","t":{t:.3},"frame":{frame},"source":"#
                )?;
                json_str(o, source)?;
                o.write_all(br#","top":"#)?;
                write_top_k(o, top, labels)?;
                writeln!(o, r#","latency_ms":{latency_ms:.3}}}"#)?;
            }
            Event::Seen {
                t,
                frame,
                label,
                prob,
            } => {
                write!(o, r#"{{"type":"seen","t":{t:.3},"frame":{frame},"label":"#)?;
                json_str(o, label)?;
                o.write_all(br#","prob":"#)?;
                json_f32(o, prob)?;
                writeln!(o, "}}")?;
            }
            Event::Lost { t, frame, label } => {
                write!(o, r#"{{"type":"lost","t":{t:.3},"frame":{frame},"label":"#)?;
                json_str(o, label)?;
                writeln!(o, "}}")?;
            }
            Event::Skipped { t, frame, error } => {
                write!(
                    o,
                    r#"{{"type":"skipped","t":{t:.3},"frame":{frame},"error":"#
                )?;
                json_display(o, &ErrorChain(error))?;
                writeln!(o, "}}")?;
            }
        }
        o.flush()
    }
}

/// Reports events as `log` lines (info for frames and changes, warn for skips).
#[derive(Debug, Default)]
pub struct LogLines;

impl EventSink for LogLines {
    fn event(&mut self, event: &Event<'_>) -> std::io::Result<()> {
        match *event {
            Event::Frame {
                frame,
                source,
                top,
                labels,
                latency_ms,
                ..
            } => {
                if let Some(best) = top.first() {
                    let label = labels.get(best.index).map_or("?", String::as_str);
                    log::info!(
                        "frame {frame} {source}: {label} ({:.1}%, cos {:.3}) in {latency_ms:.1} ms",
                        best.prob * 100.0,
                        best.score
                    );
                }
            }
            Event::Seen {
                frame, label, prob, ..
            } => {
                log::info!("seen: {label} ({:.1}%) at frame {frame}", prob * 100.0)
            }
            Event::Lost { frame, label, .. } => log::info!("lost: {label} at frame {frame}"),
            Event::Skipped { frame, error, .. } => {
                log::warn!("skipped frame {frame}: {}", ErrorChain(error))
            }
        }
        Ok(())
    }
}

/// Sends every event to each sink in turn (the first error stops the rest).
pub struct Fanout<'a>(pub Vec<&'a mut dyn EventSink>);

impl EventSink for Fanout<'_> {
    fn event(&mut self, event: &Event<'_>) -> std::io::Result<()> {
        self.0.iter_mut().try_for_each(|s| s.event(event))
    }

    fn tick(&mut self) {
        self.0.iter_mut().for_each(|s| s.tick());
    }
}
