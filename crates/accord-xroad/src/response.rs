//! What a response carries besides the provider's own headers: the X-Road
//! headers that tie it to its request, the request hash, and Accord's
//! `X-Accord-Agreement`.
//!
//! # X-Road response headers
//!
//! PR-REST section 4.3: the provider's gateway sets `X-Road-Client`,
//! `X-Road-Service`, `X-Road-Id`, `X-Road-Request-Id` and
//! `X-Road-Request-Hash` on every response, overwriting any the provider's
//! service set. Identifiers are written in their wire form (each part
//! percent-encoded), which for X-Road's identifier characters differs from
//! the text form only in `?` and `+`.
//!
//! # The request hash
//!
//! Section 4.3: `X-Road-Request-Hash` is the base64 of
//! `SHA-512(SHA-512(headers) + SHA-512(body))`, or of `SHA-512(headers)`
//! when the request has no body; the provider's gateway computes it and the
//! consumer's gateway MUST check it, so that a response can be proven to
//! answer a given request. The spec does not say how "headers" are
//! serialised. X-Road's implementation hashes the request line and headers
//! of the REST message as carried inside its signed envelope:
//!
//! ```text
//! METHOD CRLF
//! /r1/...path[?query] CRLF
//! name:value CRLF        (one line per header)
//! ```
//!
//! leaving out connection-level headers (`Host`, `Content-Length`,
//! `Transfer-Encoding`, `Connection`, `Keep-Alive`, `Proxy-*`, `TE`,
//! `Trailer`, `Upgrade`, `User-Agent`, `Server`, `Expect`) and the hash
//! header itself, and including the `X-Road-Id` and `X-Road-Request-Id` the
//! consumer's side set. Accord keeps that shape, with one change: between
//! Accord gateways the request travels as plain HTTP, where header order
//! and the case of names are not preserved (HTTP/2 lower-cases names, and
//! an `http::HeaderMap` groups values by name). So the header lines are
//! canonical: names in lower case, lines sorted by name (bytewise), values
//! of a repeated header in the order they were sent (their order is
//! meaningful), values as raw bytes. "No body" means a body of zero bytes.
//! The target line is the r1 request target as the consumer's gateway
//! forwards it (service id with the resolved version, raw path, verbatim
//! query). Only Accord gateways compute and check this hash, so the
//! canonical form needs to be reproducible, not byte-identical with
//! X-Road's message encoding.
//!
//! # `X-Accord-Agreement`
//!
//! Every permitted exchange names the agreement version and grant that
//! allowed it (the audit trail's promise), and the consumer sees it too:
//! `X-Accord-Agreement: agreement=tallinn-residence; version=3; grant=residence-lookup`.
//! Key-value pairs rather than a bare `id/3/grant` so that the header reads
//! on its own in a log and can grow a field without breaking parsers.

use std::fmt;
use std::str::FromStr;

use accord_domain::agreement::decision::Permit;
use accord_domain::agreement::AgreementId;
use accord_domain::id::{ServiceId, SubsystemId};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::{HeaderMap, HeaderName, HeaderValue, InvalidHeaderValue};
use http::Method;

use crate::error::{ErrorKind, XRoadError};
use crate::headers::{connection_tokens, is_hop_by_hop};
use crate::request::{MessageId, X_ROAD_CLIENT, X_ROAD_ID, X_ROAD_REQUEST_ID};

pub const X_ROAD_SERVICE: HeaderName = HeaderName::from_static("x-road-service");
pub const X_ROAD_REQUEST_HASH: HeaderName = HeaderName::from_static("x-road-request-hash");
pub const X_ACCORD_AGREEMENT: HeaderName = HeaderName::from_static("x-accord-agreement");

/// Headers left out of the request hash besides the hop-by-hop ones: they
/// describe the connection or are rewritten on the way.
const NOT_HASHED: &[&str] = &[
    "content-length",
    "host",
    "user-agent",
    "server",
    "expect",
    "x-road-request-hash",
];

const CRLF: &[u8] = b"\r\n";

/// Whether a header takes part in the request hash.
pub fn is_hashed_header(name: &str, connection_tokens: &[String]) -> bool {
    !(is_hop_by_hop(name)
        || NOT_HASHED.contains(&name)
        || connection_tokens.iter().any(|t| t == name))
}

/// The bytes whose SHA-512 is the "headers" part of the request hash (see
/// the module docs).
pub fn request_head_bytes(method: &Method, target: &str, headers: &HeaderMap) -> Vec<u8> {
    let tokens = connection_tokens(headers);
    let mut lines: Vec<(&str, usize, &[u8])> = headers
        .iter()
        .enumerate()
        .filter(|(_, (name, _))| is_hashed_header(name.as_str(), &tokens))
        .map(|(i, (name, value))| (name.as_str(), i, value.as_bytes()))
        .collect();
    // Sorted by name; the index keeps repeated values in their order.
    lines.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let mut out = Vec::with_capacity(64 + target.len() + 48 * lines.len());
    out.extend_from_slice(method.as_str().as_bytes());
    out.extend_from_slice(CRLF);
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(CRLF);
    for (name, _, value) in lines {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        out.extend_from_slice(value);
        out.extend_from_slice(CRLF);
    }
    out
}

/// SHA-512 with ring's implementation (the one rustls already links): on
/// the development VM it hashes a 64 KiB body in about 150 µs against the
/// `sha2` crate's 220, and every exchange hashes its request body with
/// SHA-512 on both gateways (measured with a loop over both, and with
/// `perf` during `accord bench exchange`, where SHA-512 was a quarter of
/// the gateways' CPU at 64 KiB).
fn sha512(parts: &[&[u8]]) -> [u8; 64] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA512);
    for part in parts {
        context.update(part);
    }
    to_array(context.finish())
}

fn to_array(digest: ring::digest::Digest) -> [u8; 64] {
    let mut out = [0u8; 64];
    out.copy_from_slice(digest.as_ref());
    out
}

/// SHA-512 of [`request_head_bytes`].
pub fn request_head_digest(method: &Method, target: &str, headers: &HeaderMap) -> [u8; 64] {
    sha512(&[&request_head_bytes(method, target, headers)])
}

/// SHA-512 of a body fed in pieces, as a gateway streams it.
#[derive(Clone)]
pub struct BodyDigest {
    hasher: ring::digest::Context,
    bytes: u64,
}

impl fmt::Debug for BodyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyDigest")
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl Default for BodyDigest {
    fn default() -> Self {
        BodyDigest {
            hasher: ring::digest::Context::new(&ring::digest::SHA512),
            bytes: 0,
        }
    }
}

impl BodyDigest {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        self.bytes += chunk.len() as u64;
    }

    /// How many bytes were fed.
    pub fn len(&self) -> u64 {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// The digest, or `None` for an empty body (which the hash treats as
    /// no body).
    pub fn finish(self) -> Option<[u8; 64]> {
        (self.bytes > 0).then(|| to_array(self.hasher.finish()))
    }
}

/// The value of `X-Road-Request-Hash`: a SHA-512 digest.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RequestHash([u8; 64]);

impl fmt::Debug for RequestHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestHash({})", self.to_base64())
    }
}

impl RequestHash {
    /// `SHA-512(head ‖ body)` if there is a body digest, else the head
    /// digest itself.
    pub fn from_digests(head: [u8; 64], body: Option<[u8; 64]>) -> RequestHash {
        match body {
            Some(body) => RequestHash(sha512(&[&head, &body])),
            None => RequestHash(head),
        }
    }

    /// The hash of a request whose body is in memory.
    pub fn compute(method: &Method, target: &str, headers: &HeaderMap, body: &[u8]) -> RequestHash {
        let mut digest = BodyDigest::new();
        digest.update(body);
        RequestHash::from_digests(
            request_head_digest(method, target, headers),
            digest.finish(),
        )
    }

    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }

    /// Standard base64 with padding, as X-Road writes it.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    pub fn parse_base64(value: &str) -> Option<RequestHash> {
        let bytes = STANDARD.decode(value.trim()).ok()?;
        <[u8; 64]>::try_from(bytes).ok().map(RequestHash)
    }

    /// The consumer's gateway's check of a response (section 4.3: MUST be
    /// verified): the response's `X-Road-Request-Hash` must be present,
    /// single and equal to the hash of the request that was sent.
    pub fn verify_response(&self, response_headers: &HeaderMap) -> Result<(), XRoadError> {
        let inconsistent =
            |message: &str| XRoadError::new(ErrorKind::InconsistentResponse, message);
        let mut values = response_headers.get_all(X_ROAD_REQUEST_HASH).iter();
        let value = values
            .next()
            .ok_or_else(|| inconsistent("the response has no X-Road-Request-Hash"))?;
        if values.next().is_some() {
            return Err(inconsistent(
                "the response has more than one X-Road-Request-Hash",
            ));
        }
        let received = value
            .to_str()
            .ok()
            .and_then(RequestHash::parse_base64)
            .ok_or_else(|| {
                inconsistent("the response's X-Road-Request-Hash is not a base64 SHA-512 digest")
            })?;
        if received == *self {
            Ok(())
        } else {
            Err(inconsistent(
                "the response's X-Road-Request-Hash does not match the request that was sent",
            ))
        }
    }
}

/// The agreement version and grant that allowed an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgreementRef {
    agreement: AgreementId,
    version: u32,
    grant: String,
}

/// Why an `X-Accord-Agreement` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgreementRefError {
    #[error("X-Accord-Agreement must be agreement=ID; version=N; grant=GRANT, {0}")]
    Shape(&'static str),
    #[error("X-Accord-Agreement names an invalid agreement: {0}")]
    Agreement(String),
    #[error("X-Accord-Agreement version must be a positive decimal number")]
    Version,
    #[error("X-Accord-Agreement grant must be 1 to 64 lower-case letters, digits and hyphens")]
    Grant,
}

impl AgreementRef {
    pub fn new(
        agreement: AgreementId,
        version: u32,
        grant: &str,
    ) -> Result<Self, AgreementRefError> {
        let grant_ok = (1..=64).contains(&grant.len())
            && grant
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !grant_ok {
            return Err(AgreementRefError::Grant);
        }
        if version == 0 {
            return Err(AgreementRefError::Version);
        }
        Ok(AgreementRef {
            agreement,
            version,
            grant: grant.to_owned(),
        })
    }

    /// The reference for a permit of the decision index.
    pub fn from_permit(permit: &Permit<'_>) -> Result<Self, AgreementRefError> {
        AgreementRef::new(permit.agreement.clone(), permit.version, permit.grant)
    }

    pub fn agreement(&self) -> &AgreementId {
        &self.agreement
    }

    /// The agreement version, 1 or more.
    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn grant(&self) -> &str {
        &self.grant
    }

    pub fn header_value(&self) -> Result<HeaderValue, InvalidHeaderValue> {
        HeaderValue::from_str(&self.to_string())
    }
}

impl fmt::Display for AgreementRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "agreement={}; version={}; grant={}",
            self.agreement, self.version, self.grant
        )
    }
}

impl FromStr for AgreementRef {
    type Err = AgreementRefError;

    fn from_str(s: &str) -> Result<Self, AgreementRefError> {
        let (mut agreement, mut version, mut grant) = (None, None, None);
        for item in s.split(';') {
            let (key, value) = item
                .trim()
                .split_once('=')
                .ok_or(AgreementRefError::Shape("each field is key=value"))?;
            let slot = match key {
                "agreement" => &mut agreement,
                "version" => &mut version,
                "grant" => &mut grant,
                _ => return Err(AgreementRefError::Shape("with no other keys")),
            };
            if slot.replace(value).is_some() {
                return Err(AgreementRefError::Shape("each key once"));
            }
        }
        let (Some(agreement), Some(version), Some(grant)) = (agreement, version, grant) else {
            return Err(AgreementRefError::Shape("all three keys are required"));
        };
        let agreement = agreement
            .parse::<AgreementId>()
            .map_err(AgreementRefError::Agreement)?;
        let canonical = !version.starts_with('0') && version.bytes().all(|b| b.is_ascii_digit());
        let version = version
            .parse::<u32>()
            .ok()
            .filter(|_| canonical)
            .ok_or(AgreementRefError::Version)?;
        AgreementRef::new(agreement, version, grant)
    }
}

/// The X-Road (and Accord) headers the provider's gateway puts on a
/// response, overwriting whatever the provider's service sent under these
/// names.
#[derive(Debug, Clone, Copy)]
pub struct ResponseHeaders<'a> {
    pub client: &'a SubsystemId,
    pub service: &'a ServiceId,
    pub message_id: &'a MessageId,
    pub request_id: &'a MessageId,
    pub request_hash: &'a RequestHash,
    /// `None` only where no decision was made (e.g. a metadata service).
    pub agreement: Option<&'a AgreementRef>,
}

impl ResponseHeaders<'_> {
    pub fn apply(&self, headers: &mut HeaderMap) -> Result<(), InvalidHeaderValue> {
        headers.insert(
            X_ROAD_CLIENT,
            HeaderValue::from_str(&self.client.to_encoded())?,
        );
        headers.insert(
            X_ROAD_SERVICE,
            HeaderValue::from_str(&self.service.to_encoded())?,
        );
        headers.insert(X_ROAD_ID, HeaderValue::from_str(self.message_id.as_str())?);
        headers.insert(
            X_ROAD_REQUEST_ID,
            HeaderValue::from_str(self.request_id.as_str())?,
        );
        headers.insert(
            X_ROAD_REQUEST_HASH,
            HeaderValue::from_str(&self.request_hash.to_base64())?,
        );
        match self.agreement {
            Some(agreement) => {
                headers.insert(X_ACCORD_AGREEMENT, agreement.header_value()?);
            }
            None => {
                headers.remove(X_ACCORD_AGREEMENT);
            }
        }
        Ok(())
    }
}
