//! Every committed model, fp32 and int8, bundled with the default options (NNEF) and
//! with `--format onnx`, classified, and its embeddings compared with ONNX Runtime's
//! on the source file (`ort_image_embeds.npy`, written by
//! `models/fixtures/ort_reference.py`). Issue 21: since bundles became NNEF by default
//! no exact-GELU model (OpenCLIP's) could be bundled, and no test bundled one.

use clip_edge_core::Classifier;
use clip_edge_e2e::{
    cosine, json_lines, make_bundle, make_labels, npy_rows, repo_root, run, scratch, shapes_dir,
    shapes_samples, stderr, stdout,
};
use std::path::{Path, PathBuf};

/// The sample images, in the order of the rows of `ort_image_embeds.npy`.
fn samples() -> Vec<PathBuf> {
    shapes_samples()
}

/// ONNX Runtime's embeddings of the samples by `dir/image_encoder.onnx`, one row each.
fn ort_embeddings(dir: &Path) -> Vec<Vec<f32>> {
    npy_rows(&dir.join("ort_image_embeds.npy"))
}

/// The top label of each sample, through `clip-edge classify --json`.
fn top_labels(bundle: &Path, images: &[PathBuf]) -> Vec<String> {
    let mut args = vec!["classify", "--bundle", bundle.to_str().unwrap(), "--json"];
    args.extend(images.iter().map(|p| p.to_str().unwrap()));
    let out = run("clip-edge", &args);
    assert!(out.status.success(), "{}", stderr(&out));
    json_lines(&stdout(&out))
        .iter()
        .map(|v| v["top"][0]["label"].as_str().unwrap().to_string())
        .collect()
}

/// Bundles `model` both ways, checks each bundle's embeddings against ONNX Runtime's on
/// the source model (cosine at least `min_cosine`), and that both classify the samples
/// alike. Returns the smallest cosine seen.
fn check_both_formats(
    name: &str,
    model: &Path,
    labels: &Path,
    reference: &[Vec<f32>],
    min_cosine: f64,
    dir: &Path,
) -> f64 {
    let images = samples();
    let mut worst = 1f64;
    let mut tops = Vec::new();
    for (format, extra) in [("nnef", &[][..]), ("onnx", &["--format", "onnx"][..])] {
        let bundle = dir.join(format!("{name}-{format}"));
        make_bundle(model, labels, &bundle, extra);
        let manifest = std::fs::read_to_string(bundle.join("bundle.toml")).unwrap();
        assert!(
            manifest.contains(&format!("format = \"{format}\"")),
            "{name}: {manifest}"
        );
        let mut classifier = Classifier::load(&bundle).unwrap();
        for (image, expected) in images.iter().zip(reference) {
            let rgb = image::open(image).unwrap().to_rgb8();
            let c = cosine(classifier.embed(&rgb).unwrap(), expected);
            assert!(
                c >= min_cosine,
                "{name} ({format}), {}: cosine to ONNX Runtime {c:.6} < {min_cosine}",
                image.display()
            );
            worst = worst.min(c);
        }
        tops.push(top_labels(&bundle, &images));
    }
    assert_eq!(tops[0], tops[1], "{name}: NNEF and ONNX bundles disagree");
    worst
}

#[test]
fn every_model_bundles_both_ways_and_matches_onnx_runtime() {
    let dir = scratch("bundle-matrix");
    let models = [
        repo_root().join("models/fixtures/hf-tiny"),
        repo_root().join("models/fixtures/openclip-tiny"),
        shapes_dir(),
    ];
    for model_dir in models {
        let name = model_dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let reference = ort_embeddings(&model_dir);
        assert_eq!(reference.len(), samples().len(), "{name}: stale reference");
        let labels = dir.join(format!("{name}-labels.safetensors"));
        make_labels(
            &model_dir.join("text_encoder.onnx"),
            &shapes_dir().join("labels.txt"),
            &labels,
        );

        let fp32 = model_dir.join("image_encoder.onnx");
        let worst = check_both_formats(&name, &fp32, &labels, &reference, 0.9999, &dir);
        eprintln!("{name} fp32: min cosine to ONNX Runtime {worst:.7}");

        let int8 = dir.join(format!("{name}-int8.onnx"));
        let args = ["quantize", "--model", fp32.to_str().unwrap(), "--out"];
        let out = run(
            "clip-quantize",
            &[&args[..], &[int8.to_str().unwrap()]].concat(),
        );
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let name = format!("{name}-int8");
        let worst = check_both_formats(&name, &int8, &labels, &reference, 0.999, &dir);
        eprintln!("{name}: min cosine to ONNX Runtime (fp32 source) {worst:.7}");
    }
}
