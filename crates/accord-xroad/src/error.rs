//! X-Road's error model: what went wrong, where, and how it looks on the wire.
//!
//! PR-REST section 4.6 sorts failures into four categories. Errors of the
//! provider's information system (category 1) are passed back untouched and
//! never pass through this module. The others are answered by the gateway
//! with a JSON body
//!
//! ```json
//! {"type":"Server.ServerProxy.NetworkError","message":"...","detail":"9bc95b6e-..."}
//! ```
//!
//! a `Content-Type` naming the media type and charset, and an `X-Road-Error`
//! header holding the same `type`: the header is how a client tells an
//! X-Road (here: Accord) failure from a 500 of the provider's own service,
//! and the `type` prefix tells it which component failed:
//!
//! - `Client.*`: the consumer's request does not follow the protocol;
//! - `Server.ClientProxy.*`: the consumer's gateway failed or refused;
//! - `Server.ServerProxy.*`: the provider's gateway failed or refused,
//!   including `Server.ServerProxy.ServiceFailed.*` when it got no usable
//!   answer from the provider's information system.
//!
//! The names reuse X-Road's own error codes (`BadRequest`, `UnknownMember`,
//! `AccessDenied`, `ServiceFailed`, `OutdatedGlobalConf`, ...) wherever one
//! exists, so log searches and client code written against X-Road keep
//! working. Accord adds what X-Road lacks: the deny reason of an agreement
//! decision is appended to `AccessDenied` (`...AccessDenied.purpose-not-covered`),
//! so a client can act on it without parsing the message.
//!
//! Statuses follow the rule of X-Road's own implementation (and of the
//! spec's "small subset of HTTP status codes"): a `type` starting with
//! `Server.` is a 500, anything else a 400. The one exception is a request
//! body over the gateway's size limit, which is a 413 so that HTTP clients
//! and proxies recognise it.
//!
//! The spec says a gateway SHOULD answer in the media type of the client's
//! `Accept` header; Accord always answers JSON (the spec's default), which
//! every X-Road REST client reads.
//!
//! The `detail` is a fresh UUID per error: it is the handle that connects
//! what the client saw with the gateway's log line. An internal error never
//! sends its message to the client (it may hold paths, addresses or library
//! errors): the body carries a fixed sentence and the detail, the log the
//! rest.

use std::borrow::Cow;
use std::fmt;

use accord_domain::agreement::decision::DenyReason;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use http::StatusCode;
use serde::Serialize;

/// The `X-Road-Error` response header.
pub const X_ROAD_ERROR: HeaderName = HeaderName::from_static("x-road-error");

/// `Content-Type` of every error body the gateway writes itself (section
/// 4.3: messages originating from the gateway MUST name type and charset).
pub const ERROR_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// Which gateway an error happened on, in X-Road's terms: the consumer's
/// (`ClientProxy`) or the provider's (`ServerProxy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The gateway the consumer's information system called.
    ConsumerGateway,
    /// The gateway in front of the provider's information system.
    ProviderGateway,
}

impl Origin {
    fn prefix(self) -> &'static str {
        match self {
            Origin::ConsumerGateway => "Server.ClientProxy",
            Origin::ProviderGateway => "Server.ServerProxy",
        }
    }
}

/// What went wrong. Each kind has one X-Road `type` string and one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    // --- Client.*: the request does not follow the protocol (400) ---
    /// The request target is not a valid r1 target (path, characters,
    /// service identifier, length). `Client.BadRequest`.
    BadRequest,
    /// The target names a protocol version other than `r1`.
    /// `Client.InvalidProtocolVersion`.
    InvalidProtocolVersion,
    /// A method the gateway does not forward. `Client.InvalidHttpMethod`.
    InvalidHttpMethod,
    /// `X-Road-Client` is malformed or names a member without a subsystem.
    /// `Client.InvalidClientIdentifier`.
    InvalidClientIdentifier,
    /// A required header is absent. `Client.MissingHeaderField`.
    MissingHeader,
    /// An X-Road or Accord header is malformed or repeated.
    /// `Client.InvalidHeaderField`.
    InvalidHeader,
    /// The message framing is ambiguous (request-smuggling shapes).
    /// `Client.InconsistentHeaders`.
    InconsistentHeaders,
    /// The request body is over the gateway's limit (413).
    /// `Client.RequestTooLarge`.
    RequestTooLarge,

    // --- Server.ClientProxy.*: the consumer's gateway (500) ---
    /// `X-Road-Client` names a subsystem this gateway does not serve.
    /// `Server.ClientProxy.UnknownMember`.
    UnknownClient,
    /// The caller's TLS identity is not one registered for the subsystem in
    /// `X-Road-Client`. `Server.ClientProxy.SslAuthenticationFailed`.
    ClientNotOwned,
    /// The provider's gateway could not be reached.
    /// `Server.ClientProxy.NetworkError`.
    ProviderUnreachable,
    /// The provider gateway's signature over the response does not verify.
    /// `Server.ClientProxy.InvalidSignatureValue`.
    InvalidProviderSignature,
    /// The response does not belong to the request (request hash or ids
    /// differ, or the hash is missing). `Server.ClientProxy.InconsistentResponse`.
    InconsistentResponse,

    // --- Server.ServerProxy.ServiceFailed.*: the provider's backend (500) ---
    /// The provider's information system could not be connected to.
    /// `Server.ServerProxy.ServiceFailed.NetworkError`.
    BackendUnavailable,
    /// The provider's information system did not answer in time.
    /// `Server.ServerProxy.ServiceFailed.Timeout`.
    BackendTimeout,
    /// The provider's information system answered with something that is
    /// not a usable HTTP response. `Server.ServerProxy.ServiceFailed.InvalidResponse`.
    BackendInvalidResponse,

    // --- either gateway (500) ---
    /// The service is not in the catalogue (consumer side) or not served by
    /// this gateway (provider side). `Server.*.UnknownService`.
    UnknownService(Origin),
    /// No agreement in force allows the request; the reason code, when the
    /// decision gave one, is appended. `Server.*.AccessDenied[.reason]`.
    AccessDenied(Origin, Option<DenyReason>),
    /// The signed federation configuration is older than the grace period
    /// allows (the registry has been away too long).
    /// `Server.*.OutdatedGlobalConf`.
    ConfigurationOutdated(Origin),
    /// Anything else. The message is logged, never sent.
    /// `Server.*.InternalError`.
    Internal(Origin),
}

impl ErrorKind {
    /// The X-Road error `type`, as in the body and the `X-Road-Error` header.
    pub fn error_type(&self) -> Cow<'static, str> {
        let fixed = match self {
            ErrorKind::BadRequest => "Client.BadRequest",
            ErrorKind::InvalidProtocolVersion => "Client.InvalidProtocolVersion",
            ErrorKind::InvalidHttpMethod => "Client.InvalidHttpMethod",
            ErrorKind::InvalidClientIdentifier => "Client.InvalidClientIdentifier",
            ErrorKind::MissingHeader => "Client.MissingHeaderField",
            ErrorKind::InvalidHeader => "Client.InvalidHeaderField",
            ErrorKind::InconsistentHeaders => "Client.InconsistentHeaders",
            ErrorKind::RequestTooLarge => "Client.RequestTooLarge",
            ErrorKind::UnknownClient => "Server.ClientProxy.UnknownMember",
            ErrorKind::ClientNotOwned => "Server.ClientProxy.SslAuthenticationFailed",
            ErrorKind::ProviderUnreachable => "Server.ClientProxy.NetworkError",
            ErrorKind::InvalidProviderSignature => "Server.ClientProxy.InvalidSignatureValue",
            ErrorKind::InconsistentResponse => "Server.ClientProxy.InconsistentResponse",
            ErrorKind::BackendUnavailable => "Server.ServerProxy.ServiceFailed.NetworkError",
            ErrorKind::BackendTimeout => "Server.ServerProxy.ServiceFailed.Timeout",
            ErrorKind::BackendInvalidResponse => "Server.ServerProxy.ServiceFailed.InvalidResponse",
            ErrorKind::UnknownService(origin) => {
                return format!("{}.UnknownService", origin.prefix()).into()
            }
            ErrorKind::AccessDenied(origin, reason) => {
                return match reason {
                    Some(reason) => format!("{}.AccessDenied.{}", origin.prefix(), reason.code()),
                    None => format!("{}.AccessDenied", origin.prefix()),
                }
                .into()
            }
            ErrorKind::ConfigurationOutdated(origin) => {
                return format!("{}.OutdatedGlobalConf", origin.prefix()).into()
            }
            ErrorKind::Internal(origin) => {
                return format!("{}.InternalError", origin.prefix()).into()
            }
        };
        Cow::Borrowed(fixed)
    }

    /// The HTTP status: 413 for an over-large body, otherwise 500 for a
    /// `Server.*` type and 400 for a `Client.*` type (X-Road's rule).
    pub fn status(&self) -> StatusCode {
        if *self == ErrorKind::RequestTooLarge {
            StatusCode::PAYLOAD_TOO_LARGE
        } else if self.error_type().starts_with("Server.") {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::BAD_REQUEST
        }
    }

    /// Whether the error is the caller's fault (`Client.*`).
    pub fn is_client_error(&self) -> bool {
        self.error_type().starts_with("Client.")
    }
}

/// An error the gateway answers itself: what kind, and a sentence saying
/// what happened (lower case, no full stop, naming what was expected and
/// what was found).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XRoadError {
    pub kind: ErrorKind,
    pub message: String,
}

impl fmt::Display for XRoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.error_type(), self.message)
    }
}

impl std::error::Error for XRoadError {}

/// What the client is told instead of an internal error's message.
pub const INTERNAL_ERROR_MESSAGE: &str =
    "internal error in the Accord gateway; quote the detail to its operator";

/// A rendered error response, ready for any HTTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    pub status: StatusCode,
    /// `Content-Type` and `X-Road-Error`.
    pub headers: HeaderMap,
    /// The JSON body.
    pub body: Vec<u8>,
}

impl ErrorResponse {
    /// As an `http::Response` (axum converts it with `.map(Body::from)`).
    pub fn into_http(self) -> http::Response<Vec<u8>> {
        let mut response = http::Response::new(self.body);
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    error_type: &'a str,
    message: &'a str,
    detail: &'a str,
}

impl XRoadError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        XRoadError {
            kind,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    pub fn error_type(&self) -> Cow<'static, str> {
        self.kind.error_type()
    }

    /// The message the client may see: the message itself, except for
    /// internal errors, whose message stays in the log.
    pub fn public_message(&self) -> &str {
        match self.kind {
            ErrorKind::Internal(_) => INTERNAL_ERROR_MESSAGE,
            _ => &self.message,
        }
    }

    /// The response with a fresh UUID as `detail`. A gateway that logs the
    /// error generates the UUID itself ([`crate::uuid_v4`]), logs it with
    /// the message and calls [`XRoadError::render_with_detail`].
    pub fn render(&self) -> ErrorResponse {
        self.render_with_detail(&crate::uuid_v4())
    }

    /// The response with the given `detail` (normally a UUID the caller
    /// also writes to its log).
    pub fn render_with_detail(&self, detail: &str) -> ErrorResponse {
        let error_type = self.error_type();
        let body = Body {
            error_type: &error_type,
            message: self.public_message(),
            detail,
        };
        // Serialising a struct of three strings cannot fail; the fallback
        // keeps the function total without a panic path.
        let body = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(ERROR_CONTENT_TYPE));
        // Every type is ASCII letters, digits, '.' and '-'.
        if let Ok(value) = HeaderValue::from_str(&error_type) {
            headers.insert(X_ROAD_ERROR, value);
        }
        ErrorResponse {
            status: self.status(),
            headers,
            body,
        }
    }
}
