//! Model families other than CLIP, end to end: each tiny fixture of
//! `models/fixtures/<family>-tiny/` (made by `models/export/export_family.py`) is
//! bundled with the description its export wrote (input size, preprocessing,
//! scoring), fp32 and int8, and each bundle's embedding of the reference images is
//! compared with PyTorch's on the family's own reference processor
//! (`ort_image_embeds.npy`). The label table holds those reference embeddings, one
//! label per image, so `classify --json` must name each image after itself.

use clip_edge_bundle::{Bundle, LabelTable, ModelFamily, ResizeMode, ScoringRule};
use clip_edge_core::Classifier;
use clip_edge_e2e::{
    cosine, json_lines, make_bundle, npy_rows, repo_root, run, scratch, stderr, stdout,
};
use std::path::{Path, PathBuf};

/// The fixture's model.json.
fn model_json(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("model.json")).unwrap()).unwrap()
}

/// The reference images of a fixture, in the order of its reference rows.
fn reference_images(meta: &serde_json::Value) -> Vec<PathBuf> {
    let dir = repo_root().join("runtime/core/tests/fixtures/preprocess");
    meta["reference_images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| dir.join(n.as_str().unwrap()))
        .collect()
}

/// A label table whose labels are the images' names and whose rows are their
/// reference embeddings.
fn self_labels(images: &[PathBuf], reference: &[Vec<f32>], out: &Path) -> Vec<String> {
    let names: Vec<String> = images
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let table = LabelTable::new(
        names.clone(),
        vec!["{}".into()],
        "reference".into(),
        reference.to_vec(),
    )
    .unwrap();
    table.save(out).unwrap();
    names
}

/// Checks one bundle: its description, its embeddings against the reference
/// (cosine at least `min_cosine`), and that `classify --json` names each image after
/// itself with a probability in [0, 1]. Returns the smallest cosine.
fn check_bundle(
    name: &str,
    bundle: &Path,
    images: &[PathBuf],
    reference: &[Vec<f32>],
    names: &[String],
    min_cosine: f64,
) -> f64 {
    let mut classifier = Classifier::load(bundle).unwrap();
    let mut worst = 1f64;
    for (image, expected) in images.iter().zip(reference) {
        let rgb = clip_edge_core::image_io::load_rgb8(image).unwrap();
        let c = cosine(classifier.embed(&rgb).unwrap(), expected);
        // JPEG: the image crate's decoder differs from libjpeg-turbo (PIL) by a few
        // code values (runtime/core/tests/preprocess_parity.rs).
        let jpeg = image.extension().is_some_and(|e| e == "jpg");
        let min_cosine = if jpeg {
            min_cosine.min(0.999)
        } else {
            min_cosine
        };
        assert!(
            c >= min_cosine,
            "{name}, {}: cosine to the reference {c:.6} < {min_cosine}",
            image.display()
        );
        worst = worst.min(c);
    }
    let mut args = vec!["classify", "--bundle", bundle.to_str().unwrap(), "--json"];
    args.extend(images.iter().map(|p| p.to_str().unwrap()));
    let out = run("clip-edge", &args);
    assert!(out.status.success(), "{name}: {}", stderr(&out));
    let lines = json_lines(&stdout(&out));
    assert_eq!(lines.len(), images.len(), "{name}");
    for (i, line) in lines.iter().enumerate() {
        let top = &line["top"][0];
        let label = top["label"].as_str().unwrap();
        let j = names.iter().position(|n| n == label).unwrap();
        assert!(
            i == j || cosine(&reference[i], &reference[j]) > 0.999,
            "{name}: {} classified as {label}: {line}",
            names[i]
        );
        let prob = top["prob"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&prob), "{name}: {line}");
    }
    worst
}

#[test]
fn every_family_bundles_at_its_own_size_and_matches_its_reference() {
    let dir = scratch("families");
    for (fixture, family, side, resize, rule) in [
        (
            "siglip-tiny",
            ModelFamily::Siglip,
            224,
            ResizeMode::Squash,
            ScoringRule::Sigmoid,
        ),
        (
            "blip-tiny",
            ModelFamily::Blip,
            384,
            ResizeMode::Squash,
            ScoringRule::Softmax,
        ),
        (
            "mobileclip-tiny",
            ModelFamily::Mobileclip,
            256,
            ResizeMode::ShortestEdge,
            ScoringRule::Softmax,
        ),
    ] {
        let fixture_dir = repo_root().join("models/fixtures").join(fixture);
        let meta = model_json(&fixture_dir);
        let images = reference_images(&meta);
        let reference = npy_rows(&fixture_dir.join("ort_image_embeds.npy"));
        assert_eq!(reference.len(), images.len(), "{fixture}: stale reference");
        let labels = dir.join(format!("{fixture}-labels.safetensors"));
        let names = self_labels(&images, &reference, &labels);

        let fp32 = fixture_dir.join("image_encoder.onnx");
        let bundle = dir.join(fixture);
        make_bundle(&fp32, &labels, &bundle, &[]);
        let manifest = Bundle::load(&bundle).unwrap().manifest;
        assert_eq!(manifest.model.family, family, "{fixture}");
        assert_eq!(manifest.preprocess.crop_size, side, "{fixture}");
        assert_eq!(manifest.preprocess.resize, resize, "{fixture}");
        assert_eq!(manifest.scoring.rule, rule, "{fixture}");
        let worst = check_bundle(fixture, &bundle, &images, &reference, &names, 0.9999);
        eprintln!("{fixture} fp32: min cosine to the reference {worst:.7}");

        let int8 = dir.join(format!("{fixture}-int8.onnx"));
        let out = run(
            "clip-quantize",
            &[
                "quantize",
                "--model",
                fp32.to_str().unwrap(),
                "--out",
                int8.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{fixture}: {}", stderr(&out));
        let bundle8 = dir.join(format!("{fixture}-int8"));
        // The int8 file is away from model.json: it carries the description itself.
        make_bundle(&int8, &labels, &bundle8, &[]);
        let manifest8 = Bundle::load(&bundle8).unwrap().manifest;
        assert_eq!(manifest8.preprocess, manifest.preprocess, "{fixture}");
        assert_eq!(manifest8.scoring, manifest.scoring, "{fixture}");
        let worst = check_bundle(
            &format!("{fixture}-int8"),
            &bundle8,
            &images,
            &reference,
            &names,
            0.99,
        );
        eprintln!("{fixture} int8: min cosine to the reference {worst:.7}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// BLIP's and SigLIP's text side from the export: `clip-quantize labels` on the
/// tiny text tower, its family and tokenizer.json found beside it, gives ONNX
/// Runtime's embeddings of the prompts (`ort_text_embeds.npy`, made by
/// `models/export/export_text.py`), normalised; the table bundles with the
/// family's image tower and `classify --json` scores with the family's rule.
#[test]
fn blip_and_siglip_label_tables_come_from_their_own_text_towers() {
    let dir = scratch("family-text");
    let templates = dir.join("templates.txt");
    std::fs::write(&templates, "{}\n").unwrap();
    for fixture in ["blip-tiny", "siglip-tiny"] {
        let fixture_dir = repo_root().join("models/fixtures").join(fixture);
        let text: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixture_dir.join("text.json")).unwrap())
                .unwrap();
        let prompts: Vec<&str> = text["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        let labels_txt = dir.join(format!("{fixture}.txt"));
        std::fs::write(&labels_txt, prompts.join("\n") + "\n").unwrap();
        let labels = dir.join(format!("{fixture}.safetensors"));
        let out = run(
            "clip-quantize",
            &[
                "labels",
                "--text-model",
                fixture_dir.join("text_encoder.onnx").to_str().unwrap(),
                "--labels",
                labels_txt.to_str().unwrap(),
                "--templates",
                templates.to_str().unwrap(),
                "--out",
                labels.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{fixture}: {}", stderr(&out));
        let table = LabelTable::load(&labels).unwrap();
        let reference = npy_rows(&fixture_dir.join("ort_text_embeds.npy"));
        assert_eq!(table.len(), reference.len(), "{fixture}");
        for (i, (prompt, expected)) in prompts.iter().zip(&reference).enumerate() {
            let norm = expected.iter().map(|x| x * x).sum::<f32>().sqrt();
            let row = &table.embeddings()[i * table.dim()..(i + 1) * table.dim()];
            let diff = row
                .iter()
                .zip(expected)
                .map(|(a, b)| (a - b / norm).abs())
                .fold(0f32, f32::max);
            assert!(
                diff < 1e-5,
                "{fixture} {prompt:?}: label row differs from ONNX Runtime's by {diff:e}"
            );
        }
        let bundle = dir.join(format!("{fixture}-bundle"));
        make_bundle(
            &fixture_dir.join("image_encoder.onnx"),
            &labels,
            &bundle,
            &[],
        );
        let image = repo_root().join("models/shapes/samples/red_triangle.png");
        let out = run(
            "clip-edge",
            &[
                "classify",
                "--bundle",
                bundle.to_str().unwrap(),
                "--json",
                "--top-k",
                "4",
                image.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{fixture}: {}", stderr(&out));
        let lines = json_lines(&stdout(&out));
        let top = lines[0]["top"].as_array().unwrap();
        assert_eq!(top.len(), 4, "{fixture}");
        let probs: f64 = top.iter().map(|t| t["prob"].as_f64().unwrap()).sum();
        match Bundle::load(&bundle).unwrap().manifest.scoring.rule {
            // Softmax over all four labels sums to one; sigmoids need not.
            ScoringRule::Softmax => assert!((probs - 1.0).abs() < 1e-4, "{fixture}: {probs}"),
            ScoringRule::Sigmoid => assert!(fixture.starts_with("siglip"), "{fixture}"),
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
