//! The consumer's request: `{METHOD} /r1/{serviceId}[/path][?query]` plus
//! the X-Road and Accord headers, parsed and strictly validated.
//!
//! # Why strict
//!
//! PR-REST section 4.2 says incoming URIs MUST be strictly validated and
//! names parameter pollution and server-side request forgery as the threats.
//! A gateway turns the path after the service id into a request to the
//! provider's backend, so anything the backend (or a proxy in front of it)
//! could read differently from the gateway is refused here, before any
//! authorization decision looks at the path:
//!
//! - the target is checked raw, still percent-encoded: only RFC 3986 path
//!   characters and well-formed `%XX` escapes, no control characters, no
//!   spaces, no backslashes, no non-ASCII bytes, no fragment;
//! - its length is limited ([`Limits::max_target_len`], default 2000, the
//!   figure section 4.2 quotes);
//! - an identifier part that is `.` or `..` (raw or encoded) is refused:
//!   both are X-Road identifier characters, but as path segments they are
//!   removed by URL normalisation, so no client can address such a service
//!   reliably and a proxy would read another one;
//! - each identifier part is decoded on its own and must satisfy X-Road's
//!   identifier characters (section 4.8: letters, digits, `'()+,-.=?`), so
//!   `BAR%2FSERVICE` is refused (`/` is not an identifier character, and the
//!   spec's own example of an encoded slash predates 4.8) and `what%3F` is
//!   the service `what?`;
//! - in the path after the service id, a segment that decodes to `.` or
//!   `..` (also with a `;` parameter, which Tomcat-style servers strip
//!   before normalising), an encoded `/` or `\`, a control character (NUL
//!   included) or bytes that are not UTF-8 are refused, and so is an empty
//!   segment anywhere but at the end (`//host` at the start of a path is an
//!   authority to a naive URL join). After these checks, decoding a path is
//!   unambiguous, so the gateway can authorize the decoded path and forward
//!   the raw one, and both mean the same resource;
//! - the query is passed on verbatim (section 4.5: MUST be passed
//!   unmodified); only bytes that cannot be in a request target at all are
//!   refused.
//!
//! # Service id versus path
//!
//! Section 4.1 defines `{serviceId}` as `INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE`
//! and everything after it as the path; its own example
//! `GET /r1/INSTANCE/CLASS2/MEMBER2/SUBSYSTEM2/BARSERVICE/v1/bar/zyggy`
//! sends `/v1/bar/zyggy` to the backend, and X-Road's implementation splits
//! the target after exactly five parts. Accord's service ids have an
//! optional sixth part, the version, so `.../BARSERVICE/v1/bar` could be the
//! service `BARSERVICE/v1` with path `/bar` or the service `BARSERVICE` with
//! path `/v1/bar`. [`RequestTarget::candidates`] lists both readings,
//! longest first, and [`RequestTarget::resolve`] takes the first one the
//! gateway's catalogue knows. A federation that registers only versionless
//! services therefore gets exactly the spec's reading; one that registers
//! `BARSERVICE/v1` gets the versioned service without its clients changing
//! their URLs. Registering both `S` and `S/v1` makes `S/v1/...` go to
//! `S/v1`; the catalogue should avoid that pair.
//!
//! # Headers
//!
//! `X-Road-Client` is required (section 4.3). The spec lets it name a
//! member without a subsystem; in Accord only subsystems are clients (every
//! agreement grants access to subsystems), so a member-only client is
//! refused with a message that says so. If the header is repeated the last
//! one counts, as the spec recommends. `X-Road-Id` is optional and
//! generated (a UUID) when absent. `X-Road-UserId`, `X-Road-Issue` and
//! `X-Road-Represented-Party` are optional and passed on. Accord adds
//! `X-Accord-Purpose` (a purpose code from the federation's vocabulary) and
//! `X-Accord-Subject` (the data subject the request is about). Every
//! optional header may appear at most once: two different values would
//! leave the audit log and the provider to guess. Values of `X-Road-UserId`
//! and `X-Accord-Subject` are personal data and never appear in error
//! messages.

use std::fmt;

use accord_domain::id::{validate_part, IdError, MemberId, Part, ServiceId, SubsystemId};
use http::header::{HeaderMap, HeaderName, HeaderValue, InvalidHeaderValue};
use http::Method;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use crate::error::{ErrorKind, Origin, XRoadError};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: &str = "r1";

/// Longest request target (path and query) accepted by default: the
/// 2000 characters PR-REST section 4.2 quotes as what most clients allow.
pub const DEFAULT_MAX_TARGET_LEN: usize = 2000;

/// Longest `X-Road-Id` / `X-Road-Request-Id`.
pub const MAX_MESSAGE_ID_LEN: usize = 255;
/// Longest `X-Road-UserId` and `X-Road-Issue`.
pub const MAX_USER_ID_LEN: usize = 255;
pub const MAX_ISSUE_LEN: usize = 255;
/// Longest `X-Accord-Subject`.
pub const MAX_SUBJECT_LEN: usize = 255;

pub const X_ROAD_CLIENT: HeaderName = HeaderName::from_static("x-road-client");
pub const X_ROAD_ID: HeaderName = HeaderName::from_static("x-road-id");
pub const X_ROAD_REQUEST_ID: HeaderName = HeaderName::from_static("x-road-request-id");
pub const X_ROAD_USER_ID: HeaderName = HeaderName::from_static("x-road-userid");
pub const X_ROAD_ISSUE: HeaderName = HeaderName::from_static("x-road-issue");
pub const X_ROAD_REPRESENTED_PARTY: HeaderName =
    HeaderName::from_static("x-road-represented-party");
pub const X_ACCORD_PURPOSE: HeaderName = HeaderName::from_static("x-accord-purpose");
pub const X_ACCORD_SUBJECT: HeaderName = HeaderName::from_static("x-accord-subject");

/// Methods the gateway forwards: the ones an agreement's grant can name.
/// `CONNECT` and `TRACE` have no place in a service call (and `TRACE`
/// reflects headers back, credentials included).
pub const METHODS: &[Method] = &[
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

/// Limits on a request, configurable per gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request target (path and query, in bytes).
    pub max_target_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_target_len: DEFAULT_MAX_TARGET_LEN,
        }
    }
}

/// What is wrong with a segment of the path after the service id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentProblem {
    /// `.` or `..` (after decoding, ignoring a `;` parameter).
    DotSegment,
    /// An empty segment (`//`) before the end of the path.
    Empty,
    /// `%2F`: a backend would read it as a separator, the gateway not.
    EncodedSlash,
    /// `%5C`: some servers treat a backslash as a separator.
    EncodedBackslash,
    /// A control character (NUL included) after decoding.
    ControlCharacter,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
}

impl fmt::Display for SegmentProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SegmentProblem::DotSegment => "is a dot segment ('.' or '..')",
            SegmentProblem::Empty => "is empty ('//')",
            SegmentProblem::EncodedSlash => "contains an encoded slash (%2F)",
            SegmentProblem::EncodedBackslash => "contains an encoded backslash (%5C)",
            SegmentProblem::ControlCharacter => "decodes to a control character",
            SegmentProblem::NotUtf8 => "does not decode to UTF-8",
        })
    }
}

/// What is wrong with an optional header's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueProblem {
    Empty,
    TooLong {
        max: usize,
    },
    /// Outside the header's character set (named in `allowed`).
    BadCharacters {
        allowed: &'static str,
    },
}

impl fmt::Display for ValueProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueProblem::Empty => f.write_str("is empty"),
            ValueProblem::TooLong { max } => write!(f, "is longer than {max} characters"),
            ValueProblem::BadCharacters { allowed } => {
                write!(f, "has characters outside {allowed}")
            }
        }
    }
}

/// Why a consumer request was refused. Each variant maps to one
/// [`ErrorKind`] (see `From<RequestError> for XRoadError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("method {0} is not forwarded; use GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS")]
    Method(String),
    #[error("request target is {len} bytes long, the limit is {max}; send large data in the body")]
    TargetTooLong { len: usize, max: usize },
    #[error("request target must be a path starting with '/{PROTOCOL_VERSION}/'")]
    NotOriginForm,
    #[error(
        "request target contains {found:?} at byte {at}, which is not allowed in a URI {place}"
    )]
    BadCharacter {
        found: char,
        at: usize,
        place: &'static str,
    },
    #[error("request target has a malformed percent-escape at byte {at} (expected '%' and two hex digits)")]
    BadPercentEncoding { at: usize },
    #[error("request path must start with '/{PROTOCOL_VERSION}/', found '/{found}'")]
    NotXRoadPath { found: String },
    #[error("protocol version {found:?} is not supported, this gateway speaks {PROTOCOL_VERSION}")]
    UnsupportedProtocolVersion { found: String },
    #[error(
        "service identifier must be /{PROTOCOL_VERSION}/INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE, found {found} part(s)"
    )]
    MissingServiceParts { found: usize },
    #[error("invalid service identifier: {0}")]
    ServiceIdentifier(IdError),
    #[error(
        "the {part} in the service identifier is '.' or '..', which URL normalisation removes; such a service cannot be called over r1"
    )]
    DotSegmentInIdentifier { part: Part },
    #[error("path segment {index} after the service identifier {problem}")]
    PathSegment {
        /// 1-based, counting from the first segment after the service code.
        index: usize,
        problem: SegmentProblem,
    },
    #[error("the X-Road-Client header is required")]
    MissingClient,
    #[error("invalid X-Road-Client: {0}")]
    ClientIdentifier(IdError),
    #[error(
        "X-Road-Client names the member {member} without a subsystem; Accord clients are subsystems: send INSTANCE/CLASS/MEMBER/SUBSYSTEM"
    )]
    MemberOnlyClient { member: MemberId },
    #[error("X-Road-Client must be INSTANCE/CLASS/MEMBER/SUBSYSTEM, found {found} part(s)")]
    ClientShape { found: usize },
    #[error("header {name} is not visible ASCII")]
    NotAscii { name: &'static str },
    #[error("header {name} {problem}")]
    HeaderValue {
        name: &'static str,
        problem: ValueProblem,
    },
    #[error("header {name} appears more than once")]
    DuplicateHeader { name: &'static str },
    #[error("invalid X-Road-Represented-Party: {0}")]
    RepresentedParty(IdError),
    #[error("X-Road-Represented-Party must be [CLASS/]CODE, found {found} part(s)")]
    RepresentedPartyShape { found: usize },
    #[error("no service {tried} is known to this gateway", tried = ServiceList(.tried))]
    UnknownService { tried: Vec<ServiceId> },
}

struct ServiceList<'a>(&'a [ServiceId]);

impl fmt::Display for ServiceList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, id) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" or ")?;
            }
            write!(f, "{id}")?;
        }
        Ok(())
    }
}

impl RequestError {
    /// The X-Road error kind this refusal is reported as.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RequestError::Method(_) => ErrorKind::InvalidHttpMethod,
            RequestError::UnsupportedProtocolVersion { .. } => ErrorKind::InvalidProtocolVersion,
            RequestError::TargetTooLong { .. }
            | RequestError::NotOriginForm
            | RequestError::BadCharacter { .. }
            | RequestError::BadPercentEncoding { .. }
            | RequestError::NotXRoadPath { .. }
            | RequestError::MissingServiceParts { .. }
            | RequestError::ServiceIdentifier(_)
            | RequestError::DotSegmentInIdentifier { .. }
            | RequestError::PathSegment { .. } => ErrorKind::BadRequest,
            RequestError::MissingClient => ErrorKind::MissingHeader,
            RequestError::ClientIdentifier(_)
            | RequestError::MemberOnlyClient { .. }
            | RequestError::ClientShape { .. } => ErrorKind::InvalidClientIdentifier,
            RequestError::NotAscii { .. }
            | RequestError::HeaderValue { .. }
            | RequestError::DuplicateHeader { .. }
            | RequestError::RepresentedParty(_)
            | RequestError::RepresentedPartyShape { .. } => ErrorKind::InvalidHeader,
            RequestError::UnknownService { .. } => {
                ErrorKind::UnknownService(Origin::ConsumerGateway)
            }
        }
    }
}

impl From<RequestError> for XRoadError {
    fn from(e: RequestError) -> Self {
        XRoadError::new(e.kind(), e.to_string())
    }
}

// ---------------------------------------------------------------------------
// Request target
// ---------------------------------------------------------------------------

/// The path after the service id: raw (as received, percent-encoded) and
/// decoded segment by segment. Either empty or starting with `/`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServicePath {
    raw: String,
    decoded: Vec<String>,
}

impl ServicePath {
    /// The path as received, `""` or `/...`: what the backend is sent.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The decoded segments (a trailing slash is a final empty segment).
    pub fn segments(&self) -> &[String] {
        &self.decoded
    }

    /// The decoded path, always starting with `/` (`/` for an empty path):
    /// the form agreement grants are written in. Unambiguous because no
    /// segment holds an encoded slash.
    pub fn decoded(&self) -> String {
        if self.decoded.is_empty() {
            return "/".to_owned();
        }
        let mut out = String::with_capacity(self.raw.len());
        for segment in &self.decoded {
            out.push('/');
            out.push_str(segment);
        }
        out
    }

    /// A path from decoded segments, each percent-encoded. Refuses segments
    /// the parser would refuse.
    pub fn from_segments<S: AsRef<str>>(segments: &[S]) -> Result<ServicePath, RequestError> {
        let mut raw = String::new();
        for segment in segments {
            raw.push('/');
            raw.push_str(&encode_path_segment(segment.as_ref()));
        }
        let raw_segments: Vec<&str> = if raw.is_empty() {
            Vec::new()
        } else {
            raw[1..].split('/').collect()
        };
        let decoded = decode_path_segments(&raw_segments, 0)?;
        Ok(ServicePath { raw, decoded })
    }
}

/// A parsed r1 request target, before the version/path ambiguity is
/// resolved: the five-part service id the spec defines, the rest of the
/// path, and the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTarget {
    /// `INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE`, no version.
    service: ServiceId,
    /// Raw segments after the service code.
    rest_raw: Vec<String>,
    /// The same, decoded.
    rest_decoded: Vec<String>,
    query: Option<String>,
}

/// A request target with its service chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedTarget {
    pub service: ServiceId,
    pub path: ServicePath,
    /// The query as received, without the `?`, verbatim.
    pub query: Option<String>,
}

impl ResolvedTarget {
    /// `path?query` as the backend is to be sent it (relative to the
    /// service's base URL; `/` when there is no path).
    pub fn backend_path_and_query(&self) -> String {
        let path = if self.path.is_empty() {
            "/"
        } else {
            self.path.raw()
        };
        match &self.query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        }
    }
}

impl RequestTarget {
    /// Parses and validates a raw origin-form request target
    /// (`/r1/...[?query]`, as in `Uri::path_and_query`).
    pub fn parse(target: &str, limits: &Limits) -> Result<RequestTarget, RequestError> {
        if target.len() > limits.max_target_len {
            return Err(RequestError::TargetTooLong {
                len: target.len(),
                max: limits.max_target_len,
            });
        }
        if !target.starts_with('/') {
            return Err(RequestError::NotOriginForm);
        }
        let (path, query) = match target.find('?') {
            Some(i) => (&target[..i], Some(&target[i + 1..])),
            None => (target, None),
        };
        check_raw_path(path)?;
        if let Some(query) = query {
            check_raw_query(query, path.len() + 1)?;
        }

        let mut segments = path[1..].split('/');
        let version = segments.next().unwrap_or_default();
        if version != PROTOCOL_VERSION {
            return Err(if looks_like_protocol_version(version) {
                RequestError::UnsupportedProtocolVersion {
                    found: version.to_owned(),
                }
            } else {
                RequestError::NotXRoadPath {
                    found: version.to_owned(),
                }
            });
        }
        let segments: Vec<&str> = segments.collect();
        if segments.len() < 5 {
            return Err(RequestError::MissingServiceParts {
                found: segments.len(),
            });
        }
        check_identifier_dot_segments(&segments[..5])?;
        let service = ServiceId::parse_encoded(&segments[..5].join("/"))
            .map_err(RequestError::ServiceIdentifier)?;
        let rest = &segments[5..];
        let rest_decoded = decode_path_segments(rest, 0)?;
        Ok(RequestTarget {
            service,
            rest_raw: rest.iter().map(|s| (*s).to_owned()).collect(),
            rest_decoded,
            query: query.map(str::to_owned),
        })
    }

    /// The spec's reading: the five-part service id, everything after it
    /// the path.
    pub fn versionless(&self) -> ResolvedTarget {
        ResolvedTarget {
            service: self.service.clone(),
            path: self.path_from(0),
            query: self.query.clone(),
        }
    }

    /// Every reading of the target, longest service id first: with the
    /// first path segment as the version (when it is a valid identifier
    /// part), then the spec's versionless reading.
    pub fn candidates(&self) -> Vec<ResolvedTarget> {
        let mut out = Vec::with_capacity(2);
        if let Some(version) = self.rest_decoded.first() {
            if validate_part(Part::Version, version).is_ok() {
                let versioned = self
                    .service
                    .subsystem()
                    .service(self.service.code(), Some(version));
                if let Ok(service) = versioned {
                    out.push(ResolvedTarget {
                        service,
                        path: self.path_from(1),
                        query: self.query.clone(),
                    });
                }
            }
        }
        out.push(self.versionless());
        out
    }

    /// The longest reading whose service `is_known` accepts (the gateway
    /// passes "is this service in the catalogue").
    pub fn resolve(
        &self,
        is_known: impl Fn(&ServiceId) -> bool,
    ) -> Result<ResolvedTarget, RequestError> {
        let candidates = self.candidates();
        let tried: Vec<ServiceId> = candidates.iter().map(|c| c.service.clone()).collect();
        candidates
            .into_iter()
            .find(|c| is_known(&c.service))
            .ok_or(RequestError::UnknownService { tried })
    }

    fn path_from(&self, skip: usize) -> ServicePath {
        let raw_segments = self.rest_raw.get(skip..).unwrap_or_default();
        let mut raw = String::new();
        for segment in raw_segments {
            raw.push('/');
            raw.push_str(segment);
        }
        ServicePath {
            raw,
            decoded: self.rest_decoded.get(skip..).unwrap_or_default().to_vec(),
        }
    }
}

/// `.` and `..` are identifier characters (section 4.8) but dot segments
/// in a URL path: clients and proxies remove them while normalising, so
/// the gateway and a proxy in front of it would read different services.
fn check_identifier_dot_segments(raw: &[&str]) -> Result<(), RequestError> {
    const PARTS: [Part; 5] = [
        Part::Instance,
        Part::MemberClass,
        Part::MemberCode,
        Part::Subsystem,
        Part::Service,
    ];
    for (part, segment) in PARTS.into_iter().zip(raw) {
        let decoded = percent_decode_str(segment).decode_utf8_lossy();
        if decoded == "." || decoded == ".." {
            return Err(RequestError::DotSegmentInIdentifier { part });
        }
    }
    Ok(())
}

/// `r` followed by digits: a protocol version, if not the one we speak.
fn looks_like_protocol_version(segment: &str) -> bool {
    segment.len() >= 2
        && segment.starts_with('r')
        && segment[1..].bytes().all(|b| b.is_ascii_digit())
}

/// RFC 3986 `pchar` without `%` (checked separately): unreserved,
/// sub-delims, `:` and `@`.
fn is_path_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b)
}

fn check_raw_path(path: &str) -> Result<(), RequestError> {
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            check_escape(bytes, i)?;
            i += 3;
            continue;
        }
        if !(b == b'/' || is_path_char(b)) {
            return Err(bad_character(path, i, "path"));
        }
        i += 1;
    }
    Ok(())
}

/// The query is passed on verbatim; only what cannot be in a request target
/// at all (controls, space, non-ASCII, a fragment) is refused.
fn check_raw_query(query: &str, offset: usize) -> Result<(), RequestError> {
    match query
        .bytes()
        .position(|b| b <= b' ' || b == 0x7f || b == b'#' || !b.is_ascii())
    {
        Some(i) => Err(bad_character(query, i, "query").at_offset(offset)),
        None => Ok(()),
    }
}

fn check_escape(bytes: &[u8], at: usize) -> Result<(), RequestError> {
    let hex = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_hexdigit);
    if hex(at + 1) && hex(at + 2) {
        Ok(())
    } else {
        Err(RequestError::BadPercentEncoding { at })
    }
}

fn bad_character(s: &str, at: usize, place: &'static str) -> RequestError {
    let found = s[at..].chars().next().unwrap_or('\u{fffd}');
    RequestError::BadCharacter { found, at, place }
}

impl RequestError {
    fn at_offset(self, offset: usize) -> RequestError {
        match self {
            RequestError::BadCharacter { found, at, place } => RequestError::BadCharacter {
                found,
                at: at + offset,
                place,
            },
            other => other,
        }
    }
}

/// Decodes and checks the segments after the service code. `first_index`
/// is added to the 1-based segment number in errors.
fn decode_path_segments(raw: &[&str], first_index: usize) -> Result<Vec<String>, RequestError> {
    let last = raw.len().saturating_sub(1);
    let mut out = Vec::with_capacity(raw.len());
    for (i, segment) in raw.iter().enumerate() {
        let fail = |problem| RequestError::PathSegment {
            index: first_index + i + 1,
            problem,
        };
        if segment.is_empty() {
            if i == last {
                out.push(String::new());
                continue;
            }
            return Err(fail(SegmentProblem::Empty));
        }
        let decoded: Vec<u8> = percent_decode_str(segment).collect();
        if decoded.contains(&b'/') {
            return Err(fail(SegmentProblem::EncodedSlash));
        }
        if decoded.contains(&b'\\') {
            return Err(fail(SegmentProblem::EncodedBackslash));
        }
        if decoded.iter().any(|b| *b < b' ' || *b == 0x7f) {
            return Err(fail(SegmentProblem::ControlCharacter));
        }
        let decoded = String::from_utf8(decoded).map_err(|_| fail(SegmentProblem::NotUtf8))?;
        if decoded.chars().any(char::is_control) {
            return Err(fail(SegmentProblem::ControlCharacter));
        }
        let without_params = decoded.split(';').next().unwrap_or_default();
        if without_params == "." || without_params == ".." {
            return Err(fail(SegmentProblem::DotSegment));
        }
        out.push(decoded);
    }
    Ok(out)
}

/// Characters percent-encoded in a path segment: everything but RFC 3986
/// unreserved characters and the sub-delimiters `!$&'()*,=:@` (`+` and `;`
/// are encoded: servers read them as a space and a parameter).
const PATH_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'+')
    .add(b'/')
    .add(b';')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Percent-encodes one decoded path segment.
pub fn encode_path_segment(segment: &str) -> String {
    utf8_percent_encode(segment, PATH_SEGMENT).to_string()
}

/// The r1 request target for `service` (version included, if any), a path
/// (`""` or `/...`, raw) and a query: the inverse of
/// [`RequestTarget::parse`] + [`RequestTarget::resolve`].
pub fn format_request_target(
    service: &ServiceId,
    path: &ServicePath,
    query: Option<&str>,
) -> String {
    let mut out = format!("/{PROTOCOL_VERSION}/{}{}", service.to_encoded(), path.raw());
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

// ---------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------

/// A message id (`X-Road-Id`, `X-Road-Request-Id`): 1 to 255 visible ASCII
/// characters. The spec recommends UUIDs; others are accepted and passed on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageId(String);

impl MessageId {
    /// A fresh UUID v4.
    pub fn generate() -> MessageId {
        MessageId(crate::uuid_v4())
    }

    pub fn parse(value: &str) -> Result<MessageId, ValueProblem> {
        check_visible(value, MAX_MESSAGE_ID_LEN, false)?;
        Ok(MessageId(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn header_value(&self) -> Result<HeaderValue, InvalidHeaderValue> {
        HeaderValue::from_str(&self.0)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `X-Road-Represented-Party`: `[CLASS/]CODE`, parts percent-encoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepresentedParty {
    class: Option<String>,
    code: String,
}

impl RepresentedParty {
    pub fn new(class: Option<&str>, code: &str) -> Result<RepresentedParty, IdError> {
        if let Some(class) = class {
            validate_part(Part::MemberClass, class)?;
        }
        validate_part(Part::MemberCode, code)?;
        Ok(RepresentedParty {
            class: class.map(str::to_owned),
            code: code.to_owned(),
        })
    }

    pub fn class(&self) -> Option<&str> {
        self.class.as_deref()
    }

    pub fn code(&self) -> &str {
        &self.code
    }

    pub fn parse_encoded(value: &str) -> Result<RepresentedParty, RequestError> {
        let parts: Vec<&str> = value.split('/').collect();
        let decode = |part, raw: &str| {
            percent_decode_str(raw)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| RequestError::RepresentedParty(IdError::BadEncoding { part }))
        };
        let (class, code) = match parts.as_slice() {
            [code] => (None, decode(Part::MemberCode, code)?),
            [class, code] => (
                Some(decode(Part::MemberClass, class)?),
                decode(Part::MemberCode, code)?,
            ),
            _ => return Err(RequestError::RepresentedPartyShape { found: parts.len() }),
        };
        RepresentedParty::new(class.as_deref(), &code).map_err(RequestError::RepresentedParty)
    }

    pub fn to_encoded(&self) -> String {
        let code = utf8_percent_encode(&self.code, PATH_SEGMENT);
        match &self.class {
            Some(class) => format!("{}/{code}", utf8_percent_encode(class, PATH_SEGMENT)),
            None => code.to_string(),
        }
    }
}

/// The X-Road and Accord headers of a consumer request, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XRoadRequestHeaders {
    pub client: SubsystemId,
    /// `X-Road-Id`, or a fresh UUID if the request had none.
    pub message_id: MessageId,
    /// Whether `message_id` was generated here.
    pub message_id_generated: bool,
    /// `X-Road-Request-Id` as received. The consumer's gateway ignores it
    /// and sets its own; the provider's gateway reads the one the
    /// consumer's gateway set.
    pub request_id: Option<MessageId>,
    pub user_id: Option<String>,
    pub issue: Option<String>,
    pub represented_party: Option<RepresentedParty>,
    /// `X-Accord-Purpose`: a purpose code (3 to 64 lower-case letters,
    /// digits and hyphens).
    pub purpose: Option<String>,
    /// `X-Accord-Subject`: the data subject the request is about.
    pub subject: Option<String>,
}

/// Parses the X-Road and Accord headers of a consumer request.
pub fn parse_request_headers(headers: &HeaderMap) -> Result<XRoadRequestHeaders, RequestError> {
    let client = parse_client(headers)?;
    let (message_id, message_id_generated) = match single(headers, &X_ROAD_ID, "X-Road-Id")? {
        Some(v) => (
            MessageId::parse(v).map_err(|problem| RequestError::HeaderValue {
                name: "X-Road-Id",
                problem,
            })?,
            false,
        ),
        None => (MessageId::generate(), true),
    };
    let request_id = single(headers, &X_ROAD_REQUEST_ID, "X-Road-Request-Id")?
        .map(|v| {
            MessageId::parse(v).map_err(|problem| RequestError::HeaderValue {
                name: "X-Road-Request-Id",
                problem,
            })
        })
        .transpose()?;
    let user_id = free_text(headers, &X_ROAD_USER_ID, "X-Road-UserId", MAX_USER_ID_LEN)?;
    let issue = free_text(headers, &X_ROAD_ISSUE, "X-Road-Issue", MAX_ISSUE_LEN)?;
    let represented_party = single(
        headers,
        &X_ROAD_REPRESENTED_PARTY,
        "X-Road-Represented-Party",
    )?
    .map(RepresentedParty::parse_encoded)
    .transpose()?;
    let purpose = single(headers, &X_ACCORD_PURPOSE, "X-Accord-Purpose")?
        .map(|v| {
            check_purpose(v).map_err(|problem| RequestError::HeaderValue {
                name: "X-Accord-Purpose",
                problem,
            })?;
            Ok(v.to_owned())
        })
        .transpose()?;
    let subject = single(headers, &X_ACCORD_SUBJECT, "X-Accord-Subject")?
        .map(|v| {
            check_visible(v, MAX_SUBJECT_LEN, false).map_err(|problem| {
                RequestError::HeaderValue {
                    name: "X-Accord-Subject",
                    problem,
                }
            })?;
            Ok(v.to_owned())
        })
        .transpose()?;
    Ok(XRoadRequestHeaders {
        client,
        message_id,
        message_id_generated,
        request_id,
        user_id,
        issue,
        represented_party,
        purpose,
        subject,
    })
}

fn parse_client(headers: &HeaderMap) -> Result<SubsystemId, RequestError> {
    // Section 4.3: if the header is repeated, the last one counts.
    let value = headers
        .get_all(&X_ROAD_CLIENT)
        .iter()
        .next_back()
        .ok_or(RequestError::MissingClient)?;
    let value = value.to_str().map_err(|_| RequestError::NotAscii {
        name: "X-Road-Client",
    })?;
    let parts = value.split('/').count();
    match parts {
        4 => SubsystemId::parse_encoded(value).map_err(RequestError::ClientIdentifier),
        3 => {
            let member = MemberId::parse_encoded(value).map_err(RequestError::ClientIdentifier)?;
            Err(RequestError::MemberOnlyClient { member })
        }
        found => Err(RequestError::ClientShape { found }),
    }
}

/// The one value of an optional header, refusing repeats and non-ASCII.
fn single<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
    display: &'static str,
) -> Result<Option<&'h str>, RequestError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(RequestError::DuplicateHeader { name: display });
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| RequestError::NotAscii { name: display })
}

fn free_text(
    headers: &HeaderMap,
    name: &HeaderName,
    display: &'static str,
    max: usize,
) -> Result<Option<String>, RequestError> {
    single(headers, name, display)?
        .map(|v| {
            check_visible(v, max, true).map_err(|problem| RequestError::HeaderValue {
                name: display,
                problem,
            })?;
            Ok(v.to_owned())
        })
        .transpose()
}

/// 1 to `max` visible ASCII characters (and inner spaces if `spaces`).
fn check_visible(value: &str, max: usize, spaces: bool) -> Result<(), ValueProblem> {
    if value.trim().is_empty() {
        return Err(ValueProblem::Empty);
    }
    if value.len() > max {
        return Err(ValueProblem::TooLong { max });
    }
    let ok = |b: u8| b.is_ascii_graphic() || (spaces && b == b' ');
    if value.bytes().all(ok) && value.trim() == value {
        Ok(())
    } else {
        Err(ValueProblem::BadCharacters {
            allowed: if spaces {
                "visible ASCII and inner spaces"
            } else {
                "visible ASCII"
            },
        })
    }
}

/// A purpose code: 3 to 64 lower-case letters, digits and hyphens (the
/// registry's rule for the federation's vocabulary).
fn check_purpose(value: &str) -> Result<(), ValueProblem> {
    if value.is_empty() {
        return Err(ValueProblem::Empty);
    }
    if value.len() > 64 {
        return Err(ValueProblem::TooLong { max: 64 });
    }
    let ok = value.len() >= 3
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ValueProblem::BadCharacters {
            allowed: "3 to 64 lower-case letters, digits and hyphens",
        })
    }
}

// ---------------------------------------------------------------------------
// The whole request
// ---------------------------------------------------------------------------

/// A consumer's r1 request, validated, with its service resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRequest {
    pub method: Method,
    pub service: ServiceId,
    pub path: ServicePath,
    /// Verbatim, without the `?`.
    pub query: Option<String>,
    pub headers: XRoadRequestHeaders,
}

impl ConsumerRequest {
    /// Parses method, target and headers (in that order, so the first
    /// problem reported is the outermost), then picks the service with
    /// `is_known` (see [`RequestTarget::resolve`]).
    pub fn parse(
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        limits: &Limits,
        is_known: impl Fn(&ServiceId) -> bool,
    ) -> Result<ConsumerRequest, RequestError> {
        if !METHODS.contains(method) {
            return Err(RequestError::Method(method.to_string()));
        }
        let target = RequestTarget::parse(target, limits)?;
        let headers = parse_request_headers(headers)?;
        let resolved = target.resolve(is_known)?;
        Ok(ConsumerRequest {
            method: method.clone(),
            service: resolved.service,
            path: resolved.path,
            query: resolved.query,
            headers,
        })
    }

    pub fn client(&self) -> &SubsystemId {
        &self.headers.client
    }

    pub fn message_id(&self) -> &MessageId {
        &self.headers.message_id
    }

    /// The r1 target with the resolved service, as the consumer's gateway
    /// forwards it to the provider's gateway.
    pub fn target(&self) -> String {
        format_request_target(&self.service, &self.path, self.query.as_deref())
    }

    /// The X-Road and Accord headers a gateway sets on the request it
    /// forwards (after [`crate::headers::filter_request_headers`] removed
    /// whatever the caller sent under these names): `X-Road-Client`,
    /// `X-Road-Id`, `X-Road-Request-Id`, and the optional ones the request
    /// carried.
    pub fn forwarded_headers(
        &self,
        request_id: &MessageId,
    ) -> Result<HeaderMap, InvalidHeaderValue> {
        let h = &self.headers;
        let mut out = HeaderMap::new();
        out.insert(
            X_ROAD_CLIENT,
            HeaderValue::from_str(&h.client.to_encoded())?,
        );
        out.insert(X_ROAD_ID, h.message_id.header_value()?);
        out.insert(X_ROAD_REQUEST_ID, request_id.header_value()?);
        if let Some(v) = &h.user_id {
            out.insert(X_ROAD_USER_ID, HeaderValue::from_str(v)?);
        }
        if let Some(v) = &h.issue {
            out.insert(X_ROAD_ISSUE, HeaderValue::from_str(v)?);
        }
        if let Some(v) = &h.represented_party {
            out.insert(
                X_ROAD_REPRESENTED_PARTY,
                HeaderValue::from_str(&v.to_encoded())?,
            );
        }
        if let Some(v) = &h.purpose {
            out.insert(X_ACCORD_PURPOSE, HeaderValue::from_str(v)?);
        }
        if let Some(v) = &h.subject {
            let mut value = HeaderValue::from_str(v)?;
            value.set_sensitive(true);
            out.insert(X_ACCORD_SUBJECT, value);
        }
        Ok(out)
    }
}
