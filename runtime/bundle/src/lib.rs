//! The clip-edge bundle format: the directory `clip-quantize` writes on the
//! workstation and the board reads.
//!
//! ```text
//! bundle/
//!   bundle.toml         the manifest: model file, format, precision, dims, hashes,
//!                       preprocessing, logit scale
//!   model.nnef.tar      the image encoder (or model.onnx)
//!   labels.safetensors  the label table
//!   bundle.sig          optional: the ed25519 signature of bundle.toml
//! ```
//!
//! A leaf crate: no tract, nothing board-specific. Reading checks everything that can
//! be checked without running the model (hashes, dimensions, counts).
//!
//! | module | job |
//! | --- | --- |
//! | [`atomic`] | swapping two paths in one step, flushing a folder (bundle updates) |
//! | [`manifest`] | `bundle.toml`, loading and verifying a bundle, file hashes |
//! | [`labels`] | the label table (`labels.safetensors`), deterministic bytes |
//! | [`model_format`] | NNEF or ONNX, told apart by content |
//! | [`preprocess_config`] | the `[preprocess]` section: resize, crop, mean, std |
//! | [`signature`] | signed bundles: keys, signing, checking against trusted keys |

pub mod atomic;
pub mod labels;
pub mod manifest;
pub mod model_format;
pub mod preprocess_config;
pub mod signature;

pub use labels::{LabelTable, LabelsError};
pub use manifest::{
    blake3_file, sha256_file, Bundle, BundleError, BundleErrorKind, LabelsSection, Manifest,
    ModelFamily, ModelSection, Precision, ScoringRule, ScoringSection, FORMAT_VERSION, LABELS_FILE,
    MANIFEST_FILE, MODEL_FILE, MODEL_FILE_NNEF,
};
pub use model_format::ModelFormat;
pub use preprocess_config::{
    CropOffset, Interpolation, InvalidPreprocessConfig, PreprocessConfig, ResizeMode, CLIP_MEAN,
    CLIP_STD,
};
pub use signature::{SecretKey, SignatureError, TrustedKey, TrustedKeys, SIGNATURE_FILE};
