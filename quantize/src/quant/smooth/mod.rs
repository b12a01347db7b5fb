//! Outlier smoothing (SmoothQuant): activation outlier channels moved into the
//! weights before the int8 rewrite.
//!
//! Trained ViTs carry a few post-LayerNorm channels far larger than the rest. With
//! one activation scale per tensor, int8 spends its range on them and the other
//! channels keep a few levels. A LayerNorm's output `x` (gain `γ`, bias `β`) feeds
//! linear layers `x · W`; dividing channel `j` of `x` by `s_j` (as `γ_j / s_j`,
//! `β_j / s_j`) and multiplying row `j` of every such `W` by `s_j` leaves the fp32
//! model's function unchanged and costs nothing at run time. With
//!
//! ```text
//! s_j = max|x_j|^α / max|W_j|^(1-α)
//! ```
//!
//! an outlier channel's range is shared between the activation and the weights,
//! whose int8 scales are per output channel (Xiao et al., SmoothQuant, 2023).
//!
//! [`find_groups`] finds each LayerNorm (the operator, or its `Mul`-by-gain,
//! `Add`-bias tail) whose output reaches only quantizable matmuls, through ops
//! that keep the channel axis last (`Cast`, `Transpose`, `Gather`, `Slice`);
//! calibration (or two pseudo-random images) gives `max|x_j|`; [`smooth`] folds the
//! scales. The caller checks the rewritten fp32 model against the original
//! ([`crate::rewrite_check`]).

use std::collections::{HashMap, HashSet};

use tract_onnx::pb::{ModelProto, NodeProto, TensorProto};

use crate::onnx_graph::{f32_tensor, get_attr_int, get_attr_ints, tensor_i64, GraphIndex, Namer};

use super::{find_candidates, CandidateKind, QuantizeError, Skipped};

/// `max|x_j|` per channel, by the name of the tensor measured.
pub type ChannelRanges = HashMap<String, Vec<f32>>;

/// Migration strength when none is chosen by calibration.
pub const DEFAULT_ALPHA: f32 = 0.5;

/// Smallest range and scale used, so an all-zero channel or row divides by nothing.
const EPSILON: f32 = 1e-6;

/// A channel whose range is above this many times its LayerNorm's median range is
/// an outlier; a LayerNorm without one is not smoothed.
pub const OUTLIER_RATIO: f32 = 8.0;

/// Rank assumed for a LayerNorm's output: `[batch, tokens, channels]`. A wrong
/// guess can only make a walk stop early or the fp32 check fail.
const ASSUMED_RANK: usize = 3;

/// Where a per-channel vector lives: input `input` of node `node`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Operand {
    /// Node name.
    pub node: String,
    /// Input index.
    pub input: usize,
}

/// A LayerNorm whose output reaches only quantizable matmuls, so its channels can
/// be rescaled against their weights.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SmoothGroup {
    /// The LayerNorm (or the `Add` ending a decomposed one).
    pub node: String,
    /// Its output, where channel ranges are measured.
    pub output: String,
    /// The gain `γ`.
    pub gain: Operand,
    /// The bias `β`, if any.
    pub bias: Option<Operand>,
    /// The MatMul/Gemm nodes reading the output.
    pub matmuls: Vec<String>,
    /// Channels (length of `γ`).
    pub channels: usize,
}

/// What smoothing did to one group, for the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SmoothedLayer {
    /// The LayerNorm.
    pub node: String,
    /// The matmuls whose weights took the scales.
    pub matmuls: Vec<String>,
    /// Largest channel range over the median one, before.
    pub spread_before: f32,
    /// The same after smoothing.
    pub spread_after: f32,
    /// Channels whose range was above [`OUTLIER_RATIO`] × the median before.
    pub outlier_channels: Vec<usize>,
    /// Smallest and largest `s_j`.
    pub scale_range: [f32; 2],
}

/// The smoothable groups of `model`, and the LayerNorms that are not, with why.
pub fn find_groups(model: &ModelProto) -> Result<(Vec<SmoothGroup>, Vec<Skipped>), QuantizeError> {
    let graph = model.graph.as_ref().ok_or(QuantizeError::NoGraph)?;
    let index = GraphIndex::new(graph);
    let (candidates, _) = find_candidates(model)?;
    let matmuls: HashSet<&str> = candidates
        .iter()
        .filter(|c| matches!(c.kind, CandidateKind::MatMul | CandidateKind::Gemm))
        .map(|c| c.node.as_str())
        .collect();
    let mut consumers: HashMap<&str, Vec<&NodeProto>> = HashMap::new();
    for n in &graph.node {
        for i in &n.input {
            consumers.entry(i.as_str()).or_default().push(n);
        }
    }
    let outputs: HashSet<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    let walk = Walk {
        index: &index,
        consumers: &consumers,
        outputs: &outputs,
        matmuls: &matmuls,
    };
    let mut groups = Vec::new();
    let mut skipped = Vec::new();
    for n in &graph.node {
        let Some((gain, bias, channels)) = affine_of(n, &index, &consumers) else {
            continue;
        };
        match walk.matmuls_reading(&n.output[0]) {
            Ok(found) if !found.is_empty() => groups.push(SmoothGroup {
                node: n.name.clone(),
                output: n.output[0].clone(),
                gain,
                bias,
                matmuls: found,
                channels,
            }),
            Ok(_) => {}
            Err(reason) => skipped.push(Skipped {
                node: n.name.clone(),
                op: n.op_type.clone(),
                reason,
            }),
        }
    }
    Ok((groups, skipped))
}

/// The gain, bias and channel count of a LayerNorm's affine part: a
/// `LayerNormalization` over the last axis with constant gain (and bias), or an
/// `Add(Mul(x, γ), β)` with constant 1-D `γ` and `β` of the same length.
fn affine_of(
    n: &NodeProto,
    index: &GraphIndex<'_>,
    consumers: &HashMap<&str, Vec<&NodeProto>>,
) -> Option<(Operand, Option<Operand>, usize)> {
    let vector = |name: &str| {
        index
            .constant_f32(name)
            .filter(|t| t.dims.len() == 1 && t.dims[0] > 1)
            .map(|t| t.dims[0])
    };
    let at = |node: &NodeProto, input| Operand {
        node: node.name.clone(),
        input,
    };
    match n.op_type.as_str() {
        "LayerNormalization" => {
            if get_attr_int(n, "axis").unwrap_or(-1) != -1 {
                return None;
            }
            let channels = vector(n.input.get(1)?)?;
            let bias = match n.input.get(2).filter(|b| !b.is_empty()) {
                None => None,
                Some(b) if vector(b) == Some(channels) => Some(at(n, 2)),
                Some(_) => return None,
            };
            Some((at(n, 1), bias, channels))
        }
        "Add" => {
            let (bias_input, x) = match (vector(&n.input[0]), vector(&n.input[1])) {
                (None, Some(_)) => (1, &n.input[0]),
                (Some(_), None) => (0, &n.input[1]),
                _ => return None,
            };
            let channels = vector(&n.input[bias_input])?;
            let mul = index.producer(x).filter(|m| m.op_type == "Mul")?;
            if consumers.get(x.as_str()).map_or(0, Vec::len) != 1 {
                return None;
            }
            let gain_input = (0..2).find(|&i| vector(&mul.input[i]) == Some(channels))?;
            // The other factor must not be a constant too (then it is no LayerNorm).
            index
                .constant(&mul.input[1 - gain_input])
                .is_none()
                .then_some(())?;
            Some((at(mul, gain_input), Some(at(n, bias_input)), channels))
        }
        _ => None,
    }
}

/// Walks from a tensor to the matmuls reading it.
struct Walk<'a, 'g> {
    index: &'a GraphIndex<'g>,
    consumers: &'a HashMap<&'g str, Vec<&'g NodeProto>>,
    outputs: &'a HashSet<&'g str>,
    matmuls: &'a HashSet<&'g str>,
}

impl Walk<'_, '_> {
    /// The quantizable matmuls reading `tensor` as their activation, through ops
    /// that keep its channels on the last axis; an error says what else reads it.
    fn matmuls_reading(&self, tensor: &str) -> Result<Vec<String>, String> {
        let mut found = Vec::new();
        let mut stack = vec![(tensor.to_string(), ASSUMED_RANK)];
        while let Some((t, rank)) = stack.pop() {
            if self.outputs.contains(t.as_str()) {
                return Err(format!("{t:?} is a graph output"));
            }
            for c in self.consumers.get(t.as_str()).into_iter().flatten() {
                let next = self.follow(c, &t, rank)?;
                match next {
                    Step::Matmul => found.push(c.name.clone()),
                    Step::Ignore => {}
                    Step::Through(rank) => stack.push((c.output[0].clone(), rank)),
                }
            }
        }
        found.sort();
        found.dedup();
        Ok(found)
    }

    fn follow(&self, c: &NodeProto, t: &str, rank: usize) -> Result<Step, String> {
        let last = rank.checked_sub(1).ok_or("a scalar")?;
        let refuse = |why: &str| Err(format!("{} {:?} {why}", c.op_type, c.name));
        match c.op_type.as_str() {
            "MatMul" | "Gemm" if c.input[0] == t && self.matmuls.contains(c.name.as_str()) => {
                Ok(Step::Matmul)
            }
            "Shape" => Ok(Step::Ignore),
            "Identity" => Ok(Step::Through(rank)),
            "Cast" if get_attr_int(c, "to") == Some(1) => Ok(Step::Through(rank)),
            "Transpose" => match get_attr_ints(c, "perm") {
                Some(p) if p.len() == rank && p[last] == last as i64 => Ok(Step::Through(rank)),
                _ => refuse("moves the channel axis"),
            },
            "Gather" if c.input[0] == t => {
                let axis = normalise(get_attr_int(c, "axis").unwrap_or(0), rank);
                let indices = self.index.constant(&c.input[1]).and_then(tensor_i64);
                match (axis, indices) {
                    (Some(a), Some((dims, _))) if a != last => {
                        Ok(Step::Through(rank - 1 + dims.len()))
                    }
                    _ => refuse("gathers along the channel axis"),
                }
            }
            "Slice" if c.input[0] == t => {
                let axes = c
                    .input
                    .get(3)
                    .filter(|a| !a.is_empty())
                    .and_then(|a| self.index.constant(a))
                    .and_then(tensor_i64);
                match axes {
                    Some((_, axes))
                        if axes
                            .iter()
                            .all(|&a| normalise(a, rank).is_some_and(|a| a != last)) =>
                    {
                        Ok(Step::Through(rank))
                    }
                    _ => refuse("may slice the channel axis"),
                }
            }
            "MatMul" | "Gemm" => refuse("reads it but is not quantized"),
            _ => refuse("reads it"),
        }
    }
}

/// What a walk does at a consumer.
enum Step {
    /// A matmul whose activation this is: the end of the path.
    Matmul,
    /// Reads only the shape.
    Ignore,
    /// Passes the channels on, at this rank.
    Through(usize),
}

fn normalise(axis: i64, rank: usize) -> Option<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    (0..rank as i64).contains(&a).then_some(a as usize)
}

/// The groups with outlier channels (a range above [`OUTLIER_RATIO`] × the median),
/// and the others as skipped, with their largest ratio. Smoothing a LayerNorm
/// without outliers changes its int8 error little either way, and on small
/// calibration sets it measured worse out of sample; so only outliers are moved.
pub fn with_outliers(
    groups: Vec<SmoothGroup>,
    ranges: &ChannelRanges,
) -> (Vec<SmoothGroup>, Vec<Skipped>) {
    let mut kept = Vec::new();
    let mut skipped = Vec::new();
    for g in groups {
        let ratio = ranges.get(&g.output).map_or(0.0, |r| spread(r));
        if ratio > OUTLIER_RATIO {
            kept.push(g);
        } else {
            skipped.push(Skipped {
                node: g.node,
                op: "LayerNorm".into(),
                reason: format!(
                    "no outlier channel: the largest range is {ratio:.1}x the median (<= {OUTLIER_RATIO})"
                ),
            });
        }
    }
    (kept, skipped)
}

/// Folds `s_j = max|x_j|^α / max|W_j|^(1-α)` into each group's LayerNorm and
/// weights. `ranges` holds `max|x_j|` of each group's output.
pub fn smooth(
    model: &ModelProto,
    groups: &[SmoothGroup],
    ranges: &ChannelRanges,
    alpha: f32,
) -> Result<(ModelProto, Vec<SmoothedLayer>), QuantizeError> {
    if !(0.0..=1.0).contains(&alpha) {
        return Err(QuantizeError::Smoothing(format!(
            "the migration strength must be in [0, 1], got {alpha}"
        )));
    }
    let mut model = model.clone();
    let graph = model.graph.as_mut().ok_or(QuantizeError::NoGraph)?;
    let mut namer = Namer::new(graph);
    let mut replaced: Vec<(Operand, TensorProto)> = Vec::new();
    let mut layers = Vec::new();
    {
        let index = GraphIndex::new(graph);
        let nodes: HashMap<&str, &NodeProto> =
            graph.node.iter().map(|n| (n.name.as_str(), n)).collect();
        let missing = |what: &str, node: &str| {
            QuantizeError::Smoothing(format!("{node:?}: {what} is not a constant f32 tensor"))
        };
        let read = |op: &Operand| {
            nodes
                .get(op.node.as_str())
                .and_then(|n| index.constant_f32(n.input.get(op.input)?))
                .ok_or_else(|| missing("its gain or bias", &op.node))
        };
        for g in groups {
            let x_range = ranges.get(&g.output).filter(|r| r.len() == g.channels);
            let x_range = x_range.ok_or_else(|| {
                QuantizeError::Smoothing(format!(
                    "no {}-channel range measured for {:?} (output of {:?})",
                    g.channels, g.output, g.node
                ))
            })?;
            // Each weight as [K = channels, N] rows, and how to write it back.
            let mut weights = Vec::new();
            for m in &g.matmuls {
                let node = nodes
                    .get(m.as_str())
                    .ok_or_else(|| missing("the node", m))?;
                let w = index
                    .constant_f32(&node.input[1])
                    .filter(|w| w.dims.len() == 2)
                    .ok_or_else(|| missing("its weight", m))?;
                let transposed =
                    node.op_type == "Gemm" && get_attr_int(node, "transB").unwrap_or(0) != 0;
                let k = if transposed { w.dims[1] } else { w.dims[0] };
                if k != g.channels {
                    return Err(QuantizeError::Smoothing(format!(
                        "{m:?}: weight {:?} does not have {} input rows",
                        w.dims, g.channels
                    )));
                }
                weights.push((m.clone(), w, transposed));
            }
            let mut w_range = vec![0.0f32; g.channels];
            for (_, w, transposed) in &weights {
                for (i, &v) in w.data.iter().enumerate() {
                    let j = if *transposed {
                        i % g.channels
                    } else {
                        i / w.dims[1]
                    };
                    w_range[j] = w_range[j].max(v.abs());
                }
            }
            let scales: Vec<f32> = x_range
                .iter()
                .zip(&w_range)
                .map(|(&x, &w)| {
                    let s = x.max(EPSILON).powf(alpha) / w.max(EPSILON).powf(1.0 - alpha);
                    if s.is_finite() && s > 0.0 {
                        s
                    } else {
                        1.0
                    }
                })
                .collect();
            let mut divide = |op: &Operand| -> Result<(), QuantizeError> {
                let mut t = read(op)?;
                t.data.iter_mut().zip(&scales).for_each(|(v, s)| *v /= s);
                let name = namer.fresh(&format!("{}/smoothed", op.node));
                replaced.push((op.clone(), f32_tensor(&name, &t.dims, &t.data)));
                Ok(())
            };
            divide(&g.gain)?;
            if let Some(b) = &g.bias {
                divide(b)?;
            }
            for (m, mut w, transposed) in weights {
                let cols = w.dims[1];
                for (i, v) in w.data.iter_mut().enumerate() {
                    *v *= scales[if transposed { i % cols } else { i / cols }];
                }
                let name = namer.fresh(&format!("{m}/smoothed_weight"));
                let op = Operand { node: m, input: 1 };
                replaced.push((op, f32_tensor(&name, &w.dims, &w.data)));
            }
            let after: Vec<f32> = x_range.iter().zip(&scales).map(|(x, s)| x / s).collect();
            let median = median(x_range);
            layers.push(SmoothedLayer {
                node: g.node.clone(),
                matmuls: g.matmuls.clone(),
                spread_before: spread(x_range),
                spread_after: spread(&after),
                outlier_channels: (0..g.channels)
                    .filter(|&j| x_range[j] > OUTLIER_RATIO * median)
                    .collect(),
                scale_range: [
                    scales.iter().copied().fold(f32::INFINITY, f32::min),
                    scales.iter().copied().fold(0.0, f32::max),
                ],
            });
        }
    }
    for (op, tensor) in replaced {
        if let Some(n) = graph.node.iter_mut().find(|n| n.name == op.node) {
            n.input[op.input] = tensor.name.clone();
        }
        graph.initializer.push(tensor);
    }
    crate::onnx_graph::prune_unused_initializers(graph);
    Ok((model, layers))
}

fn median(v: &[f32]) -> f32 {
    let mut s = v.to_vec();
    s.sort_by(f32::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(0.0)
}

/// Largest over median.
fn spread(v: &[f32]) -> f32 {
    let m = median(v).max(EPSILON);
    v.iter().copied().fold(0.0, f32::max) / m
}

#[cfg(test)]
mod tests;
