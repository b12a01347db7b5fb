//! Bad input gives a one-line error naming the file and the problem, exit code 1,
//! and never a panic.

use clip_edge_e2e::{
    assert_clean_failure, copy_dir, run, scratch, shapes_dir, shapes_samples, stdout,
};
use std::path::{Path, PathBuf};

fn copy_bundle(name: &str) -> PathBuf {
    let dir = scratch(name).join("bundle");
    copy_dir(&shapes_dir().join("bundle"), &dir);
    dir
}

fn sample() -> String {
    shapes_samples()[0].display().to_string()
}

fn classify(bundle: &Path, image: &str) -> std::process::Output {
    run(
        "clip-edge",
        &["classify", "--bundle", bundle.to_str().unwrap(), image],
    )
}

/// Rewrites one `key = value` line of the manifest.
fn edit_manifest(bundle: &Path, key: &str, value: &str) {
    let path = bundle.join("bundle.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut found = false;
    let edited: Vec<String> = text
        .lines()
        .map(|l| {
            if l.split('=').next().map(str::trim) == Some(key) {
                found = true;
                format!("{key} = {value}")
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(found, "no {key} in manifest");
    std::fs::write(&path, edited.join("\n")).unwrap();
}

#[test]
fn missing_bundle_directory() {
    let out = classify(Path::new("/no/such/bundle"), &sample());
    assert_clean_failure(&out, &["/no/such/bundle", "not found"]);
}

#[test]
fn corrupt_model_file_fails_its_hash() {
    let bundle = copy_bundle("corrupt-model");
    let model = bundle.join("model.nnef.tar");
    let mut bytes = std::fs::read(&model).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&model, bytes).unwrap();
    let out = classify(&bundle, &sample());
    // sha256, or BLAKE3 on a CPU without SHA-2 instructions.
    assert_clean_failure(&out, &["model.nnef.tar", "file changed or corrupt"]);
}

/// A model file that is damaged but whose hash was updated (so the hash check
/// passes) still fails with a clean error when tract reads it.
#[test]
fn damaged_model_with_matching_hash_fails_cleanly() {
    let bundle = copy_bundle("damaged-model");
    let model = bundle.join("model.nnef.tar");
    use clip_edge_bundle::{blake3_file, sha256_file};
    let old = [sha256_file(&model).unwrap(), blake3_file(&model).unwrap()];
    let bytes = std::fs::read(&model).unwrap();
    // Keep the tar header (so it is still taken for NNEF), cut the rest.
    std::fs::write(&model, &bytes[..2048]).unwrap();
    let new = [sha256_file(&model).unwrap(), blake3_file(&model).unwrap()];
    let manifest = bundle.join("bundle.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    for (old, new) in old.iter().zip(&new) {
        assert!(text.contains(old.as_str()), "{text}");
        text = text.replace(old.as_str(), new);
    }
    std::fs::write(&manifest, text).unwrap();
    let out = classify(&bundle, &sample());
    assert_clean_failure(&out, &["model.nnef.tar"]);
}

/// The NNEF model has its input size fixed when the bundle is made: a manifest that
/// asks for another size is refused, naming the fix.
#[test]
fn manifest_image_size_that_the_model_was_not_built_for() {
    let bundle = copy_bundle("size-mismatch");
    edit_manifest(&bundle, "crop_size", "160");
    edit_manifest(&bundle, "resize_shortest_edge", "160");
    let out = classify(&bundle, &sample());
    assert_clean_failure(&out, &["model.nnef.tar", "160", "rebuild the bundle"]);
}

#[test]
fn truncated_labels_file_fails_its_hash() {
    let bundle = copy_bundle("truncated-labels");
    let labels = bundle.join("labels.safetensors");
    let bytes = std::fs::read(&labels).unwrap();
    std::fs::write(&labels, &bytes[..bytes.len() / 2]).unwrap();
    let out = classify(&bundle, &sample());
    assert_clean_failure(&out, &["labels.safetensors", "sha256"]);
}

#[test]
fn manifest_dimension_that_disagrees_with_the_files() {
    let bundle = copy_bundle("dim-mismatch");
    edit_manifest(&bundle, "embedding_dim", "7");
    let out = classify(&bundle, &sample());
    assert_clean_failure(&out, &["labels.safetensors", "dimension", "7"]);
}

#[test]
fn manifest_label_count_that_disagrees() {
    let bundle = copy_bundle("count-mismatch");
    edit_manifest(&bundle, "count", "3");
    let out = classify(&bundle, &sample());
    assert_clean_failure(&out, &["labels.safetensors", "says 3"]);
}

#[test]
fn manifest_that_is_not_toml() {
    let bundle = copy_bundle("bad-toml");
    std::fs::write(bundle.join("bundle.toml"), "this is [not toml").unwrap();
    let out = classify(&bundle, &sample());
    assert_clean_failure(&out, &["bundle.toml", "invalid manifest"]);
}

#[test]
fn missing_model_file() {
    let bundle = copy_bundle("no-model");
    std::fs::remove_file(bundle.join("model.nnef.tar")).unwrap();
    let out = classify(&bundle, &sample());
    assert_clean_failure(&out, &["model.nnef.tar"]);
}

#[test]
fn bundle_directory_that_is_a_symlink_loop() {
    let dir = scratch("symlink-loop");
    let looped = dir.join("bundle");
    std::os::unix::fs::symlink(&looped, &looped).unwrap();
    let out = classify(&looped, &sample());
    assert_clean_failure(&out, &["bundle", "symbolic links"]);
}

#[test]
fn bundle_path_that_is_a_file() {
    let bundle = copy_bundle("bundle-is-a-file");
    let out = classify(&bundle.join("bundle.toml"), &sample());
    assert_clean_failure(&out, &["bundle.toml", "not a directory"]);
}

/// Replaces `file` of the bundle and records its new sha256 in the manifest, as an
/// edit that keeps the hashes consistent would.
fn replace_with_matching_hash(bundle: &Path, file: &str, bytes: &[u8]) {
    use clip_edge_bundle::sha256_file;
    let path = bundle.join(file);
    let old = sha256_file(&path).unwrap();
    std::fs::write(&path, bytes).unwrap();
    let manifest = bundle.join("bundle.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains(&old), "{text}");
    std::fs::write(&manifest, text.replace(&old, &sha256_file(&path).unwrap())).unwrap();
}

/// A label table whose embeddings hold NaN or infinity (hashes updated to match) is
/// refused, naming the label, rather than scoring every frame NaN.
#[test]
fn label_embeddings_that_are_not_finite() {
    for (name, bad) in [("nan", f32::NAN), ("inf", f32::INFINITY)] {
        let bundle = copy_bundle(&format!("labels-{name}"));
        let mut bytes = std::fs::read(bundle.join("labels.safetensors")).unwrap();
        // safetensors: 8-byte header length, JSON header, then the data.
        let data = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        bytes[data + 4..data + 8].copy_from_slice(&bad.to_le_bytes());
        replace_with_matching_hash(&bundle, "labels.safetensors", &bytes);
        let out = classify(&bundle, &sample());
        assert_clean_failure(&out, &["labels.safetensors", &format!("holds {bad}")]);
    }
}

/// The manifest edited to another embedding size, with a label table of that size:
/// the files agree with each other, but the model outputs another size.
#[test]
fn model_whose_output_dimension_differs_from_the_edited_manifest() {
    let bundle = copy_bundle("model-dim");
    let other =
        std::fs::read(shapes_dir().join("../fixtures/mobileclip-tiny/labels.safetensors")).unwrap();
    replace_with_matching_hash(&bundle, "labels.safetensors", &other);
    edit_manifest(&bundle, "embedding_dim", "32");
    edit_manifest(&bundle, "count", "10");
    let out = classify(&bundle, &sample());
    assert_clean_failure(&out, &["model.nnef.tar", "dimension 64", "says 32"]);
}

#[test]
fn file_that_is_not_an_image_is_reported_and_the_rest_still_classified() {
    let dir = scratch("not-an-image");
    let fake = dir.join("notes.png");
    std::fs::write(&fake, "this is text, not a PNG").unwrap();
    let bundle = shapes_dir().join("bundle");
    let good = sample();
    let out = run(
        "clip-edge",
        &[
            "classify",
            "--bundle",
            bundle.to_str().unwrap(),
            "--json",
            fake.to_str().unwrap(),
            &good,
        ],
    );
    assert_clean_failure(&out, &["notes.png"]);
    // The good image was still classified.
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
    assert!(stdout(&out).contains(&good));
}

#[test]
fn missing_image() {
    let out = classify(&shapes_dir().join("bundle"), "/no/such/image.jpg");
    assert_clean_failure(&out, &["/no/such/image.jpg"]);
}

fn labels_cmd(labels_text: &str, templates: &str, name: &str) -> std::process::Output {
    let dir = scratch(name);
    let labels = dir.join("labels.txt");
    std::fs::write(&labels, labels_text).unwrap();
    run(
        "clip-quantize",
        &[
            "labels",
            "--text-model",
            shapes_dir().join("text_encoder.onnx").to_str().unwrap(),
            "--labels",
            labels.to_str().unwrap(),
            "--templates",
            templates,
            "--out",
            dir.join("out.safetensors").to_str().unwrap(),
        ],
    )
}

#[test]
fn labels_file_with_duplicates() {
    let out = labels_cmd(
        "red circle\nblue square\nred circle\n",
        "photo",
        "dup-labels",
    );
    assert_clean_failure(&out, &["labels.txt:3", "duplicate label \"red circle\""]);
}

#[test]
fn labels_file_with_blank_line() {
    let out = labels_cmd("red circle\n\nblue square\n", "photo", "blank-labels");
    assert_clean_failure(&out, &["labels.txt:2", "blank line"]);
}

#[test]
fn template_without_placeholder() {
    let dir = scratch("bad-template");
    let templates = dir.join("templates.txt");
    std::fs::write(&templates, "a photo of a {}.\na photo of something.\n").unwrap();
    let out = labels_cmd(
        "red circle\n",
        templates.to_str().unwrap(),
        "bad-template-run",
    );
    assert_clean_failure(&out, &["templates.txt:2", "no {}"]);
}

#[test]
fn text_model_that_is_not_onnx() {
    let dir = scratch("bad-text-model");
    let model = dir.join("text.onnx");
    std::fs::write(&model, b"garbage bytes, not a protobuf").unwrap();
    let labels = dir.join("labels.txt");
    std::fs::write(&labels, "red circle\n").unwrap();
    let out = run(
        "clip-quantize",
        &[
            "labels",
            "--text-model",
            model.to_str().unwrap(),
            "--labels",
            labels.to_str().unwrap(),
            "--out",
            dir.join("out.safetensors").to_str().unwrap(),
        ],
    );
    assert_clean_failure(&out, &["text.onnx"]);
}

#[test]
fn image_model_that_is_not_onnx() {
    let dir = scratch("bad-image-model");
    let model = dir.join("image.onnx");
    std::fs::write(&model, b"\x08\x07garbage").unwrap();
    let out = run(
        "clip-quantize",
        &[
            "bundle",
            "--image-model",
            model.to_str().unwrap(),
            "--labels",
            shapes_dir()
                .join("bundle/labels.safetensors")
                .to_str()
                .unwrap(),
            "--out",
            dir.join("bundle").to_str().unwrap(),
        ],
    );
    assert_clean_failure(&out, &["image.onnx"]);
    assert!(!dir.join("bundle/bundle.toml").exists());
}

#[test]
fn image_model_and_labels_of_different_dims() {
    // The text encoder's output in place of an image model: wrong interface.
    let dir = scratch("wrong-model");
    let out = run(
        "clip-quantize",
        &[
            "bundle",
            "--image-model",
            shapes_dir().join("text_encoder.onnx").to_str().unwrap(),
            "--labels",
            shapes_dir()
                .join("bundle/labels.safetensors")
                .to_str()
                .unwrap(),
            "--out",
            dir.join("bundle").to_str().unwrap(),
        ],
    );
    assert_clean_failure(&out, &["text_encoder.onnx"]);
}
