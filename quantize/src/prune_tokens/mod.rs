//! "CLS-only last layer": compute the tail of a ViT image encoder for the pooled
//! token only.
//!
//! A CLIP ViT pools one token of the last layer's output: Hugging Face exports end
//! with `Gather(axis=1, index 0)` on the residual stream, OpenCLIP exports apply
//! `ln_post` to every token and then gather token 0. Everything between the last
//! attention and that `Gather` works token by token (out projection, residual adds,
//! LayerNorm, MLP), so it only has to run on the pooled token. tract does not find
//! this on its own (its slice pushing starts from `Slice`, and a scalar-index
//! `Gather` is not turned into one), so this is a rewrite of the fp32 ONNX graph,
//! done before quantization:
//!
//! 1. find the pooling `Gather`: a constant one-element index on a rank-3 activation;
//! 2. walk up from it in reverse topological order. A node whose every consumer wants
//!    only the pooled token, and that works token by token (elementwise ops,
//!    LayerNorm over the channels, a matmul with a constant 2-D weight), is
//!    *converted*: it keeps its output name but now computes one token, and asks
//!    the same of its inputs that carry the token axis;
//! 3. where the walk stops (attention, a `Reshape`, a tensor that other nodes need
//!    in full, a constant), a `Slice(t, [i], [i+1], [axis])` cuts the full tensor
//!    (one per tensor and axis);
//! 4. the `Gather` then takes index 0 of its one-token input: same output.
//!
//! Tensor shapes come from tract's analysis of the model with a fixed input shape,
//! mapped back to ONNX tensor names through tract's outlet labels. Anything
//! unexpected leaves the model unchanged, with the reason in the summary: this is an
//! optimisation, never a requirement.

use std::collections::{HashMap, HashSet};

use clip_edge_core::ErrorChain;
use tract_onnx::pb::{GraphProto, ModelProto, NodeProto};
use tract_onnx::prelude::*;

use crate::onnx_graph::{get_attr_int, i64_tensor, node, tensor_i64, GraphIndex, Namer};

/// Elementwise ops of one activation input (other inputs, if any, are scalars).
const UNARY: &[&str] = &[
    "Identity",
    "Cast",
    "Sigmoid",
    "Tanh",
    "Relu",
    "Erf",
    "Gelu",
    "Sqrt",
    "Exp",
    "Log",
    "Neg",
    "Abs",
    "Reciprocal",
    "Softplus",
    "LeakyRelu",
    "Elu",
    "HardSigmoid",
    "HardSwish",
    "Clip",
];

/// Elementwise ops with numpy broadcasting between their inputs.
const BINARY: &[&str] = &["Add", "Sub", "Mul", "Div", "Pow", "Max", "Min"];

/// What the rewrite did, or why it did nothing.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PruneSummary {
    /// Why the model was left unchanged (`None` when it was rewritten).
    pub skipped: Option<String>,
    /// The pooling `Gather` node.
    pub pooling_node: Option<String>,
    /// The token axis of the pooled tensor.
    pub token_axis: Option<usize>,
    /// Tokens the pooled tensor has.
    pub tokens: Option<usize>,
    /// The pooled token.
    pub token: Option<usize>,
    /// Nodes that now run on the pooled token only, in graph order.
    pub one_token_nodes: Vec<String>,
    /// Of those, the MatMul/Gemm nodes.
    pub one_token_matmuls: Vec<String>,
    /// Tensors still computed for every token and cut to the pooled one by a new
    /// `Slice` (where the walk stopped).
    pub sliced_tensors: Vec<String>,
}

impl PruneSummary {
    /// A summary of a model left unchanged.
    pub fn unchanged(reason: impl Into<String>) -> Self {
        PruneSummary {
            skipped: Some(reason.into()),
            ..Default::default()
        }
    }

    /// Whether the model was rewritten.
    pub fn pruned(&self) -> bool {
        self.skipped.is_none()
    }
}

/// Why the rewrite could not even start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PruneError {
    /// The model has no graph.
    #[error("the model has no graph")]
    NoGraph,
}

/// One consumer edge that wants only the pooled token of its input.
#[derive(Debug, Clone, Copy)]
struct Request {
    node: usize,
    input: usize,
    axis: usize,
}

/// The rewrite, decided on the unchanged graph.
struct Plan {
    gather: usize,
    axis: usize,
    tokens: usize,
    token: usize,
    converted: Vec<bool>,
    /// (tensor, axis, the edges reading its slice), in a stable order.
    slices: Vec<(String, usize, Vec<Request>)>,
}

/// Rewrites `model` so that the nodes between the last token-mixing op and the
/// pooling `Gather` run on the pooled token only. `input_shape` is the shape of the
/// model's single f32 input used to infer tensor shapes (`[1, 3, H, W]` for an
/// image encoder). Returns the model unchanged, with the reason, when the graph does
/// not have the expected form.
pub fn keep_only_pooled_token(
    model: &ModelProto,
    input_shape: &[usize],
) -> Result<(ModelProto, PruneSummary), PruneError> {
    let graph = model.graph.as_ref().ok_or(PruneError::NoGraph)?;
    match plan(model, graph, input_shape) {
        Ok(plan) => apply(model, &plan),
        Err(reason) => Ok((model.clone(), PruneSummary::unchanged(reason))),
    }
}

fn default_opset(model: &ModelProto) -> i64 {
    model
        .opset_import
        .iter()
        .find(|op| op.domain.is_empty() || op.domain == "ai.onnx")
        .map(|op| op.version)
        .unwrap_or(1)
}

/// Static shapes of every tensor tract can infer, by ONNX tensor name.
fn tensor_shapes(
    model: &ModelProto,
    graph: &GraphProto,
    input_shape: &[usize],
) -> Result<HashMap<String, Vec<usize>>, String> {
    let mut m = tract_onnx::onnx()
        .model_for_proto_model(model)
        .map_err(|e| format!("tract cannot read the model: {}", ErrorChain(&*e)))?;
    if m.inputs.len() != 1 {
        return Err(format!(
            "the model has {} inputs, expected 1",
            m.inputs.len()
        ));
    }
    m.set_input_fact(0, f32::fact(input_shape).into())
        .and_then(|_| m.analyse(false))
        .map_err(|e| format!("tract cannot infer the shapes: {}", ErrorChain(&*e)))?;
    let mut shapes = HashMap::new();
    for n in m.nodes() {
        for (slot, output) in n.outputs.iter().enumerate() {
            let name = match m.outlet_label(OutletId::new(n.id, slot)) {
                Some(label) => label.to_string(),
                None if slot == 0 => n.name.clone(),
                None => continue,
            };
            if let Ok(Some(dims)) = output.fact.shape.as_concrete_finite() {
                shapes.insert(name, dims.to_vec());
            }
        }
    }
    for t in &graph.initializer {
        shapes.insert(t.name.clone(), t.dims.iter().map(|&d| d as usize).collect());
    }
    Ok(shapes)
}

/// Names read inside subgraphs (`If`/`Loop` bodies): consumers we cannot rewrite.
fn subgraph_reads(graph: &GraphProto) -> HashSet<String> {
    fn collect(g: &GraphProto, out: &mut HashSet<String>) {
        for n in &g.node {
            for a in &n.attribute {
                for sub in a.g.iter().chain(&a.graphs) {
                    for m in &sub.node {
                        out.extend(m.input.iter().cloned());
                    }
                    collect(sub, out);
                }
            }
        }
    }
    let mut out = HashSet::new();
    collect(graph, &mut out);
    out
}

/// The pooling node: `(node index, token axis, index)`.
fn find_pooling(
    graph: &GraphProto,
    index: &GraphIndex<'_>,
    shapes: &HashMap<String, Vec<usize>>,
) -> Result<(usize, usize, i64), String> {
    let mut found = Vec::new();
    for (i, n) in graph.node.iter().enumerate() {
        if n.op_type != "Gather" || n.input.len() != 2 || index.constant(&n.input[0]).is_some() {
            continue;
        }
        if shapes.get(&n.input[0]).is_none_or(|s| s.len() != 3) {
            continue;
        }
        let Some((dims, values)) = index.constant(&n.input[1]).and_then(tensor_i64) else {
            continue;
        };
        if dims.len() > 1 || values.len() != 1 {
            continue;
        }
        let axis = get_attr_int(n, "axis").unwrap_or(0);
        let axis = if axis < 0 { axis + 3 } else { axis };
        if !(0..3).contains(&axis) {
            continue;
        }
        found.push((i, axis as usize, values[0]));
    }
    match found.as_slice() {
        [] => Err("no pooling Gather (a constant one-element index on a rank-3 activation)".into()),
        [one] => Ok(*one),
        more => Err(format!(
            "{} candidate pooling Gathers ({}); expected one",
            more.len(),
            more.iter()
                .map(|(i, _, _)| graph.node[*i].name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn plan(model: &ModelProto, graph: &GraphProto, input_shape: &[usize]) -> Result<Plan, String> {
    if default_opset(model) < 10 {
        return Err("opset < 10 (Slice takes its bounds as inputs from opset 10)".into());
    }
    let index = GraphIndex::new(graph);
    // ONNX nodes are topologically sorted; the walk relies on it.
    let mut known: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    known.extend(graph.input.iter().map(|v| v.name.as_str()));
    for n in &graph.node {
        if let Some(missing) = n
            .input
            .iter()
            .find(|i| !i.is_empty() && !known.contains(i.as_str()))
        {
            return Err(format!(
                "node {:?} reads {missing:?} before it is computed (graph not topologically sorted)",
                n.name
            ));
        }
        known.extend(n.output.iter().map(String::as_str));
    }
    let shapes = tensor_shapes(model, graph, input_shape)?;
    let (gather, axis, token) = find_pooling(graph, &index, &shapes)?;
    let pooled = &graph.node[gather].input[0];
    let tokens = shapes[pooled][axis];
    if tokens < 2 {
        return Err(format!(
            "{pooled:?} has {tokens} token(s): nothing to prune"
        ));
    }
    let token = if token < 0 {
        token + tokens as i64
    } else {
        token
    };
    if !(0..tokens as i64).contains(&token) {
        return Err(format!("pooled token {token} out of range (0..{tokens})"));
    }
    let token = token as usize;

    let in_subgraphs = subgraph_reads(graph);
    let consumers = |t: &str| index.consumer_count(t) + usize::from(in_subgraphs.contains(t));
    let mut requests: HashMap<String, Vec<Request>> = HashMap::new();
    requests.insert(
        pooled.clone(),
        vec![Request {
            node: gather,
            input: 0,
            axis,
        }],
    );
    let mut converted = vec![false; graph.node.len()];
    for i in (0..graph.node.len()).rev() {
        let n = &graph.node[i];
        if i == gather || n.output.len() != 1 {
            continue;
        }
        let Some(reqs) = requests.get(&n.output[0]) else {
            continue;
        };
        let out_axis = reqs[0].axis;
        if reqs.len() != consumers(&n.output[0]) || reqs.iter().any(|r| r.axis != out_axis) {
            continue;
        }
        let Some(inputs) = token_wise(n, out_axis, tokens, &shapes, &index) else {
            continue;
        };
        converted[i] = true;
        for (input, in_axis) in inputs {
            requests
                .entry(n.input[input].clone())
                .or_default()
                .push(Request {
                    node: i,
                    input,
                    axis: in_axis,
                });
        }
    }
    if !converted.iter().any(|&c| c) {
        return Err(format!(
            "the pooled tensor {pooled:?} comes from {} (not token-wise): nothing to prune",
            index
                .producer(pooled)
                .map(|p| format!("{} {:?}", p.op_type, p.name))
                .unwrap_or_else(|| "a graph input".into())
        ));
    }
    // Every requested tensor whose producer was not converted is cut by a Slice.
    let producer_index: HashMap<&str, usize> = graph
        .node
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i)))
        .collect();
    let mut slices: Vec<(String, usize, Vec<Request>)> = Vec::new();
    let mut names: Vec<&String> = requests.keys().collect();
    names.sort_by_key(|t| (producer_index.get(t.as_str()).copied(), t.as_str()));
    for t in names {
        if producer_index
            .get(t.as_str())
            .is_some_and(|&p| converted[p])
        {
            continue;
        }
        let mut by_axis: Vec<(usize, Vec<Request>)> = Vec::new();
        for r in &requests[t] {
            match by_axis.iter_mut().find(|(a, _)| *a == r.axis) {
                Some((_, edges)) => edges.push(*r),
                None => by_axis.push((r.axis, vec![*r])),
            }
        }
        for (a, edges) in by_axis {
            slices.push((t.clone(), a, edges));
        }
    }
    Ok(Plan {
        gather,
        axis,
        tokens,
        token,
        converted,
        slices,
    })
}

/// If `n` (whose output keeps `tokens` tokens on `axis`) works token by token: the
/// inputs that must then be cut too, with their token axis.
fn token_wise(
    n: &NodeProto,
    axis: usize,
    tokens: usize,
    shapes: &HashMap<String, Vec<usize>>,
    index: &GraphIndex<'_>,
) -> Option<Vec<(usize, usize)>> {
    let out = shapes.get(&n.output[0])?;
    if out.get(axis) != Some(&tokens) {
        return None;
    }
    let rank = out.len();
    // Which inputs carry the token axis, under numpy broadcasting to `out`.
    let broadcast = |inputs: &[usize]| -> Option<Vec<(usize, usize)>> {
        let mut cut = Vec::new();
        for &k in inputs {
            let name = n.input.get(k)?;
            if name.is_empty() {
                continue;
            }
            let s = shapes.get(name)?;
            if s.len() > rank {
                return None;
            }
            let offset = rank - s.len();
            if axis < offset {
                continue;
            }
            match s[axis - offset] {
                1 => {}
                d if d == tokens => cut.push((k, axis - offset)),
                _ => return None,
            }
        }
        Some(cut)
    };
    let op = n.op_type.as_str();
    if UNARY.contains(&op) {
        if shapes.get(n.input.first()?)? != out {
            return None;
        }
        // Clip's bounds are scalars.
        if n.input.iter().skip(1).any(|i| {
            !i.is_empty()
                && shapes
                    .get(i)
                    .is_none_or(|s| s.iter().product::<usize>() != 1)
        }) {
            return None;
        }
        return Some(vec![(0, axis)]);
    }
    if BINARY.contains(&op) {
        let inputs: Vec<usize> = (0..n.input.len()).collect();
        return broadcast(&inputs);
    }
    match op {
        "LayerNormalization" => {
            if n.output.len() > 1 || shapes.get(n.input.first()?)? != out {
                return None;
            }
            let first = get_attr_int(n, "axis").unwrap_or(-1);
            let first = if first < 0 {
                first + rank as i64
            } else {
                first
            };
            (axis as i64) < first && first < rank as i64
        }
        .then(|| vec![(0, axis)]),
        "MatMul" => {
            let w = index.constant_f32(n.input.get(1)?)?;
            let x = shapes.get(&n.input[0])?;
            (w.dims.len() == 2 && x.len() == rank && rank >= 2 && axis < rank - 1)
                .then(|| vec![(0, axis)])
        }
        "Gemm" => {
            if get_attr_int(n, "transA").unwrap_or(0) != 0 || axis != 0 || rank != 2 {
                return None;
            }
            index.constant_f32(n.input.get(1)?)?;
            let mut cut = vec![(0, 0)];
            cut.extend(broadcast(&[2])?);
            Some(cut)
        }
        _ => None,
    }
}

fn apply(model: &ModelProto, plan: &Plan) -> Result<(ModelProto, PruneSummary), PruneError> {
    let mut model = model.clone();
    let graph = model.graph.as_mut().ok_or(PruneError::NoGraph)?;
    let mut namer = Namer::new(graph);
    let producer_index: HashMap<String, usize> = graph
        .node
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.output.iter().map(move |o| (o.clone(), i)))
        .collect();

    let starts = namer.fresh("token_slice/starts");
    let ends = namer.fresh("token_slice/ends");
    graph
        .initializer
        .push(i64_tensor(&starts, &[1], &[plan.token as i64]));
    graph
        .initializer
        .push(i64_tensor(&ends, &[1], &[plan.token as i64 + 1]));
    let mut axes_names: HashMap<usize, String> = HashMap::new();

    // Slice nodes to insert after node i (None: before every node).
    let mut after: HashMap<Option<usize>, Vec<NodeProto>> = HashMap::new();
    let mut sliced_tensors = Vec::new();
    for (tensor, axis, edges) in &plan.slices {
        let axes = axes_names
            .entry(*axis)
            .or_insert_with(|| {
                let name = namer.fresh(&format!("token_slice/axes_{axis}"));
                graph
                    .initializer
                    .push(i64_tensor(&name, &[1], &[*axis as i64]));
                name
            })
            .clone();
        let out = namer.fresh(&format!("{tensor}/token{}", plan.token));
        let name = namer.fresh(&format!("{tensor}/TokenSlice"));
        for r in edges {
            graph.node[r.node].input[r.input] = out.clone();
        }
        after
            .entry(producer_index.get(tensor).copied())
            .or_default()
            .push(node(
                "Slice",
                &name,
                &[tensor, &starts, &ends, &axes],
                &[&out],
                vec![],
            ));
        sliced_tensors.push(tensor.clone());
    }

    // The Gather now picks index 0 of its one-token input.
    if plan.token != 0 {
        let old = graph.node[plan.gather].input[1].clone();
        let rank = GraphIndex::new(graph)
            .constant(&old)
            .map(|t| t.dims.len())
            .unwrap_or(0);
        let zero = namer.fresh("token_slice/gather_index");
        let dims: &[usize] = if rank == 0 { &[] } else { &[1] };
        graph.initializer.push(i64_tensor(&zero, dims, &[0]));
        graph.node[plan.gather].input[1] = zero;
    }

    let mut summary = PruneSummary {
        skipped: None,
        pooling_node: Some(graph.node[plan.gather].name.clone()),
        token_axis: Some(plan.axis),
        tokens: Some(plan.tokens),
        token: Some(plan.token),
        sliced_tensors,
        ..Default::default()
    };
    let mut changed: HashSet<String> = HashSet::new();
    for (n, _) in graph.node.iter().zip(&plan.converted).filter(|(_, &c)| c) {
        summary.one_token_nodes.push(n.name.clone());
        if matches!(n.op_type.as_str(), "MatMul" | "Gemm") {
            summary.one_token_matmuls.push(n.name.clone());
        }
        changed.extend(n.output.iter().cloned());
    }
    // Shapes recorded for the rewritten tensors no longer hold.
    graph.value_info.retain(|v| !changed.contains(&v.name));

    let old = std::mem::take(&mut graph.node);
    let mut nodes = Vec::with_capacity(old.len() + plan.slices.len());
    nodes.extend(after.remove(&None).unwrap_or_default());
    for (i, n) in old.into_iter().enumerate() {
        nodes.push(n);
        nodes.extend(after.remove(&Some(i)).unwrap_or_default());
    }
    graph.node = nodes;
    Ok((model, summary))
}

#[cfg(test)]
mod tests;
