//! The int8 rewrite: every MatMul/Gemm with a constant weight, and the ViT
//! patch-embedding Conv, becomes integer arithmetic that tract runs on its i8×i8→i32
//! matmul kernels, written with standard ONNX operators only.
//!
//! One quantized matmul `y = x · W (+ b)` becomes:
//!
//! ```text
//! dynamic:  s = max(ReduceMax(x), −ReduceMin(x), ε) / 127   per frame, per tensor
//!           v = x · (1 / s)
//! static:   v = Clip(x · (1 / s), -127, 127)       s from calibration
//! both:     xq = Cast<int8>(round(v))               round: + and − 1.5·2^23
//!           acc = MatMulInteger(xq, Wq)             i8 × i8 → i32
//!           y = Cast<float>(acc) · (s · w_scale) (+ b)
//! ```
//!
//! Activations are symmetric (zero point 0) so tract needs no weight column sums at
//! run time, and weights are symmetric per output channel
//! (`w_scale[n] = max_k |W[k,n]| / 127`). The patch-embedding Conv (kernel = stride,
//! no padding) is the same matmul over image patches: Reshape → Transpose → Reshape,
//! the quantized matmul, then back to the Conv's NCHW output. Every other Conv with
//! one group (the 1×1 and 3×3 convolutions of convolutional towers such as
//! MobileCLIP's) becomes `ConvInteger` on the same int8 activation and per-output-channel
//! weights, rescaled per channel; grouped and depthwise convolutions stay f32.
//!
//! Attention's activation × activation matmuls, LayerNorm and Softmax stay f32.
//!
//! Weight-only mode (`--mode weights`) writes `y = x · (Cast<float>(Wq) · w_scale)`
//! instead: the same int8 weights in the file, widened to f32 by tract's constant
//! folding at load, and an f32 matmul. On CPUs without SDOT tract's i8 kernel
//! (SMLAL) does fewer multiply-adds per instruction than its f32 one (FMLA).

use std::collections::HashMap;

use tract_onnx::pb::{GraphProto, ModelProto, NodeProto, TensorProto};

mod emit;
pub mod smooth;

use crate::onnx_graph::{
    get_attr_float, get_attr_int, get_attr_ints, prune_unused_initializers, GraphIndex, Namer,
};
use emit::Emitter;

/// 1.5 · 2^23: adding then subtracting it rounds an f32 to the nearest integer
/// (ties to even), the classic float trick.
pub(crate) const ROUND_MAGIC: f32 = 12_582_912.0;

/// Smallest activation scale, so an all-zero tensor does not divide by zero.
const MIN_SCALE: f32 = 1e-12;

/// How activation scales are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActivationMode {
    /// Computed per frame from the tensor's max |x|.
    Dynamic,
    /// Fixed, from calibration images.
    Static,
    /// None: weights are stored int8 and widened to f32 when the model loads, so
    /// the matmuls run in f32. The file is as small as the int8 one; the speed and
    /// memory at run time are those of fp32. For CPUs without SDOT (Cortex-A72,
    /// A53, A57), where tract's int8 kernel is slower than its f32 one.
    Weights,
}

/// What one dynamic activation scale covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScaleGranularity {
    /// The whole tensor: one max |x| per frame and matmul input.
    #[default]
    Tensor,
    /// Each token (row of the matmul): one max |x| per row. The scale factors out of
    /// the integer matmul row by row, so it costs one more per-row multiply.
    Token,
}

/// What the rewrite should do.
#[derive(Debug, Clone)]
pub struct QuantizeOptions {
    /// Dynamic or static activation scales.
    pub mode: ActivationMode,
    /// Dynamic mode: one activation scale per tensor or per token.
    pub granularity: ScaleGranularity,
    /// Node names to keep in fp32.
    pub exclude: Vec<String>,
    /// Static mode: activation scale per quantized input tensor name.
    pub static_scales: HashMap<String, f32>,
}

/// Which kind of node a candidate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum CandidateKind {
    /// `MatMul(x, W)` with a constant 2-D `W`.
    MatMul,
    /// `Gemm(x, W, C)`.
    Gemm,
    /// A Conv with kernel = stride and no padding (ViT patch embedding).
    PatchConv,
    /// Any other 2-D Conv with one group (convolutional towers: MobileCLIP's 1×1
    /// and 3×3 convolutions), as `ConvInteger`. Grouped and depthwise convolutions
    /// stay fp32.
    Conv,
}

/// A node the rewrite can quantize.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Candidate {
    /// Node name (made unique if the export left it empty).
    pub node: String,
    /// Kind of node.
    pub kind: CandidateKind,
    /// The activation tensor that gets quantized.
    pub input: String,
    /// Inner (reduction) dimension.
    pub k: usize,
    /// Output channels.
    pub n: usize,
}

/// A node left in fp32, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Skipped {
    /// Node name.
    pub node: String,
    /// Its op type.
    pub op: String,
    /// Why it was not quantized.
    pub reason: String,
}

/// What the rewrite did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct QuantizeSummary {
    /// Nodes rewritten to int8.
    pub quantized: Vec<Candidate>,
    /// MatMul/Gemm/Conv nodes left in fp32, with the reason.
    pub skipped: Vec<Skipped>,
    /// Weights (count of values) now stored as int8.
    pub int8_weights: usize,
}

/// Why a model cannot be quantized.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuantizeError {
    /// The model has no graph.
    #[error("the model has no graph")]
    NoGraph,
    /// Nothing in the model can be quantized.
    #[error("no MatMul, Gemm or patch Conv with a constant weight: nothing to quantize")]
    NothingToQuantize,
    /// Static mode without a scale for some input.
    #[error("static mode: no calibrated scale for tensor {0:?} (node {1:?})")]
    MissingScale(String, String),
    /// An `--exclude` name matches no candidate node.
    #[error("--exclude {0:?} matches no quantizable node (see `clip-quantize quantize --list`)")]
    UnknownExclude(String),
    /// The patch-embedding input has no static spatial size.
    #[error("{0}")]
    DynamicShape(String),
    /// Outlier smoothing cannot be applied as asked.
    #[error("smoothing: {0}")]
    Smoothing(String),
}

/// Gives every node a non-empty, unique name (exports sometimes leave them empty),
/// so nodes can be named in `--exclude` and reports.
pub fn name_nodes(model: &mut ModelProto) {
    let Some(graph) = model.graph.as_mut() else {
        return;
    };
    let mut seen = std::collections::HashSet::new();
    for (i, n) in graph.node.iter_mut().enumerate() {
        if n.name.is_empty() || seen.contains(&n.name) {
            n.name = format!("{}_{i}", n.op_type);
        }
        seen.insert(n.name.clone());
    }
}

/// Lists the quantizable nodes of a model and the matmul-like nodes that are not.
pub fn find_candidates(
    model: &ModelProto,
) -> Result<(Vec<Candidate>, Vec<Skipped>), QuantizeError> {
    let graph = model.graph.as_ref().ok_or(QuantizeError::NoGraph)?;
    let index = GraphIndex::new(graph);
    let mut candidates = Vec::new();
    let mut skipped = Vec::new();
    for n in &graph.node {
        match classify_node(graph, &index, n) {
            Ok(Some(c)) => candidates.push(c),
            Ok(None) => {}
            Err(reason) => skipped.push(Skipped {
                node: n.name.clone(),
                op: n.op_type.clone(),
                reason,
            }),
        }
    }
    Ok((candidates, skipped))
}

fn classify_node(
    graph: &GraphProto,
    index: &GraphIndex<'_>,
    n: &NodeProto,
) -> Result<Option<Candidate>, String> {
    let candidate = |kind, k, n_out| Candidate {
        node: n.name.clone(),
        kind,
        input: n.input[0].clone(),
        k,
        n: n_out,
    };
    match n.op_type.as_str() {
        "MatMul" => {
            if index.constant_f32(&n.input[0]).is_some() {
                return Err("constant left operand".into());
            }
            let Some(w) = index.constant_f32(&n.input[1]) else {
                return Err("activation × activation (attention); stays fp32".into());
            };
            if w.dims.len() != 2 {
                return Err(format!(
                    "weight of rank {} (only 2-D weights are quantized)",
                    w.dims.len()
                ));
            }
            Ok(Some(candidate(CandidateKind::MatMul, w.dims[0], w.dims[1])))
        }
        "Gemm" => {
            if get_attr_int(n, "transA").unwrap_or(0) != 0 {
                return Err("Gemm with transA".into());
            }
            let Some(w) = index.constant_f32(&n.input[1]) else {
                return Err("Gemm without a constant weight".into());
            };
            if w.dims.len() != 2 {
                return Err("Gemm weight is not 2-D".into());
            }
            let (k, n_out) = if get_attr_int(n, "transB").unwrap_or(0) != 0 {
                (w.dims[1], w.dims[0])
            } else {
                (w.dims[0], w.dims[1])
            };
            Ok(Some(candidate(CandidateKind::Gemm, k, n_out)))
        }
        "Conv" => {
            let Some(w) = index.constant_f32(&n.input[1]) else {
                return Err("Conv without a constant weight".into());
            };
            if w.dims.len() != 4 {
                return Err("not a 2-D convolution".into());
            }
            let kernel = [w.dims[2] as i64, w.dims[3] as i64];
            let strides = get_attr_ints(n, "strides").unwrap_or(vec![1, 1]);
            let pads = get_attr_ints(n, "pads").unwrap_or(vec![0; 4]);
            let dilations = get_attr_ints(n, "dilations").unwrap_or(vec![1, 1]);
            let group = get_attr_int(n, "group").unwrap_or(1);
            let auto_pad = n
                .attribute
                .iter()
                .find(|a| a.name == "auto_pad")
                .map(|a| a.s.clone());
            let padded = pads.iter().any(|&p| p != 0)
                || auto_pad.is_some_and(|s| !s.is_empty() && s != b"NOTSET");
            let k = w.dims[1] * w.dims[2] * w.dims[3];
            let patch = strides == kernel
                && !padded
                && dilations.iter().all(|&d| d == 1)
                && group == 1
                && source_input(graph, index, &n.input[0]).is_some();
            if patch {
                return Ok(Some(candidate(CandidateKind::PatchConv, k, w.dims[0])));
            }
            if group != 1 {
                return Err(format!(
                    "grouped Conv ({group} groups; depthwise when one channel each) stays fp32"
                ));
            }
            Ok(Some(candidate(CandidateKind::Conv, k, w.dims[0])))
        }
        _ => Ok(None),
    }
}

/// Symmetric per-output-channel int8 weights of a `[K, N]` matrix: `(Wq, w_scale)`.
pub fn quantize_weight(w: &[f32], k: usize, n: usize) -> (Vec<i8>, Vec<f32>) {
    let mut scales = vec![0.0f32; n];
    for row in w.chunks_exact(n).take(k) {
        for (s, &x) in scales.iter_mut().zip(row) {
            *s = s.max(x.abs());
        }
    }
    for s in &mut scales {
        *s = if *s > 0.0 { *s / 127.0 } else { 1.0 };
    }
    let q = w
        .iter()
        .enumerate()
        .map(|(i, &x)| (x / scales[i % n]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (q, scales)
}

/// Rewrites `model` to int8 and returns it with a summary.
pub fn quantize(
    model: &ModelProto,
    options: &QuantizeOptions,
) -> Result<(ModelProto, QuantizeSummary), QuantizeError> {
    let mut model = model.clone();
    name_nodes(&mut model);
    let (candidates, skipped) = find_candidates(&model)?;
    if candidates.is_empty() {
        return Err(QuantizeError::NothingToQuantize);
    }
    for name in &options.exclude {
        if !candidates.iter().any(|c| &c.node == name) {
            return Err(QuantizeError::UnknownExclude(name.clone()));
        }
    }
    let mut summary = QuantizeSummary {
        skipped,
        ..Default::default()
    };
    let opset = default_opset(&model);
    let graph = model.graph.as_mut().ok_or(QuantizeError::NoGraph)?;
    let mut namer = Namer::new(graph);
    let mut new_nodes: Vec<NodeProto> = Vec::with_capacity(graph.node.len() * 2);
    let mut new_inits: Vec<TensorProto> = Vec::new();
    let mut quantized = HashMap::new();
    let by_node: HashMap<&str, &Candidate> =
        candidates.iter().map(|c| (c.node.as_str(), c)).collect();
    {
        let index = GraphIndex::new(graph);
        for n in &graph.node {
            let Some(cand) = by_node.get(n.name.as_str()) else {
                new_nodes.push(n.clone());
                continue;
            };
            if options.exclude.contains(&cand.node) {
                summary.skipped.push(Skipped {
                    node: cand.node.clone(),
                    op: n.op_type.clone(),
                    reason: "excluded (kept fp32)".into(),
                });
                new_nodes.push(n.clone());
                continue;
            }
            let static_scale = match options.mode {
                ActivationMode::Dynamic | ActivationMode::Weights => None,
                ActivationMode::Static => {
                    Some(*options.static_scales.get(&cand.input).ok_or_else(|| {
                        QuantizeError::MissingScale(cand.input.clone(), cand.node.clone())
                    })?)
                }
            };
            let mut emit = Emitter {
                namer: &mut namer,
                nodes: &mut new_nodes,
                inits: &mut new_inits,
                prefix: cand.node.clone(),
                quantized: &mut quantized,
                weights_only: options.mode == ActivationMode::Weights,
                per_token: options.granularity == ScaleGranularity::Token,
                axes_as_input: opset >= 18,
            };
            match cand.kind {
                CandidateKind::MatMul => {
                    let w = index
                        .constant_f32(&n.input[1])
                        .ok_or(QuantizeError::NothingToQuantize)?;
                    emit.qmatmul(
                        &n.input[0],
                        &w.data,
                        cand.k,
                        cand.n,
                        static_scale,
                        &n.output[0],
                    );
                }
                CandidateKind::Gemm => {
                    let w = index
                        .constant_f32(&n.input[1])
                        .ok_or(QuantizeError::NothingToQuantize)?;
                    let alpha = get_attr_float(n, "alpha").unwrap_or(1.0);
                    let beta = get_attr_float(n, "beta").unwrap_or(1.0);
                    let mut kn = if get_attr_int(n, "transB").unwrap_or(0) != 0 {
                        transpose(&w.data, cand.n, cand.k)
                    } else {
                        w.data.clone()
                    };
                    kn.iter_mut().for_each(|x| *x *= alpha);
                    match n.input.get(2).filter(|c| !c.is_empty()) {
                        None => emit.qmatmul(
                            &n.input[0],
                            &kn,
                            cand.k,
                            cand.n,
                            static_scale,
                            &n.output[0],
                        ),
                        Some(c) => {
                            let mm = emit.namer.fresh(&format!("{}/qmm_out", cand.node));
                            emit.qmatmul(&n.input[0], &kn, cand.k, cand.n, static_scale, &mm);
                            let bias = if beta == 1.0 {
                                c.clone()
                            } else {
                                let beta_name = emit.constant_f32("beta", &[], &[beta]);
                                emit.op("Mul", &[c, &beta_name], vec![])
                            };
                            emit.op_into("Add", &[&mm, &bias], &n.output[0], vec![]);
                        }
                    }
                }
                CandidateKind::PatchConv => {
                    let w = index
                        .constant_f32(&n.input[1])
                        .ok_or(QuantizeError::NothingToQuantize)?;
                    let input_dims = source_input(graph, &index, &n.input[0])
                        .and_then(|name| graph_input_dims(graph, name));
                    let (h, wd) = match input_dims.as_deref() {
                        Some([_, _, Some(h), Some(w)]) => (*h, *w),
                        _ => {
                            return Err(QuantizeError::DynamicShape(format!(
                                "patch Conv {:?}: input {:?} has no static height and width; export with a fixed image size",
                                cand.node, n.input[0]
                            )))
                        }
                    };
                    let bias = n.input.get(2).filter(|b| !b.is_empty()).cloned();
                    emit.patch_conv(
                        &n.input[0],
                        &w.dims,
                        &w.data,
                        (h, wd),
                        bias.as_deref(),
                        static_scale,
                        &n.output[0],
                    )
                    .map_err(QuantizeError::DynamicShape)?;
                }
                CandidateKind::Conv => {
                    let w = index
                        .constant_f32(&n.input[1])
                        .ok_or(QuantizeError::NothingToQuantize)?;
                    let bias = n.input.get(2).filter(|b| !b.is_empty()).cloned();
                    let attributes: Vec<_> = n
                        .attribute
                        .iter()
                        .filter(|a| a.name != "kernel_shape")
                        .cloned()
                        .collect();
                    emit.qconv(
                        &n.input[0],
                        &w.dims,
                        &w.data,
                        attributes,
                        bias.as_deref(),
                        static_scale,
                        &n.output[0],
                    );
                }
            }
            summary.int8_weights += cand.k * cand.n;
            summary.quantized.push((*cand).clone());
        }
    }
    graph.node = new_nodes;
    graph.initializer.extend(new_inits);
    // Shapes recorded for the old graph's intermediates may no longer hold.
    graph.value_info.clear();
    prune_unused_initializers(graph);
    ensure_opset(&mut model, 13);
    Ok((model, summary))
}

fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// The graph input a tensor is, directly or through `Cast`/`Identity` nodes.
fn source_input<'g>(
    graph: &'g GraphProto,
    index: &GraphIndex<'g>,
    name: &'g str,
) -> Option<&'g str> {
    let mut name = name;
    for _ in 0..4 {
        if graph.input.iter().any(|i| i.name == name) {
            return Some(name);
        }
        let producer = index.producer(name)?;
        if !matches!(producer.op_type.as_str(), "Cast" | "Identity") {
            return None;
        }
        name = producer.input.first()?;
    }
    None
}

/// Static dims of a graph input (`None` for symbolic ones).
fn graph_input_dims(graph: &GraphProto, name: &str) -> Option<Vec<Option<usize>>> {
    use tract_onnx::pb::{tensor_shape_proto::dimension::Value, type_proto::Value as TypeValue};
    let input = graph.input.iter().find(|i| i.name == name)?;
    let TypeValue::TensorType(t) = input.r#type.as_ref()?.value.as_ref()?;
    let shape = t.shape.as_ref()?;
    Some(
        shape
            .dim
            .iter()
            .map(|d| match d.value {
                Some(Value::DimValue(v)) if v > 0 => Some(v as usize),
                _ => None,
            })
            .collect(),
    )
}

/// The default-domain opset of a model (1 if it names none).
fn default_opset(model: &ModelProto) -> i64 {
    model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(1, |o| o.version)
}

/// Raises the default-domain opset to at least `min` (MatMulInteger needs 10, Round 11).
fn ensure_opset(model: &mut ModelProto, min: i64) {
    for op in &mut model.opset_import {
        if op.domain.is_empty() || op.domain == "ai.onnx" {
            op.version = op.version.max(min);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx_graph::{attr_int, attr_ints};
    use crate::rewrite_check::pseudo_random_input;
    use crate::test_graph::{run, G};

    /// A convolutional block as MobileCLIP's: 3×3 conv (bias) → ReLU → depthwise 3×3
    /// → 1×1 conv.
    fn conv_block() -> ModelProto {
        let mut g = G::new();
        let w1 = g.weight("w1", &[8, 4, 3, 3]);
        let b1 = g.weight("b1", &[8]);
        let pad = || vec![attr_ints("pads", &[1, 1, 1, 1])];
        let c1 = g.op_attrs("Conv", "conv3x3", &["x", &w1, &b1], pad());
        let r = g.op("Relu", "relu", &[&c1]);
        let wd = g.weight("wd", &[8, 1, 3, 3]);
        let mut dw_attrs = pad();
        dw_attrs.push(attr_int("group", 8));
        let d = g.op_attrs("Conv", "depthwise", &[&r, &wd], dw_attrs);
        let w2 = g.weight("w2", &[4, 8, 1, 1]);
        let c2 = g.op("Conv", "conv1x1", &[&d, &w2]);
        g.model(&[1, 4, 8, 8], &c2)
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (norm(a) * norm(b))
    }

    #[test]
    fn convolutions_become_conv_integer_and_depthwise_stays_fp32() {
        let fp32 = conv_block();
        let shape = [1, 4, 8, 8];
        let x = pseudo_random_input(4 * 64, 3);
        let reference = run(&fp32, &shape, &x);
        for mode in [ActivationMode::Dynamic, ActivationMode::Weights] {
            let options = QuantizeOptions {
                mode,
                granularity: ScaleGranularity::Token,
                exclude: vec![],
                static_scales: HashMap::new(),
            };
            let (int8, summary) = quantize(&fp32, &options).unwrap();
            let count = |op: &str| {
                int8.graph
                    .as_ref()
                    .unwrap()
                    .node
                    .iter()
                    .filter(|n| n.op_type == op)
                    .count()
            };
            let kinds: Vec<CandidateKind> = summary.quantized.iter().map(|c| c.kind).collect();
            assert_eq!(
                kinds,
                [CandidateKind::Conv, CandidateKind::Conv],
                "{mode:?}"
            );
            assert!(
                summary.skipped.iter().any(|s| s.node == "depthwise"),
                "{:?}",
                summary.skipped
            );
            let (integer, float) = match mode {
                ActivationMode::Dynamic => (2, 1),
                _ => (0, 3),
            };
            assert_eq!(
                (count("ConvInteger"), count("Conv")),
                (integer, float),
                "{mode:?}"
            );
            let out = run(&int8, &shape, &x);
            let c = cosine(&reference, &out);
            assert!(c > 0.9995, "{mode:?}: cosine {c}");
        }
    }

    #[test]
    fn weight_quantization_is_per_column_and_symmetric() {
        // 2×3: column maxima 2, 0.5, 0 (a zero column keeps scale 1).
        let w = [2.0, -0.5, 0.0, -1.0, 0.25, 0.0];
        let (q, s) = quantize_weight(&w, 2, 3);
        assert_eq!(s, vec![2.0 / 127.0, 0.5 / 127.0, 1.0]);
        assert_eq!(q, vec![127, -127, 0, -64, 64, 0]);
        for (i, (&x, &qi)) in w.iter().zip(&q).enumerate() {
            assert!((qi as f32 * s[i % 3] - x).abs() <= s[i % 3] / 2.0 + 1e-7);
        }
    }

    #[test]
    fn weights_never_hold_i8_min() {
        // The int8 kernel of cores without dot product is exact only because one operand, the
        // weights, has no -128 (third_party/README.md#sadalp).
        let (k, n) = (96, 64);
        let w: Vec<f32> = (0..k * n)
            .map(|i| {
                let x = ((i * 7919) % 2001) as f32 / 1000.0 - 1.0;
                // Column maxima on the negative side, and values a rounding error past them.
                if i % n == i / n % n {
                    -1.0 - 1e-7 * (i % 5) as f32
                } else {
                    x
                }
            })
            .collect();
        let (q, _) = quantize_weight(&w, k, n);
        assert!(q.contains(&-127));
        assert!(!q.contains(&i8::MIN));
    }

    #[test]
    fn transpose_swaps_axes() {
        assert_eq!(
            transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }
}
