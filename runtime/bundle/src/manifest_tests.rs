//! Tests of the manifest: parsing, writing, loading and verifying bundles.

use super::*;
use crate::signature::{SecretKey, TrustedKey};

const MANIFEST: &str = r#"format_version = 1

[model]
file = "model.onnx"
sha256 = "00"
precision = "int8"
embedding_dim = 64

[labels]
file = "labels.safetensors"
sha256 = "00"
count = 30

[preprocess]
resize_shortest_edge = 224
crop_size = 224
mean = [0.48145467, 0.4578275, 0.40821072]
std = [0.26862955, 0.2613026, 0.2757771]

[scoring]
logit_scale = 100.0
"#;

#[test]
fn manifests_written_before_nnef_read_as_onnx() {
    let m = Manifest::from_toml(MANIFEST, Path::new("bundle.toml")).unwrap();
    assert_eq!(m.model.format, ModelFormat::Onnx);
    assert_eq!(m.model.precision, Precision::Int8);
}

#[test]
fn old_manifests_are_clip_with_softmax_and_a_sigmoid_manifest_round_trips() {
    let m = Manifest::from_toml(MANIFEST, Path::new("bundle.toml")).unwrap();
    assert_eq!(m.model.family, ModelFamily::Clip);
    assert_eq!(m.scoring, ScoringSection::softmax(100.0));
    // CLIP's manifest is written as before: no new keys.
    let written = m.to_toml();
    for key in [
        "family",
        "rule",
        "logit_bias",
        "interpolation",
        "crop_offset",
    ] {
        assert!(!written.contains(key), "{key} in {written}");
    }
    let siglip = MANIFEST
        .replace(
            "embedding_dim = 64",
            "embedding_dim = 64\nfamily = \"siglip\"",
        )
        .replace(
            "logit_scale = 100.0",
            "rule = \"sigmoid\"\nlogit_scale = 117.3\nlogit_bias = -12.9",
        );
    let m = Manifest::from_toml(&siglip, Path::new("bundle.toml")).unwrap();
    assert_eq!(m.model.family, ModelFamily::Siglip);
    assert_eq!(m.scoring.rule, ScoringRule::Sigmoid);
    assert_eq!(m.scoring.logit_bias, -12.9);
    let again = Manifest::from_toml(&m.to_toml(), Path::new("bundle.toml")).unwrap();
    assert_eq!(again, m);
}

#[test]
fn bad_scoring_is_refused_with_the_reason() {
    for (from, to, needle) in [
        (
            "logit_scale = 100.0",
            "logit_scale = 100.0\nlogit_bias = -10.0",
            "no effect",
        ),
        ("logit_scale = 100.0", "logit_scale = -1.0", "positive"),
        (
            "logit_scale = 100.0",
            "rule = \"sigmoid\"\nlogit_scale = 10.0\nlogit_bias = nan",
            "finite",
        ),
        (
            "logit_scale = 100.0",
            "rule = \"tanh\"\nlogit_scale = 10.0",
            "tanh",
        ),
        (
            "embedding_dim = 64",
            "embedding_dim = 64\nfamily = \"vit\"",
            "vit",
        ),
    ] {
        let e = Manifest::from_toml(&MANIFEST.replace(from, to), Path::new("bundle.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{to}: {e}");
    }
}

#[test]
fn format_and_precision_round_trip() {
    let text = MANIFEST
        .replace("precision = \"int8\"", "precision = \"int8-weights\"")
        .replace(
            "sha256 = \"00\"\nprecision",
            "sha256 = \"00\"\nformat = \"nnef\"\nprecision",
        );
    let m = Manifest::from_toml(&text, Path::new("bundle.toml")).unwrap();
    assert_eq!(m.model.format, ModelFormat::Nnef);
    assert_eq!(m.model.precision, Precision::Int8Weights);
    let again = Manifest::from_toml(&m.to_toml(), Path::new("bundle.toml")).unwrap();
    assert_eq!(again, m);
}

#[test]
fn unknown_format_is_rejected() {
    let text = MANIFEST.replace(
        "precision = \"int8\"",
        "format = \"tflite\"\nprecision = \"int8\"",
    );
    let err = Manifest::from_toml(&text, Path::new("bundle.toml")).unwrap_err();
    assert_eq!(err.kind(), BundleErrorKind::Manifest);
    assert!(err.to_string().contains("tflite"), "{err}");
}

#[test]
fn model_format_is_told_by_content() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/shapes");
    assert_eq!(
        ModelFormat::detect(&models.join("bundle/model.nnef.tar")).unwrap(),
        ModelFormat::Nnef
    );
    assert_eq!(
        ModelFormat::detect(&models.join("image_encoder.onnx")).unwrap(),
        ModelFormat::Onnx
    );
    let missing = ModelFormat::detect(&models.join("no-such-model")).unwrap_err();
    assert_eq!(missing.kind(), std::io::ErrorKind::NotFound, "{missing}");
}

#[test]
fn both_hashes_are_checked_where_they_are_used() {
    let dir = std::env::temp_dir().join(format!("clip-edge-hash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("model");
    std::fs::write(&file, b"abc").unwrap();
    let manifest = dir.join("bundle.toml");
    // Known answers for "abc".
    let sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    let b3 = "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85";
    assert_eq!(sha256_file(&file).unwrap(), sha);
    assert_eq!(blake3_file(&file).unwrap(), b3);
    verify_hash(&file, HashKind::Sha256, sha, &manifest).unwrap();
    verify_hash(&file, HashKind::Blake3, b3, &manifest).unwrap();
    let err = verify_hash(&file, HashKind::Blake3, sha, &manifest).unwrap_err();
    assert_eq!(err.kind(), BundleErrorKind::Mismatch);
    assert!(err.to_string().contains("blake3 is 6437b3"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A copy of the committed shapes bundle in a fresh directory.
fn shapes_copy(name: &str) -> PathBuf {
    let shapes = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/shapes/bundle");
    let dir = std::env::temp_dir().join(format!("clip-edge-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for file in [MANIFEST_FILE, LABELS_FILE, MODEL_FILE_NNEF] {
        std::fs::copy(shapes.join(file), dir.join(file)).unwrap();
    }
    dir
}

fn sign(dir: &Path, key: &SecretKey) {
    let manifest = std::fs::read(dir.join(MANIFEST_FILE)).unwrap();
    std::fs::write(dir.join(SIGNATURE_FILE), key.sign(&manifest)).unwrap();
}

fn trust(key: &SecretKey) -> TrustedKeys {
    let public = TrustedKey::from_pem(&key.public_pem(), Path::new("release.pub")).unwrap();
    TrustedKeys::new(vec![public]).unwrap()
}

fn signature_error(result: Result<Bundle, BundleError>) -> SignatureError {
    match result {
        Err(BundleError::Signature(e)) => e,
        other => panic!("expected a signature error, got {other:?}"),
    }
}

/// Under a trust list: a bundle signed by a trusted key loads; unsigned, signed by
/// another key, or with any of its files changed after signing, it does not.
#[test]
fn only_bundles_signed_by_a_trusted_key_load() {
    let (release, other) = (
        SecretKey::from_seed(&[1; 32]),
        SecretKey::from_seed(&[2; 32]),
    );
    let dir = shapes_copy("signed");
    let trusted = trust(&release);

    let unsigned = signature_error(Bundle::load_trusted(&dir, &trusted));
    assert!(
        matches!(unsigned, SignatureError::Unsigned { .. }),
        "{unsigned}"
    );
    assert!(
        Bundle::load(&dir).is_ok(),
        "without a trust list, signatures are not needed"
    );

    sign(&dir, &other);
    let err = signature_error(Bundle::load_trusted(&dir, &trusted));
    assert!(matches!(err, SignatureError::Untrusted { .. }), "{err}");
    assert!(err.to_string().contains(&release.fingerprint()), "{err}");

    sign(&dir, &release);
    let bundle = Bundle::load_trusted(&dir, &trusted).unwrap();
    assert_eq!(
        bundle.signed_by.as_deref(),
        Some(format!("release.pub {}", release.fingerprint()).as_str())
    );
    assert_eq!(Bundle::load(&dir).unwrap().signed_by, None);

    // The manifest edited after signing: one more label claimed.
    let manifest = std::fs::read_to_string(dir.join(MANIFEST_FILE)).unwrap();
    let count = bundle.manifest.labels.count;
    let edited = manifest.replace(
        &format!("count = {count}"),
        &format!("count = {}", count + 1),
    );
    assert_ne!(edited, manifest);
    std::fs::write(dir.join(MANIFEST_FILE), &edited).unwrap();
    let err = signature_error(Bundle::load_trusted(&dir, &trusted));
    assert!(matches!(err, SignatureError::Untrusted { .. }), "{err}");
    std::fs::write(dir.join(MANIFEST_FILE), &manifest).unwrap();
    Bundle::load_trusted(&dir, &trusted).unwrap();

    // The model or the labels changed after signing: their signed hashes differ.
    for file in [MODEL_FILE_NNEF, LABELS_FILE] {
        let original = std::fs::read(dir.join(file)).unwrap();
        let mut changed = original.clone();
        let last = changed.len() - 1;
        changed[last] ^= 1;
        std::fs::write(dir.join(file), &changed).unwrap();
        let err = Bundle::load_trusted(&dir, &trusted).unwrap_err();
        assert!(
            matches!(err, BundleError::HashMismatch { .. }),
            "{file}: {err}"
        );
        std::fs::write(dir.join(file), &original).unwrap();
    }
    Bundle::load_trusted(&dir, &trusted).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
