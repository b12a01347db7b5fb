//! The CLIP ONNX files model hubs publish (issue 22), from file to `classify` with
//! default options: split towers (`vision_model.onnx` with an extra
//! `last_hidden_state` output, `text_model.onnx` with an attention mask) and one
//! combined `model.onnx`, each in fp32, fp16 and onnxruntime's dynamic int8, and the
//! split image tower as onnxruntime's static QDQ int8 (issue 14). The
//! fixtures are made by `models/export/export_hub_layouts.py` with the publishers'
//! exporter and settings; each file's embeddings are checked against ONNX Runtime's
//! on that same file (`<stem>.ort_{image,text}_embeds.npy`, from
//! `models/fixtures/ort_reference.py`).

use clip_edge_bundle::LabelTable;
use clip_edge_core::Classifier;
use clip_edge_e2e::{
    assert_clean_failure, cosine, json_lines, make_bundle, make_labels, npy_rows, repo_root, run,
    scratch, shapes_dir, shapes_samples, stdout,
};
use std::path::{Path, PathBuf};

/// Every hub fixture: (file, has an image tower, has a text tower).
fn hub_files() -> Vec<(PathBuf, bool, bool)> {
    let fixtures = repo_root().join("models/fixtures");
    let mut files = Vec::new();
    for variant in ["", "_fp16", "_quantized"] {
        let split = fixtures.join("hub-split");
        files.push((
            split.join(format!("vision_model{variant}.onnx")),
            true,
            false,
        ));
        files.push((split.join(format!("text_model{variant}.onnx")), false, true));
        let combined = fixtures.join("hub-combined");
        files.push((combined.join(format!("model{variant}.onnx")), true, true));
    }
    files.push((
        fixtures.join("hub-split/vision_model_qdq.onnx"),
        true,
        false,
    ));
    files
}

/// The cosine to ONNX Runtime required: 0.9999 for fp32 files and 0.999 for fp16
/// (computed in f32 here), as issue 22 asks; 0.99999 for onnxruntime's int8, whose
/// arithmetic the bundle keeps exactly (measured 1.0000000; a text tower run in
/// batches, each batch sharing one activation scale, gives 0.99941). A QDQ file's
/// bundle keeps its arithmetic, matmuls on int8, as issue 14 asks 0.999 (measured
/// min 0.99965 over 156 images; the attention's activation × activation matmuls
/// run in f32 on the rounded values, where ONNX Runtime uses integers).
fn min_cosine(file: &Path) -> f64 {
    let stem = file.file_stem().unwrap().to_str().unwrap();
    if stem.ends_with("_qdq") {
        0.999
    } else if stem.ends_with("_quantized") {
        0.99999
    } else if stem.ends_with("_fp16") {
        0.999
    } else {
        0.9999
    }
}

/// ONNX Runtime's `kind` embeddings (`image` or `text`) by `file`.
fn reference(file: &Path, kind: &str) -> Vec<Vec<f32>> {
    let stem = file.file_stem().unwrap().to_str().unwrap();
    npy_rows(&file.with_file_name(format!("{stem}.ort_{kind}_embeds.npy")))
}

/// The smallest cosine between the bundle's embeddings of the samples and `expected`.
fn min_image_cosine(bundle: &Path, expected: &[Vec<f32>]) -> f64 {
    let mut classifier = Classifier::load(bundle).unwrap();
    let images = shapes_samples();
    assert_eq!(images.len(), expected.len());
    let mut worst = 1f64;
    for (image, expected) in images.iter().zip(expected) {
        let rgb = image::open(image).unwrap().to_rgb8();
        worst = worst.min(cosine(classifier.embed(&rgb).unwrap(), expected));
    }
    worst
}

fn name(file: &Path) -> String {
    let dir = file
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    format!("{dir}/{}", file.file_name().unwrap().to_str().unwrap())
}

#[test]
fn every_hub_text_tower_embeds_labels_like_onnx_runtime() {
    let dir = scratch("hub-layouts-text");
    let labels_txt = shapes_dir().join("labels.txt");
    for (file, _, text) in hub_files() {
        if !text {
            continue;
        }
        let out = dir.join(format!("{}.safetensors", name(&file).replace('/', "-")));
        make_labels(&file, &labels_txt, &out);
        let table = LabelTable::load(&out).unwrap();
        let expected = reference(&file, "text");
        assert_eq!(table.len(), expected.len(), "{}", name(&file));
        let worst = (0..table.len())
            .map(|i| cosine(table.row(i).unwrap(), &expected[i]))
            .fold(1f64, f64::min);
        assert!(
            worst >= min_cosine(&file),
            "{}: label embedding cosine to ONNX Runtime {worst:.6} < {}",
            name(&file),
            min_cosine(&file)
        );
        eprintln!(
            "{}: text min cosine to ONNX Runtime {worst:.7}",
            name(&file)
        );
    }
}

#[test]
fn every_hub_image_tower_bundles_and_classifies_like_onnx_runtime() {
    let dir = scratch("hub-layouts-image");
    let labels = dir.join("labels.safetensors");
    let split_text = repo_root().join("models/fixtures/hub-split/text_model.onnx");
    make_labels(&split_text, &shapes_dir().join("labels.txt"), &labels);
    let images = shapes_samples();
    for (file, image, _) in hub_files() {
        if !image {
            continue;
        }
        let bundle = dir.join(name(&file).replace('/', "-"));
        make_bundle(&file, &labels, &bundle, &[]);
        let manifest = std::fs::read_to_string(bundle.join("bundle.toml")).unwrap();
        // onnxruntime's dynamic int8 and QDQ files keep their integer arithmetic.
        let precision = if name(&file).contains("_quantized") || name(&file).contains("_qdq") {
            "int8"
        } else {
            "fp32"
        };
        assert!(
            manifest.contains(&format!("precision = \"{precision}\"")),
            "{}: {manifest}",
            name(&file)
        );
        // The board's graph has the embedding as its one output.
        let nnef = std::process::Command::new("tar")
            .arg("-xOf")
            .arg(bundle.join("model.nnef.tar"))
            .arg("graph.nnef")
            .output()
            .unwrap();
        let header = stdout(&nnef);
        assert!(
            header.contains("-> (image_embeds)"),
            "{}: {}",
            name(&file),
            header
                .lines()
                .find(|l| l.starts_with("graph"))
                .unwrap_or("")
        );

        let worst = min_image_cosine(&bundle, &reference(&file, "image"));
        assert!(
            worst >= min_cosine(&file),
            "{}: image embedding cosine to ONNX Runtime {worst:.6} < {}",
            name(&file),
            min_cosine(&file)
        );
        eprintln!(
            "{}: image min cosine to ONNX Runtime {worst:.7}",
            name(&file)
        );

        let mut args = vec!["classify", "--bundle", bundle.to_str().unwrap(), "--json"];
        args.extend(images.iter().map(|p| p.to_str().unwrap()));
        let out = run("clip-edge", &args);
        assert!(out.status.success(), "{}", name(&file));
        assert_eq!(json_lines(&stdout(&out)).len(), images.len());
    }
}

#[test]
fn the_wrong_tower_or_output_fails_naming_the_flag_and_the_files_outputs() {
    let dir = scratch("hub-layouts-errors");
    let split = repo_root().join("models/fixtures/hub-split");
    let text = split.join("text_model.onnx");
    let vision = split.join("vision_model.onnx");
    let labels = dir.join("labels.safetensors");
    make_labels(&text, &shapes_dir().join("labels.txt"), &labels);
    let out = run(
        "clip-quantize",
        &[
            "bundle",
            "--image-model",
            text.to_str().unwrap(),
            "--labels",
            labels.to_str().unwrap(),
            "--out",
            dir.join("b").to_str().unwrap(),
        ],
    );
    assert_clean_failure(
        &out,
        &[
            "--image-output",
            "outputs: text_embeds",
            "attention_mask int64",
        ],
    );
    let out = run(
        "clip-quantize",
        &[
            "labels",
            "--text-model",
            vision.to_str().unwrap(),
            "--text-output",
            "last_hidden_states",
            "--labels",
            shapes_dir().join("labels.txt").to_str().unwrap(),
            "--out",
            dir.join("l.safetensors").to_str().unwrap(),
        ],
    );
    assert_clean_failure(
        &out,
        &[
            "no output named \"last_hidden_states\"",
            "last_hidden_state float",
        ],
    );
    assert!(!dir.join("b").exists() && !dir.join("l.safetensors").exists());
}

/// `quantize` takes a hub fp16 file and a QDQ file to our int8. A QDQ file goes
/// back to the fp32 model it was quantized from first, so our int8 of it follows
/// that model (0.999) more closely than the file does (0.99).
#[test]
fn hub_image_towers_quantize_to_our_int8() {
    let dir = scratch("hub-layouts-quantize");
    let fixtures = repo_root().join("models/fixtures");
    let cases = [
        (
            "hub-combined/model_fp16.onnx",
            "hub-combined/model_fp16.onnx",
            0.999,
        ),
        (
            "hub-split/vision_model_qdq.onnx",
            "hub-split/vision_model_qdq.onnx",
            0.99,
        ),
        (
            "hub-split/vision_model_qdq.onnx",
            "hub-split/vision_model.onnx",
            0.999,
        ),
    ];
    for (i, (file, against, min)) in cases.into_iter().enumerate() {
        let model = fixtures.join(file);
        let int8 = dir.join(format!("int8-{i}.onnx"));
        let out = run(
            "clip-quantize",
            &[
                "quantize",
                "--model",
                model.to_str().unwrap(),
                "--out",
                int8.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", clip_edge_e2e::stderr(&out));
        let labels = dir.join(format!("labels-{i}.safetensors"));
        make_labels(
            &fixtures.join("hub-split/text_model.onnx"),
            &shapes_dir().join("labels.txt"),
            &labels,
        );
        let bundle = dir.join(format!("bundle-{i}"));
        make_bundle(&int8, &labels, &bundle, &[]);
        let manifest = std::fs::read_to_string(bundle.join("bundle.toml")).unwrap();
        assert!(
            manifest.contains("precision = \"int8\""),
            "{file}: {manifest}"
        );
        let worst = min_image_cosine(&bundle, &reference(&fixtures.join(against), "image"));
        eprintln!("our int8 of {file}: min cosine to ONNX Runtime on {against} {worst:.6}");
        assert!(
            worst >= min,
            "our int8 of {file} against {against}: cosine {worst:.6}"
        );
    }
}
