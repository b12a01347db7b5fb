//! The `run` loop's logic with a scripted fake source and a fake classifier:
//! hysteresis events, skipped frames, a camera that goes away and comes back,
//! the stop flag, `--every`, triggers and the JSON lines format.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clip_edge::run::{
    run, Event, EventSink, FrameClassifier, JsonLines, RunConfig, RunError, RunSummary, Trigger,
};
use clip_edge_core::classifier::ClassifyError;
use clip_edge_core::scoring::{Prediction, TopK};
use clip_edge_device::source::{Frame, FrameSource, SourceError};

/// One step of a scripted source.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// A frame whose top label is `.0` with probability `.1`.
    Shows(usize, f32),
    /// A corrupt frame.
    Bad,
    /// The device disappears.
    Unplug,
}

/// Plays a script; `reopen` fails `failing_reopens` times before succeeding.
struct ScriptedSource {
    steps: VecDeque<Step>,
    failing_reopens: u32,
    reopens: u32,
    error: fn(&str) -> SourceError,
}

impl FrameSource for ScriptedSource {
    fn describe(&self) -> String {
        "scripted".into()
    }

    fn next_frame(&mut self, frame: &mut Frame) -> Result<bool, SourceError> {
        match self.steps.pop_front() {
            None => Ok(false),
            Some(Step::Shows(label, prob)) => {
                let buf = frame.reshape(2, 1);
                buf[0] = label as u8;
                buf[1] = (prob * 100.0).round() as u8;
                frame.name.clear();
                frame.name.push_str("scripted");
                Ok(true)
            }
            Some(Step::Bad) => Err(SourceError::bad_frame("scripted", "corrupt JPEG")),
            Some(Step::Unplug) => Err((self.error)("scripted")),
        }
    }

    fn reopen(&mut self) -> Result<(), SourceError> {
        self.reopens += 1;
        if self.reopens <= self.failing_reopens {
            Err((self.error)("scripted"))
        } else {
            Ok(())
        }
    }
}

fn source(steps: &[Step]) -> ScriptedSource {
    ScriptedSource {
        steps: steps.iter().copied().collect(),
        failing_reopens: 0,
        reopens: 0,
        error: |name| SourceError::disconnected(name, "No such device (os error 19)"),
    }
}

/// Reads the label and probability the scripted source wrote into the pixels.
struct PixelClassifier {
    names: Vec<String>,
}

impl FrameClassifier for PixelClassifier {
    fn classify_frame(&mut self, rgb: &image::RgbImage, _k: usize) -> Result<TopK, ClassifyError> {
        let raw = rgb.as_raw();
        let mut top = TopK::new();
        let _ = top.push(Prediction {
            index: raw[0] as usize,
            score: 0.3,
            prob: f32::from(raw[1]) / 100.0,
        });
        Ok(top)
    }

    fn label_names(&self) -> &[String] {
        &self.names
    }
}

fn classifier() -> PixelClassifier {
    PixelClassifier {
        names: vec!["cat".into(), "dog".into(), "red \"circle\"".into()],
    }
}

/// Records events as short strings, counts ticks, and can raise the stop flag.
#[derive(Default)]
struct Recorder<'a> {
    events: Vec<String>,
    ticks: Cell<u32>,
    stop_after_frames: Option<(usize, &'a AtomicBool)>,
}

impl EventSink for Recorder<'_> {
    fn event(&mut self, event: &Event<'_>) -> std::io::Result<()> {
        let s = match event {
            Event::Frame {
                frame, top, labels, ..
            } => {
                format!("frame {frame} {}", labels[top[0].index])
            }
            Event::Seen { frame, label, .. } => format!("seen {label} @{frame}"),
            Event::Lost { frame, label, .. } => format!("lost {label} @{frame}"),
            Event::Skipped { frame, .. } => format!("skipped {frame}"),
        };
        self.events.push(s);
        if let Some((n, stop)) = self.stop_after_frames {
            if self
                .events
                .iter()
                .filter(|e| e.starts_with("frame"))
                .count()
                >= n
            {
                stop.store(true, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    fn tick(&mut self) {
        self.ticks.set(self.ticks.get() + 1);
    }
}

fn fast_config(stable: u32) -> RunConfig {
    RunConfig {
        stable,
        threshold: 0.5,
        retry_initial: Duration::from_millis(1),
        retry_max: Duration::from_millis(4),
        ..RunConfig::default()
    }
}

/// Runs the loop over `src` into a fresh [`Recorder`], never stopped by a signal.
fn run_recorded(
    src: &mut ScriptedSource,
    config: &RunConfig,
) -> (Recorder<'static>, Result<RunSummary, RunError>) {
    let mut rec = Recorder::default();
    let stop = AtomicBool::new(false);
    let result = run(&mut classifier(), src, config, None, &mut rec, &stop);
    (rec, result)
}

/// The frame events of a recording.
fn frame_events(rec: &Recorder<'_>) -> Vec<String> {
    rec.events
        .iter()
        .filter(|e| e.starts_with("frame"))
        .cloned()
        .collect()
}

use Step::*;

#[test]
fn hysteresis_events_and_lost_at_the_end() {
    let mut src = source(&[
        Shows(0, 0.9),
        Shows(0, 0.9),
        Shows(1, 0.9),
        Shows(1, 0.9),
        Shows(1, 0.3),
    ]);
    let (rec, result) = run_recorded(&mut src, &fast_config(2));
    let summary = result.unwrap();
    assert_eq!(
        rec.events,
        [
            "frame 0 cat",
            "frame 1 cat",
            "seen cat @1",
            "frame 2 dog",
            "frame 3 dog",
            "lost cat @3",
            "seen dog @3",
            "frame 4 dog",
            "lost dog @5",
        ]
    );
    assert_eq!(
        (summary.frames_read, summary.classified, summary.skipped),
        (5, 5, 0)
    );
    assert!(!summary.stopped);
}

#[test]
fn a_bad_frame_is_counted_skipped_and_the_loop_goes_on() {
    let mut src = source(&[Shows(0, 0.9), Bad, Shows(0, 0.9)]);
    let (rec, result) = run_recorded(&mut src, &fast_config(1));
    let summary = result.unwrap();
    assert_eq!(
        rec.events,
        [
            "frame 0 cat",
            "seen cat @0",
            "skipped 1",
            "frame 2 cat",
            "lost cat @3"
        ]
    );
    assert_eq!(
        (summary.frames_read, summary.classified, summary.skipped),
        (3, 2, 1)
    );
}

#[test]
fn an_unplugged_camera_is_retried_until_it_comes_back() {
    let mut src = source(&[Shows(1, 0.9), Unplug, Unplug, Shows(1, 0.9), Shows(1, 0.9)]);
    src.failing_reopens = 2;
    let (rec, result) = run_recorded(&mut src, &fast_config(1));
    let summary = result.unwrap();
    // The label is lost while the camera is gone, and seen again once it is back.
    assert_eq!(
        rec.events,
        [
            "frame 0 dog",
            "seen dog @0",
            "lost dog @1",
            "frame 1 dog",
            "seen dog @1",
            "frame 2 dog",
            "lost dog @3"
        ]
    );
    // Two unplugs, each followed by a reopen attempt; the first two attempts fail.
    assert_eq!(src.reopens, 2);
    assert_eq!(summary.reconnects, 0);
    assert!(
        rec.ticks.get() > 5,
        "the watchdog must be fed while waiting"
    );
}

#[test]
fn reopen_success_is_counted_as_a_reconnect() {
    let mut src = source(&[Unplug, Shows(0, 0.9)]);
    let (_rec, result) = run_recorded(&mut src, &fast_config(1));
    let summary = result.unwrap();
    assert_eq!((summary.reconnects, summary.classified), (1, 1));
}

#[test]
fn a_config_error_ends_the_loop_with_that_error() {
    let mut src = source(&[Shows(0, 0.9), Unplug]);
    src.error = |name| SourceError::config(name, "format not supported");
    let (rec, result) = run_recorded(&mut src, &fast_config(1));
    let err = result.unwrap_err();
    assert!(matches!(err, RunError::Source(_)), "{err}");
    assert!(err.to_string().contains("format not supported"), "{err}");
    // The seen label is still released.
    assert_eq!(rec.events.last().map(String::as_str), Some("lost cat @1"));
}

#[test]
fn the_stop_flag_ends_the_loop_after_the_current_frame() {
    let steps = vec![Shows(2, 0.9); 100];
    let mut src = source(&steps);
    let stop = AtomicBool::new(false);
    let mut rec = Recorder {
        stop_after_frames: Some((4, &stop)),
        ..Recorder::default()
    };
    let summary = run(
        &mut classifier(),
        &mut src,
        &fast_config(2),
        None,
        &mut rec,
        &stop,
    )
    .unwrap();
    assert!(summary.stopped);
    assert_eq!(summary.classified, 4);
    assert_eq!(
        rec.events.last().map(String::as_str),
        Some("lost red \"circle\" @4")
    );
}

#[test]
fn every_n_and_a_trigger_choose_the_classified_frames() {
    struct EveryOther(u32);
    impl Trigger for EveryOther {
        fn fire(&mut self) -> bool {
            self.0 += 1;
            self.0.is_multiple_of(2)
        }
    }
    let steps = vec![Shows(0, 0.9); 12];
    let config = RunConfig {
        every: 3,
        ..fast_config(1)
    };
    let (rec, result) = run_recorded(&mut source(&steps), &config);
    result.unwrap();
    assert_eq!(
        frame_events(&rec),
        ["frame 0 cat", "frame 3 cat", "frame 6 cat", "frame 9 cat"]
    );

    let mut rec = Recorder::default();
    let mut trigger = EveryOther(0);
    let stop = AtomicBool::new(false);
    run(
        &mut classifier(),
        &mut source(&steps),
        &config,
        Some(&mut trigger),
        &mut rec,
        &stop,
    )
    .unwrap();
    assert_eq!(frame_events(&rec), ["frame 3 cat", "frame 9 cat"]);
}

#[test]
fn fps_limits_the_classification_rate() {
    let steps = vec![Shows(0, 0.9); 4];
    let config = RunConfig {
        fps: Some(50.0),
        ..fast_config(1)
    };
    let stop = AtomicBool::new(false);
    let start = std::time::Instant::now();
    run(
        &mut classifier(),
        &mut source(&steps),
        &config,
        None,
        &mut Recorder::default(),
        &stop,
    )
    .unwrap();
    // 4 frames at 50 fps: the last starts no earlier than 3 intervals (60 ms) in.
    assert!(
        start.elapsed() >= Duration::from_millis(60),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn json_lines_are_one_valid_object_per_event() {
    let mut src = source(&[Shows(2, 0.9), Bad, Shows(2, 0.9)]);
    let stop = AtomicBool::new(false);
    let mut sink = JsonLines::new(Vec::new());
    run(
        &mut classifier(),
        &mut src,
        &fast_config(1),
        None,
        &mut sink,
        &stop,
    )
    .unwrap();
    let text = String::from_utf8(sink.into_inner()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let types: Vec<&str> = lines.iter().map(|v| v["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["frame", "seen", "skipped", "frame", "lost"]);
    let frame = &lines[0];
    assert_eq!(frame["frame"], 0);
    assert_eq!(frame["source"], "scripted");
    assert_eq!(frame["top"][0]["label"], "red \"circle\"");
    assert!((frame["top"][0]["prob"].as_f64().unwrap() - 0.9).abs() < 1e-6);
    assert!((frame["top"][0]["score"].as_f64().unwrap() - 0.3).abs() < 1e-6);
    assert!(frame["latency_ms"].as_f64().unwrap() >= 0.0);
    assert!(frame["t"].as_f64().unwrap() > 1.7e9);
    assert_eq!(lines[1]["label"], "red \"circle\"");
    assert!(lines[2]["error"].as_str().unwrap().contains("corrupt JPEG"));
    assert_eq!(lines[4]["frame"], 3);
}
