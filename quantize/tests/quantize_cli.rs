//! `clip-quantize quantize` and `eval` end to end: accuracy against fp32 on the
//! bundled shapes model and on the public-architecture fixtures, ONNX that tract
//! loads back, and clear errors on bad input.

mod common;

use std::path::Path;

use clip_quantize::onnx_graph::{load_model, node, save_model};
use common::{eval_json, quantize_cmd, quantize_with_report, repo, scratch, text};
use tract_onnx::pb::{GraphProto, ModelProto, OperatorSetIdProto, ValueInfoProto};

#[test]
fn shapes_int8_keeps_zero_shot_accuracy_within_one_point() {
    let dir = scratch("shapes");
    let shapes = repo().join("models/shapes");
    let fp32 = shapes.join("image_encoder.onnx");
    for mode in ["dynamic", "static", "weights"] {
        let int8 = dir.join(format!("{mode}.onnx"));
        let report = dir.join(format!("{mode}.json"));
        let out = quantize_cmd(&[
            "quantize",
            "--model",
            fp32.to_str().unwrap(),
            "--out",
            int8.to_str().unwrap(),
            "--mode",
            mode,
            "--calibration",
            shapes.join("samples").to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{mode}: {}", text(&out.stderr));
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        // Every weight matmul and the patch embedding are int8.
        assert_eq!(r["quantized"].as_array().unwrap().len(), 4 * 6 + 2, "{r}");
        assert!(r["size_ratio"].as_f64().unwrap() < 0.40, "{r}");

        let e = eval_json(
            &fp32,
            &int8,
            &shapes.join("eval"),
            Some(&shapes.join("bundle/labels.safetensors")),
        );
        let fp32_top1 = e["fp32"]["top1_accuracy"].as_f64().unwrap();
        let int8_top1 = e["int8"]["top1_accuracy"].as_f64().unwrap();
        eprintln!("{mode}: {e}");
        assert_eq!(e["images"].as_u64(), Some(150));
        assert!(fp32_top1 >= 0.90, "{e}");
        assert!(
            int8_top1 >= fp32_top1 - 0.01,
            "{mode}: int8 {int8_top1} vs fp32 {fp32_top1}"
        );
        assert!(e["cosine_mean"].as_f64().unwrap() >= 0.99, "{e}");
        let graph = load_model(&int8).unwrap().graph.unwrap();
        let integer_matmuls = graph
            .node
            .iter()
            .filter(|n| n.op_type == "MatMulInteger")
            .count();
        if mode == "weights" {
            // int8 weights in the file, f32 arithmetic: only the weight rounding is lost.
            assert_eq!(integer_matmuls, 0, "{mode}");
            assert!(graph.initializer.iter().any(|t| t.data_type == 3), "{mode}");
            assert!(e["cosine_mean"].as_f64().unwrap() >= 0.9995, "{e}");
        } else {
            assert_eq!(integer_matmuls, 4 * 6 + 2, "{mode}");
        }
    }
}

#[test]
fn public_architecture_fixtures_quantize_with_high_cosine() {
    let dir = scratch("fixtures");
    let images = repo().join("models/shapes/samples");
    for fixture in ["hf-tiny", "openclip-tiny"] {
        let fp32 = repo()
            .join("models/fixtures")
            .join(fixture)
            .join("image_encoder.onnx");
        let int8 = dir.join(format!("{fixture}.onnx"));
        let out = quantize_cmd(&[
            "quantize",
            "--model",
            fp32.to_str().unwrap(),
            "--out",
            int8.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{fixture}: {}", text(&out.stderr));
        // The patch embedding is quantized in both architectures.
        let model = load_model(&int8).unwrap();
        let graph = model.graph.unwrap();
        assert!(
            !graph.node.iter().any(|n| n.op_type == "Conv"),
            "{fixture}: Conv left"
        );
        assert!(graph.node.iter().any(|n| n.op_type == "MatMulInteger"));
        let e = eval_json(&fp32, &int8, &images, None);
        assert!(e["cosine_mean"].as_f64().unwrap() >= 0.98, "{fixture}: {e}");
    }
}

#[test]
fn cls_only_last_layer_is_on_by_default_and_keep_all_tokens_turns_it_off() {
    let dir = scratch("tokens");
    let fp32 = repo().join("models/shapes/image_encoder.onnx");
    let mut sizes = Vec::new();
    for keep_all in [false, true] {
        let extra: &[&str] = if keep_all {
            &["--keep-all-tokens"]
        } else {
            &[]
        };
        let (out, r) = quantize_with_report(&dir, &fp32, &keep_all.to_string(), extra);
        let stderr = text(&out.stderr);
        let int8 = dir.join(format!("{keep_all}.onnx"));
        let p = &r["token_pruning"];
        // The pruned matmuls are still found and quantized.
        assert_eq!(r["quantized"].as_array().unwrap().len(), 4 * 6 + 2, "{r}");
        let one_token: Vec<&str> = p["one_token_matmuls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        if keep_all {
            assert_eq!(p["skipped"], "--keep-all-tokens", "{p}");
            assert!(one_token.is_empty(), "{p}");
            assert!(
                stderr.contains("all tokens computed: --keep-all-tokens"),
                "{stderr}"
            );
        } else {
            assert!(p["skipped"].is_null(), "{p}");
            let layer = "/m/vision_model/encoder/layers.3";
            assert_eq!(
                one_token,
                [
                    format!("{layer}/self_attn/out_proj/MatMul"),
                    format!("{layer}/mlp/fc1/MatMul"),
                    format!("{layer}/mlp/fc2/MatMul"),
                ],
                "{p}"
            );
            assert_eq!(p["one_token_nodes"].as_array().unwrap().len(), 12, "{p}");
            assert!(
                p["check"]["max_relative_diff"].as_f64().unwrap() <= 1e-4,
                "{p}"
            );
            assert!(
                stderr.contains(
                    "pooled token only: 12 nodes of the last layer run on 1 of 50 tokens"
                ),
                "{stderr}"
            );
            // The int8 graph keeps the two slices (the residual into the last layer
            // and the attention output).
            let model = load_model(&int8).unwrap();
            let graph = model.graph.unwrap();
            let slices = graph
                .node
                .iter()
                .filter(|n| n.op_type == "Slice" && n.name.ends_with("/TokenSlice"))
                .count();
            assert_eq!(slices, 2);
        }
        sizes.push(std::fs::metadata(&int8).unwrap().len());
        let e = eval_json(&fp32, &int8, &repo().join("models/shapes/eval"), None);
        assert!(
            e["cosine_mean"].as_f64().unwrap() >= 0.999,
            "{keep_all}: {e}"
        );
    }
    // The same weights either way; only a few nodes differ.
    assert!(sizes[0].abs_diff(sizes[1]) < 4096, "{sizes:?}");
}

#[test]
fn exclude_keeps_named_nodes_in_fp32_and_unknown_names_fail() {
    let dir = scratch("exclude");
    let fp32 = repo().join("models/shapes/image_encoder.onnx");
    let list = quantize_cmd(&["quantize", "--model", fp32.to_str().unwrap(), "--list"]);
    assert!(list.status.success());
    let listing = text(&list.stdout);
    let first = listing.split_whitespace().next().unwrap().to_string();
    let int8 = dir.join("x.onnx");
    let report = dir.join("r.json");
    let out = quantize_cmd(&[
        "quantize",
        "--model",
        fp32.to_str().unwrap(),
        "--out",
        int8.to_str().unwrap(),
        "--exclude",
        &first,
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["quantized"].as_array().unwrap().len(), 4 * 6 + 1);
    assert!(r["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["node"] == first.as_str()));

    let out = quantize_cmd(&[
        "quantize",
        "--model",
        fp32.to_str().unwrap(),
        "--out",
        int8.to_str().unwrap(),
        "--exclude",
        "no-such-node",
    ]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no-such-node"));
}

#[test]
fn max_cosine_drop_keeps_layers_until_the_target_holds() {
    let dir = scratch("cosine-drop");
    let shapes = repo().join("models/shapes");
    let int8 = dir.join("x.onnx");
    let report = dir.join("r.json");
    // A target tighter than plain int8 reaches forces layers back to fp32.
    let out = quantize_cmd(&[
        "quantize",
        "--model",
        shapes.join("image_encoder.onnx").to_str().unwrap(),
        "--out",
        int8.to_str().unwrap(),
        "--calibration",
        shapes.join("samples").to_str().unwrap(),
        "--max-cosine-drop",
        "0.00002",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let kept = r["kept_fp32_for_cosine"].as_array().unwrap();
    assert!(!kept.is_empty(), "{r}");
    assert!(
        r["eval"]["cosine_mean"].as_f64().unwrap() >= 1.0 - 0.00002 - 1e-9,
        "{r}"
    );
    assert!(
        text(&out.stderr).contains("kept in fp32"),
        "{}",
        text(&out.stderr)
    );
}

/// `quantize --model MODEL --out OUT EXTRA...`.
fn quantize_args<'a>(model: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    [&["quantize", "--model", model, "--out", out][..], extra].concat()
}

/// Runs `clip-quantize ARGS` and asserts it fails with `expected` in its stderr.
fn expect_failure(args: &[&str], expected: &str) {
    let out = quantize_cmd(args);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(stderr.contains(expected), "{args:?}: {stderr}");
}

fn write_identity_model(path: &Path) {
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(GraphProto {
            name: "identity".into(),
            node: vec![node("Identity", "id", &["x"], &["y"], vec![])],
            input: vec![ValueInfoProto {
                name: "x".into(),
                ..Default::default()
            }],
            output: vec![ValueInfoProto {
                name: "y".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    save_model(&model, path).unwrap();
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = scratch("bad");
    let out_path = dir.join("out.onnx");
    let out_s = out_path.to_str().unwrap();

    let no_matmul = dir.join("identity.onnx");
    write_identity_model(&no_matmul);
    expect_failure(
        &[
            "quantize",
            "--model",
            no_matmul.to_str().unwrap(),
            "--out",
            out_s,
        ],
        "nothing to quantize",
    );

    let garbage = dir.join("garbage.onnx");
    std::fs::write(&garbage, b"\xff\xff not onnx").unwrap();
    expect_failure(
        &[
            "quantize",
            "--model",
            garbage.to_str().unwrap(),
            "--out",
            out_s,
        ],
        "garbage.onnx",
    );

    let fp32 = repo().join("models/shapes/image_encoder.onnx");
    let fp32_s = fp32.to_str().unwrap();
    // Checked before any work, whether or not the model has outliers.
    expect_failure(
        &quantize_args(fp32_s, out_s, &["--smooth-alpha", "1.5"]),
        "--smooth-alpha must be in [0, 1], got 1.5",
    );

    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    expect_failure(
        &quantize_args(
            fp32_s,
            out_s,
            &["--mode", "static", "--calibration", empty.to_str().unwrap()],
        ),
        "no images found",
    );

    expect_failure(
        &quantize_args(fp32_s, out_s, &["--mode", "static"]),
        "--calibration",
    );

    // An unreadable image is skipped with a warning naming it; the rest calibrate.
    let mixed = dir.join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    std::fs::write(mixed.join("broken.png"), b"not a png").unwrap();
    let sample = std::fs::read_dir(repo().join("models/shapes/samples"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::copy(&sample, mixed.join("good.png")).unwrap();
    let out = quantize_cmd(&[
        "quantize",
        "--model",
        fp32.to_str().unwrap(),
        "--out",
        out_s,
        "--mode",
        "static",
        "--calibration",
        mixed.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("warning: skipped") && text(&out.stderr).contains("broken.png")
    );

    // A symbolic spatial size (hub exports have one) is fixed to the bundle's 224
    // for the patch embedding's int8 form.
    let mut model = load_model(&repo().join("models/fixtures/hf-tiny/image_encoder.onnx")).unwrap();
    make_spatial_dims_symbolic(&mut model);
    let dynamic = dir.join("dynamic.onnx");
    save_model(&model, &dynamic).unwrap();
    let out = quantize_cmd(&[
        "quantize",
        "--model",
        dynamic.to_str().unwrap(),
        "--out",
        out_s,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let graph = load_model(Path::new(out_s)).unwrap().graph.unwrap();
    let dims: Vec<String> = graph.input[0]
        .r#type
        .as_ref()
        .and_then(|t| match t.value.as_ref()? {
            tract_onnx::pb::type_proto::Value::TensorType(t) => t.shape.clone(),
        })
        .unwrap()
        .dim
        .iter()
        .map(|d| format!("{:?}", d.value))
        .collect();
    assert_eq!(
        dims[1..],
        [
            "Some(DimValue(3))",
            "Some(DimValue(224))",
            "Some(DimValue(224))"
        ],
        "{dims:?}"
    );
}

fn make_spatial_dims_symbolic(model: &mut ModelProto) {
    use tract_onnx::pb::{tensor_shape_proto::dimension::Value, type_proto::Value as T};
    let graph = model.graph.as_mut().unwrap();
    let T::TensorType(t) = graph.input[0]
        .r#type
        .as_mut()
        .unwrap()
        .value
        .as_mut()
        .unwrap();
    for d in t.shape.as_mut().unwrap().dim.iter_mut().skip(2) {
        d.value = Some(Value::DimParam("size".into()));
    }
}
