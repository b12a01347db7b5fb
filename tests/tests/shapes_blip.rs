//! The second family trained on the shapes data: a tiny BLIP (image–text
//! contrastive heads, `models/shapes-blip/`, trained by its `train.py`) end to
//! end. Its label table comes from its own BERT text tower through its WordPiece
//! `tokenizer.json`, its images are squashed to 384 as `BlipImageProcessor` does,
//! and both committed bundles (fp32 and int8) reach the zero-shot bar on the held-out
//! eval set through `classify` and `run`.

use clip_edge_bundle::{Bundle, LabelTable, ModelFamily, ResizeMode, ScoringRule};
use clip_edge_e2e::{
    classify_top1, make_bundle, make_labels, repo_root, run, run_top1, scratch, stderr,
};
use std::path::PathBuf;

/// The zero-shot top-1 the trained second family must reach (the bar).
const MIN_TOP1: f64 = 0.85;

fn blip_dir() -> PathBuf {
    repo_root().join("models/shapes-blip")
}

#[test]
fn blip_bundles_reach_the_zero_shot_bar_through_classify_and_run() {
    let fp32 = classify_top1(&blip_dir().join("bundle"));
    let int8 = classify_top1(&blip_dir().join("bundle-int8"));
    assert!(fp32 >= MIN_TOP1, "fp32 top-1 {fp32:.3} < {MIN_TOP1}");
    assert!(int8 >= MIN_TOP1, "int8 top-1 {int8:.3} < {MIN_TOP1}");
    assert!(
        int8 >= fp32 - 0.02,
        "int8 {int8:.4} more than 2 points below fp32 {fp32:.4}"
    );
    let through_run = run_top1(&blip_dir().join("bundle-int8"));
    assert_eq!(through_run, int8, "run and classify disagree");
}

#[test]
fn committed_blip_bundles_are_what_the_tools_make_from_the_exports() {
    let dir = scratch("shapes-blip");
    let labels = dir.join("labels.safetensors");
    make_labels(
        &blip_dir().join("text_encoder.onnx"),
        &repo_root().join("models/shapes/labels.txt"),
        &labels,
    );
    let committed = LabelTable::load(&blip_dir().join("bundle/labels.safetensors")).unwrap();
    let made = LabelTable::load(&labels).unwrap();
    assert_eq!(committed.labels(), made.labels());
    assert_eq!(committed.text_model_sha256(), made.text_model_sha256());
    let max_diff = committed
        .embeddings()
        .iter()
        .zip(made.embeddings())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        max_diff < 1e-4,
        "label embeddings differ by {max_diff}: run `just shapes-bundle models/shapes-blip`"
    );

    let int8 = dir.join("int8.onnx");
    let out = run(
        "clip-quantize",
        &[
            "quantize",
            "--model",
            blip_dir().join("image_encoder.onnx").to_str().unwrap(),
            "--out",
            int8.to_str().unwrap(),
            "--calibration",
            repo_root().join("models/shapes/samples").to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for (name, model) in [
        ("bundle", blip_dir().join("image_encoder.onnx")),
        ("bundle-int8", int8),
    ] {
        let bundle = dir.join(name);
        make_bundle(&model, &labels, &bundle, &[]);
        let committed = blip_dir().join(name);
        assert!(
            std::fs::read(committed.join("model.nnef.tar")).unwrap()
                == std::fs::read(bundle.join("model.nnef.tar")).unwrap(),
            "models/shapes-blip/{name}/model.nnef.tar is stale: run `just shapes-bundle models/shapes-blip`"
        );
        let manifest = Bundle::load(&committed).unwrap().manifest;
        assert_eq!(manifest.model.family, ModelFamily::Blip, "{name}");
        assert_eq!(manifest.preprocess.crop_size, 384, "{name}");
        assert_eq!(manifest.preprocess.resize, ResizeMode::Squash, "{name}");
        assert_eq!(manifest.scoring.rule, ScoringRule::Softmax, "{name}");
        let made = Bundle::load(&bundle).unwrap().manifest;
        assert_eq!(
            (&manifest.model, &manifest.preprocess, &manifest.scoring),
            (&made.model, &made.preprocess, &made.scoring),
            "{name}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
