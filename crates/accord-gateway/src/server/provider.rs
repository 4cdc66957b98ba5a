//! The provider side: other members' gateways call here over mutual TLS;
//! the gateway decides against the agreements, calls the backend, records
//! the exchange and signs the answer with its receipt.
//!
//! The body is read before anything else is checked, so that every answer
//! (denials and errors included) carries the request hash and a receipt
//! over the exact request: the consumer gateway can prove what it was told
//! and why. The consumer gateway's TLS identity is re-checked on every
//! request, so a certificate revoked while a kept-alive connection is open
//! stops working at the next request, not at the next connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use accord_audit::Side;
use accord_domain::agreement::decision::DecisionRequest;
use accord_xroad::request::X_ROAD_ID;
use accord_xroad::response::{X_ACCORD_AGREEMENT, X_ROAD_REQUEST_HASH};
use accord_xroad::{
    filter_request_headers, filter_response_headers, parse_request_headers, AgreementRef,
    ErrorKind, Limits, MessageId, Origin, RequestError, RequestHash, RequestTarget,
    ResponseHeaders, XRoadError,
};
use http::{HeaderMap, HeaderValue, Request, Response};
use hyper::body::Incoming;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::peers::BackendError;
use super::{
    accept_loop, check_request_framing, check_request_method, conclude, read_request_body,
    serve_connection, Answer, Body, Exchange, Shared,
};
use crate::metrics::{SideLabel, SideOnly};
use crate::quota::Outcome;
use crate::receipt;
use crate::tls::{self, PeerIdentity};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    stopped: watch::Receiver<bool>,
) {
    let connections = stopped.clone();
    accept_loop("provider", listener, stopped, move |stream, address| {
        connection(shared.clone(), stream, address, connections.clone())
    })
    .await;
}

/// One gateway's connection: the TLS handshake (refusals counted and
/// logged), then its requests.
async fn connection(
    shared: Arc<Shared>,
    stream: tokio::net::TcpStream,
    address: std::net::SocketAddr,
    stopped: watch::Receiver<bool>,
) {
    let Some(tls) = shared.tls.get() else {
        tracing::warn!(peer = %address, "refusing a gateway connection: no federation configuration yet");
        return;
    };
    let accepted = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tls::accept(&tls.server, &tls.trust, stream, &address.to_string()),
    )
    .await;
    match accepted {
        Ok(Ok((stream, identity))) => {
            let identity = Arc::new(identity);
            serve_connection(stream, stopped, move |req| {
                handle(shared.clone(), identity.clone(), req)
            })
            .await;
        }
        Ok(Err(e)) => {
            shared
                .metrics
                .tls_refusals
                .get_or_create(&SideOnly {
                    side: SideLabel::Provider,
                })
                .inc();
            tracing::warn!(peer = %address, error = %e, "refused a gateway connection");
        }
        Err(_) => {
            tracing::warn!(peer = %address, "a gateway connection did not complete its TLS handshake in time");
        }
    }
}

/// The X-Road headers of the answer, as far as the request got.
#[derive(Default)]
struct Bound {
    client: Option<accord_domain::SubsystemId>,
    service: Option<accord_domain::ServiceId>,
    message_id: Option<MessageId>,
    request_id: Option<MessageId>,
    request_hash: Option<RequestHash>,
    agreement: Option<AgreementRef>,
}

impl Bound {
    fn apply(&self, headers: &mut HeaderMap) {
        if let (Some(client), Some(service), Some(message_id), Some(request_id), Some(hash)) = (
            &self.client,
            &self.service,
            &self.message_id,
            &self.request_id,
            &self.request_hash,
        ) {
            let applied = ResponseHeaders {
                client,
                service,
                message_id,
                request_id,
                request_hash: hash,
                agreement: self.agreement.as_ref(),
            }
            .apply(headers);
            if applied.is_ok() {
                return;
            }
        }
        // Partial: what is known.
        if let Some(hash) = &self.request_hash {
            if let Ok(v) = HeaderValue::from_str(&hash.to_base64()) {
                headers.insert(X_ROAD_REQUEST_HASH, v);
            }
        }
        if let Some(id) = &self.message_id {
            if let Ok(v) = HeaderValue::from_str(id.as_str()) {
                headers.insert(X_ROAD_ID, v);
            }
        }
    }
}

async fn handle(
    shared: Arc<Shared>,
    identity: Arc<PeerIdentity>,
    req: Request<Incoming>,
) -> Response<Body> {
    let (mut x, raw_target) = Exchange::begin(Side::Provider, &req);
    let mut bound = Bound::default();
    let result = exchange(&shared, &mut x, &mut bound, &identity, &raw_target, req).await;
    let finish = |answer: &mut Answer| bound.apply(&mut answer.headers);
    match conclude(&shared, Origin::ProviderGateway, &mut x, result, finish).await {
        Ok((mut answer, entry_bytes, receipt)) => {
            receipt::add_headers(&mut answer.headers, &entry_bytes, &receipt);
            answer.into_response()
        }
        Err(refusal) => refusal,
    }
}

/// `base` + the path after the service id (and query).
fn backend_uri(base: &hyper::Uri, path_and_query: &str) -> Result<hyper::Uri, XRoadError> {
    let base_path = base.path().trim_end_matches('/');
    let uri = format!(
        "{}://{}{base_path}{path_and_query}",
        base.scheme_str().unwrap_or("http"),
        base.authority().map_or("", |a| a.as_str())
    );
    uri.parse().map_err(|_| {
        XRoadError::new(
            ErrorKind::BadRequest,
            "the request path cannot be appended to the backend's URL",
        )
    })
}

async fn exchange(
    shared: &Shared,
    x: &mut Exchange,
    bound: &mut Bound,
    identity: &PeerIdentity,
    raw_target: &str,
    req: Request<Incoming>,
) -> Result<Answer, XRoadError> {
    let origin = Origin::ProviderGateway;
    let (parts, body) = req.into_parts();
    let tls = shared.tls(origin)?;
    check_request_framing(&parts.headers)?;
    let max = shared.config.limits.max_body_bytes;
    let body = read_request_body(body, max).await?;
    x.received(&body);
    bound.request_hash = Some(RequestHash::compute(
        &parts.method,
        raw_target,
        &parts.headers,
        &body,
    ));

    check_request_method(&parts.method)?;
    let target = RequestTarget::parse(raw_target, &Limits::default())?;
    x.service = target.versionless().service.to_string();
    let h = parse_request_headers(&parts.headers)?;
    if h.message_id_generated {
        return Err(XRoadError::new(
            ErrorKind::MissingHeader,
            "X-Road-Id is required on requests between gateways",
        ));
    }
    x.identify(&h, &shared.pseudonym_key);
    let request_id = h.request_id.clone().unwrap_or_else(MessageId::generate);
    x.request_id = request_id.as_str().to_owned();
    bound.client = Some(h.client.clone());
    bound.message_id = Some(h.message_id.clone());
    bound.request_id = Some(request_id.clone());

    // Checked per request, not only per connection: a certificate revoked
    // while a kept-alive connection is open stops working now.
    if tls
        .trust
        .current()
        .identity(&identity.fingerprint_sha256)
        .is_err()
    {
        return Err(XRoadError::new(
            ErrorKind::ClientNotOwned,
            format!(
                "the certificate of gateway {} is revoked or no longer registered",
                identity.gateway_path()
            ),
        ));
    }

    if *h.client.member() != identity.member {
        return Err(XRoadError::new(
            ErrorKind::ClientNotOwned,
            format!(
                "gateway {} speaks for {}, not for client {}",
                identity.gateway_path(),
                identity.member,
                h.client
            ),
        ));
    }
    let federation = shared.federation(origin)?;
    let unknown = |service: &accord_domain::ServiceId, why: &str| {
        XRoadError::new(
            ErrorKind::UnknownService(origin),
            format!("service {service} {why}"),
        )
    };
    let resolved = target
        .resolve(|s| federation.services.contains(s))
        .map_err(|e| match e {
            RequestError::UnknownService { .. } => {
                XRoadError::new(ErrorKind::UnknownService(origin), e.to_string())
            }
            other => other.into(),
        })?;
    x.service = resolved.service.to_string();
    x.path = super::recorded_path(resolved.path.raw(), h.subject.as_deref());
    bound.service = Some(resolved.service.clone());
    let own = &shared.config.member;
    if resolved.service.member() != own {
        return Err(unknown(
            &resolved.service,
            &format!("is not provided by {own}, the member of this gateway"),
        ));
    }
    let Some(backend) = shared.config.backend(&resolved.service) else {
        return Err(unknown(&resolved.service, "has no backend at this gateway"));
    };

    // The decision, with the quota counters.
    let decoded = resolved.path.decoded();
    let at = OffsetDateTime::now_utc().unix_timestamp();
    let outcome = shared.quotas.decide(
        &federation.index,
        &DecisionRequest {
            consumer: &h.client,
            service: &resolved.service,
            method: parts.method.as_str(),
            path: if decoded.is_empty() { "/" } else { &decoded },
            purpose: h.purpose.as_deref(),
            data_subject: h.subject.is_some(),
            at,
        },
    );
    let agreement_header = match outcome {
        Outcome::Deny(deny) => {
            x.deny_reason = Some(deny.reason.code().to_owned());
            if let Some(under) = &deny.agreement {
                x.agreement = Some((under.agreement.to_string(), under.version));
                x.grant = under.grant.clone();
            }
            return Err(XRoadError::new(
                ErrorKind::AccessDenied(origin, Some(deny.reason)),
                deny.explanation,
            ));
        }
        Outcome::Permit {
            agreement,
            version,
            grant,
        } => {
            let reference = agreement
                .parse()
                .ok()
                .and_then(|id| AgreementRef::new(id, version, &grant).ok());
            x.agreement = Some((agreement, version));
            x.grant = Some(grant);
            bound.agreement = reference.clone();
            reference
        }
    };

    // The backend.
    let uri = backend_uri(backend, &resolved.backend_path_and_query())?;
    let mut headers = filter_request_headers(&parts.headers);
    super::forward_xroad_headers(&mut headers, &h, &request_id)?;
    if let Some(reference) = &agreement_header {
        if let Ok(v) = reference.header_value() {
            headers.insert(X_ACCORD_AGREEMENT, v);
        }
    }
    if let Some(authority) = uri.authority() {
        super::set_header(&mut headers, http::header::HOST, authority.as_str())?;
    }
    let mut request = Request::new(http_body_util::Full::new(body));
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;

    x.forwarded_at = Some(OffsetDateTime::now_utc());
    let sent = Instant::now();
    let result = shared
        .backend
        .send(request, max, shared.config.limits.backend_timeout)
        .await;
    x.backend_us = Some(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
    let service = &resolved.service;
    let (rparts, rbody) = result.map_err(|e| match e {
        BackendError::Unavailable(why) => {
            tracing::warn!(%service, error = %why, "backend unavailable");
            XRoadError::new(
                ErrorKind::BackendUnavailable,
                format!("the backend of {service} is unavailable"),
            )
        }
        BackendError::Timeout => XRoadError::new(
            ErrorKind::BackendTimeout,
            format!(
                "the backend of {service} did not answer within {} ms",
                shared.config.limits.backend_timeout.as_millis()
            ),
        ),
        BackendError::Invalid(why) => {
            tracing::warn!(%service, error = %why, "backend answered badly");
            XRoadError::new(
                ErrorKind::BackendInvalidResponse,
                format!("the backend of {service} gave an invalid answer: {why}"),
            )
        }
    })?;
    x.answered_at = Some(OffsetDateTime::now_utc());
    Ok(Answer {
        status: rparts.status,
        headers: filter_response_headers(&rparts.headers),
        body: rbody,
        error_type: None,
    })
}
