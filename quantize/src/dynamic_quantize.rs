//! ONNX's `DynamicQuantizeLinear` written out in core operators.
//!
//! onnxruntime's `quantize_dynamic` (the `*_quantized.onnx` files of model hubs)
//! quantizes each matmul's input at run time with `DynamicQuantizeLinear`: uint8,
//! scale and zero point from the tensor's range. tract-onnx runs that operator but
//! its NNEF writer has no form for it, so such a model could not go into a bundle.
//! [`expand_dynamic_quantize`] replaces each one with the operators its definition
//! is made of (`ReduceMin`, `ReduceMax`, `Div`, `Round`, `Clip`, `Cast`, ...), which
//! tract writes and reads as NNEF; `MatMulInteger` and `ConvInteger` then take the
//! uint8 tensor and its zero point as before. ONNX Runtime gives bit-identical
//! outputs on the expanded graph (`quantize/tests/hub_layouts.rs` checks the
//! embeddings against its outputs on the source file).

use tract_onnx::pb::{tensor_proto::DataType, GraphProto};

use crate::onnx_graph::{attr_int, f32_tensor, node, Namer};

/// Replaces every `DynamicQuantizeLinear` of `graph` (not of subgraphs) with core
/// operators computing the same uint8 tensor, scale and zero point; returns how
/// many were replaced.
pub fn expand_dynamic_quantize(graph: &mut GraphProto) -> usize {
    if !graph
        .node
        .iter()
        .any(|n| n.op_type == "DynamicQuantizeLinear")
    {
        return 0;
    }
    let mut namer = Namer::new(graph);
    let zero = namer.fresh("dynamic_quantize/zero");
    let q_max = namer.fresh("dynamic_quantize/255");
    graph.initializer.push(f32_tensor(&zero, &[], &[0.0]));
    graph.initializer.push(f32_tensor(&q_max, &[], &[255.0]));
    let mut replaced = 0;
    let nodes = std::mem::take(&mut graph.node);
    for n in nodes {
        if n.op_type != "DynamicQuantizeLinear" || n.input.len() != 1 || n.output.len() != 3 {
            graph.node.push(n);
            continue;
        }
        let base = if n.name.is_empty() {
            n.output[0].clone()
        } else {
            n.name.clone()
        };
        let mut fresh = |what: &str| namer.fresh(&format!("{base}/{what}"));
        let (x, y, scale, zero_point) = (&n.input[0], &n.output[0], &n.output[1], &n.output[2]);
        let [lo, hi, lo0, hi0, range, lo_scaled, zp_f, zp_round, zp_clip, xs, xr, xz, xc] = [
            "min",
            "max",
            "min0",
            "max0",
            "range",
            "min_scaled",
            "zp_f",
            "zp_round",
            "zp_clip",
            "x_scaled",
            "x_round",
            "x_shift",
            "x_clip",
        ]
        .map(&mut fresh);
        let no_keep = || vec![attr_int("keepdims", 0)];
        let to_u8 = || vec![attr_int("to", DataType::Uint8 as i64)];
        let mut op = |op: &str, inputs: &[&str], output: &str, attrs: Vec<_>| {
            let name = fresh(&op.to_lowercase());
            graph.node.push(node(op, &name, inputs, &[output], attrs));
        };
        // The range always holds 0 (ONNX's definition), so 0 is exact.
        op("ReduceMin", &[x], &lo, no_keep());
        op("ReduceMax", &[x], &hi, no_keep());
        op("Min", &[&lo, &zero], &lo0, vec![]);
        op("Max", &[&hi, &zero], &hi0, vec![]);
        op("Sub", &[&hi0, &lo0], &range, vec![]);
        op("Div", &[&range, &q_max], scale, vec![]);
        // zero point = saturate(round(0 - min / scale)); round is half to even.
        op("Div", &[&lo0, scale], &lo_scaled, vec![]);
        op("Neg", &[&lo_scaled], &zp_f, vec![]);
        op("Round", &[&zp_f], &zp_round, vec![]);
        op("Clip", &[&zp_round, &zero, &q_max], &zp_clip, vec![]);
        op("Cast", &[&zp_clip], zero_point, to_u8());
        // y = saturate(round(x / scale) + zero point).
        op("Div", &[x, scale], &xs, vec![]);
        op("Round", &[&xs], &xr, vec![]);
        op("Add", &[&xr, &zp_clip], &xz, vec![]);
        op("Clip", &[&xz, &zero, &q_max], &xc, vec![]);
        op("Cast", &[&xc], y, to_u8());
        replaced += 1;
    }
    replaced
}
