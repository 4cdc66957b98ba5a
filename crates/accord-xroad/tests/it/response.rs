//! PR-REST section 4.3: the X-Road response headers and the request hash;
//! Accord's `X-Accord-Agreement`.

use accord_domain::id::{ServiceId, SubsystemId};
use accord_xroad::response::{
    request_head_bytes, AgreementRefError, X_ACCORD_AGREEMENT, X_ROAD_REQUEST_HASH,
};
use accord_xroad::{AgreementRef, BodyDigest, ErrorKind, MessageId, RequestHash, ResponseHeaders};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::HeaderValue;
use http::Method;
use sha2::{Digest, Sha512};

use crate::header_map;

const TARGET: &str = "/r1/DEV/COM/222/TESTSERVICE/petstore/v2/pets?status=sold";
const BODY: &[u8] = br#"{"name":"doggie"}"#;

/// A forwarded request's headers, in a deliberately unsorted order, with
/// connection-level headers that must not count.
fn forwarded() -> Vec<(&'static str, &'static str)> {
    vec![
        ("host", "provider-gw.example:8443"),
        ("x-road-request-id", "f92591a3-6bf0-49b1-987b-0dd78c034cc3"),
        ("content-type", "application/json"),
        ("accept", "application/json"),
        ("content-length", "17"),
        ("x-road-client", "DEV/COM/222/TESTCLIENT"),
        ("user-agent", "accord-gateway/0.1"),
        ("connection", "keep-alive, x-hop"),
        ("x-hop", "1"),
        ("keep-alive", "timeout=5"),
        ("x-road-request-hash", "bogus"),
        ("x-road-id", "fa2e18a5-c2cb-4d09-b994-f57727f7c3fb"),
        ("accept", "application/xml;q=0.5"),
        ("transfer-encoding", "chunked"),
        ("expect", "100-continue"),
        ("te", "trailers"),
        ("proxy-authorization", "Basic eDp5"),
    ]
}

/// The canonical head, written out by hand: method, target, then the
/// hashed headers sorted by name, repeats in their order.
const HEAD: &str = "POST\r\n\
/r1/DEV/COM/222/TESTSERVICE/petstore/v2/pets?status=sold\r\n\
accept:application/json\r\n\
accept:application/xml;q=0.5\r\n\
content-type:application/json\r\n\
x-road-client:DEV/COM/222/TESTCLIENT\r\n\
x-road-id:fa2e18a5-c2cb-4d09-b994-f57727f7c3fb\r\n\
x-road-request-id:f92591a3-6bf0-49b1-987b-0dd78c034cc3\r\n";

#[test]
fn the_head_is_serialised_canonically() {
    let bytes = request_head_bytes(&Method::POST, TARGET, &header_map(&forwarded()));
    assert_eq!(String::from_utf8(bytes).unwrap(), HEAD);
}

#[test]
fn the_request_hash_matches_a_hand_computed_value() {
    // Computed here with sha2 and base64 directly, not with the crate.
    let head = Sha512::digest(HEAD.as_bytes());
    let body = Sha512::digest(BODY);
    let mut outer = Sha512::new();
    outer.update(head);
    outer.update(body);
    let expected = STANDARD.encode(outer.finalize());

    let hash = RequestHash::compute(&Method::POST, TARGET, &header_map(&forwarded()), BODY);
    assert_eq!(hash.to_base64(), expected);
    assert_eq!(hash.to_base64().len(), 88); // 64 bytes, padded, as in the spec's examples
    assert_eq!(RequestHash::parse_base64(&expected), Some(hash));

    // Without a body: base64(SHA-512(headers)).
    let no_body = RequestHash::compute(&Method::POST, TARGET, &header_map(&forwarded()), b"");
    assert_eq!(no_body.to_base64(), STANDARD.encode(head));
}

#[test]
fn a_streamed_body_hashes_like_one_in_memory() {
    let headers = header_map(&forwarded());
    let mut digest = BodyDigest::new();
    for chunk in BODY.chunks(5) {
        digest.update(chunk);
    }
    assert_eq!(digest.len(), BODY.len() as u64);
    let head = accord_xroad::response::request_head_digest(&Method::POST, TARGET, &headers);
    assert_eq!(
        RequestHash::from_digests(head, digest.finish()),
        RequestHash::compute(&Method::POST, TARGET, &headers, BODY)
    );
    assert_eq!(BodyDigest::new().finish(), None);
}

#[test]
fn the_hash_ignores_transport_and_order_but_nothing_else() {
    let base = RequestHash::compute(&Method::POST, TARGET, &header_map(&forwarded()), BODY);

    // Reversed insertion order, without the connection-level headers, with
    // names in other cases: same hash.
    let mut reordered: Vec<(&str, &str)> = forwarded()
        .into_iter()
        .filter(|(n, _)| {
            !matches!(
                *n,
                "host"
                    | "content-length"
                    | "user-agent"
                    | "connection"
                    | "x-hop"
                    | "keep-alive"
                    | "transfer-encoding"
                    | "expect"
                    | "te"
                    | "proxy-authorization"
                    | "x-road-request-hash"
            )
        })
        .collect();
    reordered.reverse();
    // Repeated values keep their relative order.
    let accepts: Vec<usize> = reordered
        .iter()
        .enumerate()
        .filter(|(_, (n, _))| *n == "accept")
        .map(|(i, _)| i)
        .collect();
    reordered.swap(accepts[0], accepts[1]);
    let upper: Vec<(String, &str)> = reordered
        .iter()
        .map(|(n, v)| (n.to_ascii_uppercase(), *v))
        .collect();
    let upper: Vec<(&str, &str)> = upper.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    assert_eq!(
        RequestHash::compute(&Method::POST, TARGET, &header_map(&upper), BODY),
        base
    );

    // Anything end-to-end changes it.
    let changed = |method: &Method, target: &str, headers: &[(&str, &str)], body: &[u8]| {
        RequestHash::compute(method, target, &header_map(headers), body)
    };
    let mut extra = forwarded();
    extra.push(("x-custom", "1"));
    let mut swapped_repeats = forwarded();
    let first = swapped_repeats
        .iter()
        .position(|(n, _)| *n == "accept")
        .unwrap();
    let last = swapped_repeats
        .iter()
        .rposition(|(n, _)| *n == "accept")
        .unwrap();
    swapped_repeats.swap(first, last);
    let variants = [
        changed(&Method::PUT, TARGET, &forwarded(), BODY),
        changed(
            &Method::POST,
            "/r1/DEV/COM/222/TESTSERVICE/petstore/v2/pets?status=gone",
            &forwarded(),
            BODY,
        ),
        changed(&Method::POST, TARGET, &extra, BODY),
        changed(&Method::POST, TARGET, &swapped_repeats, BODY),
        changed(&Method::POST, TARGET, &forwarded(), b"{\"name\":\"kitty\"}"),
        changed(&Method::POST, TARGET, &forwarded(), b""),
    ];
    for (i, v) in variants.iter().enumerate() {
        assert_ne!(*v, base, "variant {i}");
    }
}

#[test]
fn the_consumer_gateway_verifies_the_response_hash() {
    let hash = RequestHash::compute(&Method::GET, TARGET, &header_map(&forwarded()), b"");
    let other = RequestHash::compute(&Method::GET, "/r1/x/y/z/w/v", &header_map(&[]), b"");
    let b64 = hash.to_base64();
    assert!(hash
        .verify_response(&header_map(&[("x-road-request-hash", &b64)]))
        .is_ok());
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "the response has no X-Road-Request-Hash"),
        (
            &[("x-road-request-hash", &b64), ("x-road-request-hash", &b64)],
            "the response has more than one X-Road-Request-Hash",
        ),
        (
            &[(
                "x-road-request-hash",
                "4c519cf0-0e5e-4ccf-b72b-8ed6fe289e6e",
            )],
            "the response's X-Road-Request-Hash is not a base64 SHA-512 digest",
        ),
        (
            &[("x-road-request-hash", "AAAA")],
            "the response's X-Road-Request-Hash is not a base64 SHA-512 digest",
        ),
    ];
    for (headers, message) in cases {
        let err = hash.verify_response(&header_map(headers)).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InconsistentResponse);
        assert_eq!(err.message, *message);
    }
    let err = hash
        .verify_response(&header_map(&[("x-road-request-hash", &other.to_base64())]))
        .unwrap_err();
    assert_eq!(err.error_type(), "Server.ClientProxy.InconsistentResponse");
}

#[test]
fn response_headers_overwrite_what_the_provider_sent() {
    let client: SubsystemId = "DEV/COM/222/TESTCLIENT".parse().unwrap();
    let service: ServiceId = "DEV/COM/222/TESTSERVICE/pet?store/v1".parse().unwrap();
    let message_id = MessageId::parse("29f4d011-ef17-4f2f-9bb1-0452ce17d3f5").unwrap();
    let request_id = MessageId::parse("f92591a3-6bf0-49b1-987b-0dd78c034cc3").unwrap();
    let hash = RequestHash::compute(&Method::GET, TARGET, &header_map(&[]), b"");
    let agreement: AgreementRef = "agreement=tallinn-residence; version=3; grant=residence-lookup"
        .parse()
        .unwrap();

    let mut headers = header_map(&[
        ("content-type", "application/json;charset=utf-8"),
        ("x-road-client", "FORGED/X/Y/Z"),
        ("x-road-request-hash", "forged"),
        ("x-accord-agreement", "agreement=forged; version=1; grant=x"),
    ]);
    ResponseHeaders {
        client: &client,
        service: &service,
        message_id: &message_id,
        request_id: &request_id,
        request_hash: &hash,
        agreement: Some(&agreement),
    }
    .apply(&mut headers)
    .unwrap();
    let get = |name: &str| {
        let values: Vec<_> = headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(values.len(), 1, "{name}");
        values[0].to_owned()
    };
    assert_eq!(get("content-type"), "application/json;charset=utf-8");
    assert_eq!(get("x-road-client"), "DEV/COM/222/TESTCLIENT");
    assert_eq!(
        get("x-road-service"),
        "DEV/COM/222/TESTSERVICE/pet%3Fstore/v1"
    );
    assert_eq!(get("x-road-id"), "29f4d011-ef17-4f2f-9bb1-0452ce17d3f5");
    assert_eq!(
        get("x-road-request-id"),
        "f92591a3-6bf0-49b1-987b-0dd78c034cc3"
    );
    assert_eq!(get("x-road-request-hash"), hash.to_base64());
    assert_eq!(
        get("x-accord-agreement"),
        "agreement=tallinn-residence; version=3; grant=residence-lookup"
    );

    // Without a decision, a provider's X-Accord-Agreement does not survive.
    let mut headers = header_map(&[("x-accord-agreement", "agreement=forged; version=1; grant=x")]);
    ResponseHeaders {
        client: &client,
        service: &service,
        message_id: &message_id,
        request_id: &request_id,
        request_hash: &hash,
        agreement: None,
    }
    .apply(&mut headers)
    .unwrap();
    assert!(headers.get(X_ACCORD_AGREEMENT).is_none());
    assert!(headers.get(X_ROAD_REQUEST_HASH).is_some());
    assert_eq!(
        headers.get("x-road-request-hash"),
        Some(&HeaderValue::from_str(&hash.to_base64()).unwrap())
    );
}

#[test]
fn the_agreement_header_round_trips_and_refuses_malformed_values() {
    let value = "agreement=tallinn-residence; version=3; grant=residence-lookup";
    let parsed: AgreementRef = value.parse().unwrap();
    assert_eq!(parsed.agreement().as_str(), "tallinn-residence");
    assert_eq!(parsed.version(), 3);
    assert_eq!(parsed.grant(), "residence-lookup");
    assert_eq!(parsed.to_string(), value);
    // Order and spacing do not matter on input.
    let reordered: AgreementRef = "grant=residence-lookup;version=3;agreement=tallinn-residence"
        .parse()
        .unwrap();
    assert_eq!(reordered, parsed);

    use AgreementRefError as E;
    let cases: &[(&str, AgreementRefError)] = &[
        ("", E::Shape("each field is key=value")),
        (
            "agreement=abc; version=1",
            E::Shape("all three keys are required"),
        ),
        (
            "agreement=abc; version=1; grant=g; grant=h",
            E::Shape("each key once"),
        ),
        (
            "agreement=abc; version=1; grant=g; extra=1",
            E::Shape("with no other keys"),
        ),
        ("agreement=abc; version=0; grant=g", E::Version),
        ("agreement=abc; version=03; grant=g", E::Version),
        ("agreement=abc; version=-1; grant=g", E::Version),
        ("agreement=abc; version=4294967296; grant=g", E::Version),
        ("agreement=abc; version=1; grant=G", E::Grant),
        ("agreement=abc; version=1; grant=", E::Grant),
    ];
    for (input, expected) in cases {
        assert_eq!(
            input.parse::<AgreementRef>().unwrap_err(),
            *expected,
            "{input:?}"
        );
    }
    assert!(matches!(
        "agreement=AB; version=1; grant=g".parse::<AgreementRef>(),
        Err(E::Agreement(_))
    ));
}
