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
    ValueInfoProto,
};

use crate::onnx_graph::{load_model, prune_unused_initializers, save_model, OnnxError};

mod f16;
pub use f16::widen_f16;

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
    /// A QDQ file with a pattern that cannot be lowered to fp32.
    #[error("{}: {source}", path.display())]
    Qdq {
        /// The model file.
        path: PathBuf,
        /// What is not handled.
        source: crate::qdq::QdqError,
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
    /// The side `S` of an image tower's `[batch, 3, S, S]` input when the file fixes
    /// it; `None` when height and width are symbolic, or for a text tower.
    pub fixed_image_size: Option<u32>,
    /// The model description `clip-quantize quantize` recorded in the file
    /// ([`crate::model_description::METADATA_KEY`]), if any.
    pub embedded_description: Option<String>,
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
    let mut fixed_image_size = None;
    let inputs = match tower {
        Tower::Image => match real.as_slice() {
            [one] => {
                fixed_image_size = image_input_size(one).map_err(|problem| {
                    inputs_problem(format!(
                        "reads {problem}; expected f32 pixel values [batch, 3, S, S] (one square RGB image)"
                    ))
                })?;
                TowerInputs::Image {
                    pixels: one.name.clone(),
                }
            }
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
    let embedded_description = model
        .metadata_props
        .iter()
        .find(|e| e.key == crate::model_description::METADATA_KEY)
        .map(|e| e.value.clone());
    Ok(TowerModel {
        model,
        output: chosen.name,
        inputs,
        changes,
        batch_dependent: expanded > 0,
        fixed_image_size,
        embedded_description,
    })
}

/// The side of a `[batch, 3, S, S]` image input when the file fixes it (`None` when
/// height or width is symbolic); an input of another layout is described in the
/// error.
fn image_input_size(input: &ValueInfoProto) -> Result<Option<u32>, String> {
    let Some(type_proto::Value::TensorType(t)) =
        input.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Ok(None);
    };
    let Some(shape) = t.shape.as_ref() else {
        // No shape recorded: tract gets it from the preprocessing.
        return Ok(None);
    };
    let fixed = |i: usize| match shape.dim.get(i).and_then(|d| d.value.as_ref()) {
        Some(dimension::Value::DimValue(v)) => Some(*v),
        _ => None,
    };
    let layout_error = || Err(describe(input));
    if shape.dim.len() != 4 {
        return layout_error();
    }
    match (fixed(1), fixed(2), fixed(3)) {
        (Some(c), _, _) if c != 3 => layout_error(),
        (_, Some(h), Some(w)) if h != w => layout_error(),
        (_, Some(h), Some(_)) => u32::try_from(h)
            .ok()
            .filter(|&h| h > 0)
            .map(Some)
            .ok_or_else(|| describe(input)),
        // Height or width symbolic: the size comes from the preprocessing.
        _ => Ok(None),
    }
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
    /// See [`TowerModel::fixed_image_size`].
    pub fixed_image_size: Option<u32>,
    /// See [`TowerModel::embedded_description`].
    pub embedded_description: Option<String>,
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

/// What becomes of a QDQ file's quantize/dequantize pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QdqForm {
    /// The fp32 model it was quantized from ([`crate::qdq::lower_qdq`]), for
    /// `quantize` to make its own int8 of.
    Fp32,
    /// The file's own arithmetic, its matmuls on int8
    /// ([`crate::qdq::keep_qdq_arithmetic`]), for bundles.
    Exact,
}

/// [`select`] on the file at `path`, a QDQ file lowered to fp32, each change logged
/// at info level.
pub fn load(path: &Path, tower: Tower, output: Option<&str>) -> Result<TowerModel, TowerError> {
    load_as(path, tower, output, QdqForm::Fp32)
}

/// [`load`] with a choice of what a QDQ file becomes.
pub fn load_as(
    path: &Path,
    tower: Tower,
    output: Option<&str>,
    qdq: QdqForm,
) -> Result<TowerModel, TowerError> {
    let mut selected = select(load_model(path)?, path, tower, output)?;
    let qdq_error = |source| TowerError::Qdq {
        path: path.to_path_buf(),
        source,
    };
    let graph = selected.model.graph.get_or_insert_with(Default::default);
    match qdq {
        QdqForm::Fp32 => {
            let lowered = crate::qdq::lower_qdq(graph).map_err(qdq_error)?;
            if lowered.changed() {
                selected.changes.push(format!(
                    "QDQ file: folded {} quantized constants into f32 weights and removed {} activation quantize/dequantize pairs (the fp32 model it was quantized from)",
                    lowered.folded_weights, lowered.removed_pairs
                ));
            }
        }
        QdqForm::Exact => {
            let kept = crate::qdq::keep_qdq_arithmetic(graph).map_err(qdq_error)?;
            if kept.changed() {
                selected.changes.push(format!(
                    "QDQ file: its arithmetic kept, {} matmuls on int8, {} activation quantize/dequantize pairs as rounding in f32, {} other quantized constants folded to f32",
                    kept.integer_matmuls, kept.pairs, kept.folded_weights
                ));
            }
        }
    }
    for change in &selected.changes {
        log::info!("{}: {tower} tower: {change}", path.display());
    }
    Ok(selected)
}

/// [`load_as`] with a QDQ file's arithmetic kept ([`QdqForm::Exact`]), for readers
/// that take a path (`bundle`, `eval`): the result is written to a temporary file
/// only when something changed.
pub fn prepare(
    path: &Path,
    tower: Tower,
    output: Option<&str>,
) -> Result<PreparedTower, TowerError> {
    let selected = load_as(path, tower, output, QdqForm::Exact)?;
    if selected.changes.is_empty() {
        return Ok(PreparedTower {
            path: path.to_path_buf(),
            temp: None,
            inputs: selected.inputs,
            batch_dependent: selected.batch_dependent,
            fixed_image_size: selected.fixed_image_size,
            embedded_description: selected.embedded_description,
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
        fixed_image_size: selected.fixed_image_size,
        embedded_description: selected.embedded_description,
    })
}

#[cfg(test)]
mod tests;
