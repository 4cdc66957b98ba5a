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
//!
//! While the audit log's committer is not busy, the answer leaves as soon
//! as its entry is handed to the group commit: head, entry and body first,
//! the entry's proof after the body once the commit is durable
//! ([`ProviderBody`], see [`crate::receipt`]), so that the consumer
//! gateway's own commit runs meanwhile and a lone exchange waits for the
//! two durable writes side by side rather than one after the other. Once
//! the committer is busy ([`crate::audit_store::AuditLog::busy`]: its
//! latest group commit carried more than one entry), the answer waits for its
//! commit and leaves whole, the proof in its head: under load the overlap
//! no longer shortens anything (every entry waits for company anyway),
//! while a streamed answer costs a second write here and a second read
//! and wake-up at the consumer gateway. Measured with `accord bench
//! exchange` at 1 KiB, 64 connections, six alternating pairs on a noisy
//! day: answering whole under load took 422/455/385/454/480/444 µs of the
//! two gateways' CPU per exchange against 506/475/500/485/517/465 always
//! streamed (a tenth less on average), and carried
//! 2,908/2,752/3,331/2,911/2,756/2,991 exchanges/s against
//! 2,574/2,751/2,689/2,851/2,607/2,961; one connection's latency (every
//! commit carries one entry, so the proof still streams) and 64 KiB were
//! within the noise. A large request body is hashed
//! while the request is decided and the backend works; every answer still
//! carries its request hash.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
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
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use hyper::body::{Frame, Incoming, SizeHint};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::peers::BackendError;
use super::{
    accept_loop, audit_failed, check_request_framing, check_request_method, conclude_started,
    read_request_body, serve_connection, Answer, Body, Exchange, PendingDigests, Shared,
};
use crate::metrics::{SideLabel, SideOnly};
use crate::quota::Outcome;
use crate::receipt::{self, Tail, AFTER_BODY, X_ACCORD_PROOF, X_ACCORD_RECEIPT};
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
) -> Response<ProviderBody> {
    let origin = Origin::ProviderGateway;
    // Data after the body needs HTTP/1.1 chunked framing and a caller
    // that asked for it; a busy log answers whole (see the module docs).
    let streams = req.version() == http::Version::HTTP_11
        && req.method() != http::Method::HEAD
        && receipt::proof_after_body(req.headers())
        && !shared.audit.busy();
    let (mut x, raw_target) = Exchange::begin(Side::Provider, &req);
    let mut bound = Bound::default();
    let mut digests = None;
    let result = exchange(
        &shared,
        &mut x,
        &mut bound,
        &mut digests,
        &identity,
        &raw_target,
        req,
    )
    .await;
    if let Some(digests) = digests {
        let digests = digests.finish().await;
        x.request_body_sha256 = digests.body_sha256;
        bound.request_hash = Some(digests.request_hash);
    }
    let finish = |answer: &mut Answer| bound.apply(&mut answer.headers);
    let (mut answer, recording) =
        match conclude_started(&shared, origin, &mut x, result, finish).await {
            Ok(started) => started,
            Err(refusal) => return refusal.map(ProviderBody::Whole),
        };
    if streams && status_has_body(answer.status) {
        // The head and body leave now; the proof follows the body once the
        // entry's group commit is durable. Chunked framing carries both: no
        // length may be declared.
        answer.headers.remove(http::header::CONTENT_LENGTH);
        answer.headers.remove(http::header::TRANSFER_ENCODING);
        if let Some(v) = receipt::entry_value(&recording.bytes) {
            answer.headers.insert(X_ACCORD_RECEIPT, v);
        }
        answer
            .headers
            .insert(X_ACCORD_PROOF, HeaderValue::from_static(AFTER_BODY));
        let proof = Box::pin(async move {
            let tail = match recording.durable().await {
                Ok((entry, _, receipt)) => {
                    shared.account(&x, &entry);
                    match receipt::proof_value(&receipt) {
                        Some(v) => Tail::Proof(v),
                        None => Tail::Error("the receipt's proof could not be encoded".into()),
                    }
                }
                Err(e) => {
                    tracing::error!(exchange = %x.exchange_id, error = %e, "audit append failed; the answer's proof is refused");
                    Tail::Error(
                        "the audit log of the provider gateway could not record the exchange"
                            .into(),
                    )
                }
            };
            tail.encode()
        });
        let mut response = Response::new(ProviderBody::Streamed {
            data: Some(answer.body),
            proof: Some(proof),
        });
        *response.status_mut() = answer.status;
        *response.headers_mut() = answer.headers;
        return response;
    }
    match recording.durable().await {
        Ok((entry, bytes, receipt)) => {
            shared.account(&x, &entry);
            receipt::add_headers(&mut answer.headers, &bytes, &receipt);
            answer.into_response().map(ProviderBody::Whole)
        }
        Err(e) => audit_failed(origin, &x, &e).map(ProviderBody::Whole),
    }
}

/// Whether an answer with this status carries a body (and so can carry
/// the proof after it).
fn status_has_body(status: http::StatusCode) -> bool {
    !(status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED)
}

/// What follows a streamed answer's body (an encoded [`Tail`]), ready once
/// the entry is durable.
type ProofTail = Pin<Box<dyn Future<Output = Bytes> + Send>>;

/// The body of a provider gateway's answer: whole (the proof, if any, is
/// in the head), or streamed (the body, then the proof after it).
pub(crate) enum ProviderBody {
    Whole(Body),
    Streamed {
        data: Option<Bytes>,
        proof: Option<ProofTail>,
    },
}

impl hyper::body::Body for ProviderBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ProviderBody::Whole(body) => Pin::new(body).poll_frame(cx),
            ProviderBody::Streamed { data, proof } => {
                if let Some(data) = data.take().filter(|d| !d.is_empty()) {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                let Some(pending) = proof.as_mut() else {
                    return Poll::Ready(None);
                };
                let tail = std::task::ready!(pending.as_mut().poll(cx));
                *proof = None;
                Poll::Ready(Some(Ok(Frame::data(tail))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProviderBody::Whole(body) => body.is_end_stream(),
            ProviderBody::Streamed { data, proof } => data.is_none() && proof.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProviderBody::Whole(body) => body.size_hint(),
            ProviderBody::Streamed { .. } => SizeHint::default(),
        }
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
    digests: &mut Option<PendingDigests>,
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
    x.request_size = body.len() as u64;
    // Every answer carries the request hash; a large body is hashed while
    // the request is decided and the backend works (see `handle`).
    *digests = Some(PendingDigests::start(
        shared,
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
