//! `accord gateway serve`: the running gateway, joining its parts.
//!
//! A gateway has two listeners. The consumer side (plain HTTP) is where the
//! member's own information systems call services of other members with
//! the X-Road REST protocol r1 ([`consumer`]); it also serves `/healthz`
//! and `/metrics`. The provider side (mutual TLS) is where other members'
//! gateways call this member's services ([`provider`]). Between them sit
//! the parts built and tested separately: the federation configuration
//! ([`crate::federation`]), TLS trust ([`crate::tls`]), the audit log with
//! group commit ([`crate::audit_store`]), the decision index with quota
//! counters ([`crate::quota`]) and receipts ([`crate::receipt`]).
//!
//! Every exchange, permitted, denied or failed, on either side, ends in an
//! audit entry that is durable before the answer leaves; an exchange whose
//! entry cannot be written is answered with an internal error instead of
//! its result. While the provider's log is not busy the two gateways'
//! commits overlap: the provider answers with its entry as soon as it has
//! handed it to its group commit and sends the proof after the body once
//! the commit is durable (see [`crate::receipt`]), and the consumer commits
//! its own entry while that proof is on its way. Under load (the log's
//! group commits carry more than one entry) the provider answers whole
//! once durable, which costs both gateways less CPU per exchange.
//! If the proof then fails, a second consumer entry for the exchange says
//! so: the last entry for an X-Road-Id is the outcome. Each exchange's
//! outcome also becomes an operational record for the registry
//! ([`reporting`]), and the log's checkpoints are anchored at the registry.
//!
//! Connections are HTTP/1.1 (hyper) on both sides, kept alive; the consumer
//! gateway keeps a pool of mutual-TLS connections per provider gateway and
//! never resumes TLS sessions (see [`crate::tls`]).

pub(crate) mod consumer;
pub(crate) mod peers;
pub(crate) mod provider;
pub(crate) mod reporting;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use accord_audit::{AuditDecision, AuditEntry, Side};
use accord_ca::SigningKeyFile;
use accord_domain::monitoring::OperationalRecord;
use accord_xroad::{ErrorKind, Origin, XRoadError};
use anyhow::Context;
use bytes::Bytes;
use ed25519_dalek::VerifyingKey;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, ServerConfig};
use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::audit_store::{AuditError, AuditLog, AuditLogSettings, Receipt};
use crate::config::GatewayConfig;
use crate::federation::{ConfigSource, Federation, SourceSettings};
use crate::metrics::{Metrics, OutcomeLabel, SideLabel};
use crate::quota::Quotas;
use crate::receipt::CheckpointCache;
use crate::tls::{self, SharedTrust, TrustView};

pub(crate) type Body = Full<Bytes>;

/// Largest read buffer per HTTP connection. Bodies pass through it in
/// pieces of at most this size; with hyper's default (about 400 KiB) a
/// gateway holding hundreds of kept-alive connections that once carried
/// large bodies keeps tens of MiB resident.
pub(crate) const BUFFER: usize = 16 * 1024;

/// The TLS state, set once the first configuration arrives (the CA and the
/// trusted gateways come from it).
pub(crate) struct Tls {
    pub trust: SharedTrust,
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
}

/// Everything a request handler needs, shared by all connections.
pub(crate) struct Shared {
    pub config: GatewayConfig,
    pub log_id: String,
    pub source: Arc<ConfigSource>,
    pub tls: OnceLock<Tls>,
    pub audit: AuditLog,
    pub pseudonym_key: [u8; 32],
    pub quotas: Quotas,
    pub peers: peers::PeerPool,
    pub backend: peers::BackendClient,
    pub metrics: Metrics,
    pub records: reporting::RecordQueue,
    pub receipts: CheckpointCache,
    /// Parsed audit keys of other gateways, by their PEM text.
    pub audit_keys: Mutex<HashMap<String, VerifyingKey>>,
    /// Places for requests whose digests are computed aside (see
    /// [`PendingDigests`]).
    pub hashing_aside: Arc<tokio::sync::Semaphore>,
    own_cert_pem: String,
    own_key_pem: String,
}

impl Shared {
    /// The current configuration, or the X-Road error saying why there is none.
    pub fn federation(&self, origin: Origin) -> Result<Arc<Federation>, XRoadError> {
        self.source
            .current()
            .map_err(|e| XRoadError::new(ErrorKind::ConfigurationOutdated(origin), e.to_string()))
    }

    pub fn tls(&self, origin: Origin) -> Result<&Tls, XRoadError> {
        self.tls.get().ok_or_else(|| {
            XRoadError::new(
                ErrorKind::ConfigurationOutdated(origin),
                "the gateway has no federation configuration yet, so it cannot authenticate other gateways",
            )
        })
    }

    /// The audit key registered for gateway `member/name`, if any.
    pub fn audit_key(&self, federation: &Federation, log_id: &str) -> Option<VerifyingKey> {
        let gateway = federation
            .signed
            .payload
            .gateways
            .get(*federation.gateway_by_path.get(log_id)?)?;
        let pem = gateway.audit_key_pem.as_ref()?;
        let mut keys = self.audit_keys.lock().ok()?;
        if let Some(key) = keys.get(pem) {
            return Some(*key);
        }
        let key = accord_ca::parse_public_key_pem(pem).ok()?;
        keys.insert(pem.clone(), key);
        Some(key)
    }

    fn install_tls(&self, federation: &Federation) {
        if let Some(tls) = self.tls.get() {
            match tls.trust.update(federation) {
                // Pooled connections were verified under the old trust.
                Ok(()) => self.peers.clear(),
                Err(e) => {
                    tracing::error!(error = %e, "the new configuration's CA cannot be used; keeping the previous trust")
                }
            }
            return;
        }
        let built = TrustView::from_federation(federation).and_then(|view| {
            let trust = SharedTrust::new(view);
            let server = tls::server_config(trust.clone(), &self.own_cert_pem, &self.own_key_pem)?;
            let client = tls::client_config(trust.clone(), &self.own_cert_pem, &self.own_key_pem)?;
            Ok(Tls {
                trust,
                server,
                client,
            })
        });
        match built {
            Ok(tls) => {
                let _ = self.tls.set(tls);
            }
            Err(e) => tracing::error!(error = %e, "cannot set up TLS from the configuration"),
        }
    }

    /// Hands the exchange's entry to the audit log's next group commit and
    /// returns without waiting for it (see [`Recording::durable`]).
    pub async fn begin_record(
        &self,
        x: &Exchange,
        status: u16,
        error_type: Option<&str>,
        response_body: &[u8],
        response_sha256: Option<String>,
    ) -> Result<Recording, AuditError> {
        let entry = x.entry(status, error_type, response_body, response_sha256);
        let bytes = entry.canonical_bytes()?;
        let text = String::from_utf8(bytes)
            .map_err(|e| AuditError::Corrupt(format!("an entry is not UTF-8: {e}")))?;
        let appending = self.audit.enqueue_canonical(text.clone()).await?;
        Ok(Recording {
            entry,
            bytes: text.into_bytes(),
            appending,
        })
    }

    /// Counts a recorded exchange in the metrics and queues its
    /// operational record: once per exchange, for the entry that says how
    /// it ended.
    pub fn account(&self, x: &Exchange, entry: &AuditEntry) {
        let side = match x.side {
            Side::Consumer => SideLabel::Consumer,
            Side::Provider => SideLabel::Provider,
        };
        let outcome = if x.deny_reason.is_some() {
            OutcomeLabel::Deny
        } else if entry.error_type.is_some() {
            OutcomeLabel::Error
        } else {
            OutcomeLabel::Permit
        };
        self.metrics
            .exchange(side, outcome, x.started.elapsed().as_secs_f64());
        self.records.push(x.record(entry), &self.metrics);
    }
}

/// An exchange's entry on its way into the audit log.
#[derive(Debug)]
pub(crate) struct Recording {
    pub entry: AuditEntry,
    /// The entry's canonical bytes, as hashed into the log.
    pub bytes: Vec<u8>,
    appending: crate::audit_store::Appending,
}

impl Recording {
    /// Waits until the entry is durable: the entry, its canonical bytes
    /// and its receipt.
    pub async fn durable(self) -> Result<(AuditEntry, Vec<u8>, Receipt), AuditError> {
        let receipt = self.appending.durable().await?;
        Ok((self.entry, self.bytes, receipt))
    }
}

/// What one gateway knows about one exchange as it goes: filled in step by
/// step, so that whatever step fails, the audit entry says how far it got.
#[derive(Debug, Clone)]
pub(crate) struct Exchange {
    pub started: Instant,
    pub at: OffsetDateTime,
    pub side: Side,
    pub exchange_id: String,
    pub request_id: String,
    pub client: String,
    pub service: String,
    pub method: String,
    pub path: String,
    pub purpose: Option<String>,
    pub agreement: Option<(String, u32)>,
    pub grant: Option<String>,
    pub deny_reason: Option<String>,
    pub subject_pseudonym: Option<String>,
    pub request_body_sha256: String,
    pub request_size: u64,
    /// When the request left for the next hop and its answer came back.
    pub forwarded_at: Option<OffsetDateTime>,
    pub answered_at: Option<OffsetDateTime>,
    pub backend_us: Option<u64>,
}

/// Request bodies at least this large are hashed on a blocking thread
/// while the request goes on (to the provider gateway, or to the backend),
/// instead of before it leaves: at 64 KiB the two digests cost about
/// 0.1 ms on each gateway, on the path of every exchange. Smaller bodies
/// are hashed in place, where the hand-off would cost more than it saves.
const HASH_ASIDE_MIN: usize = 16 * 1024;
/// At most this many requests are hashed aside at once; beyond it (the
/// cores are busy anyway) they are hashed in place.
const HASH_ASIDE_MAX: usize = 4;

/// What a gateway records and checks of a request: the body's SHA-256
/// (the audit entry, the receipt) and X-Road's request hash.
#[derive(Debug, Clone)]
pub(crate) struct RequestDigests {
    pub body_sha256: String,
    pub request_hash: accord_xroad::RequestHash,
}

/// A request's digests, computed or being computed.
pub(crate) enum PendingDigests {
    Ready(RequestDigests),
    Aside(JoinHandle<RequestDigests>, Arc<RequestParts>),
}

/// What the digests are computed from, owned for a blocking thread.
pub(crate) struct RequestParts {
    method: http::Method,
    target: String,
    headers: HeaderMap,
    body: Bytes,
}

impl RequestParts {
    fn digests(&self) -> RequestDigests {
        RequestDigests::of(&self.method, &self.target, &self.headers, &self.body)
    }
}

impl RequestDigests {
    fn of(method: &http::Method, target: &str, headers: &HeaderMap, body: &[u8]) -> Self {
        RequestDigests {
            body_sha256: sha256_hex(body),
            request_hash: accord_xroad::RequestHash::compute(method, target, headers, body),
        }
    }
}

impl PendingDigests {
    /// Starts the digests of a request (`target` and `headers` as hashed by
    /// X-Road's request hash): in place for a small body, else aside.
    pub fn start(
        shared: &Shared,
        method: &http::Method,
        target: &str,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> PendingDigests {
        // The place is the job's, given back when the job ends, whether or
        // not anyone still waits for it.
        let slot = if body.len() >= HASH_ASIDE_MIN {
            shared.hashing_aside.clone().try_acquire_owned().ok()
        } else {
            None
        };
        let Some(slot) = slot else {
            return PendingDigests::Ready(RequestDigests::of(method, target, headers, body));
        };
        let parts = Arc::new(RequestParts {
            method: method.clone(),
            target: target.to_owned(),
            headers: headers.clone(),
            body: body.clone(),
        });
        let job = parts.clone();
        PendingDigests::Aside(
            tokio::task::spawn_blocking(move || {
                let _slot = slot;
                job.digests()
            }),
            parts,
        )
    }

    /// The digests, waiting for them if they are being computed.
    pub async fn finish(self) -> RequestDigests {
        match self {
            PendingDigests::Ready(digests) => digests,
            // The job only fails if the runtime is shutting down: compute
            // them here then.
            PendingDigests::Aside(job, parts) => job.await.unwrap_or_else(|_| parts.digests()),
        }
    }
}

/// SHA-256 of the empty string, the body hash of a request without body.
/// The SHA-256 of no bytes: what an exchange records until its request body
/// has been read.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    accord_audit::to_hex(&Sha256::digest(bytes))
}

fn millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The path as recorded: the data subject's identifier, where the path
/// carries it, becomes `{subject}`, so that logs and operational records
/// hold the subject only as a pseudonym.
pub(crate) fn recorded_path(path: &str, subject: Option<&str>) -> String {
    match subject {
        Some(subject) if !subject.is_empty() => {
            let encoded = accord_xroad::encode_path_segment(subject);
            path.replace(subject, "{subject}")
                .replace(&encoded, "{subject}")
        }
        _ => path.to_owned(),
    }
}

/// At most `max` bytes of `s` (on a character boundary), for fields that
/// record what a malformed request said.
pub(crate) fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

impl Exchange {
    /// An exchange as it arrives, and the request's raw target (path and
    /// query). Until the request is understood, the exchange's path is the
    /// raw target without the query (which may carry personal data), with
    /// the data subject, if the request names one, already replaced.
    pub fn begin<B>(side: Side, req: &http::Request<B>) -> (Exchange, String) {
        let raw_target = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let path = raw_target.split('?').next().unwrap_or_default();
        let subject = req
            .headers()
            .get(accord_xroad::request::X_ACCORD_SUBJECT)
            .and_then(|v| v.to_str().ok());
        let x = Exchange {
            started: Instant::now(),
            at: OffsetDateTime::now_utc(),
            side,
            exchange_id: String::new(),
            request_id: String::new(),
            client: String::new(),
            service: String::new(),
            method: clip(req.method().as_str(), 16),
            path: clip(&recorded_path(path, subject), 2000),
            purpose: None,
            agreement: None,
            grant: None,
            deny_reason: None,
            subject_pseudonym: None,
            request_body_sha256: EMPTY_SHA256.to_owned(),
            request_size: 0,
            forwarded_at: None,
            answered_at: None,
            backend_us: None,
        };
        (x, raw_target)
    }

    /// What the request's X-Road headers say of the exchange: its id, the
    /// client, the purpose, and the data subject as a pseudonym only.
    fn identify(
        &mut self,
        h: &accord_xroad::request::XRoadRequestHeaders,
        pseudonym_key: &[u8; 32],
    ) {
        self.exchange_id = h.message_id.as_str().to_owned();
        self.client = h.client.to_string();
        self.purpose = h.purpose.clone();
        self.subject_pseudonym = h
            .subject
            .as_deref()
            .map(|s| accord_audit::pseudonymize(pseudonym_key, s));
    }

    /// The entry for the answer given. `response_sha256` is the answer
    /// body's SHA-256 if the caller has already computed it.
    fn entry(
        &self,
        status: u16,
        error_type: Option<&str>,
        response_body: &[u8],
        response_sha256: Option<String>,
    ) -> AuditEntry {
        AuditEntry {
            exchange_id: self.exchange_id.clone(),
            request_id: self.request_id.clone(),
            at: self.at,
            side: self.side,
            client: self.client.clone(),
            service: self.service.clone(),
            method: self.method.clone(),
            path: self.path.clone(),
            purpose: self.purpose.clone(),
            agreement: self
                .agreement
                .as_ref()
                .map(|(id, version)| accord_audit::AgreementRef {
                    id: id.clone(),
                    version: *version,
                }),
            grant: self.grant.clone(),
            decision: match &self.deny_reason {
                Some(reason) => AuditDecision::Deny {
                    reason: reason.clone(),
                },
                None => AuditDecision::Permit,
            },
            status,
            error_type: error_type.map(str::to_owned),
            request_body_sha256: self.request_body_sha256.clone(),
            response_body_sha256: response_sha256.unwrap_or_else(|| sha256_hex(response_body)),
            request_size: self.request_size,
            response_size: response_body.len() as u64,
            total_us: u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            backend_us: self.backend_us,
            data_subject_pseudonym: self.subject_pseudonym.clone(),
        }
    }

    fn record(&self, entry: &AuditEntry) -> OperationalRecord {
        let side = match self.side {
            Side::Consumer => "consumer",
            Side::Provider => "provider",
        };
        let mut method = entry.method.to_ascii_uppercase();
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            method = "OTHER".into();
        }
        let status = if (100..=599).contains(&entry.status) {
            entry.status
        } else {
            500
        };
        OperationalRecord {
            record_id: uuid_v7(self.at),
            side: side.into(),
            client: clip(&entry.client, 2000),
            service: clip(&entry.service, 2000),
            method,
            path: clip(&entry.path, 2000),
            purpose: entry.purpose.clone(),
            agreement: self.agreement.as_ref().map(|a| a.0.clone()),
            agreement_version: self.agreement.as_ref().map(|a| a.1),
            grant: self.grant.clone(),
            deny_reason: self.deny_reason.clone(),
            status,
            success: entry.error_type.is_none() && self.deny_reason.is_none(),
            error_type: entry.error_type.clone(),
            request_in_ms: millis(self.at),
            request_out_ms: self.forwarded_at.map(millis),
            response_in_ms: self.answered_at.map(millis),
            response_out_ms: millis(OffsetDateTime::now_utc()).max(millis(self.at)),
            request_size: entry.request_size,
            response_size: entry.response_size,
            data_subject_pseudonym: entry.data_subject_pseudonym.clone(),
        }
    }
}

/// A UUID version 7 (RFC 9562 section 5.7): the time in milliseconds, then
/// random bits. Operational records are identified by it so that the
/// registry's primary-key index grows at its end, as records arrive in
/// time order, instead of at random places (a random id touched a random
/// page of a large index per record).
pub(crate) fn uuid_v7(at: OffsetDateTime) -> String {
    let millis = u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let mut bytes: [u8; 16] = rand::random();
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    bytes[6] = (bytes[6] & 0x0f) | 0x70;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = accord_audit::to_hex(&bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// An answer on its way to the client: status, headers, body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The X-Road error type, if the answer is an error.
    pub error_type: Option<String>,
}

impl Answer {
    pub fn into_response(self) -> Response<Body> {
        let mut response = Response::new(Full::new(self.body));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }

    pub fn error(error: &XRoadError, detail: &str) -> Answer {
        let rendered = error.render_with_detail(detail);
        Answer {
            status: rendered.status,
            headers: rendered.headers,
            body: Bytes::from(rendered.body),
            error_type: Some(error.error_type().into_owned()),
        }
    }
}

/// Sets the X-Road headers a gateway sends on with a request it forwards:
/// client and message ids, the user, issue and represented party it was
/// given, and the purpose. Each value was parsed from a header, so it is a
/// valid one; the error is for completeness.
pub(crate) fn forward_xroad_headers(
    headers: &mut HeaderMap,
    h: &accord_xroad::XRoadRequestHeaders,
    request_id: &accord_xroad::MessageId,
) -> Result<(), XRoadError> {
    use accord_xroad::request::{
        X_ACCORD_PURPOSE, X_ROAD_CLIENT, X_ROAD_ID, X_ROAD_ISSUE, X_ROAD_REPRESENTED_PARTY,
        X_ROAD_REQUEST_ID, X_ROAD_USER_ID,
    };
    let client = h.client.to_encoded();
    let party = h.represented_party.as_ref().map(|p| p.to_encoded());
    let values = [
        (X_ROAD_CLIENT, Some(client.as_str())),
        (X_ROAD_ID, Some(h.message_id.as_str())),
        (X_ROAD_REQUEST_ID, Some(request_id.as_str())),
        (X_ROAD_USER_ID, h.user_id.as_deref()),
        (X_ROAD_ISSUE, h.issue.as_deref()),
        (X_ROAD_REPRESENTED_PARTY, party.as_deref()),
        (X_ACCORD_PURPOSE, h.purpose.as_deref()),
    ];
    for (name, value) in values {
        if let Some(value) = value {
            set_header(headers, name, value)?;
        }
    }
    Ok(())
}

/// Sets one header, refusing a value HTTP cannot carry.
pub(crate) fn set_header(
    headers: &mut HeaderMap,
    name: http::HeaderName,
    value: &str,
) -> Result<(), XRoadError> {
    let value = HeaderValue::from_str(value).map_err(|_| {
        XRoadError::new(
            ErrorKind::InvalidHeader,
            format!("{name} cannot be carried in an HTTP header"),
        )
    })?;
    headers.insert(name, value);
    Ok(())
}

/// Logs an error answer with its detail id (the client sees the same id).
pub(crate) fn log_error(side: &str, x: &Exchange, error: &XRoadError, detail: &str) {
    if matches!(error.kind, ErrorKind::AccessDenied(..)) {
        tracing::info!(side, detail, exchange = %x.exchange_id, client = %x.client, service = %x.service, error = %error, "exchange denied");
    } else if matches!(error.kind, ErrorKind::Internal(_)) || !error.kind.is_client_error() {
        tracing::warn!(side, detail, exchange = %x.exchange_id, client = %x.client, service = %x.service, error = %error, "exchange failed");
    } else {
        tracing::info!(side, detail, exchange = %x.exchange_id, client = %x.client, service = %x.service, error = %error, "request refused");
    }
}

/// Why a body could not be read.
pub(crate) enum BodyError {
    TooLarge,
    Read(String),
}

/// Reads a whole body, refusing more than `max` bytes.
/// The request's message framing, the first check on both sides.
pub(crate) fn check_request_framing(headers: &HeaderMap) -> Result<(), XRoadError> {
    accord_xroad::check_framing(headers)
        .map(|_| ())
        .map_err(|e| {
            XRoadError::new(
                ErrorKind::BadRequest,
                format!("the request's message framing is ambiguous: {e}"),
            )
        })
}

/// The request's method: one the r1 protocol carries.
pub(crate) fn check_request_method(method: &http::Method) -> Result<(), XRoadError> {
    if accord_xroad::request::METHODS.contains(method) {
        Ok(())
    } else {
        Err(XRoadError::new(
            ErrorKind::InvalidHttpMethod,
            format!("the HTTP method {method} is not supported"),
        ))
    }
}

/// A request body over this gateway's limit of `max` bytes.
pub(crate) fn request_too_large(max: usize) -> XRoadError {
    XRoadError::new(
        ErrorKind::RequestTooLarge,
        format!("the request body is larger than this gateway's limit of {max} bytes"),
    )
}

/// A request's body, whole, up to `max` bytes.
pub(crate) async fn read_request_body(body: Incoming, max: usize) -> Result<Bytes, XRoadError> {
    read_body(body, max).await.map_err(|e| match e {
        BodyError::TooLarge => request_too_large(max),
        BodyError::Read(why) => XRoadError::new(
            ErrorKind::BadRequest,
            format!("the request body could not be read: {why}"),
        ),
    })
}

pub(crate) async fn read_body<B>(body: B, max: usize) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(BodyError::TooLarge)
            } else {
                Err(BodyError::Read(e.to_string()))
            }
        }
    }
}

/// Ends an exchange on either side: renders an error answer (logged with
/// the detail id its client sees), lets `finish` add headers, and records
/// the entry. Returns the answer, or, if the entry could not be recorded,
/// the internal error to send instead.
pub(crate) async fn conclude(
    shared: &Shared,
    origin: Origin,
    x: &mut Exchange,
    result: Result<Answer, XRoadError>,
    finish: impl FnOnce(&mut Answer),
) -> Result<Answer, Response<Body>> {
    let (answer, recording) = conclude_started(shared, origin, x, result, finish).await?;
    match recording.durable().await {
        Ok((entry, _, _)) => {
            shared.account(x, &entry);
            Ok(answer)
        }
        Err(e) => Err(audit_failed(origin, x, &e)),
    }
}

/// [`conclude`] up to handing the entry to the audit log: the caller waits
/// for it to be durable (and accounts for it) itself.
pub(crate) async fn conclude_started(
    shared: &Shared,
    origin: Origin,
    x: &mut Exchange,
    result: Result<Answer, XRoadError>,
    finish: impl FnOnce(&mut Answer),
) -> Result<(Answer, Recording), Response<Body>> {
    let side = match origin {
        Origin::ConsumerGateway => "consumer",
        Origin::ProviderGateway => "provider",
    };
    let mut answer = match result {
        Ok(answer) => answer,
        Err(error) => {
            let detail = accord_xroad::uuid_v4();
            log_error(side, x, &error, &detail);
            Answer::error(&error, &detail)
        }
    };
    finish(&mut answer);
    if x.method == http::Method::HEAD.as_str() {
        // An answer to HEAD carries no body (the error's, for instance,
        // would be dropped on the wire): the entry records the empty body
        // that is sent, which is also what the provider's receipt must
        // match at the consumer.
        answer.body = Bytes::new();
    }
    if x.exchange_id.is_empty() {
        // The request had no usable X-Road-Id: the entry still needs one.
        x.exchange_id = accord_xroad::uuid_v4();
    }
    let recording = shared
        .begin_record(
            x,
            answer.status.as_u16(),
            answer.error_type.as_deref(),
            &answer.body,
            None,
        )
        .await;
    match recording {
        Ok(recording) => Ok((answer, recording)),
        Err(e) => Err(audit_failed(origin, x, &e)),
    }
}

/// The answer when the audit log cannot take an entry: the exchange fails,
/// whatever its result was, because an unrecorded exchange must not happen.
pub(crate) fn audit_failed(origin: Origin, x: &Exchange, e: &AuditError) -> Response<Body> {
    let error = XRoadError::new(
        ErrorKind::Internal(origin),
        format!("the audit log could not record the exchange: {e}"),
    );
    let detail = accord_xroad::uuid_v4();
    tracing::error!(detail, exchange = %x.exchange_id, error = %error, "audit append failed; the exchange is refused");
    Answer::error(&error, &detail).into_response()
}

/// What `/healthz` reports.
#[derive(Debug, Serialize)]
pub struct Health {
    /// Whether the gateway can exchange now (configuration usable, TLS set up).
    pub ready: bool,
    pub gateway: String,
    pub configuration: crate::federation::ConfigurationHealth,
    pub audit: AuditHealth,
    pub monitoring: MonitoringHealth,
    pub peers: Vec<peers::PeerHealth>,
}

#[derive(Debug, Serialize)]
pub struct AuditHealth {
    pub entries: u64,
    /// Group commits since start, their mean size and duration.
    pub commits: u64,
    pub mean_batch: f64,
    pub mean_commit_ms: f64,
    pub last_checkpoint_size: Option<u64>,
    pub last_checkpoint_at: Option<String>,
    pub anchored_size: Option<u64>,
    pub anchor_error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct MonitoringHealth {
    pub queued: usize,
    pub sent: u64,
    pub dropped: u64,
    pub last_error: Option<String>,
}

impl Shared {
    pub async fn health(&self) -> Health {
        let configuration = self.source.health();
        let ready = configuration.usable && self.tls.get().is_some();
        let checkpoint = self.audit.latest_checkpoint().await;
        let (anchored_size, anchor_error) = self.records.anchor_status();
        let (queued, sent, dropped, last_error) = self.records.status();
        let stats = self.audit.commit_stats();
        Health {
            ready,
            gateway: self.log_id.clone(),
            configuration,
            audit: AuditHealth {
                entries: self.audit.size().await,
                commits: stats.commits,
                mean_batch: if stats.commits == 0 {
                    0.0
                } else {
                    stats.entries as f64 / stats.commits as f64
                },
                mean_commit_ms: if stats.commits == 0 {
                    0.0
                } else {
                    stats.commit_micros as f64 / stats.commits as f64 / 1000.0
                },
                last_checkpoint_size: checkpoint.as_ref().map(|c| c.checkpoint.size),
                last_checkpoint_at: checkpoint.as_ref().and_then(|c| {
                    c.checkpoint
                        .at
                        .format(&time::format_description::well_known::Rfc3339)
                        .ok()
                }),
                anchored_size,
                anchor_error,
            },
            monitoring: MonitoringHealth {
                queued,
                sent,
                dropped,
                last_error,
            },
            peers: self.peers.health(),
        }
    }

    async fn metrics_text(&self) -> String {
        let health = self.source.health();
        self.metrics.configuration_age.set(
            health
                .age_seconds
                .map_or(-1, |a| i64::try_from(a).unwrap_or(i64::MAX)),
        );
        self.metrics
            .configuration_usable
            .set(i64::from(health.usable));
        self.metrics
            .audit_entries
            .set(i64::try_from(self.audit.size().await).unwrap_or(i64::MAX));
        self.metrics
            .quota_counters
            .set(i64::try_from(self.quotas.len()).unwrap_or(i64::MAX));
        self.metrics.encode()
    }
}

fn json_response(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `/healthz` (200 when ready, 503 when not) and `/metrics`, on the
/// consumer listener.
pub(crate) async fn operations(shared: &Shared, path: &str) -> Option<Response<Body>> {
    match path {
        "/healthz" => {
            let health = shared.health().await;
            let status = if health.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            Some(json_response(status, &health))
        }
        "/metrics" => {
            let mut response = Response::new(Full::new(Bytes::from(shared.metrics_text().await)));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            Some(response)
        }
        _ => None,
    }
}

/// A running gateway.
pub struct Gateway {
    shared: Arc<Shared>,
    pub consumer_addr: SocketAddr,
    pub provider_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("gateway", &self.shared.log_id)
            .field("consumer_addr", &self.consumer_addr)
            .field("provider_addr", &self.provider_addr)
            .finish_non_exhaustive()
    }
}

fn read_secret(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("reading {what} {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "{what} {} is readable by group or others (mode {:o}); chmod 600 it",
                path.display(),
                mode & 0o777
            );
        }
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// Creates `path` (which must not exist) readable only by its owner.
fn write_new_secret(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// The pseudonym key: 64 hex characters in an owner-only file, created on
/// first start.
fn pseudonym_key(path: &std::path::Path) -> anyhow::Result<[u8; 32]> {
    if !path.exists() {
        let key: [u8; 32] = rand::random();
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        write_new_secret(path, &hex::encode(key))
            .with_context(|| format!("creating the pseudonym key {}", path.display()))?;
    }
    let text = read_secret(path, "the pseudonym key")?;
    hex::decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .with_context(|| {
            format!(
                "the pseudonym key {} is not 64 hex characters",
                path.display()
            )
        })
}

impl Gateway {
    /// Loads keys, opens the audit log, starts following the registry,
    /// binds both listeners and starts serving.
    pub async fn start(config: GatewayConfig) -> anyhow::Result<Gateway> {
        std::fs::create_dir_all(&config.state_dir)
            .with_context(|| format!("creating {}", config.state_dir.display()))?;
        let anchor_pem = std::fs::read_to_string(&config.anchor).with_context(|| {
            format!("reading the federation anchor {}", config.anchor.display())
        })?;
        let anchor = accord_ca::parse_public_key_pem(&anchor_pem)
            .with_context(|| format!("the federation anchor {}", config.anchor.display()))?;
        let own_cert_pem = std::fs::read_to_string(&config.certificate)
            .with_context(|| format!("reading the certificate {}", config.certificate.display()))?;
        let own_key_pem = read_secret(&config.key, "the TLS key")?;
        let audit_key = SigningKeyFile::load(&config.audit_key)
            .with_context(|| format!("the audit key {}", config.audit_key.display()))?;
        let pseudonym_key = pseudonym_key(&config.pseudonym_key)?;
        let log_id = config.log_id();

        let audit = AuditLog::open(
            AuditLogSettings {
                database_url: config.audit_database.clone(),
                log_id: log_id.clone(),
                max_batch: 256,
                max_wait: Duration::ZERO,
            },
            audit_key.clone(),
        )
        .await
        .context("opening the audit log")?;

        let source = ConfigSource::start(SourceSettings {
            registry_url: config.registry.clone(),
            instance: config.member.instance().to_owned(),
            anchor,
            cache_file: config.state_dir.join("configuration.json"),
            grace_period: config.grace_period,
            // The registry confirms the configuration when a long poll
            // returns: poll well within the grace period.
            poll_wait: (config.grace_period / 3)
                .clamp(Duration::from_secs(1), Duration::from_secs(25)),
            retry_delay: Duration::from_millis(500),
        });

        let consumer_listener = TcpListener::bind(config.consumer_listen)
            .await
            .with_context(|| format!("listening on {} (consumer side)", config.consumer_listen))?;
        let provider_listener = TcpListener::bind(config.provider_listen)
            .await
            .with_context(|| format!("listening on {} (provider side)", config.provider_listen))?;
        let consumer_addr = consumer_listener.local_addr()?;
        let provider_addr = provider_listener.local_addr()?;

        let metrics = Metrics::new();
        let shared = Arc::new(Shared {
            log_id: log_id.clone(),
            source: source.clone(),
            tls: OnceLock::new(),
            audit,
            pseudonym_key,
            quotas: Quotas::default(),
            peers: peers::PeerPool::default(),
            backend: peers::BackendClient::new(),
            metrics,
            records: reporting::RecordQueue::new(reporting::QUEUE_CAPACITY),
            receipts: CheckpointCache::default(),
            audit_keys: Mutex::new(HashMap::new()),
            hashing_aside: Arc::new(tokio::sync::Semaphore::new(HASH_ASIDE_MAX)),
            own_cert_pem,
            own_key_pem,
            config,
        });

        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        // Trust follows the configuration, put in force before the
        // configuration is published (a weak reference: the source is
        // held by `shared`).
        {
            let weak = Arc::downgrade(&shared);
            source.on_install(move |federation| {
                if let Some(shared) = weak.upgrade() {
                    shared.install_tls(federation);
                }
            });
        }
        tasks.push(tokio::spawn(consumer::serve(
            shared.clone(),
            consumer_listener,
            stopped.clone(),
        )));
        tasks.push(tokio::spawn(provider::serve(
            shared.clone(),
            provider_listener,
            stopped.clone(),
        )));
        tasks.push(tokio::spawn(reporting::anchor_checkpoints(
            shared.clone(),
            audit_key.clone(),
            stopped.clone(),
        )));
        tasks.push(tokio::spawn(reporting::send_records(
            shared.clone(),
            audit_key,
            stopped.clone(),
        )));
        tracing::info!(gateway = %log_id, consumer = %consumer_addr, provider = %provider_addr, "gateway started");
        Ok(Gateway {
            shared,
            consumer_addr,
            provider_addr,
            stop,
            tasks,
        })
    }

    /// The gateway's health, as `/healthz` reports it.
    pub async fn health(&self) -> Health {
        self.shared.health().await
    }

    /// Stops accepting, lets the reporters make a last attempt, and closes
    /// the audit log (every answered exchange is already durable).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        self.shared.audit.clone().close().await;
    }
}

/// Accepts connections until the gateway stops, each (without Nagle's
/// delay) handed to `on_connection` in a task of its own.
pub(crate) async fn accept_loop<F, Fut>(
    side: &'static str,
    listener: TcpListener,
    mut stopped: watch::Receiver<bool>,
    on_connection: F,
) where
    F: Fn(tokio::net::TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, address)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(on_connection(stream, address));
                }
                Err(e) => {
                    tracing::warn!(side, error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stopped.changed() => break,
        }
    }
}

/// Serves one connection's requests with `handler` until the peer closes
/// it or the gateway stops.
pub(crate) async fn serve_connection<IO, F, Fut, B>(
    io: IO,
    mut stopped: watch::Receiver<bool>,
    handler: F,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    F: Fn(http::Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes, Error = Infallible> + Send + 'static,
{
    let handler = Arc::new(handler);
    let service = hyper::service::service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler(req).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .max_buf_size(BUFFER)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        _ = stopped.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_are_uuid_v7_in_time_order() {
        let t0 = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let a = uuid_v7(t0);
        let b = uuid_v7(t0 + time::Duration::milliseconds(1));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "7");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
        assert!(a.starts_with("018bcfe5-6800"), "{a}");
        assert!(a < b);
        assert_ne!(uuid_v7(t0), uuid_v7(t0));
    }

    #[test]
    fn the_empty_body_hash_is_the_sha256_of_nothing() {
        assert_eq!(EMPTY_SHA256, sha256_hex(b""));
    }

    #[test]
    fn a_subject_in_the_path_is_recorded_as_a_placeholder() {
        assert_eq!(
            recorded_path("/persons/38001010008/residence", Some("38001010008")),
            "/persons/{subject}/residence"
        );
        assert_eq!(recorded_path("/a%20b/x", Some("a b")), "/{subject}/x");
        assert_eq!(recorded_path("/x", None), "/x");
    }
}
