//! Signed bundles: an ed25519 signature of `bundle.toml`, checked against the keys a
//! board trusts before anything else of the bundle is read.
//!
//! The manifest records the sha256 and BLAKE3 of every other file of the bundle, so one
//! signature of its exact bytes covers the whole bundle: a changed model or label table
//! no longer matches the signed hashes, a changed manifest no longer matches the
//! signature.
//!
//! ```text
//! bundle/
//!   bundle.toml   signed, byte for byte
//!   bundle.sig    the 64-byte ed25519 signature (RFC 8032), raw
//! ```
//!
//! Keys are PEM: the secret key PKCS#8, the public key SPKI. OpenSSL reads all three
//! files, so a bundle can be checked, or signed, without our tools
//! (boards/README.md#signed-bundles):
//!
//! ```text
//! openssl pkeyutl -verify -pubin -inkey release.pub -rawin -in bundle/bundle.toml -sigfile bundle/bundle.sig
//! ```

use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// File name of the signature inside a bundle directory.
pub const SIGNATURE_FILE: &str = "bundle.sig";

/// What can go wrong reading keys or checking a bundle's signature.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// A key file could not be read or written.
    #[error("{path}")]
    KeyIo {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A key file is not an ed25519 key in PEM.
    #[error("{path}: not an ed25519 {expected} key in PEM ({reason})")]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// `public` or `secret`.
        expected: &'static str,
        /// The decoder's message.
        reason: String,
    },
    /// A trust list without keys: it would refuse every bundle.
    #[error("no trusted keys given")]
    NoKeys,
    /// The bundle has no `bundle.sig`, and only signed bundles may load.
    #[error(
        "{path}: the bundle is not signed, and only bundles signed by a trusted key may load (sign it with `clip-quantize sign`)"
    )]
    Unsigned {
        /// The missing signature file.
        path: PathBuf,
    },
    /// `bundle.sig` is not 64 bytes.
    #[error("{path}: not an ed25519 signature ({len} bytes, expected 64)")]
    Malformed {
        /// The signature file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// No trusted key verifies the signature of the manifest.
    #[error(
        "{path}: the signature of {manifest} verifies under none of the trusted keys ({keys}): the manifest was changed after signing, or another key signed it"
    )]
    Untrusted {
        /// The signature file.
        path: PathBuf,
        /// The manifest it should sign.
        manifest: PathBuf,
        /// The trusted keys, by name and fingerprint.
        keys: String,
    },
}

/// A public key a board trusts to sign bundles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    /// Where it came from (the key file), for messages.
    pub name: String,
    key: VerifyingKey,
}

impl TrustedKey {
    /// Reads a public key from a PEM file (`-----BEGIN PUBLIC KEY-----`, SPKI).
    pub fn from_pem_file(path: &Path) -> Result<Self, SignatureError> {
        let text = std::fs::read_to_string(path).map_err(|source| SignatureError::KeyIo {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_pem(&text, path)
    }

    /// Parses a public key from PEM text; `path` names it.
    pub fn from_pem(text: &str, path: &Path) -> Result<Self, SignatureError> {
        let key = VerifyingKey::from_public_key_pem(text).map_err(|e| SignatureError::BadKey {
            path: path.to_path_buf(),
            expected: "public",
            reason: e.to_string(),
        })?;
        Ok(TrustedKey {
            name: path.display().to_string(),
            key,
        })
    }

    /// The first 8 bytes of the sha256 of the raw 32-byte key, in hex: short enough for
    /// a log line, long enough to tell keys apart.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.key)
    }

    /// The key as PEM (SPKI), as [`SecretKey::public_pem`] writes it.
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default()
    }
}

/// The keys of which one must have signed a bundle for it to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKeys {
    keys: Vec<TrustedKey>,
}

impl TrustedKeys {
    /// A trust list of these keys (at least one).
    pub fn new(keys: Vec<TrustedKey>) -> Result<Self, SignatureError> {
        if keys.is_empty() {
            return Err(SignatureError::NoKeys);
        }
        Ok(TrustedKeys { keys })
    }

    /// Reads each PEM public key file (at least one).
    pub fn from_pem_files<P: AsRef<Path>>(paths: &[P]) -> Result<Self, SignatureError> {
        let keys = paths
            .iter()
            .map(|p| TrustedKey::from_pem_file(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(keys)
    }

    /// The keys.
    pub fn keys(&self) -> &[TrustedKey] {
        &self.keys
    }

    /// The trusted key under which `signature` (the bytes of `signature_path`) signs
    /// `manifest` (the bytes of `manifest_path`; the paths only name the files in
    /// errors). Strict RFC 8032 verification: no malleable signatures, no weak keys.
    pub fn verify(
        &self,
        manifest: &[u8],
        manifest_path: &Path,
        signature: &[u8],
        signature_path: &Path,
    ) -> Result<&TrustedKey, SignatureError> {
        let signature =
            Signature::from_slice(signature).map_err(|_| SignatureError::Malformed {
                path: signature_path.to_path_buf(),
                len: signature.len(),
            })?;
        self.keys
            .iter()
            .find(|k| k.key.verify_strict(manifest, &signature).is_ok())
            .ok_or_else(|| SignatureError::Untrusted {
                path: signature_path.to_path_buf(),
                manifest: manifest_path.to_path_buf(),
                keys: self
                    .keys
                    .iter()
                    .map(|k| format!("{} {}", k.name, k.fingerprint()))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// A secret key that signs bundles (on the workstation; boards only hold
/// [`TrustedKey`]s).
pub struct SecretKey {
    key: SigningKey,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", fingerprint(&self.key.verifying_key()))
    }
}

impl SecretKey {
    /// The key whose RFC 8032 seed is `seed` (32 random bytes from the OS for a new key).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        SecretKey {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// Reads a secret key from a PEM file (`-----BEGIN PRIVATE KEY-----`, PKCS#8).
    pub fn from_pem_file(path: &Path) -> Result<Self, SignatureError> {
        let text = std::fs::read_to_string(path).map_err(|source| SignatureError::KeyIo {
            path: path.to_path_buf(),
            source,
        })?;
        let key = SigningKey::from_pkcs8_pem(&text).map_err(|e| SignatureError::BadKey {
            path: path.to_path_buf(),
            expected: "secret",
            reason: e.to_string(),
        })?;
        Ok(SecretKey { key })
    }

    /// The secret key as PEM (PKCS#8).
    pub fn secret_pem(&self) -> String {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.to_string())
            .unwrap_or_default()
    }

    /// The matching public key as PEM (SPKI): the file a board trusts.
    pub fn public_pem(&self) -> String {
        self.key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default()
    }

    /// The public key's fingerprint (see [`TrustedKey::fingerprint`]).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.key.verifying_key())
    }

    /// The 64-byte signature of `manifest` (the exact bytes of `bundle.toml`).
    pub fn sign(&self, manifest: &[u8]) -> [u8; 64] {
        self.key.sign(manifest).to_bytes()
    }
}

fn fingerprint(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(seed: u8) -> (SecretKey, TrustedKeys) {
        let secret = SecretKey::from_seed(&[seed; 32]);
        let public = TrustedKey::from_pem(&secret.public_pem(), Path::new("test.pub")).unwrap();
        (secret, TrustedKeys::new(vec![public]).unwrap())
    }

    #[test]
    fn a_signature_verifies_only_its_manifest_under_its_key() {
        let (secret, trusted) = keys(1);
        let (_, other) = keys(2);
        let manifest = b"format_version = 1\n";
        let sig = secret.sign(manifest);
        let (m, s) = (Path::new("bundle.toml"), Path::new("bundle.sig"));
        assert_eq!(
            trusted.verify(manifest, m, &sig, s).unwrap().name,
            "test.pub"
        );
        assert!(matches!(
            other.verify(manifest, m, &sig, s),
            Err(SignatureError::Untrusted { .. })
        ));
        assert!(matches!(
            trusted.verify(b"format_version = 2\n", m, &sig, s),
            Err(SignatureError::Untrusted { .. })
        ));
        let mut flipped = sig;
        flipped[10] ^= 1;
        assert!(trusted.verify(manifest, m, &flipped, s).is_err());
        assert!(matches!(
            trusted.verify(manifest, m, &sig[..63], s),
            Err(SignatureError::Malformed { len: 63, .. })
        ));
    }

    #[test]
    fn keys_round_trip_through_pem_and_bad_pem_is_refused() {
        let secret = SecretKey::from_seed(&[7; 32]);
        let dir = std::env::temp_dir().join(format!("clip-edge-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (sk, pk) = (dir.join("k"), dir.join("k.pub"));
        std::fs::write(&sk, secret.secret_pem()).unwrap();
        std::fs::write(&pk, secret.public_pem()).unwrap();
        let again = SecretKey::from_pem_file(&sk).unwrap();
        assert_eq!(again.public_pem(), secret.public_pem());
        let public = TrustedKey::from_pem_file(&pk).unwrap();
        assert_eq!(public.fingerprint(), secret.fingerprint());
        assert_eq!(public.to_pem(), secret.public_pem());
        // A secret key is not a public key, and the other way round.
        assert!(matches!(
            TrustedKey::from_pem_file(&sk),
            Err(SignatureError::BadKey {
                expected: "public",
                ..
            })
        ));
        assert!(SecretKey::from_pem_file(&pk).is_err());
        assert!(matches!(
            TrustedKeys::new(vec![]),
            Err(SignatureError::NoKeys)
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// RFC 8032 section 7.1, test 2: our keys and signatures are standard ed25519.
    #[test]
    fn rfc8032_test_vector() {
        let seed: [u8; 32] =
            hex::decode("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
                .unwrap()
                .try_into()
                .unwrap();
        let sig = SecretKey::from_seed(&seed).sign(&[0x72]);
        assert_eq!(
            hex::encode(sig),
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
             085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
        );
    }
}
