//! The model description (family, input size, preprocessing, scoring) follows a
//! model from its export through `quantize` into the bundle's manifest, and a model
//! nothing describes is refused with the flags that describe it.

mod common;

use common::{quantize_cmd, repo, scratch, text};
use std::path::Path;

/// `clip-quantize labels` for the openclip-tiny text tower on the shapes labels.
fn openclip_labels(dir: &Path) -> std::path::PathBuf {
    let labels = dir.join("labels.safetensors");
    let out = quantize_cmd(&[
        "labels",
        "--text-model",
        repo()
            .join("models/fixtures/openclip-tiny/text_encoder.onnx")
            .to_str()
            .unwrap(),
        "--labels",
        repo().join("models/shapes/labels.txt").to_str().unwrap(),
        "--out",
        labels.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    labels
}

fn bundle(model: &Path, labels: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let args = [
        "bundle",
        "--image-model",
        model.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    quantize_cmd(&[&args[..], extra].concat())
}

#[test]
fn the_description_follows_the_model_through_quantize_into_the_bundle() {
    let dir = scratch("describe-openclip");
    let labels = openclip_labels(&dir);
    let fp32 = repo().join("models/fixtures/openclip-tiny/image_encoder.onnx");
    // The int8 file is written away from the export's model.json.
    let int8 = dir.join("elsewhere.int8.onnx");
    let out = quantize_cmd(&[
        "quantize",
        "--model",
        fp32.to_str().unwrap(),
        "--out",
        int8.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for (name, model) in [("fp32", &fp32), ("int8", &int8)] {
        let b = dir.join(name);
        let out = bundle(model, &labels, &b, &[]);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        let manifest = std::fs::read_to_string(b.join("bundle.toml")).unwrap();
        // OpenCLIP's transforms crop with torchvision's rounding; the export's
        // learned (random-init) logit scale is 1/0.07.
        assert!(
            manifest.contains("crop_offset = \"round\""),
            "{name}: {manifest}"
        );
        assert!(
            manifest.contains("logit_scale = 14.2857"),
            "{name}: {manifest}"
        );
    }
    // Flags win over the description.
    let b = dir.join("flags");
    let out = bundle(
        &int8,
        &labels,
        &b,
        &["--family", "clip", "--logit-scale", "100"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let manifest = std::fs::read_to_string(b.join("bundle.toml")).unwrap();
    assert!(!manifest.contains("crop_offset"), "{manifest}");
    assert!(manifest.contains("logit_scale = 100.0"), "{manifest}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_scoring_flags_are_refused_before_anything_is_written() {
    let dir = scratch("describe-bad-scoring");
    let labels = openclip_labels(&dir);
    let fp32 = repo().join("models/fixtures/openclip-tiny/image_encoder.onnx");
    for (extra, needle) in [
        (
            &["--logit-bias", "-10"][..],
            "--logit-bias only applies to sigmoid",
        ),
        (&["--scoring", "sigmoid"][..], "--logit-bias"),
        (
            &["--logit-scale", "-1"][..],
            "--logit-scale must be a positive number",
        ),
        (
            &["--family", "siglip"][..],
            "--logit-scale S --logit-bias B",
        ),
        (
            &["--family", "clip", "--model-config", "x.json"][..],
            "cannot be used with",
        ),
    ] {
        let b = dir.join("bundle");
        let out = bundle(&fp32, &labels, &b, extra);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{extra:?} succeeded");
        assert!(stderr.contains(needle), "{extra:?}: {stderr}");
        assert!(!b.join("bundle.toml").exists(), "{extra:?} wrote a bundle");
    }
    // A sigmoid with its scale and bias is accepted.
    let b = dir.join("sigmoid");
    let out = bundle(
        &fp32,
        &labels,
        &b,
        &[
            "--scoring",
            "sigmoid",
            "--logit-scale",
            "10",
            "--logit-bias",
            "-10",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let manifest = std::fs::read_to_string(b.join("bundle.toml")).unwrap();
    assert!(
        manifest.contains("rule = \"sigmoid\"") && manifest.contains("logit_bias = -10.0"),
        "{manifest}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
