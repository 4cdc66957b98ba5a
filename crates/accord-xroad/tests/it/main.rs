//! Protocol tests of the X-Road Message Protocol for REST (r1) rules, as
//! data-driven tables at the crate's boundary: a raw request target and a
//! header map in, a parsed request or a refusal out; headers in, headers
//! out; an error in, status, headers and body out.

mod error;
mod headers;
mod request;
mod response;
mod round_trip;

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Header `(name, value)` pairs, in order.
pub type Pairs<'a> = Vec<(&'a str, &'a str)>;

/// A header map from `(name, value)` pairs, in order, repeats appended.
pub fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

/// Whether `s` is a lower-case UUID v4 in text form.
pub fn is_uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            14 => *c == b'4',
            19 => b"89ab".contains(c),
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}
