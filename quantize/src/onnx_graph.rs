//! Reading, editing and writing ONNX graphs at the protobuf level
//! (`tract_onnx::pb`), for the int8 rewrite.
//!
//! Helpers here find constant weights behind a node input (an initializer, a
//! `Constant` node, or either behind `Identity` nodes), build tensors and nodes, and
//! hand out unique names.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use prost::Message;
use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};

/// What can go wrong reading or writing an ONNX file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnnxError {
    /// The file could not be read or written.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The bytes are not an ONNX model.
    #[error("{path}: not an ONNX model")]
    Decode {
        /// The file.
        path: PathBuf,
        /// The protobuf decoder's error.
        source: prost::DecodeError,
    },
    /// The model has no graph.
    #[error("{path}: an ONNX model without a graph")]
    NoGraph {
        /// The file.
        path: PathBuf,
    },
    /// The model uses something this tool does not handle.
    #[error("{path}: {problem}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is not supported.
        problem: String,
    },
}

/// Reads an ONNX model file.
pub fn load_model(path: &Path) -> Result<ModelProto, OnnxError> {
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let model = ModelProto::decode(bytes.as_slice()).map_err(|source| OnnxError::Decode {
        path: path.to_path_buf(),
        source,
    })?;
    let graph = model.graph.as_ref().ok_or_else(|| OnnxError::NoGraph {
        path: path.to_path_buf(),
    })?;
    if graph
        .initializer
        .iter()
        .any(|t| t.data_location == Some(1) || !t.external_data.is_empty())
    {
        return Err(OnnxError::Unsupported {
            path: path.to_path_buf(),
            problem: "weights stored as external data; re-export as a single file (< 2 GB)".into(),
        });
    }
    Ok(model)
}

/// Serialises a model to bytes.
pub fn model_bytes(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// Writes a model file.
pub fn save_model(model: &ModelProto, path: &Path) -> Result<(), OnnxError> {
    std::fs::write(path, model_bytes(model)).map_err(|source| OnnxError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// An f32 tensor's shape and values.
#[derive(Debug, Clone, PartialEq)]
pub struct F32Tensor {
    /// Dimensions.
    pub dims: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// The values of a float tensor proto, or `None` when it is not f32.
pub fn tensor_f32(t: &TensorProto) -> Option<F32Tensor> {
    if t.data_type != DataType::Float as i32 {
        return None;
    }
    let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
    let len: usize = dims.iter().product();
    let data: Vec<f32> = if !t.raw_data.is_empty() {
        t.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    } else {
        t.float_data.clone()
    };
    (data.len() == len).then_some(F32Tensor { dims, data })
}

/// The shape and values of an integer (i64 or i32) tensor proto, or `None` for
/// other types.
pub fn tensor_i64(t: &TensorProto) -> Option<(Vec<usize>, Vec<i64>)> {
    let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
    let len: usize = dims.iter().product();
    let data: Vec<i64> = if t.data_type == DataType::Int64 as i32 {
        if t.raw_data.is_empty() {
            t.int64_data.clone()
        } else {
            t.raw_data
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                .collect()
        }
    } else if t.data_type == DataType::Int32 as i32 {
        if t.raw_data.is_empty() {
            t.int32_data.iter().map(|&x| x as i64).collect()
        } else {
            t.raw_data
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)
                .collect()
        }
    } else {
        return None;
    };
    (data.len() == len).then_some((dims, data))
}

/// A graph input or output of type f32 with a static shape.
pub fn value_info_f32(name: &str, dims: &[usize]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| tensor_shape_proto::Dimension {
            value: Some(tensor_shape_proto::dimension::Value::DimValue(d as i64)),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An f32 tensor proto.
pub fn f32_tensor(name: &str, dims: &[usize], data: &[f32]) -> TensorProto {
    TensorProto {
        name: name.to_string(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Float as i32,
        raw_data: data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// An i8 tensor proto.
pub fn i8_tensor(name: &str, dims: &[usize], data: &[i8]) -> TensorProto {
    TensorProto {
        name: name.to_string(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Int8 as i32,
        raw_data: data.iter().map(|&x| x as u8).collect(),
        ..Default::default()
    }
}

/// An i64 tensor proto (shapes, axes).
pub fn i64_tensor(name: &str, dims: &[usize], data: &[i64]) -> TensorProto {
    TensorProto {
        name: name.to_string(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Int64 as i32,
        raw_data: data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// A node with the given op, inputs, outputs and attributes.
pub fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        op_type: op.to_string(),
        name: name.to_string(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

/// An integer attribute.
pub fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

/// An integer-list attribute.
pub fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Ints as i32,
        ints: values.to_vec(),
        ..Default::default()
    }
}

/// An integer attribute of a node, if set.
pub fn get_attr_int(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

/// An integer-list attribute of a node, if set.
pub fn get_attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.ints.clone())
}

/// A float attribute of a node, if set.
pub fn get_attr_float(node: &NodeProto, name: &str) -> Option<f32> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.f)
}

/// Index of a graph's constants and producers, for resolving weights.
pub struct GraphIndex<'g> {
    initializers: HashMap<&'g str, &'g TensorProto>,
    producers: HashMap<&'g str, &'g NodeProto>,
    consumers: HashMap<&'g str, usize>,
}

impl<'g> GraphIndex<'g> {
    /// Indexes `graph`.
    pub fn new(graph: &'g GraphProto) -> Self {
        let initializers = graph
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let mut producers = HashMap::new();
        let mut consumers: HashMap<&str, usize> = HashMap::new();
        for n in &graph.node {
            for o in &n.output {
                producers.insert(o.as_str(), n);
            }
            for i in &n.input {
                *consumers.entry(i.as_str()).or_default() += 1;
            }
        }
        for o in &graph.output {
            *consumers.entry(o.name.as_str()).or_default() += 1;
        }
        GraphIndex {
            initializers,
            producers,
            consumers,
        }
    }

    /// The constant f32 value of a tensor name: an initializer or a `Constant`
    /// node, looking through `Identity` nodes.
    pub fn constant_f32(&self, name: &str) -> Option<F32Tensor> {
        tensor_f32(self.constant(name)?)
    }

    /// The tensor proto behind a constant tensor name: an initializer or the
    /// `value` of a `Constant` node, looking through `Identity` nodes.
    pub fn constant(&self, name: &str) -> Option<&'g TensorProto> {
        let mut name = name;
        for _ in 0..8 {
            if let Some(t) = self.initializers.get(name) {
                return Some(t);
            }
            let producer = self.producers.get(name)?;
            match producer.op_type.as_str() {
                "Identity" => name = producer.input.first()?,
                "Constant" => {
                    return producer
                        .attribute
                        .iter()
                        .find(|a| a.name == "value")?
                        .t
                        .as_ref();
                }
                _ => return None,
            }
        }
        None
    }

    /// The node producing a tensor, if any.
    pub fn producer(&self, name: &str) -> Option<&'g NodeProto> {
        self.producers.get(name).copied()
    }

    /// How many nodes (and graph outputs) read a tensor.
    pub fn consumer_count(&self, name: &str) -> usize {
        self.consumers.get(name).copied().unwrap_or(0)
    }
}

/// Hands out tensor and node names not yet used in a graph.
pub struct Namer {
    used: HashSet<String>,
}

impl Namer {
    /// A namer aware of every name in `graph`.
    pub fn new(graph: &GraphProto) -> Self {
        let mut used = HashSet::new();
        for n in &graph.node {
            used.insert(n.name.clone());
            used.extend(n.output.iter().cloned());
            used.extend(n.input.iter().cloned());
        }
        used.extend(graph.initializer.iter().map(|t| t.name.clone()));
        used.extend(graph.input.iter().map(|v| v.name.clone()));
        Namer { used }
    }

    /// `base` if unused, else `base_1`, `base_2`, ...
    pub fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut i = 1;
        while self.used.contains(&name) {
            name = format!("{base}_{i}");
            i += 1;
        }
        self.used.insert(name.clone());
        name
    }
}

/// Drops initializers no node reads any more (the fp32 weights replaced by int8).
pub fn prune_unused_initializers(graph: &mut GraphProto) -> usize {
    let mut read: HashSet<String> = HashSet::new();
    fn collect(graph: &GraphProto, read: &mut HashSet<String>) {
        for n in &graph.node {
            read.extend(n.input.iter().cloned());
            for a in &n.attribute {
                if let Some(g) = &a.g {
                    collect(g, read);
                }
                for g in &a.graphs {
                    collect(g, read);
                }
            }
        }
        read.extend(graph.output.iter().map(|o| o.name.clone()));
    }
    collect(graph, &mut read);
    let before = graph.initializer.len();
    graph.initializer.retain(|t| read.contains(&t.name));
    // Nodes whose every output is unread (e.g. Identity of a dropped weight).
    loop {
        let mut read_now: HashSet<String> = HashSet::new();
        collect(graph, &mut read_now);
        let n_before = graph.node.len();
        graph
            .node
            .retain(|n| n.output.iter().any(|o| read_now.contains(o)));
        if graph.node.len() == n_before {
            break;
        }
    }
    let mut read_final: HashSet<String> = HashSet::new();
    collect(graph, &mut read_final);
    graph.initializer.retain(|t| read_final.contains(&t.name));
    before - graph.initializer.len()
}
