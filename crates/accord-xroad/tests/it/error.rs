//! PR-REST section 4.6: error types, statuses and the error response.

use accord_domain::agreement::decision::DenyReason;
use accord_xroad::error::{ERROR_CONTENT_TYPE, INTERNAL_ERROR_MESSAGE};
use accord_xroad::{ErrorKind, Origin, XRoadError};
use http::StatusCode;

use crate::is_uuid_v4;

#[test]
fn every_kind_has_an_xroad_type_and_a_status() {
    use ErrorKind as K;
    use Origin::{ConsumerGateway as C, ProviderGateway as P};
    let cases: &[(ErrorKind, &str, u16)] = &[
        (K::BadRequest, "Client.BadRequest", 400),
        (
            K::InvalidProtocolVersion,
            "Client.InvalidProtocolVersion",
            400,
        ),
        (K::InvalidHttpMethod, "Client.InvalidHttpMethod", 400),
        (
            K::InvalidClientIdentifier,
            "Client.InvalidClientIdentifier",
            400,
        ),
        (K::MissingHeader, "Client.MissingHeaderField", 400),
        (K::InvalidHeader, "Client.InvalidHeaderField", 400),
        (K::InconsistentHeaders, "Client.InconsistentHeaders", 400),
        (K::RequestTooLarge, "Client.RequestTooLarge", 413),
        (K::UnknownClient, "Server.ClientProxy.UnknownMember", 500),
        (
            K::ClientNotOwned,
            "Server.ClientProxy.SslAuthenticationFailed",
            500,
        ),
        (
            K::ProviderUnreachable,
            "Server.ClientProxy.NetworkError",
            500,
        ),
        (
            K::InvalidProviderSignature,
            "Server.ClientProxy.InvalidSignatureValue",
            500,
        ),
        (
            K::InconsistentResponse,
            "Server.ClientProxy.InconsistentResponse",
            500,
        ),
        (
            K::BackendUnavailable,
            "Server.ServerProxy.ServiceFailed.NetworkError",
            500,
        ),
        (
            K::BackendTimeout,
            "Server.ServerProxy.ServiceFailed.Timeout",
            500,
        ),
        (
            K::BackendInvalidResponse,
            "Server.ServerProxy.ServiceFailed.InvalidResponse",
            500,
        ),
        (
            K::UnknownService(C),
            "Server.ClientProxy.UnknownService",
            500,
        ),
        (
            K::UnknownService(P),
            "Server.ServerProxy.UnknownService",
            500,
        ),
        (
            K::AccessDenied(P, None),
            "Server.ServerProxy.AccessDenied",
            500,
        ),
        (
            K::AccessDenied(P, Some(DenyReason::PurposeNotCovered)),
            "Server.ServerProxy.AccessDenied.purpose-not-covered",
            500,
        ),
        (
            K::AccessDenied(C, Some(DenyReason::NoAgreement)),
            "Server.ClientProxy.AccessDenied.no-agreement",
            500,
        ),
        (
            K::ConfigurationOutdated(C),
            "Server.ClientProxy.OutdatedGlobalConf",
            500,
        ),
        (
            K::ConfigurationOutdated(P),
            "Server.ServerProxy.OutdatedGlobalConf",
            500,
        ),
        (K::Internal(C), "Server.ClientProxy.InternalError", 500),
        (K::Internal(P), "Server.ServerProxy.InternalError", 500),
    ];
    for (kind, error_type, status) in cases {
        assert_eq!(kind.error_type(), *error_type, "{kind:?}");
        assert_eq!(kind.status().as_u16(), *status, "{kind:?}");
        assert_eq!(kind.is_client_error(), error_type.starts_with("Client."));
    }
    // Every deny reason gives a distinct, header-safe type.
    for reason in DenyReason::ALL {
        let t = ErrorKind::AccessDenied(P, Some(reason)).error_type();
        assert!(t.starts_with("Server.ServerProxy.AccessDenied."), "{t}");
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'),
            "{t}"
        );
    }
}

#[test]
fn the_error_response_has_the_specs_shape() {
    let err = XRoadError::new(
        ErrorKind::BackendUnavailable,
        "connect to backend.internal:8080 failed: connection refused",
    );
    let response = err.render_with_detail("9bc95b6e-2f1d-4a41-a7e6-11eda7d734d5");
    assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.headers.len(), 2);
    assert_eq!(response.headers["content-type"], ERROR_CONTENT_TYPE);
    assert_eq!(ERROR_CONTENT_TYPE, "application/json; charset=utf-8");
    assert_eq!(
        response.headers["x-road-error"],
        "Server.ServerProxy.ServiceFailed.NetworkError"
    );
    // Field order as in the spec's examples: type, message, detail.
    assert_eq!(
        String::from_utf8(response.body.clone()).unwrap(),
        r#"{"type":"Server.ServerProxy.ServiceFailed.NetworkError","message":"connect to backend.internal:8080 failed: connection refused","detail":"9bc95b6e-2f1d-4a41-a7e6-11eda7d734d5"}"#
    );

    let http = response.into_http();
    assert_eq!(http.status(), 500);
    assert_eq!(
        http.headers()["x-road-error"],
        "Server.ServerProxy.ServiceFailed.NetworkError"
    );
}

#[test]
fn client_errors_and_denials_render_with_their_status() {
    let cases = [
        (
            XRoadError::new(
                ErrorKind::BadRequest,
                "request path must start with '/r1/', found '/r2'",
            ),
            400,
            "Client.BadRequest",
        ),
        (
            XRoadError::new(
                ErrorKind::RequestTooLarge,
                "the request body is over 10 MiB",
            ),
            413,
            "Client.RequestTooLarge",
        ),
        (
            XRoadError::new(
                ErrorKind::AccessDenied(Origin::ProviderGateway, Some(DenyReason::QuotaExhausted)),
                "quota of grant g1 of agreement a version 2 is used up",
            ),
            500,
            "Server.ServerProxy.AccessDenied.quota-exhausted",
        ),
    ];
    for (err, status, error_type) in cases {
        let response = err.render();
        assert_eq!(response.status.as_u16(), status);
        assert_eq!(response.headers["x-road-error"], error_type);
        let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(body["type"], error_type);
        assert_eq!(body["message"], err.message.as_str());
        assert!(is_uuid_v4(body["detail"].as_str().unwrap()), "{body}");
        assert_eq!(body.as_object().unwrap().len(), 3);
    }
}

#[test]
fn internal_errors_keep_their_message_in_the_log() {
    let err = XRoadError::new(
        ErrorKind::Internal(Origin::ConsumerGateway),
        "sqlite: disk I/O error at /var/lib/accord/gw.db",
    );
    let body: serde_json::Value =
        serde_json::from_slice(&err.render_with_detail("d-1").body).unwrap();
    assert_eq!(body["message"], INTERNAL_ERROR_MESSAGE);
    assert_eq!(body["type"], "Server.ClientProxy.InternalError");
    // The full message is what the gateway logs.
    assert_eq!(
        err.to_string(),
        "Server.ClientProxy.InternalError: sqlite: disk I/O error at /var/lib/accord/gw.db"
    );
}

#[test]
fn messages_are_escaped_as_json() {
    let err = XRoadError::new(ErrorKind::BadRequest, "quote \" backslash \\ newline \n");
    let body = err.render_with_detail("d").body;
    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(parsed["message"], "quote \" backslash \\ newline \n");
}
