//! One tower out of a CLIP ONNX file as it is published, before anything else reads
//! it.
//!
//! Our export (`models/export/export_clip.py`) writes one input and one output per
//! tower. Files from model hubs do not:
//!
//! - split towers (Hugging Face optimum, transformers.js): `vision_model.onnx` gives
//!   `image_embeds` and `last_hidden_state`; `text_model.onnx` also takes an
//!   `attention_mask` and has a symbolic sequence axis;
//! - one combined `model.onnx` (optimum's zero-shot-image-classification export):
//!   `input_ids`, `pixel_values`, `attention_mask` → `logits_per_image`,
//!   `logits_per_text`, `text_embeds`, `image_embeds`;
//! - `*_fp16.onnx` variants of either, with f16 weights (and sometimes f16 inputs and
//!   outputs).
//!
//! [`select`] finds the tower's embedding output by name, keeps only the nodes it
//! needs (so unused outputs cost nothing per frame, and a combined model gives the
//! image tower without its text half), drops the inputs nothing reads any more, and
//! widens f16 to f32 (exact for weights; the board computes in f32). The inputs are
//! then told apart by role: the pixels of the image tower; the token ids and an
//! optional attention mask of the text tower, which
//! [`TextEncoder`](crate::text_encoder::TextEncoder) feeds as the tokenizer's
//! padding implies. onnxruntime's dynamic int8 (`*_quantized.onnx`) keeps its
//! arithmetic; only its `DynamicQuantizeLinear` is spelled out
//! ([`crate::dynamic_quantize`]) so that tract's NNEF can carry it.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use tract_onnx::pb::{
    tensor_proto::DataType, tensor_shape_proto::dimension, type_proto, GraphProto, ModelProto,
    NodeProto, TensorProto, ValueInfoProto,
};

use crate::onnx_graph::{load_model, prune_unused_initializers, save_model, OnnxError};

/// Which half of CLIP a command needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tower {
    /// Pixels → image embedding.
    Image,
    /// Token ids (and attention mask) → text embedding.
    Text,
}

impl Tower {
    /// Output names recognised without `--image-output`/`--text-output`, most
    /// common first: Hugging Face's (optimum, transformers.js, our export), then
    /// the names OpenCLIP-based exports use.
    pub fn known_outputs(self) -> &'static [&'static str] {
        match self {
            Tower::Image => &["image_embeds", "image_features", "image_embeddings"],
            Tower::Text => &["text_embeds", "text_features", "text_embeddings"],
        }
    }

    /// The command-line flag that names this tower's output.
    pub fn output_flag(self) -> &'static str {
        match self {
            Tower::Image => "--image-output",
            Tower::Text => "--text-output",
        }
    }
}

impl fmt::Display for Tower {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tower::Image => "image",
            Tower::Text => "text",
        })
    }
}

/// What can go wrong picking a tower out of an ONNX file. The messages list the
/// file's inputs and outputs and name the flag that chooses among them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TowerError {
    /// The file could not be read or is not ONNX.
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    /// `--image-output`/`--text-output` names an output the file does not have.
    #[error("{}: has no output named {name:?}; {interface}", path.display())]
    UnknownOutput {
        /// The model file.
        path: PathBuf,
        /// The name asked for.
        name: String,
        /// The file's inputs and outputs.
        interface: Interface,
    },
    /// Several outputs and none of them has a known embedding name.
    #[error("{}: which output is the {tower} embedding? none is named {}; choose one with {}; {interface}",
        path.display(), tower.known_outputs().join(" or "), tower.output_flag())]
    NoEmbeddingOutput {
        /// The model file.
        path: PathBuf,
        /// The tower looked for.
        tower: Tower,
        /// The file's inputs and outputs.
        interface: Interface,
    },
    /// The inputs the embedding depends on are not those of the tower.
    #[error("{}: the {tower} embedding {output:?} {problem}; {interface}", path.display())]
    Inputs {
        /// The model file.
        path: PathBuf,
        /// The tower looked for.
        tower: Tower,
        /// The output chosen.
        output: String,
        /// What is wrong.
        problem: String,
        /// The file's inputs and outputs.
        interface: Interface,
    },
    /// An f16 tensor's bytes do not match its shape.
    #[error("{}: f16 tensor {name:?} has {bytes} bytes of data for {len} values", path.display())]
    BadF16 {
        /// The model file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// Bytes found.
        bytes: usize,
        /// Values its shape holds.
        len: usize,
    },
    /// The adapted model could not be written to a temporary file.
    #[error("cannot write the {tower} tower of {} to a temporary file", path.display())]
    Temp {
        /// The model file.
        path: PathBuf,
        /// The tower.
        tower: Tower,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// A file's inputs and outputs, for error messages:
/// `inputs: input_ids int64 [batch, sequence], ...; outputs: ...`.
#[derive(Debug, Clone)]
pub struct Interface {
    inputs: Vec<String>,
    outputs: Vec<String>,
}

impl Interface {
    fn of(graph: &GraphProto) -> Self {
        let init: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        Interface {
            inputs: graph
                .input
                .iter()
                .filter(|i| !init.contains(i.name.as_str()))
                .map(describe)
                .collect(),
            outputs: graph.output.iter().map(describe).collect(),
        }
    }
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "inputs: {}; outputs: {}",
            self.inputs.join(", "),
            self.outputs.join(", ")
        )
    }
}

/// `name dtype [dims]` of a graph input or output.
fn describe(v: &ValueInfoProto) -> String {
    let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return v.name.clone();
    };
    let dtype = DataType::try_from(t.elem_type)
        .map(|d| format!("{d:?}").to_lowercase())
        .unwrap_or_else(|_| format!("type {}", t.elem_type));
    let dims: Vec<String> = t
        .shape
        .iter()
        .flat_map(|s| &s.dim)
        .map(|d| match &d.value {
            Some(dimension::Value::DimValue(v)) => v.to_string(),
            Some(dimension::Value::DimParam(p)) => p.clone(),
            None => "?".into(),
        })
        .collect();
    format!("{} {dtype} [{}]", v.name, dims.join(", "))
}

/// The element type of a graph input or output.
fn elem_type(v: &ValueInfoProto) -> Option<i32> {
    let type_proto::Value::TensorType(t) = v.r#type.as_ref()?.value.as_ref()?;
    Some(t.elem_type)
}

/// The inputs of a tower, by role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TowerInputs {
    /// The image tower's one input.
    Image {
        /// `[batch, 3, H, W]` pixel values.
        pixels: String,
    },
    /// The text tower's inputs.
    Text {
        /// `[batch, sequence]` token ids.
        ids: String,
        /// `[batch, sequence]` attention mask (1 = token, 0 = padding), if the
        /// embedding reads one.
        mask: Option<String>,
    },
}

/// One tower, ready for tract: one embedding output, the inputs it reads, f32.
#[derive(Debug)]
pub struct TowerModel {
    /// The adapted model.
    pub model: ModelProto,
    /// The embedding output.
    pub output: String,
    /// Its inputs, by role.
    pub inputs: TowerInputs,
    /// What was changed, in words (empty when the file was already one tower).
    pub changes: Vec<String>,
    /// Whether one input's result depends on the others in its batch: dynamic int8
    /// (`DynamicQuantizeLinear`) takes one scale for the whole batch, so such a
    /// model must run one input at a time to give each its own embedding.
    pub batch_dependent: bool,
}

/// Picks `tower` out of `model` (read from `path`, which names it in errors): the
/// output named `output`, else the one output, else a known embedding name; the
/// nodes and inputs that output needs; f16 widened to f32.
pub fn select(
    mut model: ModelProto,
    path: &Path,
    tower: Tower,
    output: Option<&str>,
) -> Result<TowerModel, TowerError> {
    let mut changes = Vec::new();
    let graph = model.graph.get_or_insert_with(Default::default);
    let interface = Interface::of(graph);
    let chosen = match output {
        Some(name) => graph
            .output
            .iter()
            .find(|o| o.name == name)
            .ok_or_else(|| TowerError::UnknownOutput {
                path: path.to_path_buf(),
                name: name.to_string(),
                interface: interface.clone(),
            })?,
        None if graph.output.len() == 1 => &graph.output[0],
        None => tower
            .known_outputs()
            .iter()
            .find_map(|known| graph.output.iter().find(|o| o.name == *known))
            .ok_or_else(|| TowerError::NoEmbeddingOutput {
                path: path.to_path_buf(),
                tower,
                interface: interface.clone(),
            })?,
    }
    .clone();
    let inputs_problem = |problem: String| TowerError::Inputs {
        path: path.to_path_buf(),
        tower,
        output: chosen.name.clone(),
        problem,
        interface: interface.clone(),
    };

    if graph.output.len() > 1 {
        let dropped: Vec<&str> = graph
            .output
            .iter()
            .filter(|o| o.name != chosen.name)
            .map(|o| o.name.as_str())
            .collect();
        changes.push(format!(
            "kept output {:?}, dropped {}",
            chosen.name,
            dropped.join(", ")
        ));
    }
    graph.output = vec![chosen.clone()];
    let nodes_before = graph.node.len();
    let needed = keep_needed_nodes(graph);
    if graph.node.len() < nodes_before {
        changes.push(format!(
            "dropped {} of {} nodes that {:?} does not need",
            nodes_before - graph.node.len(),
            nodes_before,
            chosen.name
        ));
    }
    let init: HashSet<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();
    let unread: Vec<String> = graph
        .input
        .iter()
        .filter(|i| !needed.contains(&i.name) && !init.contains(&i.name))
        .map(|i| i.name.clone())
        .collect();
    if !unread.is_empty() {
        changes.push(format!("dropped unused input(s) {}", unread.join(", ")));
    }
    graph.input.retain(|i| needed.contains(&i.name));
    prune_unused_initializers(graph);

    let real: Vec<&ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !init.contains(&i.name))
        .collect();
    let inputs = match tower {
        Tower::Image => match real.as_slice() {
            [one] => TowerInputs::Image {
                pixels: one.name.clone(),
            },
            other => {
                return Err(inputs_problem(format!(
                    "reads {} inputs ({}), expected one (pixel values)",
                    other.len(),
                    other
                        .iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        },
        Tower::Text => {
            let is_mask = |i: &&&ValueInfoProto| i.name.to_lowercase().contains("mask");
            let masks: Vec<&&ValueInfoProto> = real.iter().filter(is_mask).collect();
            let ids: Vec<&&ValueInfoProto> = real.iter().filter(|i| !is_mask(i)).collect();
            let integer = |i: &ValueInfoProto| matches!(elem_type(i), Some(t) if t == DataType::Int64 as i32 || t == DataType::Int32 as i32);
            match (ids.as_slice(), masks.as_slice()) {
                ([ids], masks) if masks.len() <= 1 && integer(ids) => TowerInputs::Text {
                    ids: ids.name.clone(),
                    mask: masks.first().map(|m| m.name.clone()),
                },
                _ => {
                    return Err(inputs_problem(format!(
                    "reads {}; expected int64 (or int32) token ids and at most one attention mask",
                    real.iter()
                        .map(|i| describe(i))
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
                }
            }
        }
    };
    // Shape inference (run by fp16 converters and quantizers) leaves intermediate
    // shapes in terms of the symbolic batch and sequence axes, which contradict the
    // fixed shapes the tools load with; tract infers them again.
    let symbolic = |v: &ValueInfoProto| match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t
            .shape
            .iter()
            .flat_map(|s| &s.dim)
            .any(|d| matches!(d.value, Some(dimension::Value::DimParam(_)))),
        None => false,
    };
    let annotations = graph.value_info.len();
    graph.value_info.retain(|v| !symbolic(v));
    if graph.value_info.len() < annotations {
        changes.push(format!(
            "dropped {} intermediate shape annotations with symbolic sizes",
            annotations - graph.value_info.len()
        ));
    }
    let expanded = crate::dynamic_quantize::expand_dynamic_quantize(graph);
    if expanded > 0 {
        changes.push(format!(
            "wrote {expanded} DynamicQuantizeLinear in core operators (for NNEF)"
        ));
    }
    let widened = widen_f16(&mut model, path)?;
    if widened > 0 {
        changes.push(format!("widened {widened} f16 tensors and types to f32"));
    }
    Ok(TowerModel {
        model,
        output: chosen.name,
        inputs,
        changes,
        batch_dependent: expanded > 0,
    })
}

/// Gives the image input `pixels` a static `[batch, 3, size, size]` shape where
/// the file leaves channels, height or width symbolic (hub exports do), as the int8
/// rewrite needs; the batch axis stays as it is. Returns whether anything changed.
pub fn fix_image_size(model: &mut ModelProto, pixels: &str, size: usize) -> bool {
    let Some(input) = model
        .graph
        .as_mut()
        .and_then(|g| g.input.iter_mut().find(|i| i.name == pixels))
    else {
        return false;
    };
    let Some(type_proto::Value::TensorType(t)) =
        input.r#type.as_mut().and_then(|t| t.value.as_mut())
    else {
        return false;
    };
    let Some(shape) = t.shape.as_mut().filter(|s| s.dim.len() == 4) else {
        return false;
    };
    let mut changed = false;
    for (dim, value) in shape
        .dim
        .iter_mut()
        .skip(1)
        .zip([3, size as i64, size as i64])
    {
        if !matches!(dim.value, Some(dimension::Value::DimValue(_))) {
            dim.value = Some(dimension::Value::DimValue(value));
            changed = true;
        }
    }
    changed
}

/// Keeps the nodes the graph's outputs depend on (nodes are in topological order;
/// names a subgraph reads from the outer scope count as read) and returns every
/// tensor name still read.
fn keep_needed_nodes(graph: &mut GraphProto) -> HashSet<String> {
    fn subgraph_reads(graph: &GraphProto, read: &mut HashSet<String>) {
        for n in &graph.node {
            read.extend(n.input.iter().cloned());
            for a in &n.attribute {
                a.g.iter()
                    .chain(&a.graphs)
                    .for_each(|g| subgraph_reads(g, read));
            }
        }
        read.extend(graph.output.iter().map(|o| o.name.clone()));
    }
    let mut needed: HashSet<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    let mut keep = vec![false; graph.node.len()];
    for (i, n) in graph.node.iter().enumerate().rev() {
        if n.output.iter().any(|o| needed.contains(o)) {
            keep[i] = true;
            needed.extend(n.input.iter().filter(|s| !s.is_empty()).cloned());
            for a in &n.attribute {
                a.g.iter()
                    .chain(&a.graphs)
                    .for_each(|g| subgraph_reads(g, &mut needed));
            }
        }
    }
    let mut flags = keep.into_iter();
    graph.node.retain(|_| flags.next().unwrap_or(false));
    needed
}

/// Rewrites every f16 in the model as f32: initializers, `Constant` values, `Cast`
/// targets and the types of inputs, outputs and intermediate values. Returns how
/// many things changed.
pub fn widen_f16(model: &mut ModelProto, path: &Path) -> Result<usize, TowerError> {
    fn tensor(t: &mut TensorProto, path: &Path) -> Result<usize, TowerError> {
        if t.data_type != DataType::Float16 as i32 {
            return Ok(0);
        }
        let len: usize = t.dims.iter().map(|&d| d.max(0) as usize).product();
        let bits: Vec<u16> = if !t.raw_data.is_empty() {
            t.raw_data
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .collect()
        } else {
            // The proto stores f16 bit patterns in int32_data.
            t.int32_data.iter().map(|&b| b as u16).collect()
        };
        if bits.len() != len {
            return Err(TowerError::BadF16 {
                path: path.to_path_buf(),
                name: t.name.clone(),
                bytes: t.raw_data.len().max(t.int32_data.len() * 2),
                len,
            });
        }
        t.raw_data = bits
            .into_iter()
            .flat_map(|b| half::f16::from_bits(b).to_f32().to_le_bytes())
            .collect();
        t.int32_data.clear();
        t.data_type = DataType::Float as i32;
        Ok(1)
    }
    fn value_info(v: &mut ValueInfoProto) -> usize {
        match v.r#type.as_mut().and_then(|t| t.value.as_mut()) {
            Some(type_proto::Value::TensorType(t)) if t.elem_type == DataType::Float16 as i32 => {
                t.elem_type = DataType::Float as i32;
                1
            }
            _ => 0,
        }
    }
    fn node(n: &mut NodeProto, path: &Path) -> Result<usize, TowerError> {
        let mut changed = 0;
        let casts = n.op_type == "Cast";
        for a in &mut n.attribute {
            if casts && a.name == "to" && a.i == DataType::Float16 as i64 {
                a.i = DataType::Float as i64;
                changed += 1;
            }
            if let Some(t) = a.t.as_mut() {
                changed += tensor(t, path)?;
            }
            for t in &mut a.tensors {
                changed += tensor(t, path)?;
            }
            if let Some(g) = a.g.as_mut() {
                changed += graph(g, path)?;
            }
            for g in &mut a.graphs {
                changed += graph(g, path)?;
            }
        }
        Ok(changed)
    }
    fn graph(g: &mut GraphProto, path: &Path) -> Result<usize, TowerError> {
        let mut changed = 0;
        for t in &mut g.initializer {
            changed += tensor(t, path)?;
        }
        for n in &mut g.node {
            changed += node(n, path)?;
        }
        for v in g
            .input
            .iter_mut()
            .chain(&mut g.output)
            .chain(&mut g.value_info)
        {
            changed += value_info(v);
        }
        Ok(changed)
    }
    match model.graph.as_mut() {
        Some(g) => graph(g, path),
        None => Ok(0),
    }
}

/// A tower as a file tract can read: the original path when nothing had to change,
/// else a temporary copy of the adapted model (deleted on drop).
#[derive(Debug)]
pub struct PreparedTower {
    path: PathBuf,
    temp: Option<tempfile::TempPath>,
    /// The embedding output and inputs.
    pub inputs: TowerInputs,
    /// See [`TowerModel::batch_dependent`].
    pub batch_dependent: bool,
}

impl PreparedTower {
    /// The file to read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file was adapted (the path is a temporary copy).
    pub fn adapted(&self) -> bool {
        self.temp.is_some()
    }
}

/// [`select`] on the file at `path`; the result is written to a temporary file only
/// when something changed. Each change is logged at info level.
pub fn prepare(
    path: &Path,
    tower: Tower,
    output: Option<&str>,
) -> Result<PreparedTower, TowerError> {
    let selected = select(load_model(path)?, path, tower, output)?;
    for change in &selected.changes {
        log::info!("{}: {tower} tower: {change}", path.display());
    }
    if selected.changes.is_empty() {
        return Ok(PreparedTower {
            path: path.to_path_buf(),
            temp: None,
            inputs: selected.inputs,
            batch_dependent: selected.batch_dependent,
        });
    }
    let temp_err = |source: std::io::Error| TowerError::Temp {
        path: path.to_path_buf(),
        tower,
        source,
    };
    let temp = tempfile::Builder::new()
        .prefix(&format!("clip-quantize-{tower}-"))
        .suffix(".onnx")
        .tempfile()
        .map_err(temp_err)?
        .into_temp_path();
    save_model(&selected.model, &temp)?;
    Ok(PreparedTower {
        path: temp.to_path_buf(),
        temp: Some(temp),
        inputs: selected.inputs,
        batch_dependent: selected.batch_dependent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx_graph::{attr_int, f32_tensor, node};
    use tract_onnx::pb::{tensor_shape_proto, TensorShapeProto, TypeProto};

    fn value(name: &str, elem: DataType, dims: &[&str]) -> ValueInfoProto {
        let dim = dims
            .iter()
            .map(|d| tensor_shape_proto::Dimension {
                value: Some(match d.parse::<i64>() {
                    Ok(v) => dimension::Value::DimValue(v),
                    Err(_) => dimension::Value::DimParam(d.to_string()),
                }),
                ..Default::default()
            })
            .collect();
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: elem as i32,
                    shape: Some(TensorShapeProto { dim }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The shape of optimum's combined export: two towers, their embeddings, and
    /// logits that read both.
    fn combined() -> ModelProto {
        let graph = GraphProto {
            input: vec![
                value("input_ids", DataType::Int64, &["text_batch", "sequence"]),
                value(
                    "pixel_values",
                    DataType::Float,
                    &["image_batch", "3", "2", "2"],
                ),
                value(
                    "attention_mask",
                    DataType::Int64,
                    &["text_batch", "sequence"],
                ),
            ],
            output: vec![
                value(
                    "logits_per_image",
                    DataType::Float,
                    &["image_batch", "text_batch"],
                ),
                value("text_embeds", DataType::Float, &["text_batch", "4"]),
                value("image_embeds", DataType::Float, &["image_batch", "4"]),
            ],
            initializer: vec![
                f32_tensor("vision_w", &[4], &[1.0; 4]),
                f32_tensor("text_w", &[4], &[2.0; 4]),
            ],
            node: vec![
                node("Flatten", "v0", &["pixel_values"], &["v_flat"], vec![]),
                node(
                    "Mul",
                    "v1",
                    &["v_flat", "vision_w"],
                    &["image_embeds"],
                    vec![],
                ),
                node(
                    "Cast",
                    "t0",
                    &["input_ids"],
                    &["ids_f"],
                    vec![attr_int("to", DataType::Float as i64)],
                ),
                node(
                    "Cast",
                    "t1",
                    &["attention_mask"],
                    &["mask_f"],
                    vec![attr_int("to", DataType::Float as i64)],
                ),
                node("Mul", "t2", &["ids_f", "mask_f"], &["masked"], vec![]),
                node("Mul", "t3", &["masked", "text_w"], &["text_embeds"], vec![]),
                node(
                    "MatMul",
                    "l0",
                    &["image_embeds", "text_embeds"],
                    &["logits_per_image"],
                    vec![],
                ),
            ],
            ..Default::default()
        };
        ModelProto {
            graph: Some(graph),
            ..Default::default()
        }
    }

    fn names<'a>(it: impl Iterator<Item = &'a String>) -> Vec<&'a str> {
        it.map(|s| s.as_str()).collect()
    }

    #[test]
    fn image_tower_of_a_combined_model_keeps_only_its_nodes_and_input() {
        let t = select(combined(), Path::new("model.onnx"), Tower::Image, None).unwrap();
        let g = t.model.graph.unwrap();
        assert_eq!(t.output, "image_embeds");
        assert_eq!(
            t.inputs,
            TowerInputs::Image {
                pixels: "pixel_values".into()
            }
        );
        assert_eq!(names(g.node.iter().map(|n| &n.name)), ["v0", "v1"]);
        assert_eq!(names(g.input.iter().map(|i| &i.name)), ["pixel_values"]);
        assert_eq!(names(g.output.iter().map(|o| &o.name)), ["image_embeds"]);
        assert_eq!(names(g.initializer.iter().map(|t| &t.name)), ["vision_w"]);
        assert_eq!(t.changes.len(), 3, "{:?}", t.changes);
    }

    #[test]
    fn text_tower_finds_ids_and_mask_by_name() {
        let t = select(combined(), Path::new("model.onnx"), Tower::Text, None).unwrap();
        assert_eq!(
            t.inputs,
            TowerInputs::Text {
                ids: "input_ids".into(),
                mask: Some("attention_mask".into())
            }
        );
        let g = t.model.graph.unwrap();
        assert_eq!(
            names(g.node.iter().map(|n| &n.name)),
            ["t0", "t1", "t2", "t3"]
        );
    }

    #[test]
    fn a_model_that_is_one_tower_is_unchanged() {
        let mut m = combined();
        let t = select(m.clone(), Path::new("m.onnx"), Tower::Image, None).unwrap();
        m = t.model;
        let again = select(m.clone(), Path::new("m.onnx"), Tower::Image, None).unwrap();
        assert!(again.changes.is_empty(), "{:?}", again.changes);
        assert_eq!(again.model, m);
    }

    #[test]
    fn unknown_output_names_list_the_interface_and_the_flag() {
        let mut m = combined();
        let g = m.graph.as_mut().unwrap();
        g.output[1].name = "a".into();
        g.output[2].name = "b".into();
        g.node[1].output[0] = "b".into();
        g.node[5].output[0] = "a".into();
        let err = select(m.clone(), Path::new("m.onnx"), Tower::Image, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--image-output"), "{err}");
        assert!(
            err.contains("pixel_values float [image_batch, 3, 2, 2]"),
            "{err}"
        );
        assert!(err.contains("outputs: logits_per_image"), "{err}");
        let t = select(m.clone(), Path::new("m.onnx"), Tower::Image, Some("b")).unwrap();
        assert_eq!(t.output, "b");
        let err = select(m, Path::new("m.onnx"), Tower::Image, Some("c")).unwrap_err();
        assert!(matches!(err, TowerError::UnknownOutput { .. }), "{err}");
    }

    #[test]
    fn the_wrong_tower_is_refused_with_its_inputs() {
        let err = select(
            combined(),
            Path::new("m.onnx"),
            Tower::Image,
            Some("text_embeds"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("reads 2 inputs (input_ids, attention_mask)"),
            "{err}"
        );
        let err = select(
            combined(),
            Path::new("m.onnx"),
            Tower::Text,
            Some("image_embeds"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("expected int64 (or int32) token ids"), "{err}");
    }

    #[test]
    fn f16_weights_casts_and_types_are_widened_exactly() {
        let mut m = combined();
        let g = m.graph.as_mut().unwrap();
        let halves = [half::f16::from_f32(1.5), half::f16::from_f32(-2.0)];
        g.initializer.push(TensorProto {
            name: "w16".into(),
            dims: vec![2],
            data_type: DataType::Float16 as i32,
            raw_data: halves
                .iter()
                .flat_map(|h| h.to_bits().to_le_bytes())
                .collect(),
            ..Default::default()
        });
        g.node[0].input[0] = "pixels16".into();
        g.node.insert(
            0,
            node(
                "Cast",
                "c16",
                &["pixel_values"],
                &["pixels16"],
                vec![attr_int("to", DataType::Float16 as i64)],
            ),
        );
        g.node.insert(
            1,
            node("Mul", "use16", &["pixels16", "w16"], &["unused16"], vec![]),
        );
        g.output[2] = value("image_embeds", DataType::Float16, &["b", "4"]);
        let widened = widen_f16(&mut m, Path::new("m.onnx")).unwrap();
        assert_eq!(widened, 3);
        let g = m.graph.unwrap();
        let w = g.initializer.iter().find(|t| t.name == "w16").unwrap();
        assert_eq!(w.data_type, DataType::Float as i32);
        assert_eq!(
            crate::onnx_graph::tensor_f32(w).unwrap().data,
            vec![1.5, -2.0]
        );
        assert_eq!(g.node[0].attribute[0].i, DataType::Float as i64);
        assert_eq!(elem_type(&g.output[2]), Some(DataType::Float as i32));
    }
}
