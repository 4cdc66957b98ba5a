//! The federation's certificate authority and signing keys.
//!
//! Why this crate exists: an Accord federation rests on two secrets held by
//! the registry. The **CA** (a self-signed ECDSA P-256 certificate, valid ten
//! years) certifies every member gateway's TLS key, so gateways can
//! authenticate each other with mutual TLS. The **federation signing key**
//! (Ed25519) signs the federation configuration the registry publishes;
//! gateways are given its public key as their trust anchor. Everything
//! that touches those private keys lives here, so the rest of Accord only
//! ever handles certificates, public keys and signatures.
//!
//! `accord registry init` calls [`FederationKeys::create`], which writes the
//! keys directory:
//!
//! | file                                   | content                              | mode |
//! |----------------------------------------|--------------------------------------|------|
//! | [`CA_CERT_FILE`] `ca.crt`              | CA certificate, PEM                  | 0644 |
//! | [`CA_KEY_FILE`] `ca.key`               | CA private key, PKCS#8 PEM           | 0600 |
//! | [`SIGNING_KEY_FILE`] `federation-signing.key` | Ed25519 private key, PKCS#8 PEM | 0600 |
//! | [`SIGNING_PUBLIC_KEY_FILE`] `federation-signing.pub` | Ed25519 public key, SPKI PEM (the anchor) | 0644 |
//!
//! The 0600 rule: private keys exist only in files readable by their owner,
//! never in the database, never in logs. Files are created with their final
//! mode and `create_new` in one `open(2)`, so a key is never briefly
//! readable by others and an existing key is never overwritten; loading
//! refuses a key file that group or others can access, naming the file and
//! its mode. `Debug` output of every type holding a private key redacts it,
//! and no error message carries key material.
//!
//! Gateway certificates ([`FederationKeys::issue_gateway_certificate`]) are
//! issued from a member's certificate signing request, or from a key pair
//! generated here whose private key is returned once and not kept.
//! Members' own Ed25519 keys, which sign co-operation agreements and which
//! the registry never holds, are handled by [`SigningKeyFile`].

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod error;
mod federation;
mod files;
mod gateway;
mod signing;

pub use error::CaError;
pub use federation::{certificate_fingerprint_sha256, FederationKeys, CA_VALIDITY_YEARS};
pub use gateway::{
    gateway_uri, name_string, GatewayCertificateRequest, IssuedCertificate, KeySource,
    GATEWAY_URI_PREFIX, MAX_VALIDITY_DAYS, MIN_RSA_BITS,
};
pub use signing::{parse_public_key_pem, public_key_pem, SigningKeyFile};

/// The CA certificate (PEM) in the keys directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// The CA private key (PKCS#8 PEM, mode 0600) in the keys directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// The federation's Ed25519 signing key (PKCS#8 PEM, mode 0600) in the keys directory.
pub const SIGNING_KEY_FILE: &str = "federation-signing.key";
/// The federation signing key's public half (SPKI PEM): the anchor gateways are given.
pub const SIGNING_PUBLIC_KEY_FILE: &str = "federation-signing.pub";
