//! The image encoder: a bundle's model (tract's NNEF, or with the `onnx` feature an
//! ONNX file) loaded with tract into one fixed-shape, optimised plan (batch 1,
//! `3 × size × size` f32 input) and one reusable state.
//!
//! The model must take one f32 input `[batch, 3, H, W]` and return one f32 output
//! `[batch, dim]`: the projected image embedding, not normalised (the interface of
//! `CLIPVisionModelWithProjection` and of OpenCLIP's `encode_image`).
//!
//! | file | job |
//! | --- | --- |
//! | `mod.rs` | loading, optimising, running, per-node runs for profiles |
//! | [`onnx`] | ONNX files: parsing and fixing the input shape (feature `onnx`) |
//! | `passes.rs` | the int8-weight widening pass at load, the kernel census of the plan |
//! | `threads.rs` | tract's matmul thread pool |

use std::path::{Path, PathBuf};

use clip_edge_bundle::ModelFormat;
use tract_nnef::prelude::*;
use tract_onnx_opl::WithOnnx;

#[cfg(feature = "onnx")]
pub mod onnx;
mod passes;
mod threads;

use passes::{matmul_kernels, widen_int8_weights};
pub use threads::{available_threads, set_threads};

/// What can go wrong loading or running the image encoder. tract's own error, with
/// its chain of causes, is the [`source`](std::error::Error::source) where there is one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncoderError {
    /// The file is missing or unreadable.
    #[error("{}: {source}", path.display())]
    Io {
        /// The model file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// tract could not parse (ONNX or NNEF), type or optimise the model.
    #[error("{}: cannot load the model", path.display())]
    Load {
        /// The model file.
        path: PathBuf,
        /// tract's error.
        #[source]
        source: TractError,
    },
    /// The model is an ONNX file and this build reads NNEF only.
    #[error("{}: an ONNX model, and this build of clip-edge reads NNEF bundles only (built without the `onnx` feature); make the bundle with `clip-quantize bundle` without `--format onnx`", path.display())]
    OnnxNotBuilt {
        /// The model file.
        path: PathBuf,
    },
    /// The model does not take a `[1, 3, size, size]` f32 input.
    #[error("{}: does not accept a [1,3,{image_size},{image_size}] f32 input", path.display())]
    InputShape {
        /// The model file.
        path: PathBuf,
        /// The side of the square input the bundle asks for.
        image_size: usize,
        /// tract's error.
        #[source]
        source: TractError,
    },
    /// The model loads but does not have the image-encoder interface.
    #[error("{}: {problem}", path.display())]
    Interface {
        /// The model file.
        path: PathBuf,
        /// What is wrong with its inputs or outputs.
        problem: String,
    },
    /// Running the plan failed.
    #[error("running the image encoder failed")]
    Run {
        /// tract's error.
        #[source]
        source: TractError,
    },
    /// The plan returned an embedding of another length than it was loaded with.
    #[error("the image encoder returned {actual} values, expected {expected}")]
    OutputSize {
        /// The embedding dimension found at load.
        expected: usize,
        /// Number returned.
        actual: usize,
    },
    /// The caller passed an input of the wrong length.
    #[error("input has {actual} values, the encoder expects {expected}")]
    InputSize {
        /// Expected number of f32 values.
        expected: usize,
        /// Number given.
        actual: usize,
    },
    /// tract's matmul thread pool could not start.
    #[error("cannot start {threads} matmul threads")]
    Threads {
        /// The number of threads asked for.
        threads: usize,
        /// rayon's error.
        #[source]
        source: rayon::ThreadPoolBuildError,
    },
}

impl EncoderError {
    /// A [`EncoderError::Load`] for `path`.
    pub fn load(path: &Path, source: TractError) -> Self {
        EncoderError::Load {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A [`EncoderError::Run`].
    pub fn run(source: TractError) -> Self {
        EncoderError::Run { source }
    }
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

/// The NNEF dialect bundles use: tract's core operators plus the ONNX extensions.
pub fn nnef() -> tract_nnef::framework::Nnef {
    tract_nnef::nnef().with_onnx()
}

impl ImageEncoder {
    /// Loads `path` (ONNX or NNEF, told apart by content) for a
    /// `[1, 3, image_size, image_size]` f32 input, optimises it for this CPU, and
    /// checks that the output is `[1, dim]`.
    pub fn load(path: &Path, image_size: usize) -> Result<Self, EncoderError> {
        let format = ModelFormat::detect(path).map_err(|source| EncoderError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        match format {
            #[cfg(feature = "onnx")]
            ModelFormat::Onnx => {
                let bytes = std::fs::read(path).map_err(|source| EncoderError::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
                Self::from_onnx_bytes(&bytes, path, image_size)
            }
            #[cfg(not(feature = "onnx"))]
            ModelFormat::Onnx => Err(EncoderError::OnnxNotBuilt {
                path: path.to_path_buf(),
            }),
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
            .map_err(|e| EncoderError::load(path, e))?;
        log::debug!("NNEF read and parsed in {:.0?}", start.elapsed());
        let expected = [1, 3, image_size, image_size];
        let input = model
            .input_fact(0)
            .map_err(|e| EncoderError::load(path, e))?;
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

    /// Optimises a typed model with the fixed input shape and checks its output.
    ///
    /// An NNEF model was decluttered before it was written, but tract's NNEF reader
    /// builds some operators in another form (a matmul's transposes as separate
    /// axis ops, for one), so it is decluttered again: skipping that would make loading
    /// cheaper but every frame dearer (docs/perf.md#nnef-declutter).
    pub(crate) fn from_typed(
        typed: TypedModel,
        path: &Path,
        image_size: usize,
    ) -> Result<Self, EncoderError> {
        let load_err = |e: TractError| EncoderError::load(path, e);
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
        let typed = typed
            .into_optimized()
            .map_err(|source| EncoderError::InputShape {
                path: path.to_path_buf(),
                image_size,
                source,
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
        let tensor = Tensor::from_shape(&self.input_shape, input).map_err(EncoderError::run)?;
        let outputs = self
            .state
            .run(tvec!(tensor.into_tvalue()))
            .map_err(EncoderError::run)?;
        let view = outputs[0].try_as_plain_ram().map_err(EncoderError::run)?;
        let out = view.as_slice::<f32>().map_err(EncoderError::run)?;
        if out.len() != self.dim {
            return Err(EncoderError::OutputSize {
                expected: self.dim,
                actual: out.len(),
            });
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
        let run = EncoderError::run;
        let tensor = Tensor::from_shape(&self.input_shape, input).map_err(run)?;
        self.state
            .run_plan_with_eval(tvec!(tensor.into_tvalue()), |ctx, state, node, inputs| {
                let start = std::time::Instant::now();
                let out = tract_nnef::tract_core::plan::eval(ctx, state, node, inputs);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Without the `onnx` feature an ONNX model is refused, saying why; with it, it
    /// loads.
    #[test]
    fn onnx_models_load_only_with_the_onnx_feature() {
        let onnx =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/shapes/image_encoder.onnx");
        let loaded = ImageEncoder::load(&onnx, 224);
        if cfg!(feature = "onnx") {
            assert_eq!(loaded.unwrap().dim(), 64);
        } else {
            let err = loaded.unwrap_err();
            assert!(matches!(err, EncoderError::OnnxNotBuilt { .. }), "{err}");
            assert!(err.to_string().contains("NNEF bundles only"), "{err}");
        }
    }
}
