//! The image encoder: an ONNX model loaded with tract into one fixed-shape,
//! optimised plan (batch 1, `3 × size × size` f32 input) and one reusable state.
//!
//! The model must take one f32 input `[batch, 3, H, W]` and return one f32 output
//! `[batch, dim]`: the projected image embedding, not normalised (the interface of
//! `CLIPVisionModelWithProjection` and of OpenCLIP's `encode_image`).

use std::path::{Path, PathBuf};

use tract_onnx::prelude::*;

/// What can go wrong loading or running the image encoder.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    /// The file is missing or unreadable.
    #[error("{path}: {source}")]
    Io {
        /// The model file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// tract could not parse (ONNX or NNEF), type or optimise the model.
    #[error("{path}: cannot load the model: {message}")]
    Load {
        /// The model file.
        path: PathBuf,
        /// tract's error chain, one line.
        message: String,
    },
    /// tract could not write the model as NNEF.
    #[error("{path}: cannot write the NNEF model: {message}")]
    Write {
        /// The output file.
        path: PathBuf,
        /// tract's error chain, one line.
        message: String,
    },
    /// tract's NNEF writer has no serializer for an operator of the model. The
    /// message names the operator and its ONNX node; the ONNX format still works.
    #[error("{path}: tract's NNEF writer cannot write this model: {message}")]
    NnefUnsupported {
        /// The source model.
        path: PathBuf,
        /// tract's error chain, one line, naming the operator and the node.
        message: String,
    },
    /// The model loads but does not have the image-encoder interface.
    #[error("{path}: {problem}")]
    Interface {
        /// The model file.
        path: PathBuf,
        /// What is wrong with its inputs or outputs.
        problem: String,
    },
    /// Running the plan failed.
    #[error("running the image encoder failed: {0}")]
    Run(String),
    /// The caller passed an input of the wrong length.
    #[error("input has {actual} values, the encoder expects {expected}")]
    InputSize {
        /// Expected number of f32 values.
        expected: usize,
        /// Number given.
        actual: usize,
    },
}

/// A loaded, optimised image encoder with its run state.
pub struct ImageEncoder {
    path: PathBuf,
    input_shape: [usize; 4],
    dim: usize,
    state: TypedSimpleState,
    embedding: Vec<f32>,
    kernels: Vec<String>,
}

impl std::fmt::Debug for ImageEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageEncoder")
            .field("path", &self.path)
            .field("input_shape", &self.input_shape)
            .field("dim", &self.dim)
            .finish()
    }
}

/// How an image-encoder file is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    /// The ONNX export (or `clip-quantize quantize`'s output): parsed, typed and
    /// decluttered by tract at every load.
    Onnx,
    /// tract's NNEF tar of the decluttered model, input shape fixed: loads with one
    /// copy of the weights (half the peak memory) and no ONNX parsing or analysis.
    Nnef,
}

impl ModelFormat {
    /// The format of the file at `path`, from its contents (a tar archive is NNEF).
    pub fn detect(path: &Path) -> Result<Self, EncoderError> {
        use std::io::Read;
        let io = |source| EncoderError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut head = [0u8; 263];
        let mut file = std::fs::File::open(path).map_err(io)?;
        let mut filled = 0;
        while filled < head.len() {
            match file.read(&mut head[filled..]).map_err(io)? {
                0 => break,
                n => filled += n,
            }
        }
        Ok(if filled == head.len() && &head[257..262] == b"ustar" {
            ModelFormat::Nnef
        } else {
            ModelFormat::Onnx
        })
    }
}

/// The NNEF dialect bundles use: tract's core operators plus the ONNX extensions.
fn nnef() -> tract_nnef::framework::Nnef {
    tract_nnef::nnef().with_onnx()
}

/// Parses an ONNX image encoder and fixes its input to `[1, 3, size, size]` f32.
fn onnx_with_input(
    bytes: &[u8],
    path: &Path,
    image_size: usize,
) -> Result<InferenceModel, EncoderError> {
    let load_err = |e: TractError| EncoderError::Load {
        path: path.to_path_buf(),
        message: one_line(&e),
    };
    let mut model = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .map_err(load_err)?;
    if model.inputs.len() != 1 || model.outputs.len() != 1 {
        return Err(EncoderError::Interface {
            path: path.to_path_buf(),
            problem: format!(
                "expected one input (pixel values) and one output (embedding), found {} inputs and {} outputs",
                model.inputs.len(),
                model.outputs.len()
            ),
        });
    }
    model
        .set_input_fact(0, f32::fact([1, 3, image_size, image_size]).into())
        .map_err(load_err)?;
    Ok(model)
}

/// Writes the ONNX image encoder at `onnx` as the NNEF tar a bundle carries: typed
/// and decluttered for a `[1, 3, image_size, image_size]` input. The
/// CPU-specific optimisation (kernel choice, weight packing) is left to the board.
pub fn write_nnef(onnx: &Path, image_size: usize, out: &Path) -> Result<(), EncoderError> {
    let bytes = std::fs::read(onnx).map_err(|source| EncoderError::Io {
        path: onnx.to_path_buf(),
        source,
    })?;
    let load_err = |e: TractError| EncoderError::Load {
        path: onnx.to_path_buf(),
        message: one_line(&e),
    };
    let model = onnx_with_input(&bytes, onnx, image_size)?;
    drop(bytes);
    let typed = model.into_typed().map_err(|e| EncoderError::Interface {
        path: onnx.to_path_buf(),
        problem: format!(
            "does not accept a [1,3,{image_size},{image_size}] f32 input: {}",
            one_line(&e)
        ),
    })?;
    // Weight-only int8 models: tract folds the small weights' int8 → f32 casts here
    // (stored as f32); the large ones stay int8 and are widened at load.
    let typed = typed.into_decluttered().map_err(load_err)?;
    let written = write_typed_nnef(typed, onnx, out);
    if written.is_err() {
        // Best effort: the caller gets the write error, not a leftover half file.
        let _ = std::fs::remove_file(out);
    }
    written
}

/// Writes a decluttered model as an NNEF tar (see [`write_nnef`]); `source` names
/// the model in errors.
fn write_typed_nnef(mut typed: TypedModel, source: &Path, out: &Path) -> Result<(), EncoderError> {
    // Short node names: tract's NNEF parser costs thousands of instructions per
    // byte of graph.nnef, and the ONNX-derived names (`/vision_model/encoder/
    // layers.11/mlp/fc2/MatMul/...`) made it 4x longer (quantize/README.md). The
    // input keeps its name.
    let onnx_names: Vec<String> = typed.nodes.iter().map(|n| n.name.clone()).collect();
    let sources: Vec<usize> = typed.inputs.iter().map(|o| o.node).collect();
    for id in 0..typed.nodes.len() {
        if !sources.contains(&id) {
            typed.node_mut(id).name = format!("n{id}");
        }
    }
    let file = std::fs::File::create(out).map_err(|source| EncoderError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let writer = std::io::BufWriter::new(file);
    // Deterministic: the same model gives the same bytes (and bundle hash).
    let writer = match nnef().write_to_tar_with_config(&typed, writer, false, true) {
        Ok(writer) => writer,
        Err(write_err) => {
            // An operator without a serializer fails the translation to NNEF's AST.
            // Translate again under the ONNX node names so the error names the layer.
            for (node, name) in typed.nodes.iter_mut().zip(onnx_names) {
                node.name = name;
            }
            return Err(match tract_nnef::ser::to_proto_model(&nnef(), &typed) {
                Err(e) => EncoderError::NnefUnsupported {
                    path: source.to_path_buf(),
                    message: one_line(&e),
                },
                Ok(_) => EncoderError::Write {
                    path: out.to_path_buf(),
                    message: one_line(&write_err),
                },
            });
        }
    };
    writer
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .map_err(|source| EncoderError::Io {
            path: out.to_path_buf(),
            source,
        })
}

impl ImageEncoder {
    /// Loads `path` (ONNX or NNEF, told apart by content) for a
    /// `[1, 3, image_size, image_size]` f32 input, optimises it for this CPU, and
    /// checks that the output is `[1, dim]`.
    pub fn load(path: &Path, image_size: usize) -> Result<Self, EncoderError> {
        match ModelFormat::detect(path)? {
            ModelFormat::Onnx => {
                let bytes = std::fs::read(path).map_err(|source| EncoderError::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
                Self::from_bytes(&bytes, path, image_size)
            }
            ModelFormat::Nnef => Self::load_nnef(path, image_size),
        }
    }

    /// Loads an NNEF tar written by [`write_nnef`].
    fn load_nnef(path: &Path, image_size: usize) -> Result<Self, EncoderError> {
        let file = std::fs::File::open(path).map_err(|source| EncoderError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let start = std::time::Instant::now();
        let model = nnef()
            .model_for_read(&mut std::io::BufReader::new(file))
            .map_err(|e| EncoderError::Load {
                path: path.to_path_buf(),
                message: one_line(&e),
            })?;
        log::debug!("NNEF read and parsed in {:.0?}", start.elapsed());
        let expected = [1, 3, image_size, image_size];
        let input = model.input_fact(0).map_err(|e| EncoderError::Load {
            path: path.to_path_buf(),
            message: one_line(&e),
        })?;
        if model.inputs.len() != 1
            || input.datum_type != f32::datum_type()
            || input.shape.as_concrete() != Some(&expected[..])
        {
            return Err(EncoderError::Interface {
                path: path.to_path_buf(),
                problem: format!(
                    "the NNEF model takes {} input(s), the first {input:?}; expected one f32 {expected:?} (rebuild the bundle for this image size)",
                    model.inputs.len()
                ),
            });
        }
        Self::from_typed(model, path, image_size)
    }

    /// Like [`ImageEncoder::load`], from the bytes of an ONNX file; `path` names it
    /// in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path, image_size: usize) -> Result<Self, EncoderError> {
        let typed = onnx_with_input(bytes, path, image_size)?
            .into_typed()
            .map_err(|e| EncoderError::Interface {
                path: path.to_path_buf(),
                problem: format!(
                    "does not accept a [1,3,{image_size},{image_size}] f32 input: {}",
                    one_line(&e)
                ),
            })?;
        Self::from_typed(typed, path, image_size)
    }

    /// Optimises a typed model with the fixed input shape and checks its output.
    ///
    /// An NNEF model was decluttered before it was written, but tract's NNEF reader
    /// builds some operators in another form (a matmul's transposes as separate
    /// axis ops, for one), so it is decluttered again: skipping that saves ~0.55 G
    /// instructions of loading (ViT-B/32-sized int8, QEMU cortex-a76) but costs 4 M
    /// instructions per frame there, 31 M on the cortex-a72, and 2,300 more heap
    /// allocations per frame.
    fn from_typed(typed: TypedModel, path: &Path, image_size: usize) -> Result<Self, EncoderError> {
        let load_err = |e: TractError| EncoderError::Load {
            path: path.to_path_buf(),
            message: one_line(&e),
        };
        let interface = |problem: String| EncoderError::Interface {
            path: path.to_path_buf(),
            problem,
        };
        let input_shape = [1, 3, image_size, image_size];
        let mut typed = typed;
        let widened = widen_int8_weights(&mut typed).map_err(load_err)?;
        if widened > 0 {
            log::info!("{widened} int8 weight tensors widened to f32 (weight-only int8 model)");
        }
        let start = std::time::Instant::now();
        let typed = typed.into_optimized().map_err(|e| {
            interface(format!(
                "does not accept a [1,3,{image_size},{image_size}] f32 input: {}",
                one_line(&e)
            ))
        })?;
        if typed.outputs.len() != 1 {
            return Err(interface(format!(
                "expected one output (the embedding), found {}",
                typed.outputs.len()
            )));
        }
        let output = typed.output_fact(0).map_err(load_err)?;
        if output.datum_type != f32::datum_type() {
            return Err(interface(format!(
                "output is {:?}, expected f32",
                output.datum_type
            )));
        }
        let dim = match output.shape.as_concrete() {
            Some([1, dim]) => *dim,
            other => {
                return Err(interface(format!(
                    "output shape is {:?}, expected [1, embedding_dim]",
                    other.map(|s| s.to_vec())
                )))
            }
        };
        log::debug!("decluttered and optimised in {:.0?}", start.elapsed());
        let start = std::time::Instant::now();
        let kernels = matmul_kernels(&typed);
        let plan = typed.into_runnable().map_err(load_err)?;
        let state = plan.spawn().map_err(load_err)?;
        log::debug!("plan and state made in {:.0?}", start.elapsed());
        log::info!(
            "loaded image encoder {} (input {:?}, embedding dim {dim})",
            path.display(),
            input_shape
        );
        Ok(ImageEncoder {
            path: path.to_path_buf(),
            input_shape,
            dim,
            state,
            embedding: vec![0.0; dim],
            kernels,
        })
    }

    /// Names of the tract matrix-multiplication kernels the optimised plan uses
    /// (e.g. `arm64simd_mmm_i32_8x8_dot`), with how many matmuls use each.
    pub fn kernels(&self) -> &[String] {
        &self.kernels
    }

    /// The embedding of the last [`ImageEncoder::encode`] call (zeros before).
    pub fn embedding(&self) -> &[f32] {
        &self.embedding
    }

    /// Length of the embedding the model produces.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The fixed input shape, `[1, 3, size, size]`.
    pub fn input_shape(&self) -> [usize; 4] {
        self.input_shape
    }

    /// Number of f32 values the input holds.
    pub fn input_len(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// Runs the encoder on one NCHW input and returns the raw embedding.
    pub fn encode(&mut self, input: &[f32]) -> Result<&[f32], EncoderError> {
        if input.len() != self.input_len() {
            return Err(EncoderError::InputSize {
                expected: self.input_len(),
                actual: input.len(),
            });
        }
        let tensor = Tensor::from_shape(&self.input_shape, input)
            .map_err(|e| EncoderError::Run(one_line(&e)))?;
        let outputs = self
            .state
            .run(tvec!(tensor.into_tvalue()))
            .map_err(|e| EncoderError::Run(one_line(&e)))?;
        let view = outputs[0]
            .try_as_plain_ram()
            .map_err(|e| EncoderError::Run(one_line(&e)))?;
        let out = view
            .as_slice::<f32>()
            .map_err(|e| EncoderError::Run(one_line(&e)))?;
        if out.len() != self.dim {
            return Err(EncoderError::Run(format!(
                "output has {} values, expected {}",
                out.len(),
                self.dim
            )));
        }
        self.embedding.copy_from_slice(out);
        Ok(&self.embedding)
    }
}

impl ImageEncoder {
    /// Runs the encoder once on `input`, timing every node, and adds the time per
    /// operator name (seconds) and call count into `acc`.
    pub fn profile(
        &mut self,
        input: &[f32],
        acc: &mut std::collections::BTreeMap<String, (f64, usize)>,
    ) -> Result<(), EncoderError> {
        self.run_node_by_node(input, |node| {
            log::trace!(
                "node {} ({}): {:.1} us",
                node.name,
                node.operator,
                node.elapsed.as_secs_f64() * 1e6
            );
            let entry = acc.entry(node.operator.clone()).or_default();
            entry.0 += node.elapsed.as_secs_f64();
            entry.1 += 1;
        })
    }

    /// Runs the encoder once on `input` and calls `after_node` as soon as each
    /// node of the plan has run, in plan order, before the next one starts.
    pub fn run_node_by_node(
        &mut self,
        input: &[f32],
        mut after_node: impl FnMut(&NodeRun),
    ) -> Result<(), EncoderError> {
        let run = |e: TractError| EncoderError::Run(one_line(&e));
        let tensor = Tensor::from_shape(&self.input_shape, input).map_err(run)?;
        self.state
            .run_plan_with_eval(tvec!(tensor.into_tvalue()), |ctx, state, node, inputs| {
                let start = std::time::Instant::now();
                let out = tract_onnx::tract_core::plan::eval(ctx, state, node, inputs);
                let elapsed = start.elapsed();
                let mut operator = node.op().name().to_string();
                if operator == "Cast" {
                    if let Some(o) = node.outputs.first() {
                        operator = format!("Cast to {:?}", o.fact.datum_type);
                    }
                }
                after_node(&NodeRun {
                    name: &node.name,
                    operator,
                    elapsed,
                });
                out
            })
            .map_err(run)?;
        Ok(())
    }
}

/// One node of the encoder's plan, just run (see [`ImageEncoder::run_node_by_node`]).
#[derive(Debug)]
pub struct NodeRun<'a> {
    /// The node's name in the optimised plan.
    pub name: &'a str,
    /// The operator, as tract names it (`Cast` with its output type).
    pub operator: String,
    /// How long the node took.
    pub elapsed: std::time::Duration,
}

/// Replaces every `Cast` to f32 of a constant int8 tensor by its f32 value, and
/// returns how many it replaced.
///
/// A weight-only int8 model (`clip-quantize quantize --mode weights`) stores
/// `Cast<f32>(Wq) · scale`. tract's constant folding leaves out folds that grow the
/// data beyond a budget (an i8 → f32 cast of a 768×3072 weight does), so without this
/// the widening would run at every frame (ViT-B/32-sized: 90 ms per frame instead of
/// 53 on the host). Done here, once, at load; tract then folds the scale.
fn widen_int8_weights(model: &mut TypedModel) -> TractResult<usize> {
    use tract_onnx::tract_core::ops::konst::Const;
    let casts = int8_weight_casts(model);
    if casts.is_empty() {
        return Ok(0);
    }
    let mut patch = TypedModelPatch::new("widen int8 weights");
    for &id in &casts {
        let node = model.node(id);
        let Some(weight) = model.node(node.inputs[0].node).op_as::<Const>() else {
            continue;
        };
        let wide = weight.val().cast_to::<f32>()?.into_owned();
        let wire = patch.add_const(format!("{}.f32", node.name), wide)?;
        patch.shunt_outside(model, id.into(), wire)?;
    }
    patch.apply(model)?;
    Ok(casts.len())
}

/// The `Cast` to f32 nodes whose input is a constant int8 tensor.
fn int8_weight_casts(model: &TypedModel) -> Vec<usize> {
    use tract_onnx::tract_core::ops::cast::Cast;
    use tract_onnx::tract_core::ops::konst::Const;
    model
        .nodes()
        .iter()
        .filter(|node| {
            node.op_as::<Cast>()
                .is_some_and(|c| c.to == f32::datum_type())
                && node.inputs.len() == 1
                && model
                    .node(node.inputs[0].node)
                    .op_as::<Const>()
                    .is_some_and(|k| k.val().datum_type() == i8::datum_type())
        })
        .map(|node| node.id)
        .collect()
}

/// Kernel names of the plan's optimised matmuls, as `name ×count`, sorted.
fn matmul_kernels(model: &TypedModel) -> Vec<String> {
    use tract_onnx::tract_core::ops::matmul::optimized::OptMatMul;
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for node in model.nodes() {
        if let Some(op) = node.op_as::<OptMatMul>() {
            for mmm in &op.mmm {
                *counts.entry(mmm.name().to_string()).or_default() += 1;
            }
        }
    }
    counts
        .into_iter()
        .map(|(name, count)| format!("{name} x{count}"))
        .collect()
}

/// Smallest matmul, in kernel panels, worth spreading over threads.
const MIN_PANELS_PER_DISPATCH: usize = 8;

/// Sets how many threads tract's matrix multiplications use, process-wide (1: run
/// on the calling thread only). Takes effect for the next run of any plan.
pub fn set_threads(threads: usize) -> Result<(), EncoderError> {
    use tract_linalg::multithread::{set_default_executor, Executor};
    if threads <= 1 {
        set_default_executor(Executor::SingleThread);
        return Ok(());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("clip-edge-mm-{i}"))
        .num_threads(threads)
        .build()
        .map_err(|e| EncoderError::Run(format!("cannot start {threads} matmul threads: {e}")))?;
    set_default_executor(Executor::MultiThread(std::sync::Arc::new(pool)));
    // A ViT's matmuls have few panels (50 tokens): tract's default gate of 64
    // panels would keep them all on one thread.
    tract_linalg::multithread::set_threading_panel_threshold(MIN_PANELS_PER_DISPATCH);
    log::info!("tract matmuls on {threads} threads");
    Ok(())
}

/// The number of CPUs this process may use (1 if unknown).
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// tract's error chain as one line (`a: b: c`).
pub fn one_line(e: &TractError) -> String {
    format!("{e:#}").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::cast::Cast;
    use tract_onnx::tract_core::ops::math;

    use tract_onnx::tract_core::internal::{EvalContext, EvalOp, StaticName};
    use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};

    /// An operator no NNEF registry knows how to write.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Unwritable;

    impl Op for Unwritable {
        fn name(&self) -> StaticName {
            "Unwritable".into()
        }
        op_as_typed_op!();
    }

    impl EvalOp for Unwritable {
        op_out_of_plan!();
        fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
            Ok(inputs)
        }
    }

    impl TypedOp for Unwritable {
        fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
            Ok(tvec!(inputs[0].without_value()))
        }
        as_op!();
    }

    fn one_op_model(name: &str, op: impl Into<Box<dyn TypedOp>>) -> TypedModel {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, 64])).unwrap();
        let y = model.wire_node(name, op, &[x]).unwrap();
        model.select_output_outlets(&y).unwrap();
        model
    }

    fn scratch_file(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("clip-edge-encoder-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    /// tract-core turns ONNX's exact `Gelu` into `GeluExact`; the vendored tract-nnef
    /// writes it (`tract_core_gelu_exact`) and reads it back as the same op.
    #[test]
    fn exact_gelu_writes_to_nnef_and_reads_back() {
        use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
        use tract_onnx::tract_core::ops::nn::{gelu_exact::gelu_exact, GeluExact};
        let out = scratch_file("gelu.nnef.tar");
        let model = one_op_model("/visual/mlp/gelu", gelu_exact());
        write_typed_nnef(model, Path::new("gelu.onnx"), &out).unwrap();
        let read = nnef()
            .model_for_read(&mut std::fs::File::open(&out).unwrap())
            .unwrap();
        assert!(read.nodes().iter().any(|n| n
            .op_as::<ElementWiseOp>()
            .is_some_and(|ew| ew.0.is::<GeluExact>())));
    }

    /// An operator the NNEF writer cannot write is named, with its ONNX node.
    #[test]
    fn unwritable_operator_is_named_with_its_node() {
        let out = scratch_file("unwritable.nnef.tar");
        let model = one_op_model("/visual/blocks.3/odd", Unwritable);
        let err = write_typed_nnef(model, Path::new("visual.onnx"), &out).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, EncoderError::NnefUnsupported { .. }),
            "{err:?}"
        );
        assert!(text.starts_with("visual.onnx: "), "{text}");
        assert!(text.contains("Unwritable"), "{text}");
        assert!(text.contains("/visual/blocks.3/odd"), "{text}");
    }

    /// `y = x · (Cast<f32>(Wq) · scale)`, the weight-only int8 form, by hand (a
    /// weight of at least 16 values: tract folds smaller constants as they are wired).
    fn weight_only_model() -> TypedModel {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, 4])).unwrap();
        let wq = model
            .add_const(
                "wq",
                tensor2(&[
                    [1i8, -2, 3, 4, 5, -6],
                    [2, 2, 2, 2, 2, 2],
                    [7, 7, 7, 7, 7, 7],
                    [-7, -7, -7, -7, -7, -7],
                ]),
            )
            .unwrap();
        let wf = model
            .wire_node(
                "cast",
                Cast {
                    to: f32::datum_type(),
                },
                &[wq],
            )
            .unwrap()[0];
        let scale = model
            .add_const("scale", tensor2(&[[0.5f32, 0.25, 2.0, 1.0, 1.0, 1.0]]))
            .unwrap();
        let w = model
            .wire_node("scaled", math::mul(), &[wf, scale])
            .unwrap()[0];
        let y = model
            .wire_node(
                "matmul",
                tract_onnx::tract_core::ops::einsum::EinSum::new(
                    "mk,kn->mn".parse().unwrap(),
                    f32::datum_type(),
                ),
                &[x, w],
            )
            .unwrap()[0];
        model.select_output_outlets(&[y]).unwrap();
        model
    }

    fn run(model: TypedModel) -> Vec<f32> {
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        let out = plan
            .run(tvec!(tensor2(&[[1.0f32, 2.0, 0.0, 0.0]]).into()))
            .unwrap();
        out[0]
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect()
    }

    #[test]
    fn int8_weights_are_widened_once_with_the_same_result() {
        let expected = run(weight_only_model());
        let mut model = weight_only_model();
        assert_eq!(int8_weight_casts(&model).len(), 1);
        assert_eq!(widen_int8_weights(&mut model).unwrap(), 1);
        assert!(int8_weight_casts(&model).is_empty());
        assert_eq!(widen_int8_weights(&mut model).unwrap(), 0);
        // x = [1, 2, 0, 0]: (row 0 + 2 · row 1) · scale.
        let want = vec![2.5, 0.5, 14.0, 8.0, 9.0, -2.0];
        assert_eq!(run(model), want);
        assert_eq!(expected, want);
    }

    #[test]
    fn casts_of_activations_are_left_alone() {
        let mut model = TypedModel::default();
        let x = model.add_source("x", i8::fact([32])).unwrap();
        let y = model
            .wire_node(
                "cast",
                Cast {
                    to: f32::datum_type(),
                },
                &[x],
            )
            .unwrap()[0];
        model.select_output_outlets(&[y]).unwrap();
        assert_eq!(widen_int8_weights(&mut model).unwrap(), 0);
    }
}
