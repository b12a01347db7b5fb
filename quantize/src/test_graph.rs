//! A builder of small ONNX graphs, and running them with tract, for unit tests of
//! the graph rewrites.

use tract_onnx::pb::{
    GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, ValueInfoProto,
};
use tract_onnx::prelude::*;

use crate::onnx_graph::{attr_int, f32_tensor, i64_tensor, node, value_info_f32};
use crate::rewrite_check::pseudo_random_input;

/// Nodes and initializers of a graph under construction, with seeded weights.
pub(crate) struct G {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    seed: u64,
}

impl G {
    pub(crate) fn new() -> Self {
        G {
            nodes: Vec::new(),
            inits: Vec::new(),
            seed: 10,
        }
    }
    pub(crate) fn op(&mut self, op: &str, name: &str, inputs: &[&str]) -> String {
        self.op_attrs(op, name, inputs, vec![])
    }
    pub(crate) fn op_attrs(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        attrs: Vec<tract_onnx::pb::AttributeProto>,
    ) -> String {
        let out = format!("{name}_out");
        self.nodes.push(node(op, name, inputs, &[&out], attrs));
        out
    }
    pub(crate) fn weight(&mut self, name: &str, dims: &[usize]) -> String {
        self.seed += 1;
        let len = dims.iter().product();
        let data: Vec<f32> = pseudo_random_input(len, self.seed)
            .iter()
            .map(|x| x * 0.5)
            .collect();
        self.inits.push(f32_tensor(name, dims, &data));
        name.to_string()
    }
    pub(crate) fn constant(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        self.inits.push(f32_tensor(name, dims, data));
        name.to_string()
    }
    pub(crate) fn add_init(&mut self, t: TensorProto) -> String {
        let name = t.name.clone();
        self.inits.push(t);
        name
    }
    pub(crate) fn index(&mut self, name: &str, dims: &[usize], value: i64) -> String {
        self.inits.push(i64_tensor(name, dims, &[value]));
        name.to_string()
    }
    pub(crate) fn layer_norm(&mut self, name: &str, x: &str, c: usize) -> String {
        let s = self.weight(&format!("{name}.scale"), &[c]);
        let b = self.weight(&format!("{name}.bias"), &[c]);
        self.op_attrs(
            "LayerNormalization",
            name,
            &[x, &s, &b],
            vec![attr_int("axis", -1)],
        )
    }
    pub(crate) fn model(self, input: &[usize], output: &str) -> ModelProto {
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
            graph: Some(GraphProto {
                name: "test".into(),
                node: self.nodes,
                initializer: self.inits,
                input: vec![value_info_f32("x", input)],
                output: vec![ValueInfoProto {
                    name: output.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// Runs `model` with tract on `x` of `shape`; its first output, flattened.
pub(crate) fn run(model: &ModelProto, shape: &[usize], x: &[f32]) -> Vec<f32> {
    let mut m = tract_onnx::onnx().model_for_proto_model(model).unwrap();
    m.set_input_fact(0, f32::fact(shape).into()).unwrap();
    let plan = m.into_optimized().unwrap().into_runnable().unwrap();
    let input = Tensor::from_shape(shape, x).unwrap();
    let out = plan.run(tvec!(input.into_tvalue())).unwrap();
    let view = out[0].try_as_plain_ram().unwrap();
    view.as_slice::<f32>().unwrap().to_vec()
}

pub(crate) fn assert_same_outputs(a: &ModelProto, b: &ModelProto, shape: &[usize]) {
    let x = pseudo_random_input(shape.iter().product(), 7);
    let (ya, yb) = (run(a, shape, &x), run(b, shape, &x));
    assert_eq!(ya.len(), yb.len());
    for (p, q) in ya.iter().zip(&yb) {
        assert!((p - q).abs() <= 1e-5 * (1.0 + p.abs()), "{ya:?} vs {yb:?}");
    }
}
