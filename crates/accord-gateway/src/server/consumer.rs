//! The consumer side: the member's information systems call here with the
//! X-Road REST protocol r1, and the gateway carries the call to the
//! provider's gateway.
//!
//! Order of checks, outermost first, so the first problem reported is the
//! one to fix first: message framing, method, request target, X-Road
//! headers, that the client subsystem is this member's and may call from
//! the connecting address, the configuration, the service, the body size.
//! Then the request goes to a gateway of the provider over mutual TLS, and
//! its answer is passed on only if the provider's receipt and the request
//! hash verify (see [`crate::receipt`]). The agreement decision is the
//! provider's: it holds the quota counters, and a consumer gateway cannot
//! be trusted to enforce the provider's terms.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use accord_audit::{AuditDecision, AuditEntry, Side};
use accord_xroad::request::X_ACCORD_SUBJECT;
use accord_xroad::{
    filter_request_headers, filter_response_headers, format_request_target, parse_request_headers,
    AgreementRef, ErrorKind, Limits, MessageId, Origin, RequestTarget, ResponseHeaders, XRoadError,
};
use ed25519_dalek::VerifyingKey;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::peers::{Outgoing, PeerAnswer, PeerError};
use super::{
    accept_loop, audit_failed, check_request_framing, check_request_method, conclude, operations,
    read_request_body, request_too_large, serve_connection, sha256_hex, Answer, Body, Exchange,
    PendingDigests, RequestDigests, Shared,
};
use crate::receipt::{
    self, Expected, ReceiptEntry, Tail, AFTER_BODY, X_ACCORD_PROOF, X_ACCORD_RECEIPT,
    X_ACCORD_RECEIPT_PROOF,
};
use crate::tls::ExpectedProvider;

pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    stopped: watch::Receiver<bool>,
) {
    let connections = stopped.clone();
    accept_loop("consumer", listener, stopped, move |stream, address| {
        let shared = shared.clone();
        serve_connection(stream, connections.clone(), move |req| {
            handle(shared.clone(), address, req)
        })
    })
    .await;
}

async fn handle(
    shared: Arc<Shared>,
    address: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    if req.method() == http::Method::GET {
        if let Some(response) = operations(&shared, req.uri().path()).await {
            return response;
        }
    }
    let origin = Origin::ConsumerGateway;
    let (mut x, raw_target) = Exchange::begin(Side::Consumer, &req);
    let result = exchange(&shared, &mut x, address, &raw_target, req).await;
    let (mut answer, pending, response_sha256) = match result {
        Ok(Received {
            answer,
            proof: Some(pending),
            response_sha256,
        }) => (answer, pending, response_sha256),
        Ok(Received {
            answer,
            proof: None,
            ..
        }) => return concluded(&shared, &mut x, Ok(answer)).await,
        Err(error) => return concluded(&shared, &mut x, Err(error)).await,
    };
    // The provider's proof is on its way: this gateway's entry goes into
    // its next group commit meanwhile, so that the two durable writes
    // overlap. The answer leaves only when both hold.
    let recording = match shared
        .begin_record(
            &x,
            answer.status.as_u16(),
            answer.error_type.as_deref(),
            &answer.body,
            Some(response_sha256),
        )
        .await
    {
        Ok(recording) => recording,
        Err(e) => return audit_failed(origin, &x, &e),
    };
    let proved = pending.settle(&shared).await;
    match (proved, recording.durable().await) {
        (_, Err(e)) => audit_failed(origin, &x, &e),
        (Ok(proof), Ok((entry, _, _))) => {
            shared.account(&x, &entry);
            // The client may keep the provider's receipt as its own proof.
            answer.headers.insert(X_ACCORD_RECEIPT_PROOF, proof);
            answer.into_response()
        }
        // The entry just written records the answer as it came; this one
        // records that it was not passed on, and why (see ARCHITECTURE:
        // the last entry for an X-Road-Id is the exchange's outcome).
        (Err(error), Ok(_)) => concluded(&shared, &mut x, Err(error)).await,
    }
}

/// [`conclude`] on this side: the answer or the refusal to send.
async fn concluded(
    shared: &Shared,
    x: &mut Exchange,
    result: Result<Answer, XRoadError>,
) -> Response<Body> {
    match conclude(shared, Origin::ConsumerGateway, x, result, |_| {}).await {
        Ok(answer) => answer.into_response(),
        Err(refusal) => refusal,
    }
}

/// The provider's answer, checked as far as it has come: `proof` is still
/// to be read (after the body of a streamed answer) and checked.
struct Received<'a> {
    answer: Answer,
    proof: Option<PendingProof<'a>>,
    /// The SHA-256 of the answer's body, as checked against the receipt.
    response_sha256: String,
}

/// A streamed answer's proof, still on its way.
struct PendingProof<'a> {
    answer: PeerAnswer<'a>,
    entry: ReceiptEntry,
    key: VerifyingKey,
    log_id: String,
    peer: String,
    max: usize,
    timeout: Duration,
}

impl PendingProof<'_> {
    /// Reads what follows the body and checks the proof: the
    /// `X-Accord-Receipt-Proof` value to pass on, or why the answer must
    /// not be.
    async fn settle(self, shared: &Shared) -> Result<HeaderValue, XRoadError> {
        let PendingProof {
            answer,
            entry,
            key,
            log_id,
            peer,
            max,
            timeout,
        } = self;
        let tail = answer
            .tail()
            .await
            .map_err(|e| peer_error(e, &peer, max, timeout))?;
        let proof = match Tail::parse(&tail).map_err(|why| not_signed(&log_id, &why))? {
            Tail::Proof(proof) => proof,
            Tail::Error(why) => {
                return Err(XRoadError::new(
                    ErrorKind::Internal(Origin::ProviderGateway),
                    format!("the provider gateway {log_id} could not record the exchange: {why}"),
                ))
            }
        };
        entry
            .prove(&proof, &log_id, &key, &shared.receipts)
            .map_err(|why| not_signed(&log_id, &why))?;
        Ok(proof)
    }
}

/// Takes the provider's decision, as its checked entry records it, into
/// this side's exchange; returns the agreement to name in the answer (only
/// a permit names the agreement that allowed the call).
fn decided(x: &mut Exchange, entry: &AuditEntry) -> Option<AgreementRef> {
    x.agreement = entry.agreement.as_ref().map(|a| (a.id.clone(), a.version));
    x.grant = entry.grant.clone();
    if let AuditDecision::Deny { reason } = &entry.decision {
        x.deny_reason = Some(reason.clone());
    }
    match (&entry.agreement, &entry.grant, &entry.decision) {
        (Some(a), Some(grant), AuditDecision::Permit) => {
            a.id.parse()
                .ok()
                .and_then(|id| AgreementRef::new(id, a.version, grant).ok())
        }
        _ => None,
    }
}

/// The refusal of a provider gateway's answer whose receipt does not hold.
fn not_signed(log_id: &str, why: &str) -> XRoadError {
    XRoadError::new(
        ErrorKind::InvalidProviderSignature,
        format!("the answer of {log_id} is not signed correctly: {why}"),
    )
}

/// What a failed call to a provider gateway tells the client.
fn peer_error(e: PeerError, peer: &str, max: usize, timeout: Duration) -> XRoadError {
    match e {
        PeerError::Unreachable(why) => XRoadError::new(
            ErrorKind::ProviderUnreachable,
            format!("cannot reach the provider gateway {peer}: {why}"),
        ),
        PeerError::Timeout => XRoadError::new(
            ErrorKind::ProviderUnreachable,
            format!(
                "the provider gateway {peer} did not answer within {} ms",
                timeout.as_millis()
            ),
        ),
        PeerError::TooLarge => XRoadError::new(
            ErrorKind::InconsistentResponse,
            format!("the answer of {peer} is larger than this gateway's limit of {max} bytes"),
        ),
        PeerError::Broken(why) => XRoadError::new(
            ErrorKind::InconsistentResponse,
            format!("the exchange with the provider gateway {peer} broke: {why}"),
        ),
    }
}

/// Round robin over a provider's gateways.
static NEXT_GATEWAY: AtomicUsize = AtomicUsize::new(0);

async fn exchange<'a>(
    shared: &'a Shared,
    x: &mut Exchange,
    address: SocketAddr,
    raw_target: &str,
    req: Request<Incoming>,
) -> Result<Received<'a>, XRoadError> {
    let (parts, body) = req.into_parts();
    check_request_framing(&parts.headers)?;
    check_request_method(&parts.method)?;
    let target = RequestTarget::parse(raw_target, &Limits::default())?;
    x.service = target.versionless().service.to_string();
    let h = parse_request_headers(&parts.headers)?;
    x.identify(&h, &shared.pseudonym_key);

    let own = &shared.config.member;
    let rule = shared
        .config
        .clients
        .iter()
        .find(|c| c.subsystem == h.client);
    match rule {
        None if h.client.member() != own => {
            return Err(XRoadError::new(
                ErrorKind::UnknownClient,
                format!(
                    "client {} is not a subsystem of {own}, the member this gateway serves",
                    h.client
                ),
            ))
        }
        None => {
            return Err(XRoadError::new(
                ErrorKind::UnknownClient,
                format!(
                    "client {} is not one of this gateway's information systems",
                    h.client
                ),
            ))
        }
        Some(rule) if !rule.allows(address.ip()) => {
            return Err(XRoadError::new(
                ErrorKind::ClientNotOwned,
                format!(
                    "the information system at {} may not call as {}",
                    address.ip(),
                    h.client
                ),
            ))
        }
        Some(_) => {}
    }

    let federation = shared.federation(Origin::ConsumerGateway)?;
    let registered = federation.subsystems.contains(&h.client);
    if !registered {
        return Err(XRoadError::new(
            ErrorKind::UnknownClient,
            format!("client {} is not registered in the federation", h.client),
        ));
    }
    let resolved = target.resolve(|s| federation.services.contains(s))?;
    x.service = resolved.service.to_string();
    x.path = super::recorded_path(resolved.path.raw(), h.subject.as_deref());

    let max = shared.config.limits.max_body_bytes;
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(request_too_large(max));
    }
    let body = read_request_body(body, max).await?;
    x.request_size = body.len() as u64;

    // Which gateway of the provider, and the request as it travels between
    // the gateways. Until its digests are under way (below), a refusal
    // here must still record the body's hash.
    let prepared = (|| {
        let provider = resolved.service.member();
        let gateways: &[usize] = federation
            .gateways_by_member
            .get(provider)
            .map_or(&[], Vec::as_slice);
        if gateways.is_empty() {
            return Err(XRoadError::new(
                ErrorKind::ProviderUnreachable,
                format!("{provider} has no gateway registered in the federation"),
            ));
        }
        let gateway = &federation.signed.payload.gateways
            [gateways[NEXT_GATEWAY.fetch_add(1, Ordering::Relaxed) % gateways.len()]];
        let tls = shared.tls(Origin::ConsumerGateway)?;
        let forward_target =
            format_request_target(&resolved.service, &resolved.path, resolved.query.as_deref());
        let request_id = MessageId::generate();
        let mut headers = filter_request_headers(&parts.headers);
        super::forward_xroad_headers(&mut headers, &h, &request_id)?;
        if let Some(v) = &h.subject {
            super::set_header(&mut headers, X_ACCORD_SUBJECT, v)?;
        }
        // The provider's proof may follow the body (see crate::receipt).
        headers.insert(X_ACCORD_PROOF, HeaderValue::from_static(AFTER_BODY));
        Ok((provider, gateway, tls, forward_target, request_id, headers))
    })();
    let (provider, gateway, tls, forward_target, request_id, headers) = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            x.request_body_sha256 = sha256_hex(&body);
            return Err(e);
        }
    };
    x.request_id = request_id.as_str().to_owned();
    // The request leaves at once; a large body is hashed meanwhile.
    let digests = PendingDigests::start(shared, &parts.method, &forward_target, &headers, &body);
    let outgoing = Outgoing {
        method: parts.method.clone(),
        target: forward_target,
        headers,
        body,
    };
    let expected_provider = ExpectedProvider {
        member: provider.clone(),
        gateway: Some(gateway.name.clone()),
    };
    x.forwarded_at = Some(OffsetDateTime::now_utc());
    let sent = Instant::now();
    let timeout = shared.config.limits.provider_timeout;
    let peer = format!("{}/{}", gateway.member, gateway.name);
    let result = shared
        .peers
        .send(tls, &gateway.address, expected_provider, &outgoing, timeout)
        .await;
    let RequestDigests {
        body_sha256,
        request_hash,
    } = digests.finish().await;
    x.request_body_sha256 = body_sha256;
    let (rparts, mut answered) = result.map_err(|e| peer_error(e, &peer, max, timeout))?;

    // The provider's receipt, then the request hash.
    let log_id = answered.identity.gateway_path();
    let key = shared.audit_key(&federation, &log_id).ok_or_else(|| {
        XRoadError::new(
            ErrorKind::InvalidProviderSignature,
            format!("the provider gateway {log_id} has no audit key registered, so its answer cannot be verified"),
        )
    })?;
    // A streamed answer: the entry now, with the body's length, and the
    // proof after the body.
    let streamed = receipt::proof_after_body(&rparts.headers);
    let receipt_entry = if streamed {
        Some(ReceiptEntry::read(&rparts.headers).map_err(|why| not_signed(&log_id, &why))?)
    } else {
        None
    };
    let rbody = answered
        .body(receipt_entry.as_ref().map(|r| r.entry.response_size), max)
        .await
        .map_err(|e| peer_error(e, &peer, max, timeout))?;
    x.backend_us = Some(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
    x.answered_at = Some(OffsetDateTime::now_utc());
    let response_sha = sha256_hex(&rbody);
    let recorded_path = x.path.clone();
    let service_text = resolved.service.to_string();
    let client_text = h.client.to_string();
    let expected = Expected {
        exchange_id: h.message_id.as_str(),
        client: &client_text,
        service: &service_text,
        method: parts.method.as_str(),
        path: &recorded_path,
        purpose: h.purpose.as_deref(),
        request_body_sha256: &x.request_body_sha256,
        response_body_sha256: &response_sha,
        status: rparts.status.as_u16(),
        log_id: &log_id,
    };
    let (proof, agreement) = match receipt_entry {
        Some(receipt_entry) => {
            receipt_entry
                .check(&expected)
                .map_err(|why| not_signed(&log_id, &why))?;
            let agreement = decided(x, &receipt_entry.entry);
            let pending = PendingProof {
                answer: answered,
                entry: receipt_entry,
                key,
                log_id: log_id.clone(),
                peer,
                max,
                timeout,
            };
            (Some(pending), agreement)
        }
        None => {
            let verified = receipt::verify(&rparts.headers, &expected, &key, &shared.receipts)
                .map_err(|why| not_signed(&log_id, &why))?;
            // The body was read to its end: the connection goes back to
            // the pool.
            answered
                .tail()
                .await
                .map_err(|e| peer_error(e, &peer, max, timeout))?;
            (None, decided(x, &verified.entry))
        }
    };
    // The provider hashes every request it answers, denied ones included.
    request_hash.verify_response(&rparts.headers)?;

    let mut headers = filter_response_headers(&rparts.headers);
    ResponseHeaders {
        client: &h.client,
        service: &resolved.service,
        message_id: &h.message_id,
        request_id: &request_id,
        request_hash: &request_hash,
        agreement: agreement.as_ref(),
    }
    .apply(&mut headers)
    .map_err(|_| {
        XRoadError::new(
            ErrorKind::Internal(Origin::ConsumerGateway),
            "a response header could not be encoded",
        )
    })?;
    let error_type = rparts
        .headers
        .get(accord_xroad::error::X_ROAD_ERROR)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(v) = rparts.headers.get(accord_xroad::error::X_ROAD_ERROR) {
        headers.insert(accord_xroad::error::X_ROAD_ERROR, v.clone());
    }
    // The client may keep the provider's receipt as its own proof (a
    // streamed proof is added once it has come and been checked).
    for name in [X_ACCORD_RECEIPT, X_ACCORD_RECEIPT_PROOF] {
        if let Some(v) = rparts.headers.get(&name) {
            headers.insert(name, v.clone());
        }
    }
    Ok(Received {
        answer: Answer {
            status: rparts.status,
            headers,
            body: rbody,
            error_type,
        },
        proof,
        response_sha256: response_sha,
    })
}
