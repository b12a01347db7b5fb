//! Tests of outlier smoothing on small graphs built here.

use super::*;
use crate::onnx_graph::{attr_int, attr_ints};
use crate::test_graph::{assert_same_outputs, G};

/// `x` [1, 5, 4] → LayerNorm → (Cast → Transpose [1,0,2] → MatMul q, and MatMul
/// k, and Shape), plus a second LayerNorm whose output also feeds a residual.
fn block() -> ModelProto {
    let mut g = G::new();
    let ln = g.layer_norm("ln", "x", 4);
    let cast = g.op_attrs("Cast", "cast", &[&ln], vec![attr_int("to", 1)]);
    let tr = g.op_attrs(
        "Transpose",
        "tr",
        &[&cast],
        vec![attr_ints("perm", &[1, 0, 2])],
    );
    let wq = g.weight("wq", &[4, 3]);
    let q = g.op("MatMul", "q", &[&tr, &wq]);
    let wk = g.weight("wk", &[4, 3]);
    let k = g.op("MatMul", "k", &[&ln, &wk]);
    g.op("Shape", "shape", &[&ln]);
    let kt = g.op_attrs(
        "Transpose",
        "kt",
        &[&k],
        vec![attr_ints("perm", &[1, 0, 2])],
    );
    let qk = g.op("Add", "qk", &[&q, &kt]);
    let ln2 = g.layer_norm("ln2", &qk, 3);
    let w2 = g.weight("w2", &[3, 3]);
    let f = g.op("MatMul", "fc", &[&ln2, &w2]);
    let out = g.op("Add", "residual", &[&ln2, &f]);
    g.model(&[1, 5, 4], &out)
}

#[test]
fn groups_reach_matmuls_through_channel_preserving_ops_only() {
    let (groups, skipped) = find_groups(&block()).unwrap();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0].node, "ln");
    assert_eq!(groups[0].matmuls, vec!["k", "q"]);
    assert_eq!(groups[0].channels, 4);
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0].node, "ln2");
    assert!(
        skipped[0].reason.contains("Add \"residual\""),
        "{skipped:?}"
    );
}

#[test]
fn a_transpose_moving_the_channels_stops_the_group() {
    let mut g = G::new();
    let ln = g.layer_norm("ln", "x", 4);
    let tr = g.op_attrs(
        "Transpose",
        "tr",
        &[&ln],
        vec![attr_ints("perm", &[0, 2, 1])],
    );
    let w = g.weight("w", &[5, 3]);
    let out = g.op("MatMul", "mm", &[&tr, &w]);
    let (groups, skipped) = find_groups(&g.model(&[1, 5, 4], &out)).unwrap();
    assert!(groups.is_empty());
    assert!(
        skipped[0].reason.contains("moves the channel axis"),
        "{skipped:?}"
    );
}

#[test]
fn smoothing_keeps_the_function_and_flattens_the_ranges() {
    let model = block();
    let (groups, _) = find_groups(&model).unwrap();
    // Channel 2 is an outlier: 50x the others.
    let ranges = ChannelRanges::from([(groups[0].output.clone(), vec![1.0, 2.0, 100.0, 1.0])]);
    let (smoothed, layers) = smooth(&model, &groups, &ranges, 0.5).unwrap();
    assert_same_outputs(&model, &smoothed, &[1, 5, 4]);
    assert_eq!(layers[0].outlier_channels, vec![2]);
    assert!(layers[0].spread_before >= 50.0, "{layers:?}");
    assert!(
        layers[0].spread_after < layers[0].spread_before / 5.0,
        "{layers:?}"
    );
    // s_j = sqrt(range_j / max|W_j|): the outlier's gain shrinks the most.
    let value = |m: &ModelProto, node: &str, input: usize| {
        let graph = m.graph.as_ref().unwrap();
        let index = GraphIndex::new(graph);
        let n = graph.node.iter().find(|n| n.name == node).unwrap();
        index.constant_f32(&n.input[input]).unwrap().data
    };
    let (g0, g1) = (value(&model, "ln", 1), value(&smoothed, "ln", 1));
    let (wq0, wq1) = (value(&model, "q", 1), value(&smoothed, "q", 1));
    let (wk0, wk1) = (value(&model, "k", 1), value(&smoothed, "k", 1));
    for j in 0..4 {
        let w_range = (0..3)
            .flat_map(|c| [wq0[j * 3 + c].abs(), wk0[j * 3 + c].abs()])
            .fold(0.0f32, f32::max);
        let s = (ranges[&groups[0].output][j] / w_range).sqrt();
        assert!(
            (g1[j] - g0[j] / s).abs() <= 1e-6 * g0[j].abs().max(1.0),
            "gain {j}"
        );
        for c in 0..3 {
            let i = j * 3 + c;
            assert!((wq1[i] - wq0[i] * s).abs() <= 1e-5 * wq1[i].abs().max(1.0));
            assert!((wk1[i] - wk0[i] * s).abs() <= 1e-5 * wk1[i].abs().max(1.0));
        }
    }
    // The residual's LayerNorm and its matmul are untouched.
    assert_eq!(value(&model, "ln2", 1), value(&smoothed, "ln2", 1));
    assert_eq!(value(&model, "fc", 1), value(&smoothed, "fc", 1));
}

#[test]
fn a_decomposed_layer_norm_and_a_transposed_gemm_are_smoothed() {
    // x [1, 5, 4] → Mul γ → Add β → Gather token 0 → Gemm(transB) [3, 4].
    let mut g = G::new();
    let gamma = g.weight("gamma", &[4]);
    let beta = g.weight("beta", &[4]);
    let m = g.op("Mul", "scale", &["x", &gamma]);
    let a = g.op("Add", "shift", &[&m, &beta]);
    let zero = g.index("zero", &[], 0);
    let row = g.op_attrs("Gather", "pool", &[&a, &zero], vec![attr_int("axis", 1)]);
    let w = g.weight("w", &[3, 4]);
    let out = g.op_attrs("Gemm", "proj", &[&row, &w], vec![attr_int("transB", 1)]);
    let model = g.model(&[1, 5, 4], &out);
    let (groups, _) = find_groups(&model).unwrap();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(
        (groups[0].gain.node.as_str(), groups[0].gain.input),
        ("scale", 1)
    );
    assert_eq!(groups[0].matmuls, vec!["proj"]);
    let ranges = ChannelRanges::from([(groups[0].output.clone(), vec![1.0, 30.0, 2.0, 1.0])]);
    let (smoothed, _) = smooth(&model, &groups, &ranges, 0.7).unwrap();
    assert_same_outputs(&model, &smoothed, &[1, 5, 4]);
    assert_ne!(
        crate::onnx_graph::model_bytes(&model),
        crate::onnx_graph::model_bytes(&smoothed)
    );
}

#[test]
fn only_layer_norms_with_outlier_channels_are_kept() {
    let (groups, _) = find_groups(&block()).unwrap();
    let out = groups[0].output.clone();
    let flat = ChannelRanges::from([(out.clone(), vec![1.0, 2.0, 7.9, 1.0])]);
    let (kept, skipped) = with_outliers(groups.clone(), &flat);
    assert!(kept.is_empty());
    assert!(
        skipped[0].reason.contains("no outlier channel"),
        "{skipped:?}"
    );
    let outlier = ChannelRanges::from([(out, vec![1.0, 2.0, 8.1 * 1.0, 1.0])]);
    // The median of [1, 1, 2, 8.1] is 2: 8.1 is not 8x it.
    assert!(with_outliers(groups.clone(), &outlier).0.is_empty());
    let outlier = ChannelRanges::from([(groups[0].output.clone(), vec![1.0, 1.0, 17.0, 1.0])]);
    assert_eq!(with_outliers(groups, &outlier).0.len(), 1);
}

/// A residual dimension far larger than the others (here a bias) normalises to
/// an outlier channel that the LayerNorm's parameters (gain 1, bias 0) do not
/// show; a run of the model on a pseudo-random image finds it.
#[test]
fn an_outlier_arriving_in_the_layer_norm_input_shows_when_measured() {
    const C: usize = 64;
    let mut g = G::new();
    let mut massive = vec![0.0; C];
    massive[7] = 1000.0;
    let bias = g.constant("residual_bias", &[C], &massive);
    let h = g.op("Add", "residual", &["x", &bias]);
    let gamma = g.constant("gamma", &[C], &[1.0; C]);
    let beta = g.constant("beta", &[C], &[0.0; C]);
    let ln = g.op_attrs(
        "LayerNormalization",
        "ln",
        &[&h, &gamma, &beta],
        vec![attr_int("axis", -1)],
    );
    let w = g.weight("w", &[C, 2]);
    let out = g.op("MatMul", "mm", &[&ln, &w]);
    let model = g.model(&[1, 3, C, C], &out);
    let (groups, _) = find_groups(&model).unwrap();
    let x = crate::rewrite_check::pseudo_random_input(3 * C * C, 1);
    let inputs = vec![(std::path::PathBuf::from("noise"), x)];
    let tensors = vec![groups[0].output.clone()];
    let measured =
        crate::calibrate::collect_channel_ranges(&model, &tensors, &inputs, C, |_| {}).unwrap();
    let (kept, _) = with_outliers(groups, &measured);
    assert_eq!(kept.len(), 1);
    let r = &measured[&tensors[0]];
    let top = (0..C).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap();
    assert_eq!(top, 7, "{r:?}");
}
