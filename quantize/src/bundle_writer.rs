//! Writing a bundle (format: clip-edge-bundle): the image encoder as NNEF (or the
//! ONNX file as is), the label table, and the manifest with their hashes.

use std::path::Path;

use clip_edge_bundle::{
    blake3_file, sha256_file, BundleError, LabelTable, LabelsSection, Manifest, ModelFamily,
    ModelFormat, ModelSection, Precision, PreprocessConfig, ScoringSection, FORMAT_VERSION,
    LABELS_FILE, MANIFEST_FILE, MODEL_FILE, MODEL_FILE_NNEF,
};

use crate::atomic_file::PendingFile;
use crate::nnef_export::{write_nnef, NnefExportError};

/// What can go wrong writing a bundle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleWriteError {
    /// A file could not be written, or the parts disagree (see [`BundleError`]).
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The image encoder could not be converted to NNEF.
    #[error(transparent)]
    Model(#[from] NnefExportError),
}

/// What goes into a new bundle (see [`write_bundle`]).
#[derive(Debug, Clone)]
pub struct BundleSpec<'a> {
    /// The image encoder ONNX file to copy in.
    pub model: &'a Path,
    /// How to store it: NNEF (converted here) or the ONNX file as is.
    pub format: ModelFormat,
    /// Its precision.
    pub precision: Precision,
    /// Its output embedding length (must equal the label table's).
    pub embedding_dim: usize,
    /// The label table.
    pub labels: &'a LabelTable,
    /// The model's family (informational).
    pub family: ModelFamily,
    /// Preprocessing the model expects.
    pub preprocess: PreprocessConfig,
    /// How cosines become probabilities.
    pub scoring: ScoringSection,
}

/// Writes a bundle into `dir` (created if needed) and returns its manifest.
///
/// Each file is written under a temporary name and renamed into place, the manifest
/// last, so an interrupted write never leaves a bundle that looks complete.
pub fn write_bundle(dir: &Path, spec: &BundleSpec<'_>) -> Result<Manifest, BundleWriteError> {
    if spec.labels.dim() != spec.embedding_dim {
        return Err(BundleWriteError::Bundle(BundleError::Mismatch {
            path: spec.model.to_path_buf(),
            problem: format!(
                "model embeddings have dimension {}, the label table has {}",
                spec.embedding_dim,
                spec.labels.dim()
            ),
        }));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BundleWriteError::from(BundleError::Io { path, source })
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let model_file = match spec.format {
        ModelFormat::Onnx => MODEL_FILE,
        ModelFormat::Nnef => MODEL_FILE_NNEF,
    };
    let model_dst = dir.join(model_file);
    let labels_dst = dir.join(LABELS_FILE);
    let manifest_dst = dir.join(MANIFEST_FILE);

    // The model first, under a temporary name: if it cannot be written, a bundle
    // already in `dir` stays whole.
    let model = PendingFile::new(&model_dst);
    match spec.format {
        ModelFormat::Onnx => std::fs::copy(spec.model, model.path())
            .map(drop)
            .map_err(io(spec.model))?,
        ModelFormat::Nnef => {
            write_nnef(spec.model, spec.preprocess.crop_size as usize, model.path())?
        }
    }
    // From here on the old files are replaced: a stale manifest must not vouch for
    // half-replaced files.
    if manifest_dst.exists() {
        std::fs::remove_file(&manifest_dst).map_err(io(&manifest_dst))?;
    }
    model.commit().map_err(io(&model_dst))?;
    // A bundle rewritten in the other format must not keep the old model file.
    for stale in [MODEL_FILE, MODEL_FILE_NNEF] {
        let path = dir.join(stale);
        if stale != model_file && path.exists() {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }

    let labels = PendingFile::new(&labels_dst);
    spec.labels.save(labels.path()).map_err(BundleError::from)?;
    labels.commit().map_err(io(&labels_dst))?;

    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        model: ModelSection {
            file: model_file.to_string(),
            sha256: sha256_file(&model_dst).map_err(io(&model_dst))?,
            blake3: Some(blake3_file(&model_dst).map_err(io(&model_dst))?),
            format: spec.format,
            precision: spec.precision,
            embedding_dim: spec.embedding_dim,
            family: spec.family,
        },
        labels: LabelsSection {
            file: LABELS_FILE.to_string(),
            sha256: sha256_file(&labels_dst).map_err(io(&labels_dst))?,
            count: spec.labels.len(),
        },
        preprocess: spec.preprocess,
        scoring: spec.scoring.clone(),
    };
    let pending = PendingFile::new(&manifest_dst);
    std::fs::write(pending.path(), manifest.to_toml()).map_err(io(pending.path()))?;
    pending.commit().map_err(io(&manifest_dst))?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clip_edge_bundle::Bundle;

    /// A model that cannot be written leaves the bundle already in the directory
    /// whole: same manifest, still loads, no temporary file left behind.
    #[test]
    fn failed_model_write_keeps_the_old_bundle() {
        let shapes = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/shapes/bundle");
        let dir = std::env::temp_dir().join(format!("clip-edge-rewrite-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&shapes).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
        let before = std::fs::read(dir.join(MANIFEST_FILE)).unwrap();
        let labels = LabelTable::load(&dir.join(LABELS_FILE)).unwrap();
        let spec = BundleSpec {
            model: &dir.join("missing.onnx"),
            format: ModelFormat::Onnx,
            precision: Precision::Fp32,
            embedding_dim: labels.dim(),
            labels: &labels,
            family: ModelFamily::Clip,
            preprocess: PreprocessConfig::default(),
            scoring: ScoringSection::softmax(100.0),
        };
        assert!(write_bundle(&dir, &spec).is_err());
        assert_eq!(std::fs::read(dir.join(MANIFEST_FILE)).unwrap(), before);
        Bundle::load(&dir).unwrap();
        assert!(!dir.join(format!(".{MODEL_FILE}.tmp")).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
