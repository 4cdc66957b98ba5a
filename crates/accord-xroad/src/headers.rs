//! Which headers cross the gateway, and which message framings it refuses.
//!
//! # Forwarding
//!
//! PR-REST section 4.3 asks two opposite things of a gateway. User-defined,
//! cache, `Content-Type` and `Accept` headers MUST pass unmodified in both
//! directions (clients and providers rely on them, JWTs travel in them). A
//! short list MUST NOT pass: hop-by-hop headers, which describe one
//! connection and would be wrong on the next, and headers that leak the
//! name or address of the origin host. On top of that the gateway owns the
//! X-Road headers it sets itself: a value a caller put there would be a
//! forgery (an `X-Road-Client` the TLS identity does not back, an
//! `X-Road-Request-Hash` a backend made up), so the caller's copy is
//! removed and the gateway writes its own. Accord owns the whole
//! `X-Accord-` prefix for the same reason (an `X-Accord-Agreement` from a
//! backend must not reach a consumer as if the gateway had decided it).
//!
//! Removed in both directions:
//! - `Connection` and every header it names, `Keep-Alive`, `Proxy-*`
//!   (`Proxy-Authenticate`, `Proxy-Authorization`, `Proxy-Connection`),
//!   `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade` (hop-by-hop);
//! - `Content-Length`: the gateway re-frames the body, and the HTTP library
//!   writes the length of what it actually sends (section 4.3 allows the
//!   gateway to change the transfer encoding);
//! - every `X-Accord-*` header.
//!
//! Removed from requests: `Host`, `User-Agent` (origin host), `Expect`
//! (handled at the gateway, section 4.3), and the X-Road headers the
//! gateway sets or interprets: `X-Road-Client`, `X-Road-Id`,
//! `X-Road-UserId`, `X-Road-Issue`, `X-Road-Represented-Party`,
//! `X-Road-Request-Id`, `X-Road-Request-Hash`, `X-Road-Service`,
//! `X-Road-Error`, `X-Road-Security-Server` (Accord routes by service, not
//! by server). Other `X-Road-*` headers are "contracts between information
//! systems" (section 4.3) and pass like any user-defined header.
//!
//! Removed from responses: `Server` (origin host) and the X-Road headers a
//! response gets from the gateway: `X-Road-Client`, `X-Road-Service`,
//! `X-Road-Id`, `X-Road-Request-Id`, `X-Road-Request-Hash`, `X-Road-Error`
//! (section 4.3: the provider SHOULD NOT set them, they are overwritten).
//! Redirects (3xx with `Location`) pass unchanged and are never followed
//! (section 4.4).
//!
//! # Framing
//!
//! A body's length must mean the same to every HTTP hop, or a second
//! request can hide inside the first (request smuggling / response
//! desynchronisation). [`check_framing`] refuses the ambiguous shapes:
//! both `Content-Length` and `Transfer-Encoding`, several different
//! lengths, a length that is not a plain decimal number, and any transfer
//! coding other than a single `chunked`. It is direction-agnostic: a
//! gateway runs it on requests from consumers (a client error) and on
//! responses from backends (a backend error).

use http::header::{
    HeaderMap, HeaderName, CONNECTION, CONTENT_LENGTH, EXPECT, HOST, SERVER, TRANSFER_ENCODING,
    USER_AGENT,
};

use crate::error::{ErrorKind, XRoadError};

/// Hop-by-hop headers (RFC 9110 section 7.6.1 and PR-REST section 4.3)
/// besides `Proxy-*`, which is matched by prefix.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// X-Road headers the gateway sets or interprets on requests.
const GATEWAY_REQUEST_HEADERS: &[&str] = &[
    "x-road-client",
    "x-road-id",
    "x-road-userid",
    "x-road-issue",
    "x-road-represented-party",
    "x-road-request-id",
    "x-road-request-hash",
    "x-road-service",
    "x-road-error",
    "x-road-security-server",
];

/// X-Road headers the gateway sets on responses.
const GATEWAY_RESPONSE_HEADERS: &[&str] = &[
    "x-road-client",
    "x-road-service",
    "x-road-id",
    "x-road-request-id",
    "x-road-request-hash",
    "x-road-error",
];

/// Whether `name` (lower case, as `HeaderName` keeps it) only describes the
/// connection it arrived on.
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.contains(&name) || name.starts_with("proxy-")
}

/// The header names listed in `Connection` values (lower case).
pub fn connection_tokens(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Whether a request header is passed on to the provider.
pub fn is_forwarded_request_header(name: &HeaderName, connection_tokens: &[String]) -> bool {
    let name = name.as_str();
    !(dropped_both_ways(name, connection_tokens)
        || name == HOST.as_str()
        || name == USER_AGENT.as_str()
        || name == EXPECT.as_str()
        || GATEWAY_REQUEST_HEADERS.contains(&name))
}

/// Whether a response header is passed back to the consumer.
pub fn is_forwarded_response_header(name: &HeaderName, connection_tokens: &[String]) -> bool {
    let name = name.as_str();
    !(dropped_both_ways(name, connection_tokens)
        || name == SERVER.as_str()
        || GATEWAY_RESPONSE_HEADERS.contains(&name))
}

fn dropped_both_ways(name: &str, connection_tokens: &[String]) -> bool {
    is_hop_by_hop(name)
        || connection_tokens.iter().any(|t| t == name)
        || name == CONTENT_LENGTH.as_str()
        || name.starts_with("x-accord-")
}

/// The request headers to send on, values and order untouched.
pub fn filter_request_headers(headers: &HeaderMap) -> HeaderMap {
    let tokens = connection_tokens(headers);
    filter(headers, |name| is_forwarded_request_header(name, &tokens))
}

/// The response headers to send back, values and order untouched.
pub fn filter_response_headers(headers: &HeaderMap) -> HeaderMap {
    let tokens = connection_tokens(headers);
    filter(headers, |name| is_forwarded_response_header(name, &tokens))
}

fn filter(headers: &HeaderMap, keep: impl Fn(&HeaderName) -> bool) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if keep(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// How a message's body is delimited, once the framing is unambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// Neither `Content-Length` nor `Transfer-Encoding`: for a request, no
    /// body.
    Unframed,
    /// `Content-Length` (repeats, if any, all equal).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// An ambiguous or unsupported message framing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("both Content-Length and Transfer-Encoding are present")]
    LengthAndTransferEncoding,
    #[error("Content-Length is given as {first} and as {second}")]
    ConflictingLengths { first: u64, second: u64 },
    #[error("Content-Length is not a decimal number of bytes")]
    InvalidLength,
    #[error("Transfer-Encoding must be exactly \"chunked\", found {found:?}")]
    UnsupportedTransferEncoding { found: String },
}

impl From<FramingError> for XRoadError {
    /// As a refusal of a consumer's request. For a backend response, report
    /// `XRoadError::new(ErrorKind::BackendInvalidResponse, e.to_string())`.
    fn from(e: FramingError) -> Self {
        XRoadError::new(ErrorKind::InconsistentHeaders, e.to_string())
    }
}

/// Checks that `Content-Length` / `Transfer-Encoding` delimit the body in
/// exactly one way.
pub fn check_framing(headers: &HeaderMap) -> Result<BodyFraming, FramingError> {
    let lengths = headers.get_all(CONTENT_LENGTH);
    let encodings = headers.get_all(TRANSFER_ENCODING);
    let has_length = lengths.iter().next().is_some();
    let has_encoding = encodings.iter().next().is_some();
    if has_length && has_encoding {
        return Err(FramingError::LengthAndTransferEncoding);
    }
    if has_encoding {
        let values: Vec<String> = encodings
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        let joined = values.join(", ");
        return if values.len() == 1 && joined.trim().eq_ignore_ascii_case("chunked") {
            Ok(BodyFraming::Chunked)
        } else {
            Err(FramingError::UnsupportedTransferEncoding { found: joined })
        };
    }
    let mut length: Option<u64> = None;
    for value in lengths.iter() {
        // RFC 9110 section 8.6: a list of identical values may be read as
        // one; anything else is an error.
        for item in value.as_bytes().split(|b| *b == b',') {
            let n = parse_length(trim_ows(item)).ok_or(FramingError::InvalidLength)?;
            match length {
                Some(first) if first != n => {
                    return Err(FramingError::ConflictingLengths { first, second: n })
                }
                _ => length = Some(n),
            }
        }
    }
    Ok(length.map_or(BodyFraming::Unframed, BodyFraming::Length))
}

fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// `1*DIGIT`, no sign, no overflow.
fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}
