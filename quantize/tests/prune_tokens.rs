//! The CLS-only last layer on the committed models: the pruned fp32 model gives the
//! same embedding as the original, and its last layer's MLP (and, where the graph
//! allows, the attention out projection) really runs on one token.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clip_edge_bundle::PreprocessConfig;
use clip_edge_core::encoder::ImageEncoder;
use clip_quantize::calibrate::{list_images, load_inputs};
use clip_quantize::onnx_graph::{load_model, model_bytes, GraphIndex};
use clip_quantize::prune_tokens::keep_only_pooled_token;
use clip_quantize::rewrite_check::{check_rewrite, pseudo_random_input};
use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;

const SIZE: usize = 224;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Rows (tokens × batch) and multiply-accumulates of every MatMul/Gemm with a
/// constant 2-D weight, by node name, from tract's shape analysis of `model`.
fn weight_matmuls(model: &ModelProto) -> HashMap<String, (usize, usize)> {
    let graph = model.graph.as_ref().unwrap();
    let index = GraphIndex::new(graph);
    let mut tract = tract_onnx::onnx().model_for_proto_model(model).unwrap();
    tract
        .set_input_fact(0, f32::fact([1, 3, SIZE, SIZE]).into())
        .unwrap();
    tract.analyse(false).unwrap();
    let mut out = HashMap::new();
    for n in &graph.node {
        if !matches!(n.op_type.as_str(), "MatMul" | "Gemm") {
            continue;
        }
        let Some(w) = index
            .constant_f32(&n.input[1])
            .filter(|w| w.dims.len() == 2)
        else {
            continue;
        };
        let node = tract.node_by_name(&n.name).unwrap();
        let x = tract.outlet_fact(node.inputs[0]).unwrap();
        let dims = x.shape.as_concrete_finite().unwrap().unwrap();
        let rows: usize = dims[..dims.len() - 1].iter().product();
        out.insert(n.name.clone(), (rows, rows * w.dims[0] * w.dims[1]));
    }
    out
}

fn inputs() -> Vec<Vec<f32>> {
    let images = list_images(&repo().join("models/shapes/samples")).unwrap();
    let (loaded, skipped) = load_inputs(&images, &PreprocessConfig::default()).unwrap();
    assert!(skipped.is_empty() && !loaded.is_empty());
    let mut inputs: Vec<Vec<f32>> = loaded.into_iter().map(|(_, x)| x).collect();
    inputs.extend((100..103).map(|s| pseudo_random_input(3 * SIZE * SIZE, s)));
    inputs
}

fn check_model(path: &str, last_layer: &str, one_token: &[&str]) {
    let model = load_model(&repo().join(path)).unwrap();
    let (pruned, summary) = keep_only_pooled_token(&model, &[1, 3, SIZE, SIZE]).unwrap();
    assert!(summary.pruned(), "{path}: {summary:?}");
    assert_eq!(
        (summary.token_axis, summary.tokens, summary.token),
        (Some(1), Some(50), Some(0)),
        "{path}"
    );

    // Same embedding.
    let mut a = ImageEncoder::from_onnx_bytes(&model_bytes(&model), Path::new(path), SIZE).unwrap();
    let mut b =
        ImageEncoder::from_onnx_bytes(&model_bytes(&pruned), Path::new(path), SIZE).unwrap();
    let mut worst = 0.0f32;
    for x in inputs() {
        let ea = a.encode(&x).unwrap().to_vec();
        let eb = b.encode(&x).unwrap();
        for (p, q) in ea.iter().zip(eb) {
            worst = worst.max((p - q).abs());
        }
    }
    assert!(worst <= 1e-5, "{path}: max |difference| {worst}");

    // Fewer MACs, exactly where expected: the named matmuls of the last layer go
    // from 50 rows to 1, every other weight matmul keeps its rows.
    let before = weight_matmuls(&model);
    let after = weight_matmuls(&pruned);
    assert_eq!(before.len(), after.len(), "{path}");
    let expected: Vec<String> = one_token
        .iter()
        .map(|m| format!("{last_layer}/{m}"))
        .collect();
    let mut saved = 0;
    for (name, &(rows, macs)) in &before {
        let (rows_after, macs_after) = after[name];
        if expected.contains(name) {
            assert_eq!((rows, rows_after), (50, 1), "{path}: {name}");
            saved += macs - macs_after;
        } else {
            assert_eq!(rows, rows_after, "{path}: {name} changed");
        }
    }
    let mut listed = summary.one_token_matmuls.clone();
    listed.sort();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(listed, expected_sorted, "{path}");
    let total_before: usize = before.values().map(|v| v.1).sum();
    let total_after: usize = after.values().map(|v| v.1).sum();
    assert_eq!(total_before - total_after, saved);
    assert!(saved > 0);
    eprintln!(
        "{path}: weight-matmul MACs {total_before} -> {total_after} (-{:.1}%), max |difference| {worst:e}",
        100.0 * saved as f64 / total_before as f64
    );
}

#[test]
fn hf_fixture_runs_its_last_layer_on_the_cls_token() {
    check_model(
        "models/fixtures/hf-tiny/image_encoder.onnx",
        "/vision_model/encoder/layers.1",
        &[
            "self_attn/out_proj/MatMul",
            "mlp/fc1/MatMul",
            "mlp/fc2/MatMul",
        ],
    );
}

/// OpenCLIP's out projection is a Gemm on `[tokens × batch, C]` behind a Reshape
/// and a Transpose: the walk stops there and only the MLP is pruned.
#[test]
fn openclip_fixture_runs_its_last_mlp_on_the_cls_token() {
    check_model(
        "models/fixtures/openclip-tiny/image_encoder.onnx",
        "/visual/transformer/resblocks.1",
        &["mlp/c_fc/MatMul", "mlp/c_proj/MatMul"],
    );
}

#[test]
fn shapes_model_runs_its_last_layer_on_the_cls_token() {
    check_model(
        "models/shapes/image_encoder.onnx",
        "/m/vision_model/encoder/layers.3",
        &[
            "self_attn/out_proj/MatMul",
            "mlp/fc1/MatMul",
            "mlp/fc2/MatMul",
        ],
    );
}

/// The safety check `clip-quantize quantize` runs catches a wrong rewrite: here the
/// slices cut token 1 instead of the CLS token.
#[test]
fn check_catches_a_wrong_token() {
    let path = repo().join("models/fixtures/hf-tiny/image_encoder.onnx");
    let model = load_model(&path).unwrap();
    let (mut pruned, _) = keep_only_pooled_token(&model, &[1, 3, SIZE, SIZE]).unwrap();
    let mut a = ImageEncoder::from_onnx_bytes(&model_bytes(&model), &path, SIZE).unwrap();
    let good = check_rewrite(&mut a, &pruned, inputs().iter().map(Vec::as_slice)).unwrap();
    assert_eq!(good.inputs, 2 + inputs().len());
    assert!(good.max_relative_diff < 1e-6, "{good:?}");

    let graph = pruned.graph.as_mut().unwrap();
    for (name, value) in [("token_slice/starts", 1i64), ("token_slice/ends", 2)] {
        let t = graph
            .initializer
            .iter_mut()
            .find(|t| t.name == name)
            .unwrap();
        t.raw_data = value.to_le_bytes().to_vec();
    }
    let bad = check_rewrite(&mut a, &pruned, std::iter::empty()).unwrap();
    assert_eq!(bad.inputs, 2);
    assert!(bad.max_relative_diff > 1e-2, "{bad:?}");
}
