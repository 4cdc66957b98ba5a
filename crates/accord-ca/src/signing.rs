//! Ed25519 signing keys in PKCS#8 PEM files, and their public keys as SPKI PEM.
//!
//! The federation's own signing key is kept by [`crate::FederationKeys`];
//! [`SigningKeyFile`] is for members' keys, which sign co-operation
//! agreements and which the registry never holds.

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, KeypairBytes};
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::rngs::OsRng;

use crate::files::{self, OpenError, PRIVATE_MODE};
use crate::CaError;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the algorithm
/// identifier `1.3.101.112` and the BIT STRING header of the 32-byte key.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// What [`SigningKeyFile::load`] expects to find.
const EXPECTED_PRIVATE: &str = "Ed25519 private key (PKCS#8 PEM, \"PRIVATE KEY\")";

/// A member's Ed25519 signing key in a PKCS#8 PEM file with mode 0600.
///
/// The key itself is never kept in a value of this type: [`generate`](Self::generate)
/// returns only the public half, [`load`](Self::load) hands the key to the
/// caller, whose [`SigningKey`] zeroes it on drop.
#[derive(Debug, Clone, Copy)]
pub struct SigningKeyFile;

impl SigningKeyFile {
    /// Generates a key and writes it to `path` (PKCS#8 PEM, mode 0600).
    ///
    /// Fails with [`CaError::FileExists`] rather than replace an existing file;
    /// the parent directory must exist.
    pub fn generate(path: &Path) -> Result<VerifyingKey, CaError> {
        let key = SigningKey::generate(&mut OsRng);
        write_signing_key(path, &key)?;
        Ok(key.verifying_key())
    }

    /// Loads the key at `path`, refusing a file that group or others can access.
    pub fn load(path: &Path) -> Result<SigningKey, CaError> {
        let text = files::read_private(path).map_err(|e| e.into_ca_error(path))?;
        parse_signing_key(path, &text)
    }
}

/// Writes `key` as PKCS#8 PEM to a new file with mode 0600.
///
/// PKCS#8 version 1 (RFC 8410: the seed only, no public key), which OpenSSL
/// 3.0 reads; the v2 form `SigningKey` itself encodes is not readable there.
pub(crate) fn write_signing_key(path: &Path, key: &SigningKey) -> Result<(), CaError> {
    let v1 = KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    };
    let pem = v1
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| CaError::crypto("encode the Ed25519 signing key", e))?;
    files::write_new(path, pem.as_bytes(), PRIVATE_MODE)
}

/// Reads a signing key file, leaving the wording of `NotFound` to the caller.
pub(crate) fn read_signing_key(path: &Path) -> Result<SigningKey, OpenError> {
    let text = files::read_private(path)?;
    parse_signing_key(path, &text).map_err(OpenError::Other)
}

fn parse_signing_key(path: &Path, text: &str) -> Result<SigningKey, CaError> {
    SigningKey::from_pkcs8_pem(text.trim()).map_err(|e| CaError::InvalidFile {
        path: path.to_path_buf(),
        expected: EXPECTED_PRIVATE,
        reason: e.to_string(),
    })
}

/// The public key as PEM (`-----BEGIN PUBLIC KEY-----`, SubjectPublicKeyInfo, LF line ends).
///
/// This is the form gateways are given as the federation's trust anchor and
/// the form [`parse_public_key_pem`] reads; it is the same text OpenSSL
/// writes with `openssl pkey -pubout`.
pub fn public_key_pem(key: &VerifyingKey) -> String {
    let mut der = Vec::with_capacity(ED25519_SPKI_PREFIX.len() + 32);
    der.extend_from_slice(&ED25519_SPKI_PREFIX);
    der.extend_from_slice(key.as_bytes());
    // 44 bytes of DER are 60 base64 characters: a single line.
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        STANDARD.encode(der)
    )
}

/// Parses an Ed25519 public key from SPKI PEM, as written by [`public_key_pem`].
///
/// Surrounding whitespace is ignored; keys of small order (which would let
/// forged signatures verify) are refused.
pub fn parse_public_key_pem(pem: &str) -> Result<VerifyingKey, CaError> {
    let key = VerifyingKey::from_public_key_pem(pem.trim())
        .map_err(|e| CaError::PublicKeyPem(e.to_string()))?;
    if key.is_weak() {
        return Err(CaError::PublicKeyPem(
            "the key is a point of small order, which any signature could match".into(),
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use ed25519_dalek::pkcs8::EncodePublicKey;
    use ed25519_dalek::{Signer, Verifier};

    use super::*;

    #[test]
    fn generate_then_load_gives_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("member.key");
        let public = SigningKeyFile::generate(&path).unwrap();
        let loaded = SigningKeyFile::load(&path).unwrap();
        assert_eq!(loaded.verifying_key(), public);

        let signature = loaded.sign(b"agreement");
        public.verify(b"agreement", &signature).unwrap();

        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{text}");
        // PKCS#8 v1 as RFC 8410 shows it (OpenSSL 3.0 reads no other form):
        // SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING }, 48 bytes.
        let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = STANDARD.decode(b64).unwrap();
        assert_eq!(der.len(), 48);
        assert_eq!(
            der[..16],
            [
                0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
                0x04, 0x20
            ]
        );
    }

    #[test]
    fn generate_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("member.key");
        SigningKeyFile::generate(&path).unwrap();
        let before = fs::read(&path).unwrap();
        let err = SigningKeyFile::generate(&path).unwrap_err();
        assert!(matches!(err, CaError::FileExists { .. }), "{err:?}");
        assert!(err.to_string().contains("member.key"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), before);
    }

    #[test]
    fn load_refuses_a_group_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("member.key");
        SigningKeyFile::generate(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = SigningKeyFile::load(&path).unwrap_err();
        assert!(
            matches!(err, CaError::InsecurePermissions { mode: 0o640, .. }),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("0640"), "{message}");
    }

    #[test]
    fn load_reports_a_missing_file_and_garbage_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent.key");
        let err = SigningKeyFile::load(&missing).unwrap_err();
        assert!(err.to_string().contains("absent.key"), "{err}");

        let garbage = dir.path().join("garbage.key");
        files::write_new(&garbage, b"not a key", PRIVATE_MODE).unwrap();
        let err = SigningKeyFile::load(&garbage).unwrap_err();
        assert!(matches!(err, CaError::InvalidFile { .. }), "{err:?}");
        assert!(err.to_string().contains("garbage.key"), "{err}");
    }

    #[test]
    fn public_key_pem_round_trips_and_matches_the_pkcs8_encoder() {
        let key = SigningKey::generate(&mut OsRng).verifying_key();
        let pem = public_key_pem(&key);
        assert_eq!(pem, key.to_public_key_pem(LineEnding::LF).unwrap());
        assert_eq!(parse_public_key_pem(&pem).unwrap(), key);
        // Whitespace around the block, as in a config file, is accepted.
        assert_eq!(parse_public_key_pem(&format!("\n  {pem}\n")).unwrap(), key);
    }

    #[test]
    fn parse_public_key_pem_refuses_other_things() {
        let err = parse_public_key_pem("hello").unwrap_err();
        assert!(matches!(err, CaError::PublicKeyPem(_)), "{err:?}");

        // An ECDSA key is a valid SPKI but not an Ed25519 one.
        let ec = rcgen::KeyPair::generate().unwrap();
        let err = parse_public_key_pem(&ec.public_key_pem()).unwrap_err();
        assert!(matches!(err, CaError::PublicKeyPem(_)), "{err:?}");

        // The identity point has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = VerifyingKey::from_bytes(&identity).unwrap();
        let err = parse_public_key_pem(&public_key_pem(&weak)).unwrap_err();
        assert!(err.to_string().contains("small order"), "{err}");
    }
}
