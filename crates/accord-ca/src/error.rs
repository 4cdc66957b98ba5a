//! The one error type of the crate.
//!
//! Every message says what was expected and what was found, names the file
//! when a file is involved, and never carries key material: at most a PEM
//! label, an algorithm name or a file mode.

use std::io;
use std::path::PathBuf;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Why a key or certificate operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// `FederationKeys::create` found one of its four files already present.
    #[error("federation keys already exist in {}: refusing to overwrite {file}", dir.display())]
    KeysExist { dir: PathBuf, file: &'static str },

    /// `FederationKeys::load` did not find one of its four files.
    #[error("federation keys not found in {}: {file} is missing", dir.display())]
    KeysMissing { dir: PathBuf, file: &'static str },

    /// A key file that is written only once already exists.
    #[error("{} already exists: refusing to overwrite it", path.display())]
    FileExists { path: PathBuf },

    /// The file system refused an operation (`action` is e.g. "read", "create").
    #[error("cannot {action} {}: {cause}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: io::Error,
    },

    /// A key or certificate path names a directory, a device, ...
    #[error("{} is not a regular file", path.display())]
    NotAFile { path: PathBuf },

    /// A private key file can be read (or written) by someone else than its owner.
    #[error(
        "key file {} has mode {mode:04o}, which gives group or others access to it: \
         expected 0600 (owner only; fix with `chmod 600 {}`)",
        path.display(),
        path.display()
    )]
    InsecurePermissions { path: PathBuf, mode: u32 },

    /// A file exists but does not hold what it should.
    #[error("{} is not a valid {expected}: {reason}", path.display())]
    InvalidFile {
        path: PathBuf,
        expected: &'static str,
        reason: String,
    },

    /// Two files of the keys directory do not belong together.
    #[error("{} does not belong with {}: {reason}", path.display(), other.display())]
    Mismatch {
        path: PathBuf,
        other: PathBuf,
        reason: &'static str,
    },

    /// A name that goes into a certificate (instance, member id, ...) is unusable.
    #[error("invalid {what}: {reason}")]
    InvalidName { what: &'static str, reason: String },

    /// A gateway host is neither a DNS name nor an IP address.
    #[error("invalid host {host:?} for a gateway certificate: {reason}")]
    InvalidHost { host: String, reason: String },

    /// The requested validity is outside 1..=3650 days.
    #[error("certificate validity must be between 1 and 3650 days, found {days}")]
    InvalidValidity { days: u32 },

    /// Serial 0 is not a valid certificate serial (RFC 5280 requires a positive integer).
    #[error("certificate serial must be greater than 0, found 0")]
    ZeroSerial,

    /// The federation CA can no longer issue certificates.
    #[error(
        "the federation CA expired on {}: no certificate can be issued until it is renewed",
        rfc3339(not_after)
    )]
    CaExpired { not_after: OffsetDateTime },

    /// The text sent as a certificate signing request is not a PEM block of the right kind.
    #[error("certificate signing request is not valid PEM: {0}")]
    CsrPem(String),

    /// The PEM block decodes but does not hold a PKCS#10 request.
    #[error("certificate signing request is not a valid PKCS#10 request: {0}")]
    CsrStructure(String),

    /// The request was not signed by the key it carries (proof of possession failed).
    #[error("certificate signing request signature does not verify")]
    CsrSignature,

    /// The request carries a key the federation does not accept.
    #[error("unsupported key algorithm in certificate signing request: {0}")]
    CsrKeyAlgorithm(String),

    /// The request was signed with an algorithm the federation does not accept.
    #[error("unsupported signature algorithm in certificate signing request: {0}")]
    CsrSignatureAlgorithm(String),

    /// A certificate given as PEM is not a PEM `CERTIFICATE` block.
    #[error("certificate is not valid PEM: {0}")]
    CertificatePem(String),

    /// The PEM block decodes but does not hold an X.509 certificate.
    #[error("certificate is not a valid X.509 certificate: {0}")]
    Certificate(String),

    /// A public key given as PEM is not an Ed25519 SubjectPublicKeyInfo.
    #[error("public key is not a valid Ed25519 public key PEM (SubjectPublicKeyInfo): {0}")]
    PublicKeyPem(String),

    /// Key generation or certificate signing failed inside the crypto library.
    #[error("cannot {what}: {reason}")]
    Crypto { what: &'static str, reason: String },
}

impl CaError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, cause: io::Error) -> Self {
        CaError::Io {
            action,
            path: path.into(),
            cause,
        }
    }

    pub(crate) fn crypto(what: &'static str, reason: impl ToString) -> Self {
        CaError::Crypto {
            what,
            reason: reason.to_string(),
        }
    }
}

/// RFC 3339 form of a timestamp for messages (falls back to `Display`).
pub(crate) fn rfc3339(t: &OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}
