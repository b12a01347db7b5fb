//! QDQ files (ONNX Runtime's `quantize_static` with `QuantFormat.QDQ`, and other
//! tools' static int8 exports) lowered to the fp32 graph they approximate.
//!
//! A QDQ graph keeps fp32 operators and marks quantization with
//! `QuantizeLinear`/`DequantizeLinear` pairs: weights are stored as integers behind a
//! `DequantizeLinear`, and activations pass through `QuantizeLinear → DequantizeLinear`.
//! tract computes such a graph in f32 (its NNEF writer has no form for
//! `QuantizeLinear`), so it is neither fast nor bundleable as is. [`lower_qdq`] folds
//! every constant `DequantizeLinear` into an f32 weight, `(q − zero_point) · scale`,
//! exactly, and drops every activation pair, leaving the fp32 model the file was
//! quantized from (with its weights rounded to the file's int8 grid). `quantize`
//! then makes our int8 from it.

use std::collections::{HashMap, HashSet};

use tract_onnx::pb::{tensor_proto::DataType, GraphProto, TensorProto};

use crate::onnx_graph::{f32_tensor, get_attr_int, node, tensor_f32, GraphIndex};

/// What lowering did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QdqLowering {
    /// Constant `DequantizeLinear`s folded into f32 weights.
    pub folded_weights: usize,
    /// `QuantizeLinear → DequantizeLinear` pairs removed from activations.
    pub removed_pairs: usize,
}

impl QdqLowering {
    /// Whether the graph had anything to lower.
    pub fn changed(&self) -> bool {
        self.folded_weights + self.removed_pairs > 0
    }
}

/// Why a QDQ graph cannot be lowered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QdqError {
    /// A quantized constant of a type or layout not handled.
    #[error("DequantizeLinear {node:?}: {problem}")]
    UnsupportedConstant {
        /// The node.
        node: String,
        /// What is wrong.
        problem: String,
    },
    /// A `QuantizeLinear` output read by something other than a `DequantizeLinear`
    /// (an integer operator): a mixed graph.
    #[error("QuantizeLinear {node:?} feeds {consumer:?} ({op}), not only DequantizeLinear: mixed QDQ and integer operators are not handled")]
    MixedPrecision {
        /// The QuantizeLinear.
        node: String,
        /// The consumer.
        consumer: String,
        /// Its op type.
        op: String,
    },
}

/// Lowers a QDQ `graph` (one with `QuantizeLinear` nodes; not its subgraphs):
/// dequantized constants become f32 initializers, activation pairs are removed,
/// other `DequantizeLinear`s stay. A graph without `QuantizeLinear` is untouched.
pub fn lower_qdq(graph: &mut GraphProto) -> Result<QdqLowering, QdqError> {
    // ONNX Runtime's dynamic int8 files have `DequantizeLinear`s too (of a quantized
    // token table's `Gather`), but no `QuantizeLinear`: they keep their arithmetic.
    if !graph.node.iter().any(|n| n.op_type == "QuantizeLinear") {
        return Ok(QdqLowering::default());
    }
    let mut lowering = QdqLowering::default();
    let mut folded: Vec<TensorProto> = Vec::new();
    let mut renamed: HashMap<String, String> = HashMap::new();
    let mut dropped: HashSet<usize> = HashSet::new();
    {
        let index = GraphIndex::new(graph);
        let mut readers: HashMap<&str, Vec<&tract_onnx::pb::NodeProto>> = HashMap::new();
        for n in &graph.node {
            for i in &n.input {
                readers.entry(i.as_str()).or_default().push(n);
            }
        }
        for (i, n) in graph.node.iter().enumerate() {
            if n.op_type != "DequantizeLinear" {
                continue;
            }
            let input = &n.input[0];
            if let Some(q) = index.constant(input) {
                folded.push(dequantize_constant(n, q, &index)?);
                lowering.folded_weights += 1;
            } else if let Some(q) = index
                .producer(input)
                .filter(|p| p.op_type == "QuantizeLinear")
            {
                if let Some(other) = readers
                    .get(input.as_str())
                    .into_iter()
                    .flatten()
                    .find(|r| r.op_type != "DequantizeLinear")
                {
                    return Err(QdqError::MixedPrecision {
                        node: q.name.clone(),
                        consumer: other.name.clone(),
                        op: other.op_type.clone(),
                    });
                }
                renamed.insert(n.output[0].clone(), q.input[0].clone());
                lowering.removed_pairs += 1;
            } else {
                // A dequantized computed tensor (an integer `Gather` of a quantized
                // table): tract runs it as it is.
                continue;
            }
            dropped.insert(i);
        }
    }
    // A pair may follow another pair directly: resolve chains to their source.
    let resolve = |name: &str| {
        let mut name = name.to_string();
        while let Some(next) = renamed.get(&name) {
            name = next.clone();
        }
        name
    };
    let nodes = std::mem::take(&mut graph.node);
    for (i, mut n) in nodes.into_iter().enumerate() {
        if dropped.contains(&i) {
            continue;
        }
        for input in &mut n.input {
            if renamed.contains_key(input) {
                *input = resolve(input);
            }
        }
        graph.node.push(n);
    }
    // A graph output that was a dequantized tensor keeps its name.
    for o in &graph.output {
        if renamed.contains_key(&o.name) {
            let source = resolve(&o.name);
            let name = format!("{}/lowered", o.name);
            graph
                .node
                .push(node("Identity", &name, &[&source], &[&o.name], vec![]));
        }
    }
    graph.initializer.extend(folded);
    crate::onnx_graph::prune_unused_initializers(graph);
    Ok(lowering)
}

/// `(q − zero_point) · scale` of a constant, per tensor or along the node's axis.
fn dequantize_constant(
    n: &tract_onnx::pb::NodeProto,
    q: &TensorProto,
    index: &GraphIndex<'_>,
) -> Result<TensorProto, QdqError> {
    let problem = |p: String| QdqError::UnsupportedConstant {
        node: n.name.clone(),
        problem: p,
    };
    let values = integers(q).ok_or_else(|| {
        problem(format!(
            "quantized constant {:?} of ONNX type {} (int8, uint8 and int32 are handled)",
            q.name, q.data_type
        ))
    })?;
    let dims: Vec<usize> = q.dims.iter().map(|&d| d.max(0) as usize).collect();
    if values.len() != dims.iter().product::<usize>() {
        return Err(problem(format!("{:?} holds too few values", q.name)));
    }
    let scale = n
        .input
        .get(1)
        .and_then(|s| index.constant(s))
        .and_then(tensor_f32)
        .ok_or_else(|| problem("its scale is not a constant f32 tensor".into()))?;
    let zero = match n.input.get(2).filter(|z| !z.is_empty()) {
        None => vec![0; scale.data.len()],
        Some(z) => index
            .constant(z)
            .and_then(integers)
            .filter(|z| z.len() == scale.data.len())
            .ok_or_else(|| problem("its zero point does not match its scale".into()))?,
    };
    let data: Vec<f32> = if scale.data.len() == 1 {
        values
            .iter()
            .map(|&v| (v - zero[0]) as f32 * scale.data[0])
            .collect()
    } else {
        let rank = dims.len() as i64;
        let axis = get_attr_int(n, "axis").unwrap_or(1);
        let axis = if axis < 0 { axis + rank } else { axis };
        if !(0..rank).contains(&axis) || dims[axis as usize] != scale.data.len() {
            return Err(problem(format!(
                "{} scales along axis {axis} of a {dims:?} tensor",
                scale.data.len()
            )));
        }
        let inner: usize = dims[axis as usize + 1..].iter().product();
        let channels = scale.data.len();
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let c = (i / inner) % channels;
                (v - zero[c]) as f32 * scale.data[c]
            })
            .collect()
    };
    Ok(f32_tensor(&n.output[0], &dims, &data))
}

/// The values of an int8, uint8 or int32 tensor proto, as i64.
fn integers(t: &TensorProto) -> Option<Vec<i64>> {
    let raw = !t.raw_data.is_empty();
    match DataType::try_from(t.data_type).ok()? {
        DataType::Int8 if raw => Some(t.raw_data.iter().map(|&b| b as i8 as i64).collect()),
        DataType::Uint8 if raw => Some(t.raw_data.iter().map(|&b| b as i64).collect()),
        DataType::Int8 | DataType::Uint8 | DataType::Int32 if !raw => {
            Some(t.int32_data.iter().map(|&v| v as i64).collect())
        }
        DataType::Int32 => Some(
            t.raw_data
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)
                .collect(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx_graph::{attr_int, i8_tensor};
    use crate::test_graph::G;

    /// `x` [1, 3, 4] → Q → DQ → MatMul(DQ(int8 weight [4, 2], per-column scales)).
    fn qdq_matmul(g: &mut G) -> String {
        let s = g.constant("x_scale", &[], &[0.05]);
        let zp = g.add_init(i8_tensor("x_zp", &[], &[3]));
        let q = g.op("QuantizeLinear", "q", &["x", &s, &zp]);
        let dq = g.op("DequantizeLinear", "dq", &[&q, &s, &zp]);
        let wq = g.add_init(i8_tensor("wq", &[4, 2], &[1, -2, 3, -4, 5, -6, 7, 127]));
        let ws = g.constant("w_scale", &[2], &[0.5, 0.25]);
        let w = g.op_attrs(
            "DequantizeLinear",
            "w_dq",
            &[&wq, &ws],
            vec![attr_int("axis", 1)],
        );
        g.op("MatMul", "mm", &[&dq, &w])
    }

    #[test]
    fn weights_fold_and_activation_pairs_go() {
        let mut g = G::new();
        let out = qdq_matmul(&mut g);
        let mut model = g.model(&[1, 3, 4], &out);
        let graph = model.graph.as_mut().unwrap();
        let lowering = lower_qdq(graph).unwrap();
        assert_eq!(
            lowering,
            QdqLowering {
                folded_weights: 1,
                removed_pairs: 1
            }
        );
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, vec!["MatMul"]);
        let mm = &graph.node[0];
        assert_eq!(mm.input[0], "x");
        let index = GraphIndex::new(graph);
        let w = index.constant_f32(&mm.input[1]).unwrap();
        assert_eq!(w.dims, vec![4, 2]);
        assert_eq!(
            w.data,
            vec![0.5, -0.5, 1.5, -1.0, 2.5, -1.5, 3.5, 31.75],
            "(q - 0) * scale of its column"
        );
    }

    #[test]
    fn a_quantized_tensor_read_by_an_integer_op_is_refused() {
        let mut g = G::new();
        let out = qdq_matmul(&mut g);
        let extra = g.op("MatMulInteger", "int_mm", &["q_out", "wq"]);
        let mut model = g.model(&[1, 3, 4], &out);
        model.graph.as_mut().unwrap().output[0].name = extra;
        let err = lower_qdq(model.graph.as_mut().unwrap()).unwrap_err();
        assert!(matches!(err, QdqError::MixedPrecision { .. }), "{err}");
        assert!(err.to_string().contains("\"int_mm\""), "{err}");
    }

    #[test]
    fn a_dequantize_of_a_computed_tensor_stays() {
        let mut g = G::new();
        let out = qdq_matmul(&mut g);
        let s = g.constant("s", &[], &[0.1]);
        let table = g.add_init(i8_tensor("table", &[4, 2], &[1, 2, 3, 4, 5, 6, 7, 8]));
        let zero = g.index("zero", &[], 0);
        let row = g.op("Gather", "lookup", &[&table, &zero]);
        let row = g.op("DequantizeLinear", "row_dq", &[&row, &s]);
        let out = g.op("Add", "sum", &[&out, &row]);
        let mut model = g.model(&[1, 3, 4], &out);
        let lowering = lower_qdq(model.graph.as_mut().unwrap()).unwrap();
        assert_eq!(lowering.removed_pairs, 1);
        let graph = model.graph.unwrap();
        let dq: Vec<&str> = graph
            .node
            .iter()
            .filter(|n| n.op_type == "DequantizeLinear")
            .map(|n| n.name.as_str())
            .collect();
        assert_eq!(dq, vec!["row_dq"]);
    }

    #[test]
    fn a_graph_without_quantize_linear_is_untouched() {
        // ONNX Runtime's dynamic int8: a DequantizeLinear of a constant, no
        // QuantizeLinear.
        let mut g = G::new();
        let wq = g.add_init(i8_tensor("wq", &[4, 2], &[1, -2, 3, -4, 5, -6, 7, 127]));
        let ws = g.constant("w_scale", &[], &[0.5]);
        let w = g.op("DequantizeLinear", "w_dq", &[&wq, &ws]);
        let out = g.op("MatMul", "mm", &["x", &w]);
        let mut model = g.model(&[1, 3, 4], &out);
        let before = model.clone();
        let lowering = lower_qdq(model.graph.as_mut().unwrap()).unwrap();
        assert!(!lowering.changed());
        assert_eq!(model, before);
    }
}
