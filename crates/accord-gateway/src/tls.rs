//! Mutual TLS between gateways: who may connect, and who answered.
//!
//! Every call between agencies crosses two gateways, the consumer's and the
//! provider's, over mutual TLS with certificates the federation CA issued.
//! A certificate that merely chains to the CA is not enough: the CA's
//! signature says who the key belonged to when it was issued, the signed
//! federation configuration says what is true *now* — which certificates
//! are the valid ones of which registered gateway, and which are revoked.
//! So both sides check a peer in two steps:
//!
//! 1. WebPKI against the CA root: chain, validity period (an expired or
//!    not-yet-valid certificate is refused), extended key usage (clientAuth
//!    on the provider side, serverAuth on the consumer side) and, on the
//!    consumer side, the provider's host name or IP address;
//! 2. the current [`TrustView`]: the SHA-256 fingerprint is not revoked,
//!    is a valid certificate of a registered gateway, and the certificate's
//!    own `urn:accord:gateway:MEMBER/NAME` alternative name is that gateway.
//!    The consumer additionally requires the gateway to be the provider it
//!    meant to call ([`ExpectedProvider`], given per connection).
//!
//! The trust view is read through a [`SharedTrust`] on every handshake and
//! replaced whole when a new configuration arrives, so a revocation applies
//! to the next handshake without a restart. For the same reason session
//! resumption is off on both sides: a resumed session skips certificate
//! verification, and would let a revoked certificate back in. Only TLS 1.3
//! is offered; both ends are Accord gateways.
//!
//! The result of a handshake is a value, [`PeerIdentity`] (member, gateway
//! name, fingerprint), which [`accept`] and [`connect`] return with the
//! stream so that authorization, audit and metrics read it rather than
//! re-deriving it from certificates. A refusal is a [`TlsError`] saying
//! why (revoked, not registered, expired, not issued by the federation
//! CA, ...) with the certificate's fingerprint; it is logged at warn and
//! travels inside the rustls error, where [`refusal`] finds it again. Keys
//! never appear in errors or logs.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::sync::{Arc, PoisonError, RwLock};

use accord_ca::{gateway_uri, GATEWAY_URI_PREFIX};
use accord_domain::catalogue::check_gateway_address;
use accord_domain::MemberId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    RootCertStore, ServerConfig, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncWrite};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::federation::Federation;

/// Why a TLS configuration could not be built, or why a peer was refused.
///
/// Refusals name the peer certificate by its SHA-256 fingerprint (lower-case
/// hex of the DER); nothing here ever carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The federation CA certificate from the configuration is unusable.
    #[error("the federation CA certificate cannot be used: {0}")]
    CaCertificate(String),
    /// This gateway's own certificate (PEM) is unusable.
    #[error("this gateway's certificate cannot be used: {0}")]
    OwnCertificate(String),
    /// This gateway's own private key (PEM) is unusable, or not the certificate's.
    #[error("this gateway's private key cannot be used: {0}")]
    OwnKey(String),
    /// rustls refused the configuration.
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
    /// A gateway address is not `https://host:port`.
    #[error("invalid gateway address: {0}")]
    Address(String),

    /// The peer's chain does not lead to the federation CA (or its signature is wrong).
    #[error("peer certificate {fingerprint} is not issued by the federation CA")]
    UnknownIssuer { fingerprint: String },
    /// The peer's certificate is past its `notAfter`.
    #[error("peer certificate {fingerprint} expired: it is not valid after {not_after}")]
    Expired {
        fingerprint: String,
        not_after: String,
    },
    /// The peer's certificate is before its `notBefore`.
    #[error(
        "peer certificate {fingerprint} is not valid yet: it is not valid before {not_before}"
    )]
    NotYetValid {
        fingerprint: String,
        not_before: String,
    },
    /// The peer's certificate does not allow this use (extended key usage).
    #[error(
        "peer certificate {fingerprint} is not usable for this side of the connection: {detail}"
    )]
    WrongPurpose { fingerprint: String, detail: String },
    /// The provider's certificate is not for the host or address dialled.
    #[error("peer certificate {fingerprint} is not valid for the address dialled: {detail}")]
    WrongName { fingerprint: String, detail: String },
    /// Any other WebPKI failure (bad encoding, unhandled critical extension, ...).
    #[error("peer certificate {fingerprint} is invalid: {reason}")]
    InvalidCertificate { fingerprint: String, reason: String },
    /// The configuration lists the certificate as revoked.
    #[error("peer certificate {fingerprint} is revoked")]
    Revoked { fingerprint: String },
    /// The certificate is not a valid certificate of any registered gateway.
    #[error("peer certificate {fingerprint} is not registered for any gateway")]
    Unregistered { fingerprint: String },
    /// The certificate is registered for one gateway but its alternative name says another.
    #[error(
        "peer certificate {fingerprint} is registered for gateway {registered} but names {named}"
    )]
    IdentityMismatch {
        fingerprint: String,
        registered: String,
        named: String,
    },
    /// The provider that answered is a registered gateway, but not the one meant.
    #[error(
        "peer certificate {fingerprint} belongs to gateway {found}, not to the expected provider {expected}"
    )]
    UnexpectedProvider {
        fingerprint: String,
        found: String,
        expected: String,
    },
    /// The handshake failed for a reason other than a refused certificate
    /// (no client certificate, alert from the peer, I/O, ...).
    #[error("TLS handshake with {peer} failed: {reason}")]
    Handshake { peer: String, reason: String },
}

impl TlsError {
    /// The refused peer certificate's fingerprint, if the error is about one.
    pub fn fingerprint(&self) -> Option<&str> {
        match self {
            TlsError::UnknownIssuer { fingerprint }
            | TlsError::Expired { fingerprint, .. }
            | TlsError::NotYetValid { fingerprint, .. }
            | TlsError::WrongPurpose { fingerprint, .. }
            | TlsError::WrongName { fingerprint, .. }
            | TlsError::InvalidCertificate { fingerprint, .. }
            | TlsError::Revoked { fingerprint }
            | TlsError::Unregistered { fingerprint }
            | TlsError::IdentityMismatch { fingerprint, .. }
            | TlsError::UnexpectedProvider { fingerprint, .. } => Some(fingerprint),
            _ => None,
        }
    }
}

/// A refusal as it travels inside a rustls error.
///
/// rustls prints `CertificateError::Other` with `Debug`, so `Debug` here is
/// the message: the handshake error then reads "invalid peer certificate:
/// Other(OtherError(peer certificate … is revoked))".
struct Refusal(TlsError);

impl fmt::Debug for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Refusal {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Logs a refusal (fingerprint and reason, never key material) and wraps it for rustls.
fn refuse(side: &'static str, error: TlsError) -> rustls::Error {
    tracing::warn!(
        side,
        fingerprint = error.fingerprint().unwrap_or("-"),
        reason = %error,
        "refused a peer gateway's certificate"
    );
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Refusal(
        error,
    )))))
}

/// The refusal inside a handshake error, if a verifier of this module refused the peer.
///
/// Takes the `io::Error` tokio-rustls returns (or any error that is, or
/// wraps, a `rustls::Error`).
pub fn refusal(error: &io::Error) -> Option<&TlsError> {
    let inner = error.get_ref()?;
    refusal_in(inner.downcast_ref::<rustls::Error>()?)
}

/// The refusal inside a rustls error, if a verifier of this module refused the peer.
pub fn refusal_in(error: &rustls::Error) -> Option<&TlsError> {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            inner.downcast_ref::<Refusal>().map(|r| &r.0)
        }
        _ => None,
    }
}

/// Who is on the other end of a verified connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerIdentity {
    /// The member the gateway belongs to (and speaks for).
    pub member: MemberId,
    /// The gateway's name within the member.
    pub gateway: String,
    /// Lower-case hex SHA-256 of the certificate the peer presented.
    pub fingerprint_sha256: String,
}

impl PeerIdentity {
    /// `MEMBER/NAME`, as in the certificate's alternative name.
    pub fn gateway_path(&self) -> String {
        format!("{}/{}", self.member, self.gateway)
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} (certificate {})",
            self.member, self.gateway, self.fingerprint_sha256
        )
    }
}

/// The ring provider, explicitly: this crate never relies on the process default.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Lower-case hex SHA-256 of a certificate's DER.
pub fn fingerprint_sha256(cert: &CertificateDer<'_>) -> String {
    hex::encode(Sha256::digest(cert.as_ref()))
}

/// What the gateway knows about trust right now, from the verified
/// federation configuration: the CA, the valid certificates of registered
/// gateways, the revoked certificates. Immutable; a new configuration gives
/// a new view, swapped in whole through [`SharedTrust`].
pub struct TrustView {
    ca_fingerprints: Vec<String>,
    gateways: HashMap<String, PeerIdentity>,
    revoked: HashSet<String>,
    /// WebPKI against the CA root, clientAuth (provider side).
    client_verifier: Arc<dyn ClientCertVerifier>,
    /// WebPKI against the CA root, serverAuth and host name (consumer side).
    server_verifier: Arc<WebPkiServerVerifier>,
}

impl fmt::Debug for TrustView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustView")
            .field("ca_fingerprints", &self.ca_fingerprints)
            .field("gateway_certificates", &self.gateways.len())
            .field("revoked", &self.revoked.len())
            .finish_non_exhaustive()
    }
}

impl TrustView {
    /// A view from the CA certificate(s) (PEM; several blocks during a CA
    /// change), the valid gateway certificates by fingerprint and the revoked
    /// fingerprints. Fingerprints are compared in lower case; each identity's
    /// `fingerprint_sha256` is set to its key.
    pub fn new(
        ca_pem: &str,
        gateways: impl IntoIterator<Item = (String, PeerIdentity)>,
        revoked: impl IntoIterator<Item = String>,
    ) -> Result<TrustView, TlsError> {
        let cas = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::CaCertificate(format!("not PEM certificates: {e}")))?;
        if cas.is_empty() {
            return Err(TlsError::CaCertificate(
                "no \"CERTIFICATE\" block found".into(),
            ));
        }
        let mut roots = RootCertStore::empty();
        for ca in &cas {
            roots
                .add(ca.clone())
                .map_err(|e| TlsError::CaCertificate(e.to_string()))?;
        }
        let roots = Arc::new(roots);
        let provider = provider();
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| TlsError::CaCertificate(e.to_string()))?;
        let server_verifier = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| TlsError::CaCertificate(e.to_string()))?;

        let gateways = gateways
            .into_iter()
            .map(|(fp, mut identity)| {
                let fp = fp.trim().to_ascii_lowercase();
                identity.fingerprint_sha256 = fp.clone();
                (fp, identity)
            })
            .collect();
        let revoked = revoked
            .into_iter()
            .map(|fp| fp.trim().to_ascii_lowercase())
            .collect();
        Ok(TrustView {
            ca_fingerprints: cas.iter().map(fingerprint_sha256).collect(),
            gateways,
            revoked,
            client_verifier,
            server_verifier,
        })
    }

    /// The view a verified federation configuration gives.
    pub fn from_federation(federation: &Federation) -> Result<TrustView, TlsError> {
        TrustView::new(
            &federation.signed.payload.ca_certificate_pem,
            federation
                .gateways_by_fingerprint
                .iter()
                .map(|(fp, (member, name, _address))| {
                    (
                        fp.clone(),
                        PeerIdentity {
                            member: member.clone(),
                            gateway: name.clone(),
                            fingerprint_sha256: fp.clone(),
                        },
                    )
                }),
            federation.revoked.iter().cloned(),
        )
    }

    /// SHA-256 fingerprints of the trusted CA certificates.
    pub fn ca_fingerprints_sha256(&self) -> &[String] {
        &self.ca_fingerprints
    }

    /// Whether the configuration lists this fingerprint as revoked.
    pub fn is_revoked(&self, fingerprint_sha256: &str) -> bool {
        self.revoked
            .contains(&fingerprint_sha256.to_ascii_lowercase())
    }

    /// The gateway whose valid, unrevoked certificate has this fingerprint.
    pub fn identity(&self, fingerprint_sha256: &str) -> Result<&PeerIdentity, TlsError> {
        let fingerprint = fingerprint_sha256.to_ascii_lowercase();
        if self.revoked.contains(&fingerprint) {
            return Err(TlsError::Revoked { fingerprint });
        }
        self.gateways
            .get(&fingerprint)
            .ok_or(TlsError::Unregistered { fingerprint })
    }

    /// The checks after WebPKI: not revoked, registered, and the certificate's
    /// gateway URI is the registered gateway's.
    fn check_registered(
        &self,
        end_entity: &CertificateDer<'_>,
        fingerprint: &str,
    ) -> Result<PeerIdentity, TlsError> {
        let identity = self.identity(fingerprint)?;
        let expected = gateway_uri(&identity.member.to_string(), &identity.gateway);
        let named = gateway_uris(end_entity).map_err(|reason| TlsError::InvalidCertificate {
            fingerprint: fingerprint.to_owned(),
            reason,
        })?;
        if named.is_empty() || named.iter().any(|uri| *uri != expected) {
            return Err(TlsError::IdentityMismatch {
                fingerprint: fingerprint.to_owned(),
                registered: identity.gateway_path(),
                named: if named.is_empty() {
                    "no gateway".to_owned()
                } else {
                    named.join(", ")
                },
            });
        }
        Ok(identity.clone())
    }
}

/// The certificate's `urn:accord:gateway:` alternative names.
fn gateway_uris(der: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der.as_ref())
        .map_err(|e| format!("cannot be parsed: {e}"))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("has an invalid subjectAltName: {e}"))?;
    Ok(san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::URI(uri) if uri.starts_with(GATEWAY_URI_PREFIX) => {
                        Some((*uri).to_owned())
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Turns a WebPKI failure into a refusal that says what was wrong.
fn webpki_refusal(fingerprint: &str, error: rustls::Error) -> TlsError {
    let fingerprint = fingerprint.to_owned();
    let cert_error = match error {
        rustls::Error::InvalidCertificate(e) => e,
        other => {
            return TlsError::InvalidCertificate {
                fingerprint,
                reason: other.to_string(),
            }
        }
    };
    match cert_error {
        CertificateError::UnknownIssuer | CertificateError::BadSignature => {
            TlsError::UnknownIssuer { fingerprint }
        }
        CertificateError::Expired => TlsError::Expired {
            fingerprint,
            not_after: "its notAfter".into(),
        },
        CertificateError::ExpiredContext { not_after, .. } => TlsError::Expired {
            fingerprint,
            not_after: unix_rfc3339(not_after),
        },
        CertificateError::NotValidYet => TlsError::NotYetValid {
            fingerprint,
            not_before: "its notBefore".into(),
        },
        CertificateError::NotValidYetContext { not_before, .. } => TlsError::NotYetValid {
            fingerprint,
            not_before: unix_rfc3339(not_before),
        },
        e @ (CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. }) => {
            TlsError::WrongPurpose {
                fingerprint,
                detail: e.to_string(),
            }
        }
        e @ (CertificateError::NotValidForName
        | CertificateError::NotValidForNameContext { .. }) => TlsError::WrongName {
            fingerprint,
            detail: e.to_string(),
        },
        other => TlsError::InvalidCertificate {
            fingerprint,
            reason: other.to_string(),
        },
    }
}

fn unix_rfc3339(t: UnixTime) -> String {
    i64::try_from(t.as_secs())
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{} (UNIX)", t.as_secs()))
}

/// The current trust view, shared by the verifiers and replaced whole when
/// a new configuration arrives. Cloning shares the same view.
#[derive(Clone, Debug)]
pub struct SharedTrust(Arc<RwLock<Arc<TrustView>>>);

impl SharedTrust {
    pub fn new(view: TrustView) -> SharedTrust {
        SharedTrust(Arc::new(RwLock::new(Arc::new(view))))
    }

    /// The view in force now (what the next handshake is checked against).
    pub fn current(&self) -> Arc<TrustView> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts `view` in force for every handshake from now on.
    pub fn replace(&self, view: TrustView) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(view);
    }

    /// Puts the view of a newly verified configuration in force.
    pub fn update(&self, federation: &Federation) -> Result<(), TlsError> {
        self.replace(TrustView::from_federation(federation)?);
        Ok(())
    }
}

/// The provider side's check of consumers' client certificates.
#[derive(Debug)]
struct ConsumerVerifier {
    trust: SharedTrust,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for ConsumerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The view (and its CA) can change under us; gateways hold exactly one
        // certificate, so they need no hint to choose it.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let view = self.trust.current();
        let fingerprint = fingerprint_sha256(end_entity);
        view.client_verifier
            .verify_client_cert(end_entity, intermediates, now)
            .map_err(|e| webpki_refusal(&fingerprint, e))
            .and_then(|_| view.check_registered(end_entity, &fingerprint))
            .map_err(|e| refuse("provider", e))?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The gateway a consumer means to reach: the connection is refused unless
/// the provider's certificate is a registered gateway of `member` (and, if
/// given, the gateway named `gateway`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedProvider {
    pub member: MemberId,
    pub gateway: Option<String>,
}

impl ExpectedProvider {
    fn matches(&self, identity: &PeerIdentity) -> bool {
        identity.member == self.member
            && self
                .gateway
                .as_ref()
                .is_none_or(|name| *name == identity.gateway)
    }
}

impl fmt::Display for ExpectedProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.gateway {
            Some(name) => write!(f, "{}/{}", self.member, name),
            None => write!(f, "a gateway of {}", self.member),
        }
    }
}

/// The consumer side's check of providers' server certificates.
#[derive(Debug)]
struct ProviderVerifier {
    trust: SharedTrust,
    provider: Arc<CryptoProvider>,
    expected: Option<ExpectedProvider>,
}

impl ServerCertVerifier for ProviderVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let view = self.trust.current();
        let fingerprint = fingerprint_sha256(end_entity);
        view.server_verifier
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|e| webpki_refusal(&fingerprint, e))
            .and_then(|_| view.check_registered(end_entity, &fingerprint))
            .and_then(|identity| match &self.expected {
                Some(expected) if !expected.matches(&identity) => {
                    Err(TlsError::UnexpectedProvider {
                        fingerprint: fingerprint.clone(),
                        found: identity.gateway_path(),
                        expected: expected.to_string(),
                    })
                }
                _ => Ok(()),
            })
            .map_err(|e| refuse("consumer", e))?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// This gateway's certificate chain and key from PEM.
fn own_identity(
    cert_pem: &str,
    key_pem: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::OwnCertificate(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::OwnCertificate(
            "no \"CERTIFICATE\" block found".into(),
        ));
    }
    // The PEM parser's errors name labels and positions, never key bytes.
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| TlsError::OwnKey(format!("not a PEM private key: {e}")))?;
    Ok((certs, key))
}

/// Maps a rustls error about this gateway's own certificate or key.
fn own_key_error(e: rustls::Error) -> TlsError {
    match e {
        rustls::Error::InconsistentKeys(why) => {
            TlsError::OwnKey(format!("it does not belong to the certificate ({why:?})"))
        }
        other => TlsError::OwnKey(other.to_string()),
    }
}

/// The provider side's TLS configuration: TLS 1.3, a client certificate is
/// required and checked by WebPKI against the federation CA and then against
/// the current trust view (not revoked, a registered gateway's valid
/// certificate, its gateway URI that gateway's). No session resumption.
pub fn server_config(
    trust: SharedTrust,
    own_cert_pem: &str,
    own_key_pem: &str,
) -> Result<Arc<ServerConfig>, TlsError> {
    let (certs, key) = own_identity(own_cert_pem, own_key_pem)?;
    let provider = provider();
    let verifier = Arc::new(ConsumerVerifier {
        trust,
        provider: provider.clone(),
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(own_key_error)?;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The consumer side's base TLS configuration: TLS 1.3, presents this
/// gateway's certificate, and accepts a provider whose certificate WebPKI
/// verifies against the federation CA for the host dialled and which is a
/// registered gateway's valid, unrevoked certificate. No session resumption.
///
/// It does not know which member's gateway was meant: connect with
/// [`connect`] (or a configuration from [`for_provider`]), which also
/// requires the expected provider.
pub fn client_config(
    trust: SharedTrust,
    own_cert_pem: &str,
    own_key_pem: &str,
) -> Result<Arc<ClientConfig>, TlsError> {
    let (certs, key) = own_identity(own_cert_pem, own_key_pem)?;
    let provider = provider();
    let verifier = Arc::new(ProviderVerifier {
        trust,
        provider: provider.clone(),
        expected: None,
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(certs, key)
        .map_err(own_key_error)?;
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// `base` (from [`client_config`]) for one connection to `expected`: the
/// same certificate and settings, and a verifier that also refuses any
/// gateway but the expected provider's.
pub fn for_provider(
    base: &ClientConfig,
    trust: &SharedTrust,
    expected: ExpectedProvider,
) -> Arc<ClientConfig> {
    let mut config = base.clone();
    let provider = config.crypto_provider().clone();
    config
        .dangerous()
        .set_certificate_verifier(Arc::new(ProviderVerifier {
            trust: trust.clone(),
            provider,
            expected: Some(expected),
        }));
    Arc::new(config)
}

/// The name the consumer verifies the provider's certificate against: the
/// host of its registered address (`https://host:port`).
pub fn server_name_for_address(address: &str) -> Result<ServerName<'static>, TlsError> {
    let host = check_gateway_address(address).map_err(TlsError::Address)?;
    ServerName::try_from(host)
        .map_err(|e| TlsError::Address(format!("{address:?} has an unusable host: {e}")))
}

/// Connections whose peer certificate can be read.
pub trait PeerCertificates {
    /// The peer's end-entity certificate, once the handshake has completed.
    fn peer_end_entity(&self) -> Option<&CertificateDer<'static>>;
}

impl PeerCertificates for rustls::ServerConnection {
    fn peer_end_entity(&self) -> Option<&CertificateDer<'static>> {
        self.peer_certificates()?.first()
    }
}

impl PeerCertificates for rustls::ClientConnection {
    fn peer_end_entity(&self) -> Option<&CertificateDer<'static>> {
        self.peer_certificates()?.first()
    }
}

impl<IO> PeerCertificates for tokio_rustls::server::TlsStream<IO> {
    fn peer_end_entity(&self) -> Option<&CertificateDer<'static>> {
        self.get_ref().1.peer_end_entity()
    }
}

impl<IO> PeerCertificates for tokio_rustls::client::TlsStream<IO> {
    fn peer_end_entity(&self) -> Option<&CertificateDer<'static>> {
        self.get_ref().1.peer_end_entity()
    }
}

/// The authenticated peer of a completed handshake: the gateway whose
/// certificate it presented, looked up by fingerprint in `trust`. `None`
/// before the handshake, or if `trust` no longer lists the certificate as
/// valid (it was revoked since).
pub fn peer_identity(conn: &impl PeerCertificates, trust: &TrustView) -> Option<PeerIdentity> {
    let cert = conn.peer_end_entity()?;
    trust.identity(&fingerprint_sha256(cert)).ok().cloned()
}

/// The identity of a completed handshake, or why there is none.
fn identity_after_handshake(
    conn: &impl PeerCertificates,
    trust: &SharedTrust,
    peer: &str,
) -> Result<PeerIdentity, TlsError> {
    let cert = conn.peer_end_entity().ok_or_else(|| TlsError::Handshake {
        peer: peer.to_owned(),
        reason: "no peer certificate after the handshake".into(),
    })?;
    // The view may have changed since the verifier ran: the later word counts.
    trust.current().identity(&fingerprint_sha256(cert)).cloned()
}

fn handshake_error(peer: &str, e: io::Error) -> TlsError {
    refusal(&e).cloned().unwrap_or_else(|| TlsError::Handshake {
        peer: peer.to_owned(),
        reason: e.to_string(),
    })
}

/// Provider side: completes the handshake on `io` and returns the stream
/// with the consumer gateway's identity. `peer` names the connection in
/// errors (e.g. the remote socket address).
pub async fn accept<IO>(
    config: &Arc<ServerConfig>,
    trust: &SharedTrust,
    io: IO,
    peer: &str,
) -> Result<(tokio_rustls::server::TlsStream<IO>, PeerIdentity), TlsError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let stream = tokio_rustls::TlsAcceptor::from(config.clone())
        .accept(io)
        .await
        .map_err(|e| handshake_error(peer, e))?;
    let identity = identity_after_handshake(&stream, trust, peer)?;
    Ok((stream, identity))
}

/// Consumer side: completes the handshake with the provider at
/// `server_name` over `io`, refusing any gateway but `expected`, and
/// returns the stream with the provider gateway's identity.
///
/// With TLS 1.3 the provider checks the consumer's certificate after the
/// consumer considers the handshake done: a provider's refusal arrives as
/// an alert on the first read.
pub async fn connect<IO>(
    base: &ClientConfig,
    trust: &SharedTrust,
    server_name: ServerName<'static>,
    expected: ExpectedProvider,
    io: IO,
) -> Result<(tokio_rustls::client::TlsStream<IO>, PeerIdentity), TlsError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let peer = server_name.to_str().into_owned();
    let config = for_provider(base, trust, expected);
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(server_name, io)
        .await
        .map_err(|e| handshake_error(&peer, e))?;
    let identity = identity_after_handshake(&stream, trust, &peer)?;
    Ok((stream, identity))
}
