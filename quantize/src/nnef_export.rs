//! The image encoder as the NNEF tar a bundle carries: the ONNX export typed and
//! decluttered by tract for a `[1, 3, size, size]` input, written with short node
//! names. The board then reads the weights once and skips ONNX parsing and analysis;
//! the CPU-specific optimisation (kernel choice, weight packing) is left to it.

use std::path::{Path, PathBuf};

use clip_edge_core::encoder::onnx::onnx_with_input;
use clip_edge_core::encoder::{nnef, EncoderError};
use tract_onnx::prelude::*;

/// What can go wrong writing the NNEF model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NnefExportError {
    /// The ONNX model could not be read, typed or decluttered.
    #[error(transparent)]
    Read(#[from] EncoderError),
    /// tract's NNEF writer has no serializer for an operator of the model. The
    /// source names the operator and its ONNX node; the ONNX format still works.
    #[error("{path}: tract's NNEF writer cannot write this model")]
    Unsupported {
        /// The source model.
        path: PathBuf,
        /// tract's error, naming the operator and the node.
        #[source]
        source: TractError,
    },
    /// tract failed writing the NNEF tar.
    #[error("{path}: cannot write the NNEF model")]
    Write {
        /// The output file.
        path: PathBuf,
        /// tract's error.
        #[source]
        source: TractError,
    },
    /// The output file could not be created or flushed.
    #[error("{path}: {source}")]
    Io {
        /// The output file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Writes the ONNX image encoder at `onnx` as the NNEF tar a bundle carries: typed
/// and decluttered for a `[1, 3, image_size, image_size]` input. The
/// CPU-specific optimisation (kernel choice, weight packing) is left to the board.
/// The tar goes to `out`, which is named `out_path` in errors (an unnamed file
/// becoming `out_path`: [`crate::atomic_file::PendingFile`]).
pub fn write_nnef(
    onnx: &Path,
    image_size: usize,
    out: &mut std::fs::File,
    out_path: &Path,
) -> Result<(), NnefExportError> {
    let bytes = std::fs::read(onnx).map_err(|source| EncoderError::Io {
        path: onnx.to_path_buf(),
        source,
    })?;
    let load_err = |e: TractError| EncoderError::load(onnx, e);
    let model = onnx_with_input(&bytes, onnx, image_size)?;
    drop(bytes);
    let typed = model
        .into_typed()
        .map_err(|source| EncoderError::InputShape {
            path: onnx.to_path_buf(),
            image_size,
            source,
        })?;
    // Weight-only int8 models: tract folds the small weights' int8 → f32 casts here
    // (stored as f32); the large ones stay int8 and are widened at load.
    let typed = typed.into_decluttered().map_err(load_err)?;
    write_typed_nnef(typed, onnx, out, out_path)
}

/// Writes a decluttered model as an NNEF tar (see [`write_nnef`]); `source` names
/// the model in errors.
fn write_typed_nnef(
    mut typed: TypedModel,
    source: &Path,
    file: &mut std::fs::File,
    out: &Path,
) -> Result<(), NnefExportError> {
    // Short node names: tract's NNEF parser's cost grows with the bytes of
    // graph.nnef, and the ONNX-derived names (`/vision_model/encoder/
    // layers.11/mlp/fc2/MatMul/...`) make it much longer (docs/perf.md#nnef-names).
    // The input keeps its name.
    let onnx_names: Vec<String> = typed.nodes.iter().map(|n| n.name.clone()).collect();
    let sources: Vec<usize> = typed.inputs.iter().map(|o| o.node).collect();
    for id in 0..typed.nodes.len() {
        if !sources.contains(&id) {
            typed.node_mut(id).name = format!("n{id}");
        }
    }
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
                Err(e) => NnefExportError::Unsupported {
                    path: source.to_path_buf(),
                    source: e,
                },
                Ok(_) => NnefExportError::Write {
                    path: out.to_path_buf(),
                    source: write_err,
                },
            });
        }
    };
    writer
        .into_inner()
        .map(drop)
        .map_err(|e| e.into_error())
        .map_err(|source| NnefExportError::Io {
            path: out.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clip_edge_core::ErrorChain;
    use tract_onnx::tract_core::internal::{EvalContext, EvalOp, StaticName};
    use tract_onnx::tract_core::ops::element_wise::{ElementWiseMiniOp, ElementWiseOp};
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

    /// Writes a one-op model as NNEF and reads it back.
    fn round_trip(name: &str, model: TypedModel) -> TypedModel {
        let out = scratch_file(name);
        let mut file = std::fs::File::create(&out).unwrap();
        write_typed_nnef(model, Path::new("gelu.onnx"), &mut file, &out).unwrap();
        nnef()
            .model_for_read(&mut std::fs::File::open(&out).unwrap())
            .unwrap()
    }

    /// Whether `model` has an element-wise node of mini-op `T`.
    fn has_element_wise<T: ElementWiseMiniOp>(model: &TypedModel) -> bool {
        model.nodes().iter().any(|n| {
            n.op_as::<ElementWiseOp>()
                .is_some_and(|ew| ew.0.downcast_ref::<T>().is_some())
        })
    }

    /// tract-core turns ONNX's exact `Gelu` into `GeluExact`; the vendored tract-nnef
    /// writes it (`tract_core_gelu_exact`) and reads it back as the same op.
    #[test]
    fn exact_gelu_writes_to_nnef_and_reads_back() {
        use tract_onnx::tract_core::ops::nn::{gelu_exact::gelu_exact, GeluExact};
        let model = one_op_model("/visual/mlp/gelu", gelu_exact());
        let read = round_trip("gelu.nnef.tar", model);
        assert!(has_element_wise::<GeluExact>(&read));
    }

    /// GELU's tanh form (`Gelu` with `approximate="tanh"`) round-trips as well.
    #[test]
    fn tanh_gelu_writes_to_nnef_and_reads_back() {
        use tract_onnx::tract_core::ops::nn::gelu_approximate::{
            gelu_approximate, GeluApproximate,
        };
        let model = one_op_model("/visual/mlp/gelu", gelu_approximate(false));
        let read = round_trip("gelu_tanh.nnef.tar", model);
        assert!(has_element_wise::<GeluApproximate>(&read));
    }

    /// An operator the NNEF writer cannot write is named, with its ONNX node.
    #[test]
    fn unwritable_operator_is_named_with_its_node() {
        let out = scratch_file("unwritable.nnef.tar");
        let model = one_op_model("/visual/blocks.3/odd", Unwritable);
        let mut file = std::fs::File::create(&out).unwrap();
        let err = write_typed_nnef(model, Path::new("visual.onnx"), &mut file, &out).unwrap_err();
        let text = ErrorChain(&err).to_string();
        assert!(
            matches!(err, NnefExportError::Unsupported { .. }),
            "{err:?}"
        );
        assert!(text.starts_with("visual.onnx: "), "{text}");
        assert!(text.contains("Unwritable"), "{text}");
        assert!(text.contains("/visual/blocks.3/odd"), "{text}");
    }
}
