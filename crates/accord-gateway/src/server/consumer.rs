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
use std::time::Instant;

use accord_audit::{AuditDecision, Side};
use accord_xroad::request::X_ACCORD_SUBJECT;
use accord_xroad::{
    filter_request_headers, filter_response_headers, format_request_target, parse_request_headers,
    AgreementRef, ErrorKind, Limits, MessageId, Origin, RequestHash, RequestTarget,
    ResponseHeaders, XRoadError,
};
use http::{Request, Response};
use hyper::body::Incoming;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::peers::{Outgoing, PeerError};
use super::{
    accept_loop, check_request_framing, check_request_method, conclude, operations,
    read_request_body, request_too_large, serve_connection, sha256_hex, Answer, Body, Exchange,
    Shared,
};
use crate::receipt::{self, Expected, X_ACCORD_RECEIPT, X_ACCORD_RECEIPT_PROOF};
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
    let (mut x, raw_target) = Exchange::begin(Side::Consumer, &req);
    let result = exchange(&shared, &mut x, address, &raw_target, req).await;
    match conclude(&shared, Origin::ConsumerGateway, &mut x, result, |_| {}).await {
        Ok((answer, _, _)) => answer.into_response(),
        Err(refusal) => refusal,
    }
}

/// Round robin over a provider's gateways.
static NEXT_GATEWAY: AtomicUsize = AtomicUsize::new(0);

async fn exchange(
    shared: &Shared,
    x: &mut Exchange,
    address: SocketAddr,
    raw_target: &str,
    req: Request<Incoming>,
) -> Result<Answer, XRoadError> {
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
    x.received(&body);

    // Which gateway of the provider.
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

    // The request as it travels between the gateways.
    let forward_target =
        format_request_target(&resolved.service, &resolved.path, resolved.query.as_deref());
    let request_id = MessageId::generate();
    x.request_id = request_id.as_str().to_owned();
    let mut headers = filter_request_headers(&parts.headers);
    super::forward_xroad_headers(&mut headers, &h, &request_id)?;
    if let Some(v) = &h.subject {
        super::set_header(&mut headers, X_ACCORD_SUBJECT, v)?;
    }
    let request_hash = RequestHash::compute(&parts.method, &forward_target, &headers, &body);
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
    let result = shared
        .peers
        .send(
            tls,
            &gateway.address,
            expected_provider,
            &outgoing,
            max,
            shared.config.limits.provider_timeout,
        )
        .await;
    x.backend_us = Some(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
    let peer = format!("{}/{}", gateway.member, gateway.name);
    let (rparts, rbody, identity) = result.map_err(|e| match e {
        PeerError::Unreachable(why) => XRoadError::new(
            ErrorKind::ProviderUnreachable,
            format!("cannot reach the provider gateway {peer}: {why}"),
        ),
        PeerError::Timeout => XRoadError::new(
            ErrorKind::ProviderUnreachable,
            format!(
                "the provider gateway {peer} did not answer within {} ms",
                shared.config.limits.provider_timeout.as_millis()
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
    })?;
    x.answered_at = Some(OffsetDateTime::now_utc());

    // The provider's receipt, then the request hash.
    let log_id = identity.gateway_path();
    let key = shared.audit_key(&federation, &log_id).ok_or_else(|| {
        XRoadError::new(
            ErrorKind::InvalidProviderSignature,
            format!("the provider gateway {log_id} has no audit key registered, so its answer cannot be verified"),
        )
    })?;
    let response_sha = sha256_hex(&rbody);
    let recorded_path = x.path.clone();
    let service_text = resolved.service.to_string();
    let client_text = h.client.to_string();
    let verified = receipt::verify(
        &rparts.headers,
        &Expected {
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
        },
        &key,
        &shared.receipts,
    )
    .map_err(|why| {
        XRoadError::new(
            ErrorKind::InvalidProviderSignature,
            format!("the answer of {log_id} is not signed correctly: {why}"),
        )
    })?;
    let entry = &verified.entry;
    x.agreement = entry.agreement.as_ref().map(|a| (a.id.clone(), a.version));
    x.grant = entry.grant.clone();
    if let AuditDecision::Deny { reason } = &entry.decision {
        x.deny_reason = Some(reason.clone());
    }
    // The provider hashes every request it answers, denied ones included.
    request_hash.verify_response(&rparts.headers)?;

    let mut headers = filter_response_headers(&rparts.headers);
    // Only a permit names the agreement that allowed the call.
    let agreement = match (&entry.agreement, &entry.grant, &entry.decision) {
        (Some(a), Some(grant), AuditDecision::Permit) => {
            a.id.parse()
                .ok()
                .and_then(|id| AgreementRef::new(id, a.version, grant).ok())
        }
        _ => None,
    };
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
    // The client may keep the provider's receipt as its own proof.
    for name in [X_ACCORD_RECEIPT, X_ACCORD_RECEIPT_PROOF] {
        if let Some(v) = rparts.headers.get(&name) {
            headers.insert(name, v.clone());
        }
    }
    Ok(Answer {
        status: rparts.status,
        headers,
        body: rbody,
        error_type,
    })
}
