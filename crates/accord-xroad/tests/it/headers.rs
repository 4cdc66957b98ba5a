//! PR-REST section 4.3: which headers cross the gateway; and the framing
//! shapes a gateway refuses.

use accord_xroad::{
    check_framing, filter_request_headers, filter_response_headers, BodyFraming, ErrorKind,
    FramingError, XRoadError,
};
use http::StatusCode;

use crate::{header_map, Pairs};

fn pairs(map: &http::HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect()
}

/// `(header, value, forwarded to the provider?, passed back to the consumer?)`
const TABLE: &[(&str, &str, bool, bool)] = &[
    // Section 4.3: MUST pass unmodified.
    ("content-type", "application/json;charset=UTF-8", true, true),
    ("accept", "application/xml", true, true),
    (
        "cache-control",
        "no-cache, no-store, must-revalidate",
        true,
        true,
    ),
    ("pragma", "no-cache", true, true),
    ("x-powered-by", "PHP/5.2.17", true, true),
    ("x-pingback", "https://example.com/xmlrpc.php", true, true),
    ("authorization", "Bearer eyJhbGciOi.x.y", true, true),
    ("accept-encoding", "gzip", true, true),
    ("content-encoding", "gzip", true, true),
    ("location", "https://elsewhere.example/x", true, true),
    ("set-cookie", "a=b", true, true),
    ("date", "Thu, 21 Mar 2019 09:45:19 GMT", true, true),
    ("if-none-match", "\"abc\"", true, true),
    // X-Road extension headers other than the protocol's are contracts
    // between information systems.
    ("x-road-custom", "contract", true, true),
    // Hop-by-hop: never.
    ("connection", "close", false, false),
    ("keep-alive", "timeout=5", false, false),
    ("proxy-authorization", "Basic eDp5", false, false),
    ("proxy-authenticate", "Basic", false, false),
    ("proxy-connection", "keep-alive", false, false),
    ("te", "trailers", false, false),
    ("trailer", "Expires", false, false),
    ("transfer-encoding", "chunked", false, false),
    ("upgrade", "websocket", false, false),
    // Re-framed by the gateway.
    ("content-length", "12", false, false),
    // Leak the origin host.
    ("host", "backend.internal:8080", false, true),
    ("user-agent", "curl/8.0", false, true),
    ("server", "Apache/2.4.1 (internal-host-7)", true, false),
    // Handled at the gateway.
    ("expect", "100-continue", false, true),
    // Set by the gateway on requests.
    ("x-road-client", "DEV/COM/1/FORGED", false, false),
    ("x-road-id", "forged", false, false),
    ("x-road-request-id", "forged", false, false),
    ("x-road-request-hash", "forged", false, false),
    ("x-road-service", "DEV/COM/1/S/forged", false, false),
    ("x-road-error", "Server.ServerProxy.Forged", false, false),
    ("x-road-userid", "EE1", false, true),
    ("x-road-issue", "x", false, true),
    ("x-road-represented-party", "COM/1", false, true),
    ("x-road-security-server", "DEV/COM/1/SS1", false, true),
    // Accord owns its prefix in both directions.
    ("x-accord-purpose", "forged", false, false),
    ("x-accord-subject", "forged", false, false),
    (
        "x-accord-agreement",
        "agreement=forged; version=1; grant=g",
        false,
        false,
    ),
    ("x-accord-anything", "forged", false, false),
];

#[test]
fn headers_cross_the_gateway_by_the_table() {
    let all: Vec<(&str, &str)> = TABLE.iter().map(|(n, v, _, _)| (*n, *v)).collect();
    let input = header_map(&all);
    let expect = |pick: fn(&(&str, &str, bool, bool)) -> bool| -> Vec<(String, String)> {
        TABLE
            .iter()
            .filter(|row| pick(row))
            .map(|(n, v, _, _)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    };
    let mut got = pairs(&filter_request_headers(&input));
    let mut want = expect(|row| row.2);
    got.sort();
    want.sort();
    assert_eq!(got, want, "request direction");
    let mut got = pairs(&filter_response_headers(&input));
    let mut want = expect(|row| row.3);
    got.sort();
    want.sort();
    assert_eq!(got, want, "response direction");
}

#[test]
fn headers_named_by_connection_are_hop_by_hop() {
    let input = header_map(&[
        ("connection", "keep-alive, X-Hop-Secret"),
        ("connection", "x-other"),
        ("x-hop-secret", "1"),
        ("x-other", "2"),
        ("x-kept", "3"),
    ]);
    for filtered in [
        filter_request_headers(&input),
        filter_response_headers(&input),
    ] {
        assert_eq!(pairs(&filtered), [("x-kept".to_owned(), "3".to_owned())]);
    }
}

#[test]
fn values_and_repeats_pass_byte_for_byte() {
    let input = header_map(&[
        ("content-type", "multipart/form-data; boundary=something"),
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
        ("accept", "application/json"),
        ("accept", "text/plain;q=0.5"),
    ]);
    let out = filter_response_headers(&input);
    assert_eq!(
        out["content-type"],
        "multipart/form-data; boundary=something"
    );
    let cookies: Vec<_> = out.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    let out = filter_request_headers(&input);
    let accepts: Vec<_> = out.get_all("accept").iter().collect();
    assert_eq!(accepts, ["application/json", "text/plain;q=0.5"]);
}

#[test]
fn framing_is_unambiguous_or_refused() {
    use BodyFraming as B;
    use FramingError as F;
    let cases: Vec<(Pairs, Result<BodyFraming, FramingError>)> = vec![
        (vec![], Ok(B::Unframed)),
        (vec![("content-length", "0")], Ok(B::Length(0))),
        (vec![("content-length", "1234")], Ok(B::Length(1234))),
        (vec![("content-length", " 12 ")], Ok(B::Length(12))),
        (
            vec![("content-length", "12"), ("content-length", "12")],
            Ok(B::Length(12)),
        ),
        (vec![("content-length", "12, 12")], Ok(B::Length(12))),
        (
            vec![("content-length", "18446744073709551615")],
            Ok(B::Length(u64::MAX)),
        ),
        (vec![("transfer-encoding", "chunked")], Ok(B::Chunked)),
        (vec![("transfer-encoding", "Chunked")], Ok(B::Chunked)),
        // Both: the classic CL.TE / TE.CL smuggling shape.
        (
            vec![("content-length", "4"), ("transfer-encoding", "chunked")],
            Err(F::LengthAndTransferEncoding),
        ),
        (
            vec![("transfer-encoding", "chunked"), ("content-length", "0")],
            Err(F::LengthAndTransferEncoding),
        ),
        // Differing lengths.
        (
            vec![("content-length", "12"), ("content-length", "13")],
            Err(F::ConflictingLengths {
                first: 12,
                second: 13,
            }),
        ),
        (
            vec![("content-length", "12, 0")],
            Err(F::ConflictingLengths {
                first: 12,
                second: 0,
            }),
        ),
        // Lengths that are not plain decimal numbers.
        (vec![("content-length", "+12")], Err(F::InvalidLength)),
        (vec![("content-length", "-1")], Err(F::InvalidLength)),
        (vec![("content-length", "0x10")], Err(F::InvalidLength)),
        (vec![("content-length", "1e3")], Err(F::InvalidLength)),
        (vec![("content-length", "")], Err(F::InvalidLength)),
        (vec![("content-length", "12,")], Err(F::InvalidLength)),
        (vec![("content-length", "1 2")], Err(F::InvalidLength)),
        (
            vec![("content-length", "18446744073709551616")],
            Err(F::InvalidLength),
        ),
        // Transfer codings other than one "chunked".
        (
            vec![("transfer-encoding", "gzip, chunked")],
            Err(F::UnsupportedTransferEncoding {
                found: "gzip, chunked".into(),
            }),
        ),
        (
            vec![("transfer-encoding", "chunked, chunked")],
            Err(F::UnsupportedTransferEncoding {
                found: "chunked, chunked".into(),
            }),
        ),
        (
            vec![
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            Err(F::UnsupportedTransferEncoding {
                found: "chunked, chunked".into(),
            }),
        ),
        (
            vec![("transfer-encoding", "identity")],
            Err(F::UnsupportedTransferEncoding {
                found: "identity".into(),
            }),
        ),
        (
            vec![("transfer-encoding", "xchunked")],
            Err(F::UnsupportedTransferEncoding {
                found: "xchunked".into(),
            }),
        ),
        (
            vec![("transfer-encoding", "chunked;q=1")],
            Err(F::UnsupportedTransferEncoding {
                found: "chunked;q=1".into(),
            }),
        ),
    ];
    for (headers, expected) in cases {
        assert_eq!(
            check_framing(&header_map(&headers)),
            expected,
            "{headers:?}"
        );
    }
}

#[test]
fn a_smuggling_shape_is_a_client_error() {
    let err = XRoadError::from(FramingError::LengthAndTransferEncoding);
    assert_eq!(err.kind, ErrorKind::InconsistentHeaders);
    assert_eq!(err.error_type(), "Client.InconsistentHeaders");
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        err.message,
        "both Content-Length and Transfer-Encoding are present"
    );
}
