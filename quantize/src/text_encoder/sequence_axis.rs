//! A graph pass that lets a text tower run on fewer than 77 tokens.
//!
//! Exports traced at a fixed 77 tokens carry that length as constants: OpenCLIP's
//! `x + positional_embedding` adds a `[77, width]` weight, its causal mask is a
//! `[1, 1, 77, 77]` constant, and its attention reshapes concatenate a literal 77
//! into their target shapes. Hugging Face exports slice their position ids by the
//! input's length already and need nothing. This pass makes the constants follow
//! the token ids' length: elementwise operands with a 77-long axis are sliced to
//! `[0, length)` on it, and 77s in shape vectors become the length itself.
//!
//! It is a heuristic (a 77 that is not the sequence would be rewritten too), so
//! [`TextEncoder`](super::TextEncoder) checks the rewritten model against full-length
//! runs before it trusts it.

use tract_onnx::pb::{tensor_proto::DataType, GraphProto, NodeProto};

use crate::onnx_graph::{attr_int, i64_tensor, node, tensor_i64, GraphIndex, Namer};
use crate::tokenizer::CONTEXT_LENGTH;

/// What [`free_sequence_axis`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SequenceAxisRewrite {
    /// Constant operands sliced to the input's length (position embeddings, masks).
    pub sliced: usize,
    /// Shape vectors whose 77 became the input's length.
    pub shapes: usize,
}

impl SequenceAxisRewrite {
    /// Whether the graph was changed.
    pub fn changed(&self) -> bool {
        self.sliced + self.shapes > 0
    }
}

/// Elementwise operators whose constant operands may carry the sequence axis.
const ELEMENTWISE: &[&str] = &["Add", "Sub", "Mul", "Div", "Where", "Max", "Min"];

/// Whether input `at` of `op` is a shape (or a bound along a shape).
fn is_shape_input(op: &str, at: usize) -> bool {
    matches!(
        (op, at),
        ("Reshape", 1) | ("Expand", 1) | ("ConstantOfShape", 0) | ("Concat", _) | ("Slice", 2)
    )
}

fn is_float(data_type: i32) -> bool {
    [
        DataType::Float,
        DataType::Float16,
        DataType::Double,
        DataType::Bfloat16,
    ]
    .iter()
    .any(|&t| t as i32 == data_type)
}

/// Rewrites `graph` so that its constants follow the length of the token-id input
/// `ids` (`[batch, length]`); see the module documentation.
pub fn free_sequence_axis(graph: &mut GraphProto, ids: &str) -> SequenceAxisRewrite {
    let context = CONTEXT_LENGTH as i64;
    let mut namer = Namer::new(graph);
    let shape = namer.fresh("sequence_axis/ids_shape");
    let length = namer.fresh("sequence_axis/length");
    let one = namer.fresh("sequence_axis/one");
    let two = namer.fresh("sequence_axis/two");
    let mut extra_initializers = vec![i64_tensor(&one, &[1], &[1]), i64_tensor(&two, &[1], &[2])];
    // length = shape(ids)[1..2], an int64 [1].
    let mut prologue = vec![
        node("Shape", &shape, &[ids], &[&shape], vec![]),
        node("Slice", &length, &[&shape, &one, &two], &[&length], vec![]),
    ];
    let mut done = SequenceAxisRewrite::default();
    let mut nodes: Vec<NodeProto> = Vec::with_capacity(graph.node.len() + 8);
    {
        let index = GraphIndex::new(graph);
        for original in &graph.node {
            let mut n = original.clone();
            if n.op_type == "Constant" {
                nodes.push(n);
                continue;
            }
            for (at, input) in n.input.iter_mut().enumerate() {
                let Some(constant) = index.constant(input) else {
                    continue;
                };
                let dims = &constant.dims;
                if ELEMENTWISE.contains(&original.op_type.as_str())
                    && is_float(constant.data_type)
                    && dims.contains(&context)
                {
                    let axes: Vec<i64> = (0..dims.len() as i64)
                        .filter(|&a| dims[a as usize] == context)
                        .collect();
                    let starts = namer.fresh("sequence_axis/starts");
                    let ends = namer.fresh("sequence_axis/ends");
                    let axes_name = namer.fresh("sequence_axis/axes");
                    let sliced = namer.fresh(&format!("{input}/to_length"));
                    extra_initializers.push(i64_tensor(
                        &starts,
                        &[axes.len()],
                        &vec![0; axes.len()],
                    ));
                    extra_initializers.push(i64_tensor(&axes_name, &[axes.len()], &axes));
                    let lengths: Vec<&str> = axes.iter().map(|_| length.as_str()).collect();
                    nodes.push(node(
                        "Concat",
                        &ends,
                        &lengths,
                        &[&ends],
                        vec![attr_int("axis", 0)],
                    ));
                    nodes.push(node(
                        "Slice",
                        &sliced,
                        &[input, &starts, &ends, &axes_name],
                        &[&sliced],
                        vec![],
                    ));
                    *input = sliced;
                    done.sliced += 1;
                } else if is_shape_input(&original.op_type, at)
                    && constant.data_type == DataType::Int64 as i32
                    && dims.len() == 1
                {
                    let Some((_, values)) = tensor_i64(constant) else {
                        continue;
                    };
                    if values.len() > 8 || !values.contains(&context) {
                        continue;
                    }
                    // Runs of other values stay constants; each 77 becomes the length.
                    let mut parts: Vec<String> = Vec::new();
                    let mut run: Vec<i64> = Vec::new();
                    for &v in values.iter().chain(std::iter::once(&context)) {
                        if v != context {
                            run.push(v);
                            continue;
                        }
                        if !run.is_empty() {
                            let name = namer.fresh("sequence_axis/dims");
                            extra_initializers.push(i64_tensor(&name, &[run.len()], &run));
                            parts.push(name);
                            run.clear();
                        }
                        parts.push(length.clone());
                    }
                    parts.pop(); // the sentinel 77 chained on above
                    let replaced = if parts.len() == 1 {
                        parts.remove(0)
                    } else {
                        let name = namer.fresh(&format!("{input}/with_length"));
                        let inputs: Vec<&str> = parts.iter().map(String::as_str).collect();
                        nodes.push(node(
                            "Concat",
                            &name,
                            &inputs,
                            &[&name],
                            vec![attr_int("axis", 0)],
                        ));
                        name
                    };
                    *input = replaced;
                    done.shapes += 1;
                }
            }
            nodes.push(n);
        }
    }
    if done.changed() {
        prologue.append(&mut nodes);
        graph.node = prologue;
        graph.initializer.append(&mut extra_initializers);
    }
    done
}
