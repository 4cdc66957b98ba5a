//! PR-REST sections 4.1 (request format), 4.2 (URI sanitation), 4.3
//! (headers) and 4.8 (identifier characters), as Accord applies them.

use std::collections::HashSet;

use accord_domain::id::{IdError, Part, ServiceId};
use accord_xroad::request::{SegmentProblem, ValueProblem};
use accord_xroad::{
    uuid_v4_from_bytes, ConsumerRequest, ErrorKind, Limits, MessageId, Origin, RequestError,
    RequestTarget, XRoadError,
};
use http::header::HeaderValue;
use http::{HeaderMap, Method, StatusCode};

use crate::{header_map, is_uuid_v4, Pairs};

const CLIENT: (&str, &str) = ("x-road-client", "INSTANCE/CLASS1/MEMBER1/SUBSYSTEM1");

fn id(s: &str) -> ServiceId {
    s.parse().unwrap()
}

/// A catalogue of known services.
fn catalogue(known: &[&str]) -> impl Fn(&ServiceId) -> bool {
    let known: HashSet<ServiceId> = known.iter().map(|s| id(s)).collect();
    move |s| known.contains(s)
}

fn parse(target: &str, known: &[&str]) -> Result<ConsumerRequest, RequestError> {
    ConsumerRequest::parse(
        &Method::GET,
        target,
        &header_map(&[CLIENT]),
        &Limits::default(),
        catalogue(known),
    )
}

#[test]
fn valid_targets_resolve_to_a_service_path_and_query() {
    /// (target, services in the catalogue, service, raw path, decoded path, query)
    type Valid<'a> = (
        &'a str,
        &'a [&'a str],
        &'a str,
        &'a str,
        &'a str,
        Option<&'a str>,
    );
    let cases: &[Valid] = &[
        // The spec's own example: the service id has five parts, the rest is the path.
        (
            "/r1/INSTANCE/CLASS2/MEMBER2/SUBSYSTEM2/BARSERVICE/v1/bar/zyggy?quu=1",
            &["INSTANCE/CLASS2/MEMBER2/SUBSYSTEM2/BARSERVICE"],
            "INSTANCE/CLASS2/MEMBER2/SUBSYSTEM2/BARSERVICE",
            "/v1/bar/zyggy",
            "/v1/bar/zyggy",
            Some("quu=1"),
        ),
        // The same target when the catalogue has the versioned service.
        (
            "/r1/INSTANCE/CLASS2/MEMBER2/SUBSYSTEM2/BARSERVICE/v1/bar/zyggy?quu=1",
            &["INSTANCE/CLASS2/MEMBER2/SUBSYSTEM2/BARSERVICE/v1"],
            "INSTANCE/CLASS2/MEMBER2/SUBSYSTEM2/BARSERVICE/v1",
            "/bar/zyggy",
            "/bar/zyggy",
            Some("quu=1"),
        ),
        // Both known: the longest id wins.
        (
            "/r1/I/C/M/S/svc/v1/x",
            &["I/C/M/S/svc", "I/C/M/S/svc/v1"],
            "I/C/M/S/svc/v1",
            "/x",
            "/x",
            None,
        ),
        // Versioned service, no path.
        (
            "/r1/I/C/M/S/svc/v1",
            &["I/C/M/S/svc/v1"],
            "I/C/M/S/svc/v1",
            "",
            "/",
            None,
        ),
        // No path at all.
        (
            "/r1/I/C/M/S/svc",
            &["I/C/M/S/svc"],
            "I/C/M/S/svc",
            "",
            "/",
            None,
        ),
        // Trailing slash only.
        (
            "/r1/I/C/M/S/svc/",
            &["I/C/M/S/svc"],
            "I/C/M/S/svc",
            "/",
            "/",
            None,
        ),
        (
            "/r1/I/C/M/S/svc/a/b/",
            &["I/C/M/S/svc"],
            "I/C/M/S/svc",
            "/a/b/",
            "/a/b/",
            None,
        ),
        // %3F in a part is the identifier character '?'; %2B is '+'.
        (
            "/r1/I/C/M/S/what%3F/x",
            &["I/C/M/S/what?"],
            "I/C/M/S/what?",
            "/x",
            "/x",
            None,
        ),
        (
            "/r1/I/C/M/S/a%2Bb",
            &["I/C/M/S/a+b"],
            "I/C/M/S/a+b",
            "",
            "/",
            None,
        ),
        // Identifier characters '()+,-.=' may also come unencoded.
        (
            "/r1/I/C/M/S/f(x)+1,2-3.4=5",
            &["I/C/M/S/f(x)+1,2-3.4=5"],
            "I/C/M/S/f(x)+1,2-3.4=5",
            "",
            "/",
            None,
        ),
        // Encoded path characters stay raw for the backend, decoded for decisions.
        (
            "/r1/I/C/M/S/svc/p%C3%A4ev/a%20b/%3B",
            &["I/C/M/S/svc"],
            "I/C/M/S/svc",
            "/p%C3%A4ev/a%20b/%3B",
            "/päev/a b/;",
            None,
        ),
        // Dots inside a segment are fine.
        (
            "/r1/I/C/M/S/svc/a..b/.well-known/...",
            &["I/C/M/S/svc"],
            "I/C/M/S/svc",
            "/a..b/.well-known/...",
            "/a..b/.well-known/...",
            None,
        ),
        // The query is passed verbatim: repeats, encoded slashes, dots.
        (
            "/r1/I/C/M/S/svc/x?a=1&a=2&b=%2F..%2F&c=%zz",
            &["I/C/M/S/svc"],
            "I/C/M/S/svc",
            "/x",
            "/x",
            Some("a=1&a=2&b=%2F..%2F&c=%zz"),
        ),
        // An empty query is still a query.
        (
            "/r1/I/C/M/S/svc?",
            &["I/C/M/S/svc"],
            "I/C/M/S/svc",
            "",
            "/",
            Some(""),
        ),
        // A query may contain '?' and '/'.
        (
            "/r1/I/C/M/S/svc?next=/a?b",
            &["I/C/M/S/svc"],
            "I/C/M/S/svc",
            "",
            "/",
            Some("next=/a?b"),
        ),
    ];
    for (target, known, service, raw, decoded, query) in cases {
        let req = parse(target, known).unwrap_or_else(|e| panic!("{target}: {e}"));
        assert_eq!(req.service, id(service), "{target}");
        assert_eq!(req.path.raw(), *raw, "{target}");
        assert_eq!(req.path.decoded(), *decoded, "{target}");
        assert_eq!(req.query.as_deref(), *query, "{target}");
        assert_eq!(req.method, Method::GET);
        // Re-formatting gives the same request back (in the canonical wire
        // form, where a raw '+' in an identifier is written %2B).
        let again = parse(&req.target(), known).unwrap();
        assert_eq!(
            (again.service, again.path, again.query),
            (req.service.clone(), req.path.clone(), req.query.clone())
        );
        if !target.contains('+') {
            assert_eq!(req.target(), *target, "{target}");
        }
    }
}

#[test]
fn candidates_list_the_versioned_reading_first() {
    let target = RequestTarget::parse("/r1/I/C/M/S/svc/v1/a?q", &Limits::default()).unwrap();
    let readings: Vec<(String, String)> = target
        .candidates()
        .into_iter()
        .map(|c| (c.service.to_string(), c.path.raw().to_owned()))
        .collect();
    assert_eq!(
        readings,
        [
            ("I/C/M/S/svc/v1".to_owned(), "/a".to_owned()),
            ("I/C/M/S/svc".to_owned(), "/v1/a".to_owned()),
        ]
    );
    assert_eq!(target.versionless().backend_path_and_query(), "/v1/a?q");

    // A first segment that cannot be a version gives only the spec's reading.
    let target = RequestTarget::parse("/r1/I/C/M/S/svc/a%20b", &Limits::default()).unwrap();
    assert_eq!(target.candidates().len(), 1);
    let target = RequestTarget::parse("/r1/I/C/M/S/svc", &Limits::default()).unwrap();
    assert_eq!(target.candidates().len(), 1);
    assert_eq!(target.versionless().backend_path_and_query(), "/");
}

#[test]
fn an_unknown_service_names_every_reading_tried() {
    let err = parse("/r1/I/C/M/S/svc/v1/a", &["I/C/M/S/other"]).unwrap_err();
    assert_eq!(
        err,
        RequestError::UnknownService {
            tried: vec![id("I/C/M/S/svc/v1"), id("I/C/M/S/svc")]
        }
    );
    assert_eq!(
        err.to_string(),
        "no service I/C/M/S/svc/v1 or I/C/M/S/svc is known to this gateway"
    );
    let err = XRoadError::from(err);
    assert_eq!(err.kind, ErrorKind::UnknownService(Origin::ConsumerGateway));
    assert_eq!(err.error_type(), "Server.ClientProxy.UnknownService");
}

#[test]
fn malformed_targets_are_refused_with_the_reason() {
    use RequestError as E;
    use SegmentProblem as S;
    let seg = |index, problem| E::PathSegment { index, problem };
    let bad = |found, at, place| E::BadCharacter { found, at, place };
    let cases: Vec<(&str, RequestError)> = vec![
        // Protocol version.
        (
            "/r2/I/C/M/S/svc",
            E::UnsupportedProtocolVersion { found: "r2".into() },
        ),
        (
            "/r10/I/C/M/S/svc",
            E::UnsupportedProtocolVersion {
                found: "r10".into(),
            },
        ),
        ("/R1/I/C/M/S/svc", E::NotXRoadPath { found: "R1".into() }),
        ("/v1/I/C/M/S/svc", E::NotXRoadPath { found: "v1".into() }),
        (
            "/rest/r1/I/C/M/S/svc",
            E::NotXRoadPath {
                found: "rest".into(),
            },
        ),
        ("/", E::NotXRoadPath { found: "".into() }),
        // Not a path.
        ("r1/I/C/M/S/svc", E::NotOriginForm),
        ("http://gw.example/r1/I/C/M/S/svc", E::NotOriginForm),
        ("*", E::NotOriginForm),
        ("", E::NotOriginForm),
        // Missing parts.
        ("/r1", E::MissingServiceParts { found: 0 }),
        ("/r1/I/C/M/S", E::MissingServiceParts { found: 4 }),
        ("/r1/I/C/M/S?x=/svc", E::MissingServiceParts { found: 4 }),
        // Section 4.2's "invalid" example: separators must not be encoded.
        (
            "/r1/INSTANCE%2FCLASS%2FMEMBER%2FSUBSYSTEM%2FBARSERVICE",
            E::MissingServiceParts { found: 1 },
        ),
        // Empty parts.
        (
            "/r1/I//M/S/svc",
            E::ServiceIdentifier(IdError::Empty {
                part: Part::MemberClass,
            }),
        ),
        (
            "/r1/I/C/M/S/",
            E::ServiceIdentifier(IdError::Empty {
                part: Part::Service,
            }),
        ),
        (
            "/r1//C/M/S/svc",
            E::ServiceIdentifier(IdError::Empty {
                part: Part::Instance,
            }),
        ),
        // Characters outside section 4.8, encoded or not.
        (
            "/r1/INSTANCE/CLASS/MEMBER/SUBSYSTEM/BAR%2FSERVICE",
            E::ServiceIdentifier(IdError::BadCharacter {
                part: Part::Service,
                ch: '/',
            }),
        ),
        (
            "/r1/I/C/M/S%00/svc",
            E::ServiceIdentifier(IdError::BadCharacter {
                part: Part::Subsystem,
                ch: '\0',
            }),
        ),
        (
            "/r1/I/C/M%20X/S/svc",
            E::ServiceIdentifier(IdError::BadCharacter {
                part: Part::MemberCode,
                ch: ' ',
            }),
        ),
        (
            "/r1/I/C/M/S/s_v_c",
            E::ServiceIdentifier(IdError::BadCharacter {
                part: Part::Service,
                ch: '_',
            }),
        ),
        (
            "/r1/I/C/M/S/%FF",
            E::ServiceIdentifier(IdError::BadEncoding {
                part: Part::Service,
            }),
        ),
        // Dot segments as identifier parts (valid X-Road characters, but
        // removed by URL normalisation).
        (
            "/r1/I/C/../S/svc",
            E::DotSegmentInIdentifier {
                part: Part::MemberCode,
            },
        ),
        (
            "/r1/./C/M/S/svc",
            E::DotSegmentInIdentifier {
                part: Part::Instance,
            },
        ),
        (
            "/r1/I/C/M/S/%2e%2E",
            E::DotSegmentInIdentifier {
                part: Part::Service,
            },
        ),
        (
            "/r1/I/C/M/%2E/svc/x",
            E::DotSegmentInIdentifier {
                part: Part::Subsystem,
            },
        ),
        // Traversal, raw or encoded, with or without a ;parameter.
        ("/r1/I/C/M/S/svc/..", seg(1, S::DotSegment)),
        ("/r1/I/C/M/S/svc/.", seg(1, S::DotSegment)),
        ("/r1/I/C/M/S/svc/a/../../admin", seg(2, S::DotSegment)),
        ("/r1/I/C/M/S/svc/a/%2e%2E/b", seg(2, S::DotSegment)),
        ("/r1/I/C/M/S/svc/%2e", seg(1, S::DotSegment)),
        (
            "/r1/I/C/M/S/svc/..;jsessionid=x/admin",
            seg(1, S::DotSegment),
        ),
        ("/r1/I/C/M/S/svc/v1/..%3B/admin", seg(2, S::DotSegment)),
        // Encoded separators in the path.
        ("/r1/I/C/M/S/svc/a%2Fb", seg(1, S::EncodedSlash)),
        (
            "/r1/I/C/M/S/svc/x/%2F%2Fevil.example",
            seg(2, S::EncodedSlash),
        ),
        ("/r1/I/C/M/S/svc/a%5cb", seg(1, S::EncodedBackslash)),
        // Empty segments before the end.
        ("/r1/I/C/M/S/svc//evil.example/x", seg(1, S::Empty)),
        ("/r1/I/C/M/S/svc/a//b", seg(2, S::Empty)),
        // Control characters, NUL, CRLF, C1 controls, bad UTF-8.
        ("/r1/I/C/M/S/svc/a%00b", seg(1, S::ControlCharacter)),
        (
            "/r1/I/C/M/S/svc/a%0D%0ASet-Cookie:x",
            seg(1, S::ControlCharacter),
        ),
        ("/r1/I/C/M/S/svc/a%7F", seg(1, S::ControlCharacter)),
        ("/r1/I/C/M/S/svc/a%C2%85", seg(1, S::ControlCharacter)),
        ("/r1/I/C/M/S/svc/%FF", seg(1, S::NotUtf8)),
        ("/r1/I/C/M/S/svc/%C3", seg(1, S::NotUtf8)),
        // Raw characters a path cannot hold.
        ("/r1/I/C/M/S/svc/a\\b", bad('\\', 17, "path")),
        ("/r1/I\\x/C/M/S/svc", bad('\\', 5, "path")),
        ("/r1/I/C/M/S/svc/a b", bad(' ', 17, "path")),
        ("/r1/I/C/M/S/svc/a\0b", bad('\0', 17, "path")),
        ("/r1/I/C/M/S/svc/a\tb", bad('\t', 17, "path")),
        ("/r1/I/C/M/S/svc/ä", bad('ä', 16, "path")),
        ("/r1/I/C/M/S/svc/a\"b", bad('"', 17, "path")),
        ("/r1/I/C/M/S/svc/{x}", bad('{', 16, "path")),
        ("/r1/I/C/M/S/svc/x#frag", bad('#', 17, "path")),
        // Bad escapes.
        ("/r1/I/C/M/S/svc/a%zz", E::BadPercentEncoding { at: 17 }),
        ("/r1/I/C/M/S/svc/a%2", E::BadPercentEncoding { at: 17 }),
        ("/r1/I/C/M/S/svc/a%", E::BadPercentEncoding { at: 17 }),
        // The query: only what a request target cannot hold.
        ("/r1/I/C/M/S/svc?a=b#frag", bad('#', 19, "query")),
        ("/r1/I/C/M/S/svc?a b", bad(' ', 17, "query")),
        ("/r1/I/C/M/S/svc?a=\r\nX: y", bad('\r', 18, "query")),
        ("/r1/I/C/M/S/svc?a=\0", bad('\0', 18, "query")),
        ("/r1/I/C/M/S/svc?ä", bad('ä', 16, "query")),
    ];
    for (target, expected) in cases {
        let err = parse(target, &["I/C/M/S/svc"]).unwrap_err();
        assert_eq!(err, expected, "{target:?}");
        let kind = XRoadError::from(err).kind;
        let expected_kind = match expected {
            E::UnsupportedProtocolVersion { .. } => ErrorKind::InvalidProtocolVersion,
            _ => ErrorKind::BadRequest,
        };
        assert_eq!(kind, expected_kind, "{target:?}");
        assert_eq!(kind.status(), StatusCode::BAD_REQUEST, "{target:?}");
    }
}

#[test]
fn refusals_read_as_sentences() {
    let cases = [
        (
            "/r2/I/C/M/S/svc",
            "protocol version \"r2\" is not supported, this gateway speaks r1",
        ),
        (
            "/r1/I/C/M/S",
            "service identifier must be /r1/INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE, found 4 part(s)",
        ),
        (
            "/r1/I/C/M/S/BAR%2FSERVICE",
            "invalid service identifier: service code contains '/', only letters, digits and '()+,-.=? are allowed",
        ),
        (
            "/r1/I/C/M/S/svc/a/%2e%2e/b",
            "path segment 2 after the service identifier is a dot segment ('.' or '..')",
        ),
        (
            "/r1/I/C/M/S/svc/a\\b",
            "request target contains '\\\\' at byte 17, which is not allowed in a URI path",
        ),
    ];
    for (target, message) in cases {
        assert_eq!(
            parse(target, &["I/C/M/S/svc"]).unwrap_err().to_string(),
            message
        );
    }
}

#[test]
fn the_target_length_limit_is_configurable_and_defaults_to_2000() {
    let prefix = "/r1/I/C/M/S/svc/";
    let at_limit = format!("{prefix}{}", "a".repeat(2000 - prefix.len()));
    assert_eq!(at_limit.len(), 2000);
    assert!(parse(&at_limit, &["I/C/M/S/svc"]).is_ok());
    let over = format!("{at_limit}a");
    assert_eq!(
        parse(&over, &["I/C/M/S/svc"]).unwrap_err(),
        RequestError::TargetTooLong {
            len: 2001,
            max: 2000
        }
    );
    // The query counts too.
    let over = format!("{prefix}x?{}", "q".repeat(2000));
    assert!(matches!(
        parse(&over, &["I/C/M/S/svc"]).unwrap_err(),
        RequestError::TargetTooLong { .. }
    ));
    let small = Limits { max_target_len: 20 };
    let headers = header_map(&[CLIENT]);
    let err = ConsumerRequest::parse(
        &Method::GET,
        "/r1/I/C/M/S/svc/abcde",
        &headers,
        &small,
        catalogue(&["I/C/M/S/svc"]),
    )
    .unwrap_err();
    assert_eq!(err, RequestError::TargetTooLong { len: 21, max: 20 });
    assert_eq!(XRoadError::from(err).kind, ErrorKind::BadRequest);
}

#[test]
fn only_service_call_methods_are_forwarded() {
    let headers = header_map(&[CLIENT]);
    let known = catalogue(&["I/C/M/S/svc"]);
    for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let req = ConsumerRequest::parse(
            &method,
            "/r1/I/C/M/S/svc",
            &headers,
            &Limits::default(),
            &known,
        );
        assert!(req.is_ok(), "{method}");
    }
    for method in ["TRACE", "CONNECT", "PURGE", "get"] {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let err =
            ConsumerRequest::parse(&m, "/r1/I/C/M/S/svc", &headers, &Limits::default(), &known)
                .unwrap_err();
        assert_eq!(err, RequestError::Method(method.to_owned()));
        assert_eq!(
            XRoadError::from(err).error_type(),
            "Client.InvalidHttpMethod"
        );
    }
}

fn parse_headers(pairs: &[(&str, &str)]) -> Result<ConsumerRequest, RequestError> {
    parse_header_map(&header_map(pairs))
}

fn parse_header_map(headers: &HeaderMap) -> Result<ConsumerRequest, RequestError> {
    ConsumerRequest::parse(
        &Method::POST,
        "/r1/I/C/M/S/svc",
        headers,
        &Limits::default(),
        catalogue(&["I/C/M/S/svc"]),
    )
}

#[test]
fn the_client_header_names_a_subsystem() {
    use RequestError as E;
    // Valid: plain, encoded parts, header name in any case (HeaderMap folds it).
    let req = parse_headers(&[("X-Road-Client", "DEV/COM/222/TESTCLIENT")]).unwrap();
    assert_eq!(req.client().to_string(), "DEV/COM/222/TESTCLIENT");
    let req = parse_headers(&[("x-road-client", "DEV/COM/222/what%3F%2B")]).unwrap();
    assert_eq!(req.client().code(), "what?+");
    // Section 4.3: if repeated, the last one counts.
    let req = parse_headers(&[
        ("x-road-client", "DEV/COM/111/FIRST"),
        ("x-road-client", "DEV/COM/222/LAST"),
    ])
    .unwrap();
    assert_eq!(req.client().to_string(), "DEV/COM/222/LAST");

    let cases: Vec<(Pairs, RequestError, ErrorKind)> = vec![
        (vec![], E::MissingClient, ErrorKind::MissingHeader),
        (
            vec![("x-road-id", "abc")],
            E::MissingClient,
            ErrorKind::MissingHeader,
        ),
        (
            vec![("x-road-client", "DEV/COM/222")],
            E::MemberOnlyClient {
                member: "DEV/COM/222".parse().unwrap(),
            },
            ErrorKind::InvalidClientIdentifier,
        ),
        (
            vec![("x-road-client", "DEV/COM")],
            E::ClientShape { found: 2 },
            ErrorKind::InvalidClientIdentifier,
        ),
        (
            vec![("x-road-client", "DEV/COM/222/SUB/extra")],
            E::ClientShape { found: 5 },
            ErrorKind::InvalidClientIdentifier,
        ),
        (
            vec![("x-road-client", "")],
            E::ClientShape { found: 1 },
            ErrorKind::InvalidClientIdentifier,
        ),
        (
            vec![("x-road-client", "DEV/COM//SUB")],
            E::ClientIdentifier(IdError::Empty {
                part: Part::MemberCode,
            }),
            ErrorKind::InvalidClientIdentifier,
        ),
        (
            vec![("x-road-client", "DEV/COM/222/SUB%2FX")],
            E::ClientIdentifier(IdError::BadCharacter {
                part: Part::Subsystem,
                ch: '/',
            }),
            ErrorKind::InvalidClientIdentifier,
        ),
        (
            vec![("x-road-client", "DEV/COM/222/SUB X")],
            E::ClientIdentifier(IdError::BadCharacter {
                part: Part::Subsystem,
                ch: ' ',
            }),
            ErrorKind::InvalidClientIdentifier,
        ),
    ];
    for (pairs, expected, kind) in cases {
        let err = parse_headers(&pairs).unwrap_err();
        assert_eq!(err, expected, "{pairs:?}");
        assert_eq!(XRoadError::from(err).kind, kind, "{pairs:?}");
    }
}

#[test]
fn a_member_only_client_is_refused_with_a_clear_message() {
    let err = parse_headers(&[("x-road-client", "DEV/COM/222")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "X-Road-Client names the member DEV/COM/222 without a subsystem; Accord clients are subsystems: send INSTANCE/CLASS/MEMBER/SUBSYSTEM"
    );
    let err = XRoadError::from(err);
    assert_eq!(err.error_type(), "Client.InvalidClientIdentifier");
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    // An encoded slash inside the code does not turn a member into a subsystem.
    let err = parse_headers(&[("x-road-client", "DEV/COM/222%2FSUB")]).unwrap_err();
    assert_eq!(
        err,
        RequestError::ClientIdentifier(IdError::BadCharacter {
            part: Part::MemberCode,
            ch: '/'
        })
    );
}

#[test]
fn a_missing_message_id_is_generated_as_a_uuid_v4() {
    let a = parse_headers(&[CLIENT]).unwrap();
    assert!(a.headers.message_id_generated);
    assert!(is_uuid_v4(a.message_id().as_str()), "{}", a.message_id());
    let ids: HashSet<String> = (0..1000)
        .map(|_| MessageId::generate().as_str().to_owned())
        .collect();
    assert_eq!(ids.len(), 1000);
    assert!(ids.iter().all(|id| is_uuid_v4(id)));
    // The version and variant bits are forced whatever the random bytes.
    assert_eq!(
        uuid_v4_from_bytes([0; 16]),
        "00000000-0000-4000-8000-000000000000"
    );
    assert_eq!(
        uuid_v4_from_bytes([0xff; 16]),
        "ffffffff-ffff-4fff-bfff-ffffffffffff"
    );
    assert_eq!(
        uuid_v4_from_bytes([
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc,
            0xde, 0xf0
        ]),
        "12345678-9abc-4ef0-9234-56789abcdef0"
    );

    // A given X-Road-Id is kept, UUID or not.
    let b = parse_headers(&[
        CLIENT,
        ("x-road-id", "fa2e18a5-c2cb-4d09-b994-f57727f7c3fb"),
    ])
    .unwrap();
    assert!(!b.headers.message_id_generated);
    assert_eq!(
        b.message_id().as_str(),
        "fa2e18a5-c2cb-4d09-b994-f57727f7c3fb"
    );
    let c = parse_headers(&[CLIENT, ("x-road-id", "legacy:4711")]).unwrap();
    assert_eq!(c.message_id().as_str(), "legacy:4711");
}

#[test]
fn optional_headers_are_validated_and_passed_on() {
    let req = parse_headers(&[
        CLIENT,
        ("x-road-userid", "EE12345678901"),
        ("x-road-issue", "MT324223MSD case 7"),
        ("x-road-represented-party", "COM/12345"),
        ("x-accord-purpose", "social-benefit-eligibility"),
        ("x-accord-subject", "EE38001010000"),
        ("x-road-request-id", "f92591a3-6bf0-49b1-987b-0dd78c034cc3"),
    ])
    .unwrap();
    let h = &req.headers;
    assert_eq!(h.user_id.as_deref(), Some("EE12345678901"));
    assert_eq!(h.issue.as_deref(), Some("MT324223MSD case 7"));
    let party = h.represented_party.as_ref().unwrap();
    assert_eq!((party.class(), party.code()), (Some("COM"), "12345"));
    assert_eq!(h.purpose.as_deref(), Some("social-benefit-eligibility"));
    assert_eq!(h.subject.as_deref(), Some("EE38001010000"));
    assert_eq!(
        h.request_id.as_ref().map(MessageId::as_str),
        Some("f92591a3-6bf0-49b1-987b-0dd78c034cc3")
    );

    let req = parse_headers(&[CLIENT, ("x-road-represented-party", "12345")]).unwrap();
    let party = req.headers.represented_party.unwrap();
    assert_eq!((party.class(), party.code()), (None, "12345"));
    assert_eq!(party.to_encoded(), "12345");

    let none = parse_headers(&[CLIENT]).unwrap().headers;
    assert_eq!(
        (
            none.user_id,
            none.issue,
            none.represented_party,
            none.purpose,
            none.subject,
            none.request_id
        ),
        (None, None, None, None, None, None)
    );
}

#[test]
fn malformed_optional_headers_are_refused() {
    use RequestError as E;
    use ValueProblem as V;
    let value = |name, problem| E::HeaderValue { name, problem };
    let long = "x".repeat(256);
    let long_purpose = "p".repeat(65);
    let cases: Vec<(Pairs, RequestError)> = vec![
        (vec![("x-road-id", "")], value("X-Road-Id", V::Empty)),
        (
            vec![("x-road-id", "a b")],
            value(
                "X-Road-Id",
                V::BadCharacters {
                    allowed: "visible ASCII",
                },
            ),
        ),
        (
            vec![("x-road-id", &long)],
            value("X-Road-Id", V::TooLong { max: 255 }),
        ),
        (
            vec![("x-road-id", "a"), ("x-road-id", "b")],
            E::DuplicateHeader { name: "X-Road-Id" },
        ),
        (
            vec![("x-road-request-id", "a\tb")],
            value(
                "X-Road-Request-Id",
                V::BadCharacters {
                    allowed: "visible ASCII",
                },
            ),
        ),
        (
            vec![("x-road-userid", "  ")],
            value("X-Road-UserId", V::Empty),
        ),
        (
            vec![("x-road-userid", &long)],
            value("X-Road-UserId", V::TooLong { max: 255 }),
        ),
        (
            vec![("x-road-userid", "EE1"), ("x-road-userid", "EE2")],
            E::DuplicateHeader {
                name: "X-Road-UserId",
            },
        ),
        (
            vec![("x-road-issue", "a\tb")],
            value(
                "X-Road-Issue",
                V::BadCharacters {
                    allowed: "visible ASCII and inner spaces",
                },
            ),
        ),
        (
            vec![("x-road-represented-party", "A/B/C")],
            E::RepresentedPartyShape { found: 3 },
        ),
        (
            vec![("x-road-represented-party", "COM/")],
            E::RepresentedParty(IdError::Empty {
                part: Part::MemberCode,
            }),
        ),
        (
            vec![("x-road-represented-party", "COM/a%2Fb")],
            E::RepresentedParty(IdError::BadCharacter {
                part: Part::MemberCode,
                ch: '/',
            }),
        ),
        (
            vec![("x-accord-purpose", "Marketing")],
            value(
                "X-Accord-Purpose",
                V::BadCharacters {
                    allowed: "3 to 64 lower-case letters, digits and hyphens",
                },
            ),
        ),
        (
            vec![("x-accord-purpose", "ab")],
            value(
                "X-Accord-Purpose",
                V::BadCharacters {
                    allowed: "3 to 64 lower-case letters, digits and hyphens",
                },
            ),
        ),
        (
            vec![("x-accord-purpose", &long_purpose)],
            value("X-Accord-Purpose", V::TooLong { max: 64 }),
        ),
        (
            vec![("x-accord-purpose", "aaa"), ("x-accord-purpose", "bbb")],
            E::DuplicateHeader {
                name: "X-Accord-Purpose",
            },
        ),
        (
            vec![("x-accord-subject", "EE 3800")],
            value(
                "X-Accord-Subject",
                V::BadCharacters {
                    allowed: "visible ASCII",
                },
            ),
        ),
        (
            vec![("x-accord-subject", &long)],
            value("X-Accord-Subject", V::TooLong { max: 255 }),
        ),
    ];
    for (extra, expected) in cases {
        let mut pairs = vec![CLIENT];
        pairs.extend(extra.iter().copied());
        let err = parse_headers(&pairs).unwrap_err();
        assert_eq!(err, expected, "{extra:?}");
        let err = XRoadError::from(err);
        assert_eq!(err.kind, ErrorKind::InvalidHeader, "{extra:?}");
        assert_eq!(err.error_type(), "Client.InvalidHeaderField");
    }

    // Bytes outside visible ASCII (obs-text) in any X-Road or Accord header.
    for name in [
        "x-road-client",
        "x-road-id",
        "x-road-userid",
        "x-accord-subject",
    ] {
        let mut headers = header_map(&[CLIENT]);
        headers.insert(
            http::header::HeaderName::from_static(name),
            HeaderValue::from_bytes(b"EE\xe41").unwrap(),
        );
        let err = parse_header_map(&headers).unwrap_err();
        assert!(
            matches!(err, RequestError::NotAscii { .. }),
            "{name}: {err:?}"
        );
    }
}

#[test]
fn personal_data_never_appears_in_refusals() {
    let secret_user = "EE38001010000\tsecret";
    let secret_subject = "EE 38001010000";
    for (name, value) in [
        ("x-road-userid", secret_user),
        ("x-accord-subject", secret_subject),
    ] {
        let err = parse_headers(&[CLIENT, (name, value)]).unwrap_err();
        let rendered = XRoadError::from(err.clone()).render_with_detail("d");
        let body = String::from_utf8(rendered.body).unwrap();
        assert!(!err.to_string().contains("38001010000"), "{err}");
        assert!(!body.contains("38001010000"), "{body}");
    }
}

#[test]
fn forwarded_headers_carry_what_the_gateway_vouches_for() {
    let req = parse_headers(&[
        ("x-road-client", "DEV/COM/222/what%3F"),
        ("x-road-id", "msg-1"),
        ("x-road-userid", "EE12345678901"),
        ("x-road-represented-party", "COM/12345"),
        ("x-accord-purpose", "social-benefit-eligibility"),
        ("x-accord-subject", "EE38001010000"),
    ])
    .unwrap();
    let request_id = MessageId::parse("req-1").unwrap();
    let headers = req.forwarded_headers(&request_id).unwrap();
    let got: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    let want: Vec<(String, String)> = [
        ("x-road-client", "DEV/COM/222/what%3F"),
        ("x-road-id", "msg-1"),
        ("x-road-request-id", "req-1"),
        ("x-road-userid", "EE12345678901"),
        ("x-road-represented-party", "COM/12345"),
        ("x-accord-purpose", "social-benefit-eligibility"),
        ("x-accord-subject", "EE38001010000"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    assert_eq!(got, want);
    assert!(headers["x-accord-subject"].is_sensitive());
}
