//! The bundled shapes model end to end: demo, zero-shot accuracy on the held-out
//! eval set, and the committed bundle being what the tools make from the exports.

use clip_edge_e2e::{
    classify_top1, make_bundle, make_labels, run, scratch, shapes_dir, stderr, stdout,
};

#[test]
fn demo_classifies_every_sample_correctly() {
    let out = run("clip-edge", &["demo"]);
    let text = stdout(&out);
    assert!(out.status.success(), "demo failed: {}", stderr(&out));
    let samples = std::fs::read_dir(shapes_dir().join("samples"))
        .unwrap()
        .count();
    assert!(samples >= 4, "too few samples");
    let ok_lines = text
        .lines()
        .filter(|l| l.trim_end().ends_with(" ok"))
        .count();
    assert_eq!(ok_lines, samples, "demo output:\n{text}");
    assert!(!text.contains("WRONG"), "{text}");
    assert!(
        text.contains(&format!("{samples} of {samples} images")),
        "{text}"
    );
}

/// Zero-shot top-1 of a committed shapes bundle on the eval set.
fn eval_top1(bundle_name: &str) -> f64 {
    classify_top1(&shapes_dir().join(bundle_name))
}

#[test]
fn zero_shot_top1_on_the_eval_set_is_at_least_90_percent() {
    let fp32 = eval_top1("bundle");
    assert!(fp32 >= 0.90, "fp32 top-1 {fp32:.3} < 0.90");
    let int8 = eval_top1("bundle-int8");
    assert!(int8 >= 0.90, "int8 top-1 {int8:.3} < 0.90");
    assert!(
        int8 >= fp32 - 0.01,
        "int8 {int8:.4} more than 1 point below fp32 {fp32:.4}"
    );
}

#[test]
fn committed_int8_bundle_is_what_quantize_makes() {
    let dir = scratch("rebuild-int8");
    let shapes = shapes_dir();
    let int8 = dir.join("int8.onnx");
    let out = run(
        "clip-quantize",
        &[
            "quantize",
            "--model",
            shapes.join("image_encoder.onnx").to_str().unwrap(),
            "--out",
            int8.to_str().unwrap(),
            "--calibration",
            shapes.join("samples").to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let bundle = dir.join("bundle");
    make_bundle(
        &int8,
        &shapes.join("bundle-int8/labels.safetensors"),
        &bundle,
        &[],
    );
    let committed = std::fs::read(shapes.join("bundle-int8/model.nnef.tar")).unwrap();
    assert!(
        committed == std::fs::read(bundle.join("model.nnef.tar")).unwrap(),
        "models/shapes/bundle-int8/model.nnef.tar is stale: run `just shapes-bundle`"
    );
    let manifest = std::fs::read_to_string(shapes.join("bundle-int8/bundle.toml")).unwrap();
    assert!(manifest.contains("precision = \"int8\""), "{manifest}");
    assert!(manifest.contains("format = \"nnef\""), "{manifest}");
}

/// `--format onnx` keeps the ONNX file in the bundle; both formats classify alike
/// (the NNEF model is tract's own decluttered form of the same graph).
#[test]
fn onnx_and_nnef_bundles_give_the_same_answers() {
    let dir = scratch("onnx-format");
    let shapes = shapes_dir();
    let bundle = dir.join("bundle");
    make_bundle(
        &shapes.join("image_encoder.onnx"),
        &shapes.join("bundle/labels.safetensors"),
        &bundle,
        &["--format", "onnx"],
    );
    assert!(bundle.join("model.onnx").is_file());
    assert!(!bundle.join("model.nnef.tar").exists());
    let manifest = std::fs::read_to_string(bundle.join("bundle.toml")).unwrap();
    assert!(manifest.contains("format = \"onnx\""), "{manifest}");
    let images: Vec<String> = std::fs::read_dir(shapes.join("samples"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    let classify = |b: &std::path::Path| {
        let mut args = vec!["classify", "--bundle", b.to_str().unwrap(), "--json"];
        args.extend(images.iter().map(String::as_str));
        let out = run("clip-edge", &args);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let onnx = classify(&bundle);
    assert_eq!(onnx.lines().count(), images.len());
    assert_eq!(onnx, classify(&shapes.join("bundle")));
}

#[test]
fn committed_bundle_is_what_the_tools_make_from_the_exports() {
    let dir = scratch("rebuild");
    let labels = dir.join("labels.safetensors");
    let shapes = shapes_dir();
    make_labels(
        &shapes.join("text_encoder.onnx"),
        &shapes.join("labels.txt"),
        &labels,
    );
    let bundle = dir.join("bundle");
    make_bundle(&shapes.join("image_encoder.onnx"), &labels, &bundle, &[]);

    let committed = shapes.join("bundle");
    let model = std::fs::read(committed.join("model.nnef.tar")).unwrap();
    assert!(
        model == std::fs::read(bundle.join("model.nnef.tar")).unwrap(),
        "models/shapes/bundle/model.nnef.tar is stale: run `just shapes-bundle`"
    );
    let a = clip_edge_bundle::LabelTable::load(&committed.join("labels.safetensors")).unwrap();
    let b = clip_edge_bundle::LabelTable::load(&bundle.join("labels.safetensors")).unwrap();
    assert_eq!(a.labels(), b.labels());
    assert_eq!(a.templates(), b.templates());
    assert_eq!(a.text_model_sha256(), b.text_model_sha256());
    let max_diff = a
        .embeddings()
        .iter()
        .zip(b.embeddings())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(max_diff < 1e-4, "label embeddings differ by {max_diff}");
    // The rebuilt bundle loads and classifies like the committed one.
    let sample = std::fs::read_dir(shapes.join("samples"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let top = |b: &std::path::Path| {
        let out = run(
            "clip-edge",
            &[
                "classify",
                "--bundle",
                b.to_str().unwrap(),
                "--json",
                sample.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        v["top"][0]["label"].as_str().unwrap().to_string()
    };
    assert_eq!(top(&committed), top(&bundle));
}
