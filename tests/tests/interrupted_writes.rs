//! Nothing lost on the workstation: `clip-quantize` interrupted while writing (a full
//! disk, a killed process) leaves the previous bundle or model as it was, and nothing
//! half-written at its path.
//!
//! A full disk and a kill mid-write are made deterministic with `RLIMIT_FSIZE`: a
//! write past the limit fails with `EFBIG` when `SIGXFSZ` is ignored (as a full disk
//! fails with `ENOSPC`), and kills the process with `SIGXFSZ` when it is not. Kills at
//! other moments come from `SIGKILL` at spread-out times.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use clip_edge_e2e::{bin, copy_dir, repo_root, scratch, shapes_dir, stderr};

/// `clip-quantize ARGS` with file writes limited to `limit` bytes; with
/// `ignore_sigxfsz`, a write past it fails instead of killing the process.
fn quantize_limited(args: &[&str], limit: u64, ignore_sigxfsz: bool) -> Output {
    let mut cmd = Command::new(bin("clip-quantize"));
    cmd.args(args).current_dir(repo_root());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let rlim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &rlim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if ignore_sigxfsz {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            }
            Ok(())
        });
    }
    cmd.output().expect("run clip-quantize")
}

/// Every file of `dir` with a hash of its bytes, and the names of `dir`'s parent.
fn snapshot(dir: &Path) -> (Vec<(String, u64)>, Vec<String>) {
    let list = |d: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let files = list(dir)
        .into_iter()
        .map(|n| {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            std::fs::read(dir.join(&n)).unwrap().hash(&mut hasher);
            (n, hasher.finish())
        })
        .collect();
    (files, list(dir.parent().unwrap()))
}

/// A scratch directory holding `bundle/`, a copy of the committed shapes bundle.
fn old_bundle(name: &str) -> PathBuf {
    let bundle = scratch(name).join("bundle");
    copy_dir(&shapes_dir().join("bundle"), &bundle);
    bundle
}

/// `bundle` arguments that make a bundle different from the committed one (another
/// logit scale), into `out`.
fn bundle_args(out: &Path) -> Vec<String> {
    let shapes = shapes_dir();
    [
        "bundle",
        "--image-model",
        shapes.join("image_encoder.onnx").to_str().unwrap(),
        "--labels",
        shapes.join("bundle/labels.safetensors").to_str().unwrap(),
        "--logit-scale",
        "50",
        "--out",
        out.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn a_full_disk_while_bundling_keeps_the_old_bundle_and_leaves_nothing() {
    let bundle = old_bundle("full-disk");
    let before = snapshot(&bundle);
    let args = bundle_args(&bundle);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The NNEF model is 1.7 MB: its write fails partway.
    let out = quantize_limited(&args, 256 << 10, true);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("model.nnef.tar") && err.contains("File too large"),
        "{err}"
    );
    assert_eq!(snapshot(&bundle), before);
}

#[test]
fn a_process_killed_while_bundling_keeps_the_old_bundle() {
    let bundle = old_bundle("killed");
    let before = snapshot(&bundle);
    let args = bundle_args(&bundle);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = quantize_limited(&args, 256 << 10, false);
    assert_eq!(out.status.signal(), Some(libc::SIGXFSZ), "{}", stderr(&out));
    // The bundle is as it was; beside it at most the hidden, empty staging directory
    // (its model file had no name), which the next write removes.
    let (files, siblings) = snapshot(&bundle);
    assert_eq!(files, before.0);
    for s in &siblings {
        assert!(
            s == "bundle" || s.starts_with(".bundle.new-"),
            "{siblings:?}"
        );
        if s != "bundle" {
            let left = bundle.parent().unwrap().join(s);
            assert_eq!(
                std::fs::read_dir(&left).unwrap().count(),
                0,
                "{s} not empty"
            );
        }
    }
    let ok = Command::new(bin("clip-quantize"))
        .args(&args)
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", stderr(&ok));
    let (files, siblings) = snapshot(&bundle);
    assert_eq!(siblings, ["bundle"]);
    assert_ne!(files, before.0, "the new bundle was not written");
}

/// `SIGKILL` at moments spread over a whole `bundle` run: after each, the path holds
/// a whole bundle, the old one or the new one, that `clip-edge` loads.
#[test]
fn a_bundle_killed_at_any_moment_is_the_old_or_the_new_one() {
    let bundle = old_bundle("sigkill");
    let old = snapshot(&bundle).0;
    let args = bundle_args(&bundle);
    let start = Instant::now();
    let full = Command::new(bin("clip-quantize"))
        .args(&args)
        .output()
        .unwrap();
    assert!(full.status.success(), "{}", stderr(&full));
    let took = start.elapsed();
    let new = snapshot(&bundle).0;
    let img = shapes_dir().join("samples/red_triangle.png");
    let (mut saw_old, mut saw_new) = (0, 0);
    for step in 0..12u32 {
        // Back to the old bundle, then a run killed at step/12 of a full run's time.
        std::fs::remove_dir_all(&bundle).unwrap();
        std::fs::create_dir(&bundle).unwrap();
        for (name, _) in &old {
            std::fs::copy(shapes_dir().join("bundle").join(name), bundle.join(name)).unwrap();
        }
        let mut child = Command::new(bin("clip-quantize"))
            .args(&args)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(took.mul_f64(f64::from(step) / 12.0) + Duration::from_millis(1));
        let _ = child.kill();
        child.wait().unwrap();
        let files = snapshot(&bundle).0;
        if files == old {
            saw_old += 1;
        } else if files == new {
            saw_new += 1;
        } else {
            panic!(
                "after a kill at step {step}: neither the old nor the new bundle: {:?}",
                files.iter().map(|f| &f.0).collect::<Vec<_>>()
            );
        }
        let classify = Command::new(bin("clip-edge"))
            .args([
                "classify",
                "--bundle",
                bundle.to_str().unwrap(),
                img.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            classify.status.success(),
            "step {step}: {}",
            stderr(&classify)
        );
    }
    eprintln!("killed 12 times: {saw_old} old bundles, {saw_new} new ones");
    assert!(saw_old > 0, "no kill landed before the swap");
}

#[test]
fn a_full_disk_while_quantizing_keeps_the_old_model() {
    let dir = scratch("quantize-full");
    let out_path = dir.join("int8.onnx");
    std::fs::write(&out_path, b"the previous int8 model").unwrap();
    let model = shapes_dir().join("image_encoder.onnx");
    let out = quantize_limited(
        &[
            "quantize",
            "--model",
            model.to_str().unwrap(),
            "--out",
            out_path.to_str().unwrap(),
        ],
        64 << 10,
        true,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("int8.onnx"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&out_path).unwrap(),
        b"the previous int8 model"
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
}
