//! The bundle: the directory copied from the workstation to the board.
//!
//! ```text
//! bundle/
//!   bundle.toml         this manifest: preprocessing, dims, logit scale, file hashes
//!   model.nnef.tar      the image encoder (fp32 or int8): tract's decluttered model
//!                       as NNEF (or model.onnx, the ONNX file as is, with --format onnx)
//!   labels.safetensors  the label table (see [`crate::labels`])
//! ```
//!
//! [`Bundle::load`] checks everything it can before a frame is run: that both files
//! exist and have the hash the manifest records, that the label table's dimension
//! equals the manifest's embedding dimension, and that the label count matches. The
//! image encoder's own output dimension is checked when the model is built
//! (clip-edge-core's `ImageEncoder`). `clip-quantize` writes bundles.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::labels::{LabelTable, LabelsError};
use crate::model_format::ModelFormat;
use crate::preprocess_config::PreprocessConfig;
use crate::signature::{SignatureError, TrustedKeys, SIGNATURE_FILE};

/// File name of the manifest inside a bundle directory.
pub const MANIFEST_FILE: &str = "bundle.toml";
/// File name of the image encoder inside a bundle directory, ONNX format.
pub const MODEL_FILE: &str = "model.onnx";
/// File name of the image encoder inside a bundle directory, NNEF format.
pub const MODEL_FILE_NNEF: &str = "model.nnef.tar";
/// File name of the label table inside a bundle directory.
pub const LABELS_FILE: &str = "labels.safetensors";
/// Manifest format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// What can go wrong loading a bundle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// A file of the bundle could not be read (the cause is the source, printed by
    /// `anyhow`'s `{:#}` or `clip_edge_core::ErrorChain`).
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `bundle.toml` is not valid TOML or misses fields.
    #[error("{path}: invalid manifest: {message}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A file's hash differs from the manifest's.
    #[error(
        "{path}: {algorithm} is {actual}, but {manifest} records {expected} (file changed or corrupt)"
    )]
    HashMismatch {
        /// The file whose hash differs.
        path: PathBuf,
        /// `sha256` or `blake3`.
        algorithm: &'static str,
        /// The manifest.
        manifest: PathBuf,
        /// Hash recorded in the manifest.
        expected: String,
        /// Hash of the file on disk.
        actual: String,
    },
    /// The manifest and the files disagree on a dimension or count.
    #[error("{path}: {problem}")]
    Mismatch {
        /// The file that disagrees with the manifest.
        path: PathBuf,
        /// What disagrees.
        problem: String,
    },
    /// The label table is unreadable or invalid.
    #[error(transparent)]
    Labels(#[from] LabelsError),
    /// The bundle is unsigned, or no trusted key signed it (see [`crate::signature`]).
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

/// Coarse category of a [`BundleError`], for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BundleErrorKind {
    /// A file is missing or unreadable.
    Io,
    /// The manifest is malformed.
    Manifest,
    /// A file does not match the manifest (hash, dimension, count).
    Mismatch,
    /// The label table is invalid.
    Labels,
    /// The bundle is unsigned or signed by a key not trusted, or a key is unreadable.
    Signature,
}

impl BundleError {
    /// The category of this error.
    pub fn kind(&self) -> BundleErrorKind {
        match self {
            BundleError::Io { .. } => BundleErrorKind::Io,
            BundleError::Manifest { .. } => BundleErrorKind::Manifest,
            BundleError::HashMismatch { .. } | BundleError::Mismatch { .. } => {
                BundleErrorKind::Mismatch
            }
            BundleError::Labels(_) => BundleErrorKind::Labels,
            BundleError::Signature(_) => BundleErrorKind::Signature,
        }
    }
}

/// Numeric precision of the image encoder in a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// The fp32 export, as is.
    Fp32,
    /// Integer-quantized by `clip-quantize quantize`.
    Int8,
    /// int8 weights, f32 arithmetic (`clip-quantize quantize --mode weights`).
    #[serde(rename = "int8-weights")]
    Int8Weights,
}

/// `[model]` section of the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// File name inside the bundle.
    pub file: String,
    /// sha256 of the file, lower-case hex.
    pub sha256: String,
    /// BLAKE3 of the file, lower-case hex (bundles written before it: none). Checked
    /// instead of sha256 on CPUs without SHA-2 instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// How the file is stored (bundles written before NNEF: ONNX).
    #[serde(default = "onnx_format")]
    pub format: ModelFormat,
    /// fp32 or int8.
    pub precision: Precision,
    /// Length of the image embedding the model outputs.
    pub embedding_dim: usize,
    /// The model family (bundles written before it: CLIP). Informational: what the
    /// bundle does is set by `[preprocess]` and `[scoring]`.
    #[serde(default, skip_serializing_if = "ModelFamily::is_clip")]
    pub family: ModelFamily,
}

/// The family of the model a bundle holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelFamily {
    /// CLIP: OpenAI's, OpenCLIP's ViT and ResNet models, TinyCLIP.
    #[default]
    Clip,
    /// BLIP's image-text contrastive heads.
    Blip,
    /// SigLIP and SigLIP 2 (sigmoid scores).
    Siglip,
    /// MobileCLIP and MobileCLIP2 (FastViT/MCi convolutional towers).
    Mobileclip,
}

impl ModelFamily {
    fn is_clip(&self) -> bool {
        *self == ModelFamily::Clip
    }

    /// The family's name as the manifest writes it.
    pub fn name(self) -> &'static str {
        match self {
            ModelFamily::Clip => "clip",
            ModelFamily::Blip => "blip",
            ModelFamily::Siglip => "siglip",
            ModelFamily::Mobileclip => "mobileclip",
        }
    }
}

/// `[labels]` section of the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelsSection {
    /// File name inside the bundle.
    pub file: String,
    /// sha256 of the file, lower-case hex.
    pub sha256: String,
    /// Number of labels in the table.
    pub count: usize,
}

/// How a label's cosine becomes its probability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoringRule {
    /// `softmax(logit_scale × cosine)` over the labels: the probabilities sum to 1
    /// (CLIP, BLIP, MobileCLIP).
    #[default]
    Softmax,
    /// `sigmoid(logit_scale × cosine + logit_bias)` per label: each is that label's
    /// own probability, independent of the others (SigLIP).
    Sigmoid,
}

/// `[scoring]` section of the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoringSection {
    /// Softmax over the labels or a sigmoid per label (bundles written before it:
    /// softmax).
    #[serde(default, skip_serializing_if = "is_softmax")]
    pub rule: ScoringRule,
    /// Multiplier of the cosine (CLIP: 100).
    pub logit_scale: f32,
    /// Added to the scaled cosine before the sigmoid (SigLIP's learned bias); must be
    /// 0 with softmax, where it would change nothing.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub logit_bias: f32,
}

fn is_softmax(rule: &ScoringRule) -> bool {
    *rule == ScoringRule::Softmax
}

fn is_zero(x: &f32) -> bool {
    *x == 0.0
}

impl ScoringSection {
    /// CLIP's softmax with `logit_scale`.
    pub fn softmax(logit_scale: f32) -> Self {
        Self {
            rule: ScoringRule::Softmax,
            logit_scale,
            logit_bias: 0.0,
        }
    }

    /// Checks that the scale is a positive number and the bias finite, and 0 with
    /// softmax; says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.logit_scale.is_finite() && self.logit_scale > 0.0) {
            return Err(format!(
                "scoring.logit_scale must be a positive number, got {}",
                self.logit_scale
            ));
        }
        if !self.logit_bias.is_finite() {
            return Err(format!(
                "scoring.logit_bias must be a finite number, got {}",
                self.logit_bias
            ));
        }
        if self.rule == ScoringRule::Softmax && self.logit_bias != 0.0 {
            return Err(format!(
                "scoring.logit_bias = {} has no effect with rule = \"softmax\" (a sigmoid model? set rule = \"sigmoid\")",
                self.logit_bias
            ));
        }
        Ok(())
    }
}

/// The contents of `bundle.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Manifest format version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// The image encoder.
    pub model: ModelSection,
    /// The label table.
    pub labels: LabelsSection,
    /// How frames become the model's input tensor.
    pub preprocess: PreprocessConfig,
    /// How embeddings become probabilities.
    pub scoring: ScoringSection,
}

impl Manifest {
    /// Parses a manifest from TOML text; `path` is only used in error messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, BundleError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| BundleError::Manifest {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(BundleError::Manifest {
                path: path.to_path_buf(),
                message: format!(
                    "format_version {} (this build reads {FORMAT_VERSION})",
                    manifest.format_version
                ),
            });
        }
        manifest
            .preprocess
            .validate()
            .map_err(|e| BundleError::Manifest {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        manifest
            .scoring
            .validate()
            .map_err(|message| BundleError::Manifest {
                path: path.to_path_buf(),
                message,
            })?;
        Ok(manifest)
    }

    /// The manifest as TOML text.
    pub fn to_toml(&self) -> String {
        // Serialising plain structs of numbers and strings cannot fail.
        toml::to_string(self).unwrap_or_default()
    }
}

/// A loaded, verified bundle: the manifest, the label table, and the model's path.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle directory.
    pub dir: PathBuf,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The label table.
    pub labels: LabelTable,
    /// The trusted key that signed the manifest ([`Bundle::load_trusted`]), by name
    /// and fingerprint; `None` when loaded without a trust list.
    pub signed_by: Option<String>,
}

impl Bundle {
    /// Loads `dir/bundle.toml`, verifies both files' hashes and the label table
    /// against the manifest. A signature, if there is one, is not checked.
    pub fn load(dir: &Path) -> Result<Self, BundleError> {
        Self::load_with(dir, None)
    }

    /// Like [`Bundle::load`], but first checks that one of `trusted` signed the exact
    /// bytes of `bundle.toml` (`bundle.sig`): an unsigned bundle, another key, or any
    /// file changed after signing is refused, and nothing but the manifest and the
    /// signature is read before the signature verifies.
    pub fn load_trusted(dir: &Path, trusted: &TrustedKeys) -> Result<Self, BundleError> {
        Self::load_with(dir, Some(trusted))
    }

    /// [`Bundle::load_trusted`] with a trust list, [`Bundle::load`] without.
    pub fn load_with(dir: &Path, trusted: Option<&TrustedKeys>) -> Result<Self, BundleError> {
        let manifest_path = dir.join(MANIFEST_FILE);
        // The OS's reason when there is one (a symlink loop, no permission), not only
        // "not found".
        let not_a_dir = match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => None,
            Ok(_) => Some(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                "not a directory: a bundle is a directory holding bundle.toml",
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "bundle directory not found",
            )),
            Err(e) => Some(e),
        };
        if let Some(source) = not_a_dir {
            return Err(BundleError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
        // Read once: the bytes whose signature is checked are the bytes parsed.
        let bytes = std::fs::read(&manifest_path).map_err(|source| BundleError::Io {
            path: manifest_path.clone(),
            source,
        })?;
        let signed_by = match trusted {
            None => None,
            Some(trusted) => {
                let sig_path = dir.join(SIGNATURE_FILE);
                let sig = std::fs::read(&sig_path).map_err(|source| {
                    if source.kind() == std::io::ErrorKind::NotFound {
                        BundleError::from(SignatureError::Unsigned {
                            path: sig_path.clone(),
                        })
                    } else {
                        BundleError::Io {
                            path: sig_path.clone(),
                            source,
                        }
                    }
                })?;
                let key = trusted.verify(&bytes, &manifest_path, &sig, &sig_path)?;
                log::info!(
                    "bundle {} signed by {} ({})",
                    dir.display(),
                    key.name,
                    key.fingerprint()
                );
                Some(format!("{} {}", key.name, key.fingerprint()))
            }
        };
        let text = String::from_utf8(bytes).map_err(|_| BundleError::Manifest {
            path: manifest_path.clone(),
            message: "not UTF-8 text".to_string(),
        })?;
        let manifest = Manifest::from_toml(&text, &manifest_path)?;

        let model_path = dir.join(&manifest.model.file);
        match &manifest.model.blake3 {
            Some(blake3) if !sha2_instructions() => {
                verify_hash(&model_path, HashKind::Blake3, blake3, &manifest_path)?
            }
            _ => verify_hash(
                &model_path,
                HashKind::Sha256,
                &manifest.model.sha256,
                &manifest_path,
            )?,
        }
        let labels_path = dir.join(&manifest.labels.file);
        verify_hash(
            &labels_path,
            HashKind::Sha256,
            &manifest.labels.sha256,
            &manifest_path,
        )?;

        let labels = LabelTable::load(&labels_path)?;
        if labels.dim() != manifest.model.embedding_dim {
            return Err(BundleError::Mismatch {
                path: labels_path,
                problem: format!(
                    "label embeddings have dimension {}, but {} says the model's embedding_dim is {}",
                    labels.dim(),
                    MANIFEST_FILE,
                    manifest.model.embedding_dim
                ),
            });
        }
        if labels.len() != manifest.labels.count {
            return Err(BundleError::Mismatch {
                path: labels_path,
                problem: format!(
                    "{} labels, but {} says {}",
                    labels.len(),
                    MANIFEST_FILE,
                    manifest.labels.count
                ),
            });
        }
        log::debug!(
            "bundle {}: {} labels, dim {}, {:?} model",
            dir.display(),
            labels.len(),
            labels.dim(),
            manifest.model.precision
        );
        Ok(Bundle {
            dir: dir.to_path_buf(),
            manifest,
            labels,
            signed_by,
        })
    }

    /// Path of the image encoder.
    pub fn model_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.model.file)
    }
}

fn onnx_format() -> ModelFormat {
    ModelFormat::Onnx
}

/// sha256 of a file's contents, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String, std::io::Error> {
    let mut hasher = Sha256::new();
    read_chunks(path, |chunk| hasher.update(chunk))?;
    Ok(hex::encode(hasher.finalize()))
}

/// BLAKE3 of a file's contents, lower-case hex.
pub fn blake3_file(path: &Path) -> Result<String, std::io::Error> {
    let mut hasher = blake3::Hasher::new();
    read_chunks(path, |chunk| {
        hasher.update(chunk);
    })?;
    Ok(hasher.finalize().to_hex().to_string())
}

fn read_chunks(path: &Path, mut each: impl FnMut(&[u8])) -> Result<(), std::io::Error> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        each(&buf[..n]);
    }
}

/// Whether this CPU hashes SHA-256 in hardware (ARMv8 SHA-2, x86 SHA-NI). Without
/// them software SHA-256 is several times slower than BLAKE3 with NEON
/// (docs/perf.md#hash), so the model's BLAKE3 hash is checked instead.
fn sha2_instructions() -> bool {
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("sha2")
    }
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("sha")
    }
    #[cfg(not(any(target_arch = "aarch64", target_arch = "x86_64")))]
    {
        false
    }
}

/// The hash a file is checked with.
#[derive(Debug, Clone, Copy)]
enum HashKind {
    Sha256,
    Blake3,
}

fn verify_hash(
    path: &Path,
    kind: HashKind,
    expected: &str,
    manifest: &Path,
) -> Result<(), BundleError> {
    let io = |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    };
    let (algorithm, actual) = match kind {
        HashKind::Sha256 => ("sha256", sha256_file(path).map_err(io)?),
        HashKind::Blake3 => ("blake3", blake3_file(path).map_err(io)?),
    };
    log::debug!("{}: {algorithm} verified", path.display());
    if !actual.eq_ignore_ascii_case(expected) {
        return Err(BundleError::HashMismatch {
            path: path.to_path_buf(),
            algorithm,
            manifest: manifest.to_path_buf(),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
#[path = "manifest_tests.rs"]
mod tests;
