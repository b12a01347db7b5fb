use super::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Writes `json` to `name` in a fresh temporary folder and returns its path.
fn config_file(dir: &tempfile::TempDir, name: &str, json: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, json).unwrap();
    path
}

#[test]
fn hf_clip_processor_config_is_clip() {
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(
        &dir,
        "preprocessor_config.json",
        r#"{"crop_size": {"height": 224, "width": 224}, "do_center_crop": true,
            "do_normalize": true, "do_resize": true, "image_processor_type": "CLIPImageProcessor",
            "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3,
            "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 224}}"#,
    );
    let d = read_config(&path).unwrap();
    assert_eq!(d.family, ModelFamily::Clip);
    assert_eq!(d.preprocess, PreprocessConfig::default());
    assert_eq!(d.rule, Some(ScoringRule::Softmax));
}

#[test]
fn hf_siglip_and_blip_configs_squash() {
    let dir = tempfile::tempdir().unwrap();
    let siglip = config_file(
        &dir,
        "siglip.json",
        r#"{"do_normalize": true, "do_rescale": true, "do_resize": true,
            "image_mean": [0.5, 0.5, 0.5], "image_processor_type": "SiglipImageProcessor",
            "image_std": [0.5, 0.5, 0.5], "resample": 3, "rescale_factor": 0.00392156862745098,
            "size": {"height": 384, "width": 384}}"#,
    );
    let d = read_config(&siglip).unwrap();
    assert_eq!(d.family, ModelFamily::Siglip);
    assert_eq!(d.rule, Some(ScoringRule::Sigmoid));
    assert_eq!(d.preprocess.resize, ResizeMode::Squash);
    assert_eq!(d.preprocess.crop_size, 384);
    assert_eq!(d.preprocess.mean, [0.5; 3]);
    d.preprocess.validate().unwrap();
    let blip = config_file(
        &dir,
        "blip.json",
        r#"{"do_resize": true, "image_processor_type": "BlipImageProcessor", "resample": 3,
            "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_std": [0.26862954, 0.26130258, 0.27577711], "size": {"height": 384, "width": 384}}"#,
    );
    let d = read_config(&blip).unwrap();
    assert_eq!(d.family, ModelFamily::Blip);
    assert_eq!(d.rule, Some(ScoringRule::Softmax));
    assert_eq!(
        (d.preprocess.resize, d.preprocess.crop_size),
        (ResizeMode::Squash, 384)
    );
}

#[test]
fn unsupported_hf_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for (json, needle) in [
        (
            r#"{"image_mean": [0,0,0], "resample": 0, "size": {"shortest_edge": 224}}"#,
            "resample 0",
        ),
        (
            r#"{"image_mean": [0,0,0], "size": {"height": 224, "width": 256}}"#,
            "size",
        ),
        (
            r#"{"image_mean": [0,0,0], "do_rescale": false, "size": {"shortest_edge": 224}}"#,
            "do_rescale",
        ),
        (
            r#"{"image_mean": [0,0], "size": {"shortest_edge": 224}}"#,
            "three numbers",
        ),
    ] {
        let path = config_file(&dir, "preprocessor_config.json", json);
        let e = read_config(&path).unwrap_err().to_string();
        assert!(e.contains(needle), "{json}: {e}");
    }
}

#[test]
fn open_clip_mobileclip_config_is_bilinear_with_torchvision_crop() {
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(
        &dir,
        "open_clip_config.json",
        r#"{"model_cfg": {"embed_dim": 512, "vision_cfg": {"timm_model_name": "fastvit_mci0",
              "image_size": 256}},
            "preprocess_cfg": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0],
              "interpolation": "bilinear", "resize_mode": "shortest"}}"#,
    );
    let d = read_config(&path).unwrap();
    assert_eq!(d.family, ModelFamily::Mobileclip);
    let p = d.preprocess;
    assert_eq!((p.resize_shortest_edge, p.crop_size), (256, 256));
    assert_eq!(p.interpolation, Interpolation::Bilinear);
    assert_eq!(p.crop_offset, CropOffset::Round);
    assert_eq!((p.mean, p.std), ([0.0; 3], [1.0; 3]));
    assert_eq!(p, Preset::Mobileclip.description().preprocess);
}

#[test]
fn our_model_json_gives_scale_and_openclip_crop() {
    let d = read_config(&repo().join("models/fixtures/openclip-tiny/model.json")).unwrap();
    assert_eq!(d.preprocess.crop_offset, CropOffset::Round);
    assert!((d.logit_scale.unwrap() - 14.285714).abs() < 1e-4);
    assert_eq!(d.rule, Some(ScoringRule::Softmax));
    let hf = read_config(&repo().join("models/fixtures/hf-tiny/model.json")).unwrap();
    assert_eq!(hf.preprocess, PreprocessConfig::default());
}

#[test]
fn a_model_at_another_size_needs_a_description() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("image_encoder.onnx");
    let e = describe(&model, Some(256), &DescribeRequest::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("256x256") && e.contains("--model-config") && e.contains("--family"),
        "{e}"
    );
    // --image-size does not make CLIP's preprocessing right for another size.
    let sized = DescribeRequest {
        image_size: Some(256),
        ..Default::default()
    };
    for fixed in [Some(256), None] {
        let e = describe(&model, fixed, &sized).unwrap_err().to_string();
        assert!(e.contains("--family"), "{fixed:?}: {e}");
    }
    // 224 or not fixed: CLIP's, as bundles always were.
    let d = describe(&model, Some(224), &DescribeRequest::default()).unwrap();
    assert_eq!(d.preprocess, PreprocessConfig::default());
    assert_eq!(d.rule, None);
    describe(&model, None, &DescribeRequest::default()).unwrap();
    // A preset takes the model's size.
    let siglip = DescribeRequest {
        preset: Some(Preset::Siglip),
        ..Default::default()
    };
    let d = describe(&model, Some(384), &siglip).unwrap();
    assert_eq!(
        (d.preprocess.resize, d.preprocess.crop_size),
        (ResizeMode::Squash, 384)
    );
    assert_eq!(d.preprocess.resize_shortest_edge, 384);
}

#[test]
fn a_config_beside_the_model_or_one_up_is_found_and_must_agree_with_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("onnx")).unwrap();
    let model = dir.path().join("onnx/vision_model.onnx");
    config_file(
        &dir,
        "preprocessor_config.json",
        r#"{"image_processor_type": "SiglipImageProcessor", "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5], "size": {"height": 224, "width": 224}}"#,
    );
    assert_eq!(
        find_config(&model).unwrap(),
        dir.path().join("preprocessor_config.json")
    );
    let d = describe(&model, Some(224), &DescribeRequest::default()).unwrap();
    assert_eq!(d.family, ModelFamily::Siglip);
    let e = describe(&model, Some(256), &DescribeRequest::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("--image-size 256"), "{e}");
    let resized = DescribeRequest {
        image_size: Some(256),
        ..Default::default()
    };
    assert_eq!(
        describe(&model, Some(256), &resized)
            .unwrap()
            .preprocess
            .crop_size,
        256
    );
    // A model.json that is not ours (the shapes model's) is not taken.
    std::fs::write(dir.path().join("onnx/model.json"), r#"{"name": "x"}"#).unwrap();
    assert_eq!(
        find_config(&model).unwrap(),
        dir.path().join("preprocessor_config.json")
    );
}

#[test]
fn the_recorded_description_reads_back_the_same() {
    for preset in [
        Preset::Clip,
        Preset::Openclip,
        Preset::Siglip,
        Preset::Blip,
        Preset::Mobileclip,
    ] {
        let mut d = preset.description();
        d.logit_scale = Some(117.25);
        d.logit_bias = (d.rule == Some(ScoringRule::Sigmoid)).then_some(-12.5);
        d.preprocess.resize_shortest_edge +=
            u32::from(d.preprocess.resize == ResizeMode::ShortestEdge) * 32;
        let back = parse_config(&d.to_json(), Path::new("metadata")).unwrap();
        assert_eq!(back.origin, "metadata");
        assert_eq!(
            ModelDescription {
                origin: d.origin.clone(),
                ..back
            },
            d,
            "{preset:?}"
        );
    }
    // An int8 file's own record comes before a config beside it.
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.onnx");
    config_file(
        &dir,
        "preprocessor_config.json",
        r#"{"image_processor_type": "CLIPImageProcessor", "image_mean": [0.5, 0.5, 0.5],
            "size": {"shortest_edge": 224}}"#,
    );
    let json = Preset::Mobileclip.description().to_json();
    let request = DescribeRequest {
        embedded: Some(&json),
        ..Default::default()
    };
    let d = describe(&model, Some(256), &request).unwrap();
    assert_eq!(d.family, ModelFamily::Mobileclip);
    assert!(d.origin.contains(METADATA_KEY), "{}", d.origin);
}
