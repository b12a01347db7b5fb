//! Helpers for the end-to-end tests in `tests/tests/`: locating the built
//! `clip-edge` and `clip-quantize` binaries and running them.
//!
//! The binaries are looked up beside the test executable (`target/<profile>/`), so
//! build them first (`cargo build --release --workspace` — `just test` does). Set
//! `CLIP_EDGE_BIN_DIR` to test binaries from elsewhere.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// `models/shapes` in the repository.
pub fn shapes_dir() -> PathBuf {
    repo_root().join("models/shapes")
}

/// Directory holding the built binaries.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CLIP_EDGE_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // target/<profile>/deps/<test-exe> -> target/<profile>
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .expect("test executable lives in target/<profile>/deps")
}

/// Path of a built binary; panics with a hint when it is missing.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} not built: run `cargo build --release --workspace` first (or `just test`)",
        path.display()
    );
    path
}

/// Runs a binary with arguments, in the repository root.
pub fn run(name: &str, args: &[&str]) -> Output {
    Command::new(bin(name))
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"))
}

/// Standard output as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a run failed cleanly: non-zero exit, no panic, and an `error:` line on
/// stderr that contains every one of `needles`.
pub fn assert_clean_failure(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    assert!(!err.contains("panicked"), "panicked: {err}");
    assert_eq!(out.status.code(), Some(1), "exit code; stderr: {err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no `error:` line in stderr: {err}"));
    for needle in needles {
        assert!(
            line.contains(needle),
            "error line {line:?} lacks {needle:?}"
        );
    }
}

/// A fresh, empty scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clip-edge-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Copies the files of the folder `from` (a bundle) into `to`, created if missing.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy's folder");
    for entry in std::fs::read_dir(from).expect("read the folder to copy") {
        let path = entry.expect("read the folder to copy").path();
        let name = path.file_name().expect("a named file");
        std::fs::copy(&path, to.join(name)).expect("copy a file");
    }
}

/// Runs `clip-quantize bundle --image-model MODEL --labels LABELS --out OUT EXTRA...`
/// and asserts it succeeds.
pub fn make_bundle(model: &Path, labels: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec![
        "bundle",
        "--image-model",
        model.to_str().expect("UTF-8 path"),
        "--labels",
        labels.to_str().expect("UTF-8 path"),
        "--out",
        out.to_str().expect("UTF-8 path"),
    ];
    args.extend(extra);
    let out = run("clip-quantize", &args);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Runs `clip-quantize labels --text-model TEXT_MODEL --labels LABELS_TXT --templates
/// photo --out OUT` and asserts it succeeds.
pub fn make_labels(text_model: &Path, labels_txt: &Path, out: &Path) {
    let run_out = run(
        "clip-quantize",
        &[
            "labels",
            "--text-model",
            text_model.to_str().expect("UTF-8 path"),
            "--labels",
            labels_txt.to_str().expect("UTF-8 path"),
            "--templates",
            "photo",
            "--out",
            out.to_str().expect("UTF-8 path"),
        ],
    );
    assert!(run_out.status.success(), "{}", stderr(&run_out));
}

/// Parses JSON lines (`classify --json`, `run --json`): one object per line, failing
/// the test with the line that is not JSON.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The shapes model's sample images (`models/shapes/samples/*.png`), sorted by name.
pub fn shapes_samples() -> Vec<PathBuf> {
    let mut images: Vec<PathBuf> = std::fs::read_dir(shapes_dir().join("samples"))
        .expect("models/shapes/samples")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    images.sort();
    images
}

/// The rows of a 2-D f32 `.npy` file (ONNX Runtime's reference embeddings, written
/// by `models/fixtures/ort_reference.py`).
pub fn npy_rows(path: &Path) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).expect("an .npy file");
    let shape = npy.shape().to_vec();
    let values: Vec<f32> = npy.into_vec().expect("f32 values");
    assert_eq!(shape.len(), 2, "{}: shape {shape:?}", path.display());
    values
        .chunks(shape[1] as usize)
        .map(<[f32]>::to_vec)
        .collect()
}

/// The cosine of two vectors, in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// The shapes eval set (`models/shapes/eval/<colour>_<shape>/*.png`, 150 images
/// no model trained on) as (label, image), sorted by path: the order `run`'s `dir:`
/// source reads them in.
pub fn shapes_eval_set() -> Vec<(String, PathBuf)> {
    let mut images = Vec::new();
    let classes = std::fs::read_dir(shapes_dir().join("eval")).expect("models/shapes/eval");
    for class in classes {
        let class = class.expect("a directory entry").path();
        let label = class
            .file_name()
            .expect("a class folder")
            .to_string_lossy()
            .replace('_', " ");
        for image in std::fs::read_dir(&class).expect("a class folder") {
            images.push((label.clone(), image.expect("a directory entry").path()));
        }
    }
    images.sort_by(|a, b| a.1.cmp(&b.1));
    images
}

/// Zero-shot top-1 of a bundle on [`shapes_eval_set`] through `clip-edge classify
/// --json --top-k 3`, checking every line's shape (the image, three labels sorted by
/// probability, cosines within [-1, 1]).
pub fn classify_top1(bundle: &Path) -> f64 {
    let images = shapes_eval_set();
    assert!(images.len() >= 50, "eval set too small: {}", images.len());
    let mut args = vec![
        "classify".to_string(),
        "--bundle".into(),
        bundle.display().to_string(),
        "--json".into(),
        "--top-k".into(),
        "3".into(),
    ];
    args.extend(images.iter().map(|(_, p)| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run("clip-edge", &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&stdout(&out));
    assert_eq!(lines.len(), images.len());
    let mut correct = 0;
    for ((label, path), line) in images.iter().zip(&lines) {
        assert_eq!(
            line["image"].as_str(),
            Some(path.display().to_string().as_str())
        );
        let top = line["top"].as_array().expect("a top list");
        assert_eq!(top.len(), 3);
        let probs: Vec<f64> = top
            .iter()
            .map(|t| t["prob"].as_f64().expect("prob"))
            .collect();
        assert!(probs.windows(2).all(|w| w[0] >= w[1]), "not sorted: {line}");
        assert!(top
            .iter()
            .all(|t| t["score"].as_f64().is_some_and(|s| s.abs() <= 1.0 + 1e-5)));
        if top[0]["label"].as_str() == Some(label.as_str()) {
            correct += 1;
        }
    }
    let accuracy = correct as f64 / images.len() as f64;
    eprintln!(
        "{}: classify zero-shot top-1 {correct}/{} = {accuracy:.4}",
        bundle.display(),
        images.len()
    );
    accuracy
}

/// Zero-shot top-1 of a bundle on [`shapes_eval_set`] through `clip-edge run
/// --source dir:models/shapes/eval --json`, one frame line per image in order.
pub fn run_top1(bundle: &Path) -> f64 {
    let images = shapes_eval_set();
    let source = format!("dir:{}", shapes_dir().join("eval").display());
    let bundle = bundle.display().to_string();
    let out = run(
        "clip-edge",
        &["run", "--bundle", &bundle, "--source", &source, "--json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&stdout(&out));
    let frames: Vec<&serde_json::Value> = lines.iter().filter(|v| v["type"] == "frame").collect();
    assert_eq!(frames.len(), images.len());
    let mut correct = 0;
    for ((label, path), frame) in images.iter().zip(&frames) {
        assert_eq!(
            frame["source"].as_str(),
            Some(path.display().to_string().as_str())
        );
        if frame["top"][0]["label"].as_str() == Some(label.as_str()) {
            correct += 1;
        }
    }
    let accuracy = correct as f64 / images.len() as f64;
    eprintln!(
        "{bundle}: run zero-shot top-1 {correct}/{} = {accuracy:.4}",
        images.len()
    );
    accuracy
}
