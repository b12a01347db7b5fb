//! ONNX image encoders (feature `onnx`): parsed by tract-onnx, input fixed to
//! `[1, 3, size, size]` f32. Bundles made with `clip-quantize bundle --format onnx`
//! carry the ONNX file; the workstation tool reads every export this way.

use std::path::Path;

use tract_onnx::prelude::*;

use super::{EncoderError, ImageEncoder};

/// Parses an ONNX image encoder and fixes its input to `[1, 3, size, size]` f32.
pub fn onnx_with_input(
    bytes: &[u8],
    path: &Path,
    image_size: usize,
) -> Result<InferenceModel, EncoderError> {
    let load_err = |e: TractError| EncoderError::load(path, e);
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

impl ImageEncoder {
    /// Like [`ImageEncoder::load`], from the bytes of an ONNX file; `path` names it
    /// in errors.
    pub fn from_onnx_bytes(
        bytes: &[u8],
        path: &Path,
        image_size: usize,
    ) -> Result<Self, EncoderError> {
        let typed = onnx_with_input(bytes, path, image_size)?
            .into_typed()
            .map_err(|source| EncoderError::InputShape {
                path: path.to_path_buf(),
                image_size,
                source,
            })?;
        Self::from_typed(typed, path, image_size)
    }
}
