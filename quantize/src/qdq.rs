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

use crate::onnx_graph::{attr_int, f32_tensor, get_attr_int, node, tensor_f32, GraphIndex};
use crate::quant::ROUND_MAGIC;

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

/// Whether `graph` is a QDQ graph: one with `QuantizeLinear` nodes. ONNX Runtime's
/// dynamic int8 files have `DequantizeLinear`s too (of a quantized token table's
/// `Gather`), but no `QuantizeLinear`: they keep their arithmetic.
fn is_qdq(graph: &GraphProto) -> bool {
    graph.node.iter().any(|n| n.op_type == "QuantizeLinear")
}

/// Lowers a QDQ `graph` (one with `QuantizeLinear` nodes; not its subgraphs):
/// dequantized constants become f32 initializers, activation pairs are removed,
/// other `DequantizeLinear`s stay. A graph without `QuantizeLinear` is untouched.
pub fn lower_qdq(graph: &mut GraphProto) -> Result<QdqLowering, QdqError> {
    if !is_qdq(graph) {
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

/// Writes a QDQ `graph` (one with `QuantizeLinear` nodes) in the arithmetic the file
/// specifies, in operators tract runs and writes as NNEF:
///
/// ```text
/// each activation pair:  r = round(Clip(x / s, qmin − z, qmax − z));  x' = r · s
/// a MatMul of an int8 pair and an int8 weight (zero point 0, per tensor or column):
///     acc = MatMulInteger(Cast<int8>(r + z), Wq)
///     y   = Cast<float>(acc) · (s · s_w) − z · colsum(Wq) · s · s_w
/// other dequantized constants: folded to f32
/// ```
///
/// `x'` equals `DequantizeLinear(QuantizeLinear(x))`, and the integer matmul is
/// exact, so the result is the file's (up to f32 summation order). Returns how many
/// matmuls run on integers and how many pairs were rewritten.
pub fn keep_qdq_arithmetic(graph: &mut GraphProto) -> Result<QdqArithmetic, QdqError> {
    if !is_qdq(graph) {
        return Ok(QdqArithmetic::default());
    }
    let mut done = QdqArithmetic::default();
    let mut folded: Vec<String> = Vec::new();
    let mut namer = crate::onnx_graph::Namer::new(graph);
    // The rounding constants, shared by every pair (`x + M − M` rounds, ties to even).
    let (m, neg_m) = (
        namer.fresh("qdq/round_magic"),
        namer.fresh("qdq/round_magic_neg"),
    );
    let mut inits = vec![
        f32_tensor(&m, &[], &[ROUND_MAGIC]),
        f32_tensor(&neg_m, &[], &[-ROUND_MAGIC]),
    ];
    let mut nodes: Vec<tract_onnx::pb::NodeProto> = Vec::new();
    {
        let index = GraphIndex::new(graph);
        // Each int8 pair's DequantizeLinear output → (rounded tensor r, scale, zero
        // point). uint8 pairs (r + z up to 255) are not cast to int8: their matmuls
        // stay f32 on the rounded values.
        let mut int8_pairs: HashMap<&str, (String, f32, i64)> = HashMap::new();
        let mut int8_of: HashMap<String, String> = HashMap::new();
        for n in &graph.node {
            let problem = |p: String| QdqError::UnsupportedConstant {
                node: n.name.clone(),
                problem: p,
            };
            let base = namer.fresh(&format!("{}/qdq", n.name));
            let mut emit = |op: &str, inputs: &[&str], output: &str, attrs| {
                let name = namer.fresh(&format!("{}/{}", n.name, op.to_lowercase()));
                nodes.push(node(op, &name, inputs, &[output], attrs));
            };
            match n.op_type.as_str() {
                "QuantizeLinear" => {} // its DequantizeLinear does the work
                "DequantizeLinear" => {
                    if let Some(q) = index.constant(&n.input[0]) {
                        // Counted at the end: weights of integer matmuls go unused.
                        inits.push(dequantize_constant(n, q, &index)?);
                        folded.push(n.output[0].clone());
                        continue;
                    }
                    let Some(q) = index
                        .producer(&n.input[0])
                        .filter(|p| p.op_type == "QuantizeLinear")
                    else {
                        nodes.push(n.clone());
                        continue;
                    };
                    let (scale, zero, lo, hi) = activation_params(q, &index).map_err(problem)?;
                    let name = |what: &str| format!("{}/{what}", n.output[0]);
                    let c = |inits: &mut Vec<TensorProto>, what: &str, v: f32| {
                        inits.push(f32_tensor(&name(what), &[], &[v]));
                        name(what)
                    };
                    let s = c(&mut inits, "scale", scale);
                    let (a, b) = (
                        c(&mut inits, "lo", lo - zero as f32),
                        c(&mut inits, "hi", hi - zero as f32),
                    );
                    let [v, vc, up, r] = ["div", "clip", "up", "round"].map(name);
                    emit("Div", &[&q.input[0], &s], &v, vec![]);
                    emit("Clip", &[&v, &a, &b], &vc, vec![]);
                    emit("Add", &[&vc, &m], &up, vec![]);
                    emit("Add", &[&up, &neg_m], &r, vec![]);
                    emit("Mul", &[&r, &s], &n.output[0], vec![]);
                    if lo == -128.0 {
                        int8_pairs.insert(n.output[0].as_str(), (r, scale, zero));
                    }
                    done.pairs += 1;
                }
                "MatMul" => {
                    let weight = index
                        .producer(&n.input[1])
                        .filter(|d| d.op_type == "DequantizeLinear")
                        .and_then(|d| Some((d, index.constant(&d.input[0])?)));
                    let plan = match (int8_pairs.get(n.input[0].as_str()), weight) {
                        (Some(pair), Some((dq, wq))) => {
                            integer_weight(dq, wq, &index).map(|w| (pair.clone(), w))
                        }
                        _ => None,
                    };
                    let Some(((r, s, z), (wq, dims, w_scale))) = plan else {
                        nodes.push(n.clone());
                        continue;
                    };
                    let (k, cols) = (dims[0], dims[1]);
                    let xq = match int8_of.get(&r) {
                        Some(x) => x.clone(),
                        None => {
                            let zero = format!("{r}/zero_point");
                            inits.push(f32_tensor(&zero, &[], &[z as f32]));
                            let (t, x) = (format!("{r}/shifted"), format!("{r}/int8"));
                            emit("Add", &[&r, &zero], &t, vec![]);
                            emit(
                                "Cast",
                                &[&t],
                                &x,
                                vec![attr_int("to", DataType::Int8 as i64)],
                            );
                            int8_of.insert(r.clone(), x.clone());
                            x
                        }
                    };
                    let w_name = format!("{base}/weight_int8");
                    inits.push(crate::onnx_graph::i8_tensor(&w_name, &dims, &wq));
                    let out_scale: Vec<f32> =
                        (0..cols).map(|j| s * w_scale[j % w_scale.len()]).collect();
                    let scale_name = format!("{base}/out_scale");
                    inits.push(f32_tensor(&scale_name, &[cols], &out_scale));
                    let (acc, accf) = (format!("{base}/acc"), format!("{base}/acc_f32"));
                    emit("MatMulInteger", &[&xq, &w_name], &acc, vec![]);
                    emit(
                        "Cast",
                        &[&acc],
                        &accf,
                        vec![attr_int("to", DataType::Float as i64)],
                    );
                    if z == 0 {
                        emit("Mul", &[&accf, &scale_name], &n.output[0], vec![]);
                    } else {
                        // (acc − z · colsum(Wq)) · scale, the column sums folded.
                        let offset: Vec<f32> = (0..cols)
                            .map(|j| {
                                let sum: i64 = (0..k).map(|i| wq[i * cols + j] as i64).sum();
                                -(z * sum) as f32 * out_scale[j]
                            })
                            .collect();
                        let offset_name = format!("{base}/zero_point_offset");
                        inits.push(f32_tensor(&offset_name, &[cols], &offset));
                        let scaled = format!("{base}/scaled");
                        emit("Mul", &[&accf, &scale_name], &scaled, vec![]);
                        emit("Add", &[&scaled, &offset_name], &n.output[0], vec![]);
                    }
                    done.integer_matmuls += 1;
                }
                _ => nodes.push(n.clone()),
            }
        }
    }
    graph.node = nodes;
    graph.initializer.extend(inits);
    crate::onnx_graph::prune_unused_initializers(graph);
    let kept: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    done.folded_weights = folded.iter().filter(|f| kept.contains(f.as_str())).count();
    Ok(done)
}

/// What [`keep_qdq_arithmetic`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QdqArithmetic {
    /// Activation quantize/dequantize pairs written as rounding in f32.
    pub pairs: usize,
    /// MatMuls now on int8 (`MatMulInteger`).
    pub integer_matmuls: usize,
    /// Other dequantized constants folded to f32.
    pub folded_weights: usize,
}

impl QdqArithmetic {
    /// Whether the graph had anything to rewrite.
    pub fn changed(&self) -> bool {
        self.pairs + self.integer_matmuls + self.folded_weights > 0
    }
}

/// A `QuantizeLinear`'s scalar scale and zero point, and its output type's range.
fn activation_params(
    q: &tract_onnx::pb::NodeProto,
    index: &GraphIndex<'_>,
) -> Result<(f32, i64, f32, f32), String> {
    let scale = q
        .input
        .get(1)
        .and_then(|s| index.constant(s))
        .and_then(tensor_f32)
        .filter(|t| t.data.len() == 1)
        .ok_or("an activation scale that is not one constant f32 (per-axis activations are not handled)")?;
    let (zero, signed) = match q.input.get(2).filter(|z| !z.is_empty()) {
        // ONNX's default output type is uint8.
        None => (0, false),
        Some(z) => {
            let t = index
                .constant(z)
                .ok_or("a zero point that is not a constant")?;
            let v = integers(t)
                .filter(|v| v.len() == 1)
                .ok_or("a zero point that is not one int8 or uint8 value")?;
            (v[0], t.data_type == DataType::Int8 as i32)
        }
    };
    let (lo, hi) = if signed {
        (-128.0, 127.0)
    } else {
        (0.0, 255.0)
    };
    Ok((scale.data[0], zero, lo, hi))
}

/// A MatMul weight the integer path takes: int8 `[K, N]`, zero point 0, one scale
/// or one per column. Returns the values, dims and scales.
fn integer_weight(
    dq: &tract_onnx::pb::NodeProto,
    wq: &TensorProto,
    index: &GraphIndex<'_>,
) -> Option<(Vec<i8>, Vec<usize>, Vec<f32>)> {
    if wq.data_type != DataType::Int8 as i32 || wq.dims.len() != 2 {
        return None;
    }
    let dims: Vec<usize> = wq.dims.iter().map(|&d| d.max(0) as usize).collect();
    let values: Vec<i8> = integers(wq)?.into_iter().map(|v| v as i8).collect();
    let scale = index.constant(dq.input.get(1)?).and_then(tensor_f32)?;
    let per_column =
        scale.data.len() == dims[1] && matches!(get_attr_int(dq, "axis").unwrap_or(1), 1 | -1);
    if scale.data.len() != 1 && !per_column {
        return None;
    }
    if let Some(z) = dq.input.get(2).filter(|z| !z.is_empty()) {
        if integers(index.constant(z)?)?.iter().any(|&v| v != 0) {
            return None;
        }
    }
    (values.len() == dims[0] * dims[1]).then_some((values, dims, scale.data))
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
        qdq_matmul_with(g, i8_tensor("x_zp", &[], &[3]))
    }

    /// [`qdq_matmul`] with the activation zero point `zp` (its type is the
    /// quantized activation's).
    fn qdq_matmul_with(g: &mut G, zp: TensorProto) -> String {
        let s = g.constant("x_scale", &[], &[0.05]);
        let zp = g.add_init(zp);
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

    /// The rewrite computes what tract computes on the QDQ graph itself, with the
    /// MatMul on int8.
    #[test]
    fn the_files_arithmetic_is_kept_with_an_integer_matmul() {
        let mut g = G::new();
        let out = qdq_matmul(&mut g);
        let original = g.model(&[1, 3, 4], &out);
        let mut kept = original.clone();
        let done = keep_qdq_arithmetic(kept.graph.as_mut().unwrap()).unwrap();
        assert_eq!(
            done,
            QdqArithmetic {
                pairs: 1,
                integer_matmuls: 1,
                folded_weights: 0
            }
        );
        let graph = kept.graph.as_ref().unwrap();
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert!(ops.contains(&"MatMulInteger"), "{ops:?}");
        assert!(!ops.contains(&"QuantizeLinear") && !ops.contains(&"DequantizeLinear"));
        crate::test_graph::assert_same_outputs(&original, &kept, &[1, 3, 4]);
    }

    /// uint8 activations (zero point 100: shifted values up to 255) do not fit the
    /// int8 matmul: they keep an f32 matmul on the rounded values, and the result
    /// is still the file's.
    #[test]
    fn uint8_activations_keep_an_f32_matmul() {
        let mut g = G::new();
        let zp = TensorProto {
            name: "x_zp".into(),
            data_type: DataType::Uint8 as i32,
            raw_data: vec![100],
            ..Default::default()
        };
        let out = qdq_matmul_with(&mut g, zp);
        let original = g.model(&[1, 3, 4], &out);
        let mut kept = original.clone();
        let done = keep_qdq_arithmetic(kept.graph.as_mut().unwrap()).unwrap();
        assert_eq!((done.pairs, done.integer_matmuls), (1, 0));
        let graph = kept.graph.as_ref().unwrap();
        assert!(!graph.node.iter().any(|n| n.op_type == "MatMulInteger"));
        crate::test_graph::assert_same_outputs(&original, &kept, &[1, 3, 4]);
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
