//! Helpers the `clip-quantize` integration tests share: the repository, scratch
//! folders, running the binary, and its JSON outputs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clip-quantize-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn quantize_cmd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clip-quantize"))
        .args(args)
        .output()
        .unwrap()
}

pub fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

pub fn eval_json(
    fp32: &Path,
    int8: &Path,
    images: &Path,
    labels: Option<&Path>,
) -> serde_json::Value {
    let mut args = vec![
        "eval".to_string(),
        "--fp32".into(),
        fp32.display().to_string(),
        "--int8".into(),
        int8.display().to_string(),
        "--images".into(),
        images.display().to_string(),
        "--json".into(),
    ];
    if let Some(l) = labels {
        args.extend(["--labels".into(), l.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = quantize_cmd(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_str(text(&out.stdout).trim()).unwrap()
}

/// Runs `quantize --model FP32 --out DIR/TAG.onnx --report DIR/TAG.json EXTRA...`,
/// asserts it succeeds, and returns its output and the report.
pub fn quantize_with_report(
    dir: &Path,
    fp32: &Path,
    tag: &str,
    extra: &[&str],
) -> (Output, serde_json::Value) {
    let int8 = dir.join(format!("{tag}.onnx"));
    let report = dir.join(format!("{tag}.json"));
    let mut args = vec![
        "quantize",
        "--model",
        fp32.to_str().unwrap(),
        "--out",
        int8.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ];
    args.extend(extra);
    let out = quantize_cmd(&args);
    assert!(out.status.success(), "{tag}: {}", text(&out.stderr));
    let r = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    (out, r)
}

/// Quantizes `fp32` with `extra` arguments (as [`quantize_with_report`]) and returns
/// the eval figures on the shapes eval images and the report.
pub fn quantize_and_eval(
    dir: &Path,
    fp32: &Path,
    tag: &str,
    extra: &[&str],
) -> (serde_json::Value, serde_json::Value) {
    let (_, r) = quantize_with_report(dir, fp32, tag, extra);
    let int8 = dir.join(format!("{tag}.onnx"));
    let e = eval_json(fp32, &int8, &repo().join("models/shapes/eval"), None);
    eprintln!(
        "{tag}: cosine mean {} min {}",
        e["cosine_mean"], e["cosine_min"]
    );
    (e, r)
}
