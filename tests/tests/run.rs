//! `clip-edge run` end to end: a directory of images, a corrupt file among them,
//! an MJPEG stream on stdin, and SIGTERM on an endless synthetic source.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clip_edge_e2e::{
    assert_clean_failure, bin, json_lines, repo_root, run, scratch, shapes_dir, shapes_samples,
    stderr, stdout,
};
use serde_json::Value;

const INT8_BUNDLE: &str = "models/shapes/bundle-int8";

fn of_type<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|v| v["type"] == kind).collect()
}

/// Every PNG under models/shapes/eval, as the `dir:` source orders them.
fn eval_images() -> Vec<String> {
    let mut paths = Vec::new();
    let mut stack = vec![shapes_dir().join("eval")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "png") {
                paths.push(path);
            }
        }
    }
    paths.sort();
    paths.iter().map(|p| p.display().to_string()).collect()
}

#[test]
fn dir_source_prints_one_frame_line_per_image_and_exits_0() {
    let eval = shapes_dir().join("eval");
    let source = format!("dir:{}", eval.display());
    let out = run(
        "clip-edge",
        &[
            "run",
            "--bundle",
            INT8_BUNDLE,
            "--source",
            &source,
            "--json",
            "--top-k",
            "2",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&stdout(&out));
    let frames = of_type(&lines, "frame");
    let expected = eval_images();
    assert_eq!(frames.len(), expected.len());
    assert_eq!(frames.len(), 150);
    for (i, (frame, path)) in frames.iter().zip(&expected).enumerate() {
        assert_eq!(frame["frame"], i as u64);
        assert_eq!(frame["source"].as_str(), Some(path.as_str()));
        let top = frame["top"].as_array().unwrap();
        assert_eq!(top.len(), 2);
        assert!(top[0]["score"].as_f64() >= top[1]["score"].as_f64());
        assert!(frame["latency_ms"].as_f64().unwrap() > 0.0);
    }
    // Zero-shot accuracy through `run` is that of `classify` (folder name = label).
    let correct = frames
        .iter()
        .filter(|f| {
            let folder = std::path::Path::new(f["source"].as_str().unwrap())
                .parent()
                .and_then(|p| p.file_name())
                .unwrap()
                .to_string_lossy()
                .replace('_', " ");
            f["top"][0]["label"] == folder.as_str()
        })
        .count();
    assert!(correct >= 135, "{correct}/150 correct");
    // Seen and lost alternate and balance out: every label seen is lost by the end.
    let changes: Vec<&Value> = lines.iter().filter(|v| v["type"] != "frame").collect();
    assert!(!changes.is_empty());
    let mut current: Option<&str> = None;
    for c in &changes {
        let label = c["label"].as_str().unwrap();
        match c["type"].as_str().unwrap() {
            "seen" => assert_eq!(current.replace(label), None),
            "lost" => assert_eq!(current.take(), Some(label)),
            other => panic!("unexpected event {other}"),
        }
    }
    assert_eq!(current, None, "a label was left seen at the end");
}

#[test]
fn a_corrupt_file_in_the_directory_is_skipped_and_counted() {
    let dir = scratch("run-corrupt");
    let samples = shapes_dir().join("samples");
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(&samples).unwrap().take(3) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        std::fs::copy(&path, dir.join(&name)).unwrap();
        names.insert(name);
    }
    std::fs::write(
        dir.join("b-broken.jpg"),
        b"\xff\xd8\xff\xe0 not really a jpeg",
    )
    .unwrap();
    let source = format!("dir:{}", dir.display());
    let out = run(
        "clip-edge",
        &[
            "run",
            "--bundle",
            INT8_BUNDLE,
            "--source",
            &source,
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&stdout(&out));
    assert_eq!(of_type(&lines, "frame").len(), 3);
    let skipped = of_type(&lines, "skipped");
    assert_eq!(skipped.len(), 1);
    assert!(
        skipped[0]["error"]
            .as_str()
            .unwrap()
            .contains("b-broken.jpg"),
        "{}",
        skipped[0]
    );
    assert!(stderr(&out).contains("1 skipped"), "{}", stderr(&out));
}

#[test]
fn mjpeg_on_stdin_is_classified_frame_by_frame() {
    // Three JPEGs of sample images, back to back, as rpicam-vid --codec mjpeg writes them.
    let mut stream = Vec::new();
    let samples = shapes_samples();
    for path in samples.iter().take(3) {
        let img = image::open(path).unwrap().to_rgb8();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut stream, 95)
            .encode_image(&img)
            .unwrap();
    }
    let mut child = Command::new(bin("clip-edge"))
        .args([
            "run",
            "--bundle",
            INT8_BUNDLE,
            "--source",
            "stdin:mjpeg",
            "--json",
            "--stable",
            "1",
        ])
        .current_dir(repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&stream).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&stdout(&out));
    assert_eq!(of_type(&lines, "frame").len(), 3);
    assert!(!of_type(&lines, "seen").is_empty());
}

#[test]
fn sigterm_finishes_the_frame_reports_lost_and_exits_0() {
    let child = Command::new(bin("clip-edge"))
        .args([
            "run",
            "--bundle",
            INT8_BUNDLE,
            "--source",
            "synthetic:320x240",
            "--json",
            "--threshold",
            "0",
            "--stable",
            "1",
        ])
        .current_dir(repo_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let it classify a few frames, then ask it to stop.
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: plain kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    assert!(start.elapsed() < Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = json_lines(&stdout(&out));
    assert!(
        !of_type(&lines, "frame").is_empty(),
        "no frame classified in 1.5 s"
    );
    assert_eq!(lines.last().unwrap()["type"], "lost", "{}", stdout(&out));
    assert!(
        stderr(&out).contains("stopped by signal"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_source_specs_fail_cleanly() {
    for (spec, needle) in [
        ("webcam", "webcam"),
        ("dir:/no/such/dir", "/no/such/dir"),
        ("stdin:rgb24:0x5", "0x5"),
        ("v4l2:/dev/video97", "/dev/video97"),
    ] {
        let out = run(
            "clip-edge",
            &[
                "run",
                "--bundle",
                INT8_BUNDLE,
                "--source",
                spec,
                "--max-frames",
                "1",
            ],
        );
        assert_clean_failure(&out, &[needle]);
    }
}

#[test]
fn gpio_actions_and_boards_are_checked_before_running() {
    let samples = format!("dir:{}", shapes_dir().join("samples").display());
    let base = ["run", "--bundle", INT8_BUNDLE, "--source", samples.as_str()];
    let with = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        run("clip-edge", &args)
    };
    // A label the bundle does not have, with the closest one suggested.
    let out = with(&["--on", "red circel=gpiochip0:17"]);
    assert_clean_failure(&out, &["red circel", "red circle"]);
    // A pin name without a board profile to say where it is.
    let out = with(&["--on", "red circle=led"]);
    assert_clean_failure(&out, &["led"]);
    // A GPIO chip that does not exist.
    let out = with(&["--on", "red circle=gpiochip99:3"]);
    assert_clean_failure(&out, &["gpiochip99"]);
    let out = with(&["--button", "gpiochip99:4"]);
    assert_clean_failure(&out, &["gpiochip99"]);
    // An unknown board lists the known ones.
    let out = with(&["--board", "pi3"]);
    assert_clean_failure(&out, &["pi3", "pi4", "jetson-orin"]);
}

#[test]
fn the_board_profile_gives_the_default_source_and_threads() {
    // pi4's camera is /dev/video0, which this machine may not have: the error (or
    // the run) must name that device, proving the profile's camera was used.
    let out = run(
        "clip-edge",
        &[
            "--board",
            "pi4",
            "run",
            "--bundle",
            INT8_BUNDLE,
            "--max-frames",
            "1",
            "--json",
        ],
    );
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("/dev/video0"), "{err}");
    assert!(err.contains("tract matmuls on 4 threads"), "{err}");
}

#[test]
fn under_systemd_it_says_ready_feeds_the_watchdog_and_says_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = scratch("notify");
    let socket_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&socket_path);
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let source = format!("dir:{}", shapes_dir().join("eval").display());
    // Read as systemd does, while the program runs.
    let reader = std::thread::spawn(move || {
        let mut messages = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = socket.recv(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            let last = m.contains("STOPPING=1");
            messages.push(m);
            if last {
                break;
            }
        }
        messages
    });
    let out = Command::new(bin("clip-edge"))
        .args([
            "run",
            "--bundle",
            INT8_BUNDLE,
            "--source",
            &source,
            "--json",
            "--fps",
            "100",
        ])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let messages = reader.join().unwrap();
    let all = messages.join("\n");
    let ready = messages.iter().position(|m| m.contains("READY=1"));
    assert!(ready.is_some(), "no READY=1 in {all}");
    // 150 frames at 100 fps take 1.5 s: with a 0.2 s watchdog, several pings.
    let pings = messages.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(pings >= 5, "{pings} watchdog pings in {all}");
    assert!(all.contains("STATUS="), "{all}");
    assert!(messages.last().unwrap().contains("STOPPING=1"), "{all}");
}
