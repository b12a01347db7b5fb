//! Checking an fp32 rewrite against its original: the same embeddings, to within
//! [`MAX_RELATIVE_DIFF`]. Every graph rewrite that must not change what the model
//! computes (the pooled-token pruning, the outlier smoothing) is checked with it.

use clip_edge_core::encoder::ImageEncoder;
use tract_onnx::pb::ModelProto;

use crate::onnx_graph::model_bytes;

/// A deterministic pseudo-random input in roughly the range of CLIP-normalised
/// pixels.
pub fn pseudo_random_input(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
            (r as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

/// How a rewritten model compares with its original.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RewriteCheck {
    /// Inputs compared.
    pub inputs: usize,
    /// Largest `max |a - b| / |a|` over the inputs (embeddings `a` original, `b` rewritten).
    pub max_relative_diff: f64,
}

/// Largest relative difference a rewrite may make.
pub const MAX_RELATIVE_DIFF: f64 = 1e-4;

/// Runs `original` (already loaded) and `rewritten` on two pseudo-random inputs and on
/// `inputs`, and returns the largest `max |a - b| / |a|` of the embeddings.
pub fn check_rewrite<'a>(
    original: &mut ImageEncoder,
    rewritten: &ModelProto,
    inputs: impl IntoIterator<Item = &'a [f32]>,
) -> Result<RewriteCheck, clip_edge_core::encoder::EncoderError> {
    let size = original.input_shape()[2];
    let mut candidate = ImageEncoder::from_onnx_bytes(
        &model_bytes(rewritten),
        std::path::Path::new("<rewritten model>"),
        size,
    )?;
    let len = original.input_len();
    let random: Vec<Vec<f32>> = (1..=2).map(|s| pseudo_random_input(len, s)).collect();
    let mut check = RewriteCheck {
        inputs: 0,
        max_relative_diff: 0.0,
    };
    let mut compare = |x: &[f32]| -> Result<(), clip_edge_core::encoder::EncoderError> {
        let a = original.encode(x)?.to_vec();
        let b = candidate.encode(x)?;
        let norm = a.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        let diff = a
            .iter()
            .zip(b)
            .map(|(p, q)| (*p as f64 - *q as f64).abs())
            .fold(0.0, f64::max);
        let rel = if norm > 0.0 { diff / norm } else { diff };
        // NaN counts as a failure.
        check.max_relative_diff = if rel.is_nan() {
            f64::INFINITY
        } else {
            check.max_relative_diff.max(rel)
        };
        check.inputs += 1;
        Ok(())
    };
    for x in &random {
        compare(x)?;
    }
    for x in inputs {
        compare(x)?;
    }
    Ok(check)
}
