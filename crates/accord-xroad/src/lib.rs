//! The X-Road Message Protocol for REST, version `r1`, as Accord's gateways
//! speak it towards the agencies' information systems.
//!
//! An agency that already calls X-Road REST services must be able to point
//! its client at an Accord gateway and change nothing else. So the rules of
//! the protocol (how a request target names a service, which headers carry
//! the client and message ids, which headers a gateway may not pass on, how
//! the request hash binds a response to its request, what an error looks
//! like on the wire) live here, once, as pure functions over `http` types:
//! no sockets, no clock, no configuration lookups. The gateway supplies what
//! only it knows (is this service in the catalogue?) as arguments, so every
//! rule can be tested as a table of inputs and outputs.
//!
//! - [`request`]: the consumer's request target and X-Road headers, parsed
//!   and strictly validated into a [`ConsumerRequest`].
//! - [`headers`]: which headers cross the gateway in each direction, and the
//!   message-framing shapes used for request smuggling.
//! - [`response`]: the X-Road headers a response carries, the request hash,
//!   and Accord's `X-Accord-Agreement` header.
//! - [`error`]: X-Road's error model: type strings, HTTP statuses and the
//!   JSON error body with its `X-Road-Error` header.
//!
//! The protocol text is the NIIS "X-Road: Message Protocol for REST"
//! (PR-REST 1.0.x); section numbers in the docs refer to it.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod error;
pub mod headers;
pub mod request;
pub mod response;

pub use error::{ErrorKind, ErrorResponse, Origin, XRoadError};
pub use headers::{
    check_framing, filter_request_headers, filter_response_headers, BodyFraming, FramingError,
};
pub use request::{
    encode_path_segment, format_request_target, parse_request_headers, ConsumerRequest, Limits,
    MessageId, RepresentedParty, RequestError, RequestTarget, ResolvedTarget, ServicePath,
    XRoadRequestHeaders,
};
pub use response::{AgreementRef, BodyDigest, RequestHash, ResponseHeaders};

/// A fresh random identifier in the UUID version 4 text form
/// (`xxxxxxxx-xxxx-4xxx-Nxxx-xxxxxxxxxxxx`, lower-case, `N` one of `89ab`).
///
/// Used for generated `X-Road-Id`s, `X-Road-Request-Id`s and the `detail`
/// of error bodies. The bytes come from the thread-local CSPRNG, so the ids
/// are unguessable as well as unique.
pub fn uuid_v4() -> String {
    uuid_v4_from_bytes(rand::random())
}

/// The UUID version 4 text form of `bytes`, after setting the version and
/// variant bits (RFC 9562 section 5.4).
pub fn uuid_v4_from_bytes(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut out = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";
