//! Tests of the pooled-token rewrite on small graphs built here.

use super::*;
use crate::onnx_graph::attr_int;
use crate::rewrite_check::pseudo_random_input;
use crate::test_graph::{assert_same_outputs, G};

fn names(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A pre-norm transformer block on `x` [1, 5, 4] plus a position embedding:
/// "attention" (a softmax over the tokens) then an MLP, a constant added, then
/// pooling of token `token`.
fn residual_block(token: i64) -> ModelProto {
    let mut g = G::new();
    let pos_in = g.weight("pos_in", &[1, 5, 4]);
    let h = g.op("Add", "embed", &["x", &pos_in]);
    let ln1 = g.layer_norm("ln1", &h, 4);
    let wq = g.weight("wq", &[4, 4]);
    let q = g.op("MatMul", "q", &[&ln1, &wq]);
    let att = g.op_attrs("Softmax", "att", &[&q], vec![attr_int("axis", 1)]);
    let wo = g.weight("wo", &[4, 4]);
    let o = g.op("MatMul", "out_proj", &[&att, &wo]);
    let r1 = g.op("Add", "residual1", &[&h, &o]);
    let ln2 = g.layer_norm("ln2", &r1, 4);
    let w1 = g.weight("w1", &[4, 8]);
    let f1 = g.op("MatMul", "fc1", &[&ln2, &w1]);
    let b1 = g.weight("b1", &[8]);
    let f1b = g.op("Add", "fc1_bias", &[&b1, &f1]);
    let sig = g.op("Sigmoid", "sigmoid", &[&f1b]);
    let act = g.op("Mul", "act", &[&f1b, &sig]);
    let w2 = g.weight("w2", &[8, 4]);
    let f2 = g.op("MatMul", "fc2", &[&act, &w2]);
    let r2 = g.op("Add", "residual2", &[&r1, &f2]);
    let pos = g.weight("pos", &[1, 5, 4]);
    let r3 = g.op("Add", "plus_pos", &[&r2, &pos]);
    let idx = g.index("idx", &[], token);
    let pooled = g.op_attrs("Gather", "pool", &[&r3, &idx], vec![attr_int("axis", 1)]);
    let wp = g.weight("wp", &[4, 3]);
    let y = g.op("MatMul", "proj", &[&pooled, &wp]);
    g.model(&[1, 5, 4], &y)
}

#[test]
fn residual_block_prunes_only_after_the_token_mixing() {
    for token in [0, 3, -1] {
        let model = residual_block(token);
        let (pruned, s) = keep_only_pooled_token(&model, &[1, 5, 4]).unwrap();
        assert!(s.pruned(), "{s:?}");
        assert_eq!(s.pooling_node.as_deref(), Some("pool"));
        assert_eq!((s.token_axis, s.tokens), (Some(1), Some(5)));
        assert_eq!(s.token, Some(if token < 0 { 4 } else { token as usize }));
        assert_eq!(
            names(&s.one_token_nodes),
            [
                "out_proj",
                "residual1",
                "ln2",
                "fc1",
                "fc1_bias",
                "sigmoid",
                "act",
                "fc2",
                "residual2",
                "plus_pos"
            ]
        );
        assert_eq!(names(&s.one_token_matmuls), ["out_proj", "fc1", "fc2"]);
        // embed feeds ln1 (all tokens) too; the softmax mixes tokens; pos is a
        // constant.
        let mut sliced = s.sliced_tensors.clone();
        sliced.sort();
        assert_eq!(names(&sliced), ["att_out", "embed_out", "pos"]);
        let graph = pruned.graph.as_ref().unwrap();
        assert_eq!(
            graph.node.iter().filter(|n| n.op_type == "Slice").count(),
            3
        );
        // ln1 still reads the full embed_out, residual1 its slice.
        let by_name = |name: &str| graph.node.iter().find(|n| n.name == name).unwrap();
        assert_eq!(by_name("ln1").input[0], "embed_out");
        let slice = &by_name("residual1").input[0];
        assert_ne!(slice, "embed_out");
        let slicer = graph.node.iter().find(|n| &n.output[0] == slice).unwrap();
        assert_eq!(
            (slicer.op_type.as_str(), slicer.input[0].as_str()),
            ("Slice", "embed_out")
        );
        assert_same_outputs(&model, &pruned, &[1, 5, 4]);
    }
}

#[test]
fn graph_without_a_pooling_gather_is_unchanged() {
    let mut g = G::new();
    let w = g.weight("w", &[4, 4]);
    let h = g.op("MatMul", "mm", &["x", &w]);
    let y = g.op_attrs(
        "ReduceMean",
        "mean",
        &[&h],
        vec![attr_ints_("axes", &[1]), attr_int("keepdims", 0)],
    );
    let model = g.model(&[1, 5, 4], &y);
    let (pruned, s) = keep_only_pooled_token(&model, &[1, 5, 4]).unwrap();
    assert!(!s.pruned());
    assert!(
        s.skipped.as_deref().unwrap().contains("no pooling Gather"),
        "{s:?}"
    );
    assert!(s.one_token_nodes.is_empty() && s.sliced_tensors.is_empty());
    assert_eq!(pruned, model);
}

fn attr_ints_(name: &str, v: &[i64]) -> tract_onnx::pb::AttributeProto {
    crate::onnx_graph::attr_ints(name, v)
}

/// Token-major `x` [5, 1, 4] (axis 0), a rank-1 index: the walk stops at an
/// unsupported op (CumSum over the tokens).
#[test]
fn walk_stops_at_an_unsupported_op() {
    let mut g = G::new();
    let relu = g.op("Relu", "relu", &["x"]);
    let zero = g.index("zero", &[], 0);
    let cum = g.op("CumSum", "cumsum", &[&relu, &zero]);
    let sig = g.op("Sigmoid", "sigmoid", &[&cum]);
    let w = g.weight("w", &[4, 6]);
    let mm = g.op("MatMul", "mm", &[&sig, &w]);
    let idx = g.index("idx", &[1], 2);
    let y = g.op_attrs("Gather", "pool", &[&mm, &idx], vec![attr_int("axis", 0)]);
    let model = g.model(&[5, 1, 4], &y);
    let (pruned, s) = keep_only_pooled_token(&model, &[5, 1, 4]).unwrap();
    assert!(s.pruned(), "{s:?}");
    assert_eq!((s.token_axis, s.token), (Some(0), Some(2)));
    assert_eq!(names(&s.one_token_nodes), ["sigmoid", "mm"]);
    assert_eq!(names(&s.sliced_tensors), ["cumsum_out"]);
    assert_same_outputs(&model, &pruned, &[5, 1, 4]);
}

/// A tensor read by a graph output, or pooled but from a non-token-wise op,
/// leaves nothing to prune.
#[test]
fn pooled_tensor_from_an_unsupported_op_is_unchanged() {
    let mut g = G::new();
    let t = g.op_attrs("Softmax", "sm", &["x"], vec![attr_int("axis", 1)]);
    let idx = g.index("idx", &[], 0);
    let y = g.op_attrs("Gather", "pool", &[&t, &idx], vec![attr_int("axis", 1)]);
    let model = g.model(&[1, 5, 4], &y);
    let (pruned, s) = keep_only_pooled_token(&model, &[1, 5, 4]).unwrap();
    assert!(s.skipped.as_deref().unwrap().contains("Softmax"), "{s:?}");
    assert_eq!(pruned, model);
}

#[test]
fn pseudo_random_input_is_deterministic_and_spread() {
    let a = pseudo_random_input(1000, 1);
    assert_eq!(a, pseudo_random_input(1000, 1));
    assert_ne!(a, pseudo_random_input(1000, 2));
    assert!(a.iter().all(|x| (-2.0..2.0).contains(x)));
    let mean = a.iter().sum::<f32>() / a.len() as f32;
    assert!(mean.abs() < 0.2, "{mean}");
}
