//! The label table: one L2-normalised text embedding per label, stored as
//! `labels.safetensors`.
//!
//! The file holds a single f32 tensor named [`EMBEDDINGS_TENSOR`] of shape
//! `[n_labels, dim]`, and string metadata: the label names and prompt templates (JSON
//! arrays), the sha256 of the text encoder that made the embeddings, and a format tag.
//! `clip-quantize labels` writes it; the runtime reads it once at start-up.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

/// Name of the embeddings tensor inside `labels.safetensors`.
pub const EMBEDDINGS_TENSOR: &str = "embeddings";
/// Value of the `format` metadata key this version writes and reads.
pub const FORMAT_TAG: &str = "clip-edge-labels/1";

/// Tolerance on the L2 norm of a stored row (rows must be unit vectors).
const NORM_TOLERANCE: f32 = 1e-3;

/// What can go wrong reading or writing a label table.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabelsError {
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The data is not a valid safetensors file.
    #[error("{}not a valid safetensors file: {source}", path_prefix(.path))]
    Format {
        /// The file, when the table came from one.
        path: Option<PathBuf>,
        /// The parser's complaint.
        source: safetensors::SafeTensorError,
    },
    /// The data is not a label table this runtime understands.
    #[error("{}{problem}", path_prefix(.path))]
    Invalid {
        /// The file, when the table came from one.
        path: Option<PathBuf>,
        /// What is wrong.
        problem: String,
    },
}

/// Label names with their normalised text embeddings, row-major `[n_labels, dim]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelTable {
    labels: Vec<String>,
    templates: Vec<String>,
    text_model_sha256: String,
    dim: usize,
    embeddings: Vec<f32>,
}

impl LabelTable {
    /// Builds a table from label names and one embedding row per label.
    ///
    /// Rows are L2-normalised here; an empty table, a duplicate label, a row of the
    /// wrong length or a zero row is refused.
    pub fn new(
        labels: Vec<String>,
        templates: Vec<String>,
        text_model_sha256: String,
        rows: Vec<Vec<f32>>,
    ) -> Result<Self, LabelsError> {
        Self::build(labels, templates, text_model_sha256, rows).map_err(|problem| {
            LabelsError::Invalid {
                path: None,
                problem,
            }
        })
    }

    fn build(
        labels: Vec<String>,
        templates: Vec<String>,
        text_model_sha256: String,
        rows: Vec<Vec<f32>>,
    ) -> Result<Self, String> {
        if labels.is_empty() {
            return Err("no labels".into());
        }
        if labels.len() != rows.len() {
            return Err(format!(
                "{} labels but {} embedding rows",
                labels.len(),
                rows.len()
            ));
        }
        check_unique(&labels)?;
        let dim = rows[0].len();
        if dim == 0 {
            return Err("embedding dimension is 0".into());
        }
        let mut embeddings = Vec::with_capacity(labels.len() * dim);
        for (label, mut row) in labels.iter().zip(rows) {
            if row.len() != dim {
                return Err(format!(
                    "label {label:?}: embedding has {} values, expected {dim}",
                    row.len()
                ));
            }
            if !l2_normalize(&mut row) {
                return Err(format!("label {label:?}: embedding is zero or not finite"));
            }
            embeddings.extend_from_slice(&row);
        }
        Ok(LabelTable {
            labels,
            templates,
            text_model_sha256,
            dim,
            embeddings,
        })
    }

    /// Reads and validates a `labels.safetensors` file.
    pub fn load(path: &Path) -> Result<Self, LabelsError> {
        let bytes = std::fs::read(path).map_err(|source| LabelsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes).map_err(|err| match err {
            LabelsError::Format { source, .. } => LabelsError::Format {
                path: Some(path.to_path_buf()),
                source,
            },
            LabelsError::Invalid { problem, .. } => LabelsError::Invalid {
                path: Some(path.to_path_buf()),
                problem,
            },
            other => other,
        })
    }

    /// Parses a label table from the bytes of a safetensors file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, LabelsError> {
        let invalid = |problem: String| LabelsError::Invalid {
            path: None,
            problem,
        };
        let (_, metadata) = SafeTensors::read_metadata(bytes)
            .map_err(|source| LabelsError::Format { path: None, source })?;
        let tensors = SafeTensors::deserialize(bytes)
            .map_err(|source| LabelsError::Format { path: None, source })?;
        let meta = metadata.metadata().clone().unwrap_or_default();
        match meta.get("format").map(String::as_str) {
            Some(FORMAT_TAG) => {}
            Some(other) => {
                return Err(invalid(format!(
                    "label table format {other:?}, this build reads {FORMAT_TAG:?}"
                )))
            }
            None => {
                return Err(invalid(
                    "no `format` metadata: not a clip-edge label table".into(),
                ))
            }
        }
        let labels: Vec<String> = json_list(&meta, "labels").map_err(invalid)?;
        let templates: Vec<String> = json_list(&meta, "templates").map_err(invalid)?;
        let text_model_sha256 = meta.get("text_model_sha256").cloned().unwrap_or_default();

        let view = tensors
            .tensor(EMBEDDINGS_TENSOR)
            .map_err(|_| invalid(format!("no tensor named {EMBEDDINGS_TENSOR:?}")))?;
        if view.dtype() != Dtype::F32 {
            return Err(invalid(format!(
                "tensor {EMBEDDINGS_TENSOR:?} is {:?}, expected F32",
                view.dtype()
            )));
        }
        let shape = view.shape();
        if shape.len() != 2 || shape[0] == 0 || shape[1] == 0 {
            return Err(invalid(format!(
                "tensor {EMBEDDINGS_TENSOR:?} has shape {shape:?}, expected [n_labels, dim]"
            )));
        }
        if shape[0] != labels.len() {
            return Err(invalid(format!(
                "{} label names in metadata but {} embedding rows",
                labels.len(),
                shape[0]
            )));
        }
        check_unique(&labels).map_err(invalid)?;
        let dim = shape[1];
        let embeddings: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        for (label, row) in labels.iter().zip(embeddings.chunks_exact(dim)) {
            if let Some(bad) = row.iter().find(|x| !x.is_finite()) {
                return Err(invalid(format!(
                    "embedding of label {label:?} holds {bad}: the table is corrupt (or the text encoder overflowed)"
                )));
            }
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            if !norm.is_finite() || (norm - 1.0).abs() > NORM_TOLERANCE {
                return Err(invalid(format!(
                    "embedding of label {label:?} has norm {norm}, expected 1 (not normalised?)"
                )));
            }
        }
        Ok(LabelTable {
            labels,
            templates,
            text_model_sha256,
            dim,
            embeddings,
        })
    }

    /// Serialises the table to safetensors bytes (the `labels.safetensors` format).
    pub fn to_bytes(&self) -> Result<Vec<u8>, LabelsError> {
        let data: Vec<u8> = self
            .embeddings
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let view = TensorView::new(Dtype::F32, vec![self.labels.len(), self.dim], &data)
            .map_err(|source| LabelsError::Format { path: None, source })?;
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), FORMAT_TAG.to_string());
        meta.insert("labels".to_string(), to_json(&self.labels));
        meta.insert("templates".to_string(), to_json(&self.templates));
        meta.insert(
            "text_model_sha256".to_string(),
            self.text_model_sha256.clone(),
        );
        let mut bytes = safetensors::serialize([(EMBEDDINGS_TENSOR, view)], Some(meta))
            .map_err(|source| LabelsError::Format { path: None, source })?;
        sort_header_keys(&mut bytes);
        Ok(bytes)
    }

    /// Writes the table to `path`.
    pub fn save(&self, path: &Path) -> Result<(), LabelsError> {
        let bytes = self.to_bytes()?;
        std::fs::write(path, bytes).map_err(|source| LabelsError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Label names, in row order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Prompt templates the embeddings were averaged over.
    pub fn templates(&self) -> &[String] {
        &self.templates
    }

    /// sha256 (hex) of the text encoder that produced the embeddings.
    pub fn text_model_sha256(&self) -> &str {
        &self.text_model_sha256
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the table has no labels (never true for a loaded table).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The normalised embeddings, row-major `[len(), dim()]`.
    pub fn embeddings(&self) -> &[f32] {
        &self.embeddings
    }

    /// The embedding row of label `index`.
    pub fn row(&self, index: usize) -> Option<&[f32]> {
        self.embeddings.chunks_exact(self.dim).nth(index)
    }
}

/// Rewrites the safetensors JSON header with its keys sorted, so the same table
/// always serialises to the same bytes (the metadata map's order is random). The
/// header keeps its length: same keys and values, padded with spaces as before.
fn sort_header_keys(bytes: &mut [u8]) {
    let Some(len) = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as usize)
    else {
        return;
    };
    let Some(header) = bytes.get_mut(8..8 + len) else {
        return;
    };
    // serde_json's map is a BTreeMap: parsing and printing sorts the keys.
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(header) else {
        return;
    };
    let sorted = value.to_string();
    if sorted.len() <= header.len() {
        header[..sorted.len()].copy_from_slice(sorted.as_bytes());
        header[sorted.len()..].fill(b' ');
    }
}

fn path_prefix(path: &Option<PathBuf>) -> String {
    match path {
        Some(path) => format!("{}: ", path.display()),
        None => String::new(),
    }
}

fn check_unique(labels: &[String]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for label in labels {
        if !seen.insert(label.as_str()) {
            return Err(format!("duplicate label {label:?}"));
        }
    }
    Ok(())
}

fn json_list(meta: &HashMap<String, String>, key: &str) -> Result<Vec<String>, String> {
    let raw = meta
        .get(key)
        .ok_or_else(|| format!("no `{key}` metadata"))?;
    serde_json::from_str(raw)
        .map_err(|e| format!("`{key}` metadata is not a JSON list of strings: {e}"))
}

fn to_json(list: &[String]) -> String {
    serde_json::Value::from(list.to_vec()).to_string()
}

/// Scales `v` to unit L2 norm in place. Returns false (leaving `v` untouched) when
/// the norm is zero or not finite.
pub fn l2_normalize(v: &mut [f32]) -> bool {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !norm.is_finite() || norm == 0.0 {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> LabelTable {
        LabelTable::new(
            vec!["cat".into(), "dog".into()],
            vec!["a photo of a {}.".into()],
            "abc".into(),
            vec![vec![3.0, 4.0], vec![0.0, 2.0]],
        )
        .unwrap()
    }

    #[test]
    fn rows_are_normalised_and_round_trip() {
        let t = table();
        assert_eq!(t.row(0).unwrap(), &[0.6, 0.8]);
        assert_eq!(t.row(1).unwrap(), &[0.0, 1.0]);
        let back = LabelTable::from_bytes(&t.to_bytes().unwrap()).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn serialisation_is_deterministic() {
        let first = table().to_bytes().unwrap();
        for _ in 0..8 {
            assert_eq!(table().to_bytes().unwrap(), first);
        }
    }

    #[test]
    fn refuses_duplicates_and_bad_rows() {
        let dup = LabelTable::new(
            vec!["cat".into(), "cat".into()],
            vec![],
            String::new(),
            vec![vec![1.0], vec![1.0]],
        );
        assert!(dup.unwrap_err().to_string().contains("duplicate"));
        let zero = LabelTable::new(vec!["cat".into()], vec![], String::new(), vec![vec![0.0]]);
        assert!(zero.unwrap_err().to_string().contains("zero"));
        let ragged = LabelTable::new(
            vec!["a".into(), "b".into()],
            vec![],
            String::new(),
            vec![vec![1.0, 0.0], vec![1.0]],
        );
        assert!(ragged.unwrap_err().to_string().contains("expected 2"));
    }

    #[test]
    fn refuses_garbage_and_foreign_safetensors() {
        let err = LabelTable::from_bytes(b"not a safetensors file").unwrap_err();
        assert!(matches!(err, LabelsError::Format { .. }), "{err}");
        let data = [0u8; 8];
        let view = TensorView::new(Dtype::F32, vec![1, 2], &data).unwrap();
        let foreign = safetensors::serialize([("weight", view)], None).unwrap();
        let err = LabelTable::from_bytes(&foreign).unwrap_err();
        assert!(err.to_string().contains("format"), "{err}");
    }
}
