//! Writing a bundle (format: clip-edge-bundle): the image encoder as NNEF (or the
//! ONNX file as is), the label table, the manifest with their hashes, and, with a
//! secret key, the manifest's signature (`bundle.sig`); signing a bundle already
//! written; making a key pair.

use std::path::Path;

use clip_edge_bundle::{
    blake3_file, sha256_file, Bundle, BundleError, LabelTable, LabelsSection, Manifest,
    ModelFamily, ModelFormat, ModelSection, Precision, PreprocessConfig, ScoringSection, SecretKey,
    SignatureError, FORMAT_VERSION, LABELS_FILE, MANIFEST_FILE, MODEL_FILE, MODEL_FILE_NNEF,
    SIGNATURE_FILE,
};

use crate::atomic_dir::StagedDir;
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
    /// The key that signs the manifest (`bundle.sig`); `None`: an unsigned bundle.
    pub signer: Option<&'a SecretKey>,
}

/// Writes a bundle into `dir` (created if needed) and returns its manifest.
///
/// The files are written into a hidden sibling directory, each flushed to disk, and
/// that directory then takes the place of `dir` in one step ([`StagedDir`]): `dir`
/// holds the old bundle or the new one, whole, whatever happens in between (an
/// error, a full disk, a killed process, a power loss). Files in `dir` that are not
/// the bundle's are kept.
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
    let io = |source| {
        BundleWriteError::from(BundleError::Io {
            path: dir.to_path_buf(),
            source,
        })
    };
    let staged = StagedDir::create(dir).map_err(io)?;
    let manifest = write_bundle_files(staged.path(), dir, spec)?;
    staged.carry_over(is_bundle_file).map_err(io)?;
    staged.commit().map_err(io)?;
    Ok(manifest)
}

/// Whether a file of a bundle directory is the bundle's own (replaced with it) rather
/// than a user's (carried over), or a temporary file of an interrupted write.
fn is_bundle_file(name: &str) -> bool {
    [
        MANIFEST_FILE,
        MODEL_FILE,
        MODEL_FILE_NNEF,
        LABELS_FILE,
        SIGNATURE_FILE,
    ]
    .contains(&name)
        || (name.starts_with('.') && name.ends_with(".tmp"))
}

/// Writes the bundle's files into the empty directory `staging`; errors name them as
/// they will be named in `dir`.
fn write_bundle_files(
    staging: &Path,
    dir: &Path,
    spec: &BundleSpec<'_>,
) -> Result<Manifest, BundleWriteError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BundleWriteError::from(BundleError::Io { path, source })
    };
    let model_file = match spec.format {
        ModelFormat::Onnx => MODEL_FILE,
        ModelFormat::Nnef => MODEL_FILE_NNEF,
    };
    let (model_path, model_shown) = (staging.join(model_file), dir.join(model_file));
    let (labels_path, labels_shown) = (staging.join(LABELS_FILE), dir.join(LABELS_FILE));

    let mut model = PendingFile::create(&model_path).map_err(io(&model_shown))?;
    match spec.format {
        ModelFormat::Onnx => std::fs::File::open(spec.model)
            .and_then(|mut src| std::io::copy(&mut src, model.file()))
            .map(drop)
            .map_err(io(spec.model))?,
        ModelFormat::Nnef => write_nnef(
            spec.model,
            spec.preprocess.crop_size as usize,
            model.file(),
            &model_shown,
        )?,
    }
    model.commit().map_err(io(&model_shown))?;
    let bytes = spec.labels.to_bytes().map_err(BundleError::from)?;
    write_file(&labels_path, &labels_shown, &bytes)?;

    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        model: ModelSection {
            file: model_file.to_string(),
            sha256: sha256_file(&model_path).map_err(io(&model_shown))?,
            blake3: Some(blake3_file(&model_path).map_err(io(&model_shown))?),
            format: spec.format,
            precision: spec.precision,
            embedding_dim: spec.embedding_dim,
            family: spec.family,
        },
        labels: LabelsSection {
            file: LABELS_FILE.to_string(),
            sha256: sha256_file(&labels_path).map_err(io(&labels_shown))?,
            count: spec.labels.len(),
        },
        preprocess: spec.preprocess,
        scoring: spec.scoring.clone(),
    };
    let text = manifest.to_toml();
    write_file(
        &staging.join(MANIFEST_FILE),
        &dir.join(MANIFEST_FILE),
        text.as_bytes(),
    )?;
    if let Some(key) = spec.signer {
        let sig = key.sign(text.as_bytes());
        write_file(
            &staging.join(SIGNATURE_FILE),
            &dir.join(SIGNATURE_FILE),
            &sig,
        )?;
    }
    Ok(manifest)
}

/// Signs the bundle in `dir` with `key` (replacing any signature), after checking
/// that it loads: its hashes, dimensions and label table agree with its manifest.
pub fn sign_bundle(dir: &Path, key: &SecretKey) -> Result<Manifest, BundleError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    // The bytes signed are the bytes checked: read before the check, so a manifest
    // changed meanwhile no longer matches the signature.
    let bytes = std::fs::read(&manifest_path).map_err(|source| BundleError::Io {
        path: manifest_path.clone(),
        source,
    })?;
    let bundle = Bundle::load(dir)?;
    write_signature(dir, key, &bytes)?;
    Ok(bundle.manifest)
}

fn write_signature(dir: &Path, key: &SecretKey, manifest: &[u8]) -> Result<(), BundleError> {
    let path = dir.join(SIGNATURE_FILE);
    write_file(&path, &path, &key.sign(manifest))
}

/// Replaces `path` with `bytes`, whole or not at all ([`PendingFile`]); `shown` names
/// it in errors.
fn write_file(path: &Path, shown: &Path, bytes: &[u8]) -> Result<(), BundleError> {
    use std::io::Write;
    crate::atomic_file::write_atomically(path, |file| file.write_all(bytes)).map_err(|source| {
        BundleError::Io {
            path: shown.to_path_buf(),
            source,
        }
    })
}

/// Makes a new key pair from the OS's random numbers: the secret key at `secret`
/// (PEM, mode 0600) and the public key at `secret` + `.pub` (PEM). Refuses to
/// overwrite either file: a lost secret key cannot sign for boards that trust it.
pub fn write_key_pair(secret: &Path) -> Result<(SecretKey, std::path::PathBuf), SignatureError> {
    use std::io::Write;
    let public = secret.with_file_name(format!(
        "{}.pub",
        secret.file_name().unwrap_or_default().to_string_lossy()
    ));
    let key_io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SignatureError::KeyIo { path, source }
    };
    for path in [secret, public.as_path()] {
        if path.exists() {
            return Err(key_io(path)(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "already exists; keys are never overwritten",
            )));
        }
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| key_io(secret)(std::io::Error::other(e)))?;
    let key = SecretKey::from_seed(&seed);
    seed.fill(0);

    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(secret).and_then(|mut f| {
        f.write_all(key.secret_pem().as_bytes())
            .and_then(|()| f.sync_all())
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(secret);
        return Err(key_io(secret)(e));
    }
    if let Err(e) = std::fs::write(&public, key.public_pem()) {
        let _ = std::fs::remove_file(secret);
        return Err(key_io(&public)(e));
    }
    Ok((key, public))
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
            signer: None,
        };
        assert!(write_bundle(&dir, &spec).is_err());
        assert_eq!(std::fs::read(dir.join(MANIFEST_FILE)).unwrap(), before);
        Bundle::load(&dir).unwrap();
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [MANIFEST_FILE, LABELS_FILE, MODEL_FILE_NNEF]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
