//! Outgoing connections: to provider gateways (mutual TLS, pooled per
//! provider gateway) and to the member's own backends (plain HTTP, pooled).
//!
//! The pool to provider gateways is small and explicit rather than a
//! generic HTTP client because each connection carries what its handshake
//! proved, the provider gateway's [`PeerIdentity`], and a connection is
//! only reused for the same expected provider. Sessions are never resumed
//! (see [`crate::tls`]), so a revoked certificate is refused on the next
//! new connection; idle connections are dropped when the trust changes
//! only by their own expiry, which is why the pool is bounded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use tokio::net::TcpStream;

use super::{read_body, Body, BodyError, Tls};
use crate::receipt::MAX_TAIL;
use crate::tls::{self, ExpectedProvider, PeerIdentity};

/// Idle connections kept per provider gateway.
const MAX_IDLE_PER_PEER: usize = 128;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

struct Conn {
    sender: SendRequest<Body>,
    identity: PeerIdentity,
    /// Why the connection ended, once it has (e.g. the provider's TLS alert).
    ended: std::sync::Arc<Mutex<Option<String>>>,
}

#[derive(Debug, Default, Clone)]
struct Stats {
    gateway: String,
    connections_opened: u64,
    requests: u64,
    failures: u64,
    last_error: Option<String>,
}

/// What the health endpoint says about one provider gateway.
#[derive(Debug, Clone, Serialize)]
pub struct PeerHealth {
    pub address: String,
    pub gateway: String,
    pub idle_connections: usize,
    pub connections_opened: u64,
    pub requests: u64,
    pub failures: u64,
    pub last_error: Option<String>,
}

#[derive(Default)]
pub(crate) struct PeerPool {
    idle: Mutex<HashMap<String, Vec<Conn>>>,
    stats: Mutex<HashMap<String, Stats>>,
}

/// A request to a provider gateway, kept whole so that it can be sent
/// again on a fresh connection if a pooled one turns out closed.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub method: http::Method,
    /// The r1 request target (`/r1/...`).
    pub target: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Outgoing {
    fn build(&self, address: &str) -> Result<Request<Body>, PeerError> {
        let mut request = Request::new(http_body_util::Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.target.parse().map_err(|_| {
            PeerError::Broken(format!(
                "the request target for {address} is not a valid URI"
            ))
        })?;
        *request.headers_mut() = self.headers.clone();
        if let Ok(host) = http::HeaderValue::from_str(&authority(address)?) {
            request.headers_mut().insert(http::header::HOST, host);
        }
        Ok(request)
    }
}

/// Why a call to a provider gateway failed.
#[derive(Debug)]
pub(crate) enum PeerError {
    /// No connection (TCP or TLS, including the peer refusing us).
    Unreachable(String),
    Timeout,
    /// The answer's body is over the limit.
    TooLarge,
    /// The connection broke or the answer is not HTTP.
    Broken(String),
}

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerError::Unreachable(why) => write!(f, "{why}"),
            PeerError::Timeout => write!(f, "no answer within the provider timeout"),
            PeerError::TooLarge => {
                write!(f, "the answer's body is larger than the gateway's limit")
            }
            PeerError::Broken(why) => write!(f, "{why}"),
        }
    }
}

/// The host:port of an `https://host:port` gateway address.
fn authority(address: &str) -> Result<String, PeerError> {
    let uri: http::Uri = address.parse().map_err(|_| {
        PeerError::Unreachable(format!("the gateway address {address:?} is not a URL"))
    })?;
    let authority = uri.authority().ok_or_else(|| {
        PeerError::Unreachable(format!("the gateway address {address:?} has no host"))
    })?;
    let port = authority.port_u16().unwrap_or(443);
    Ok(format!(
        "{}:{port}",
        authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
    ))
}

/// A readable reason from a hyper error, with the TLS refusal if there is
/// one (a provider refusing our certificate answers with an alert on the
/// first read).
fn describe(e: &hyper::Error) -> String {
    use std::error::Error as _;
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl PeerPool {
    fn note(&self, key: &str, gateway: &str, f: impl FnOnce(&mut Stats)) {
        if let Ok(mut stats) = self.stats.lock() {
            let entry = stats.entry(key.to_owned()).or_default();
            if entry.gateway.is_empty() {
                entry.gateway = gateway.to_owned();
            }
            f(entry);
        }
    }

    async fn connect(
        &self,
        tls: &Tls,
        address: &str,
        expected: &ExpectedProvider,
    ) -> Result<Conn, PeerError> {
        let target = authority(address)?;
        let server_name = tls::server_name_for_address(address)
            .map_err(|e| PeerError::Unreachable(e.to_string()))?;
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&target))
            .await
            .map_err(|_| PeerError::Unreachable(format!("connecting to {address} timed out")))?
            .map_err(|e| PeerError::Unreachable(format!("connecting to {address}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let (stream, identity) = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tls::connect(&tls.client, &tls.trust, server_name, expected.clone(), tcp),
        )
        .await
        .map_err(|_| PeerError::Unreachable(format!("the TLS handshake with {address} timed out")))?
        .map_err(|e| PeerError::Unreachable(format!("TLS with {address}: {e}")))?;
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(super::BUFFER)
            .handshake::<_, Body>(TokioIo::new(stream))
            .await
            .map_err(|e| PeerError::Unreachable(format!("HTTP with {address}: {e}")))?;
        let ended = std::sync::Arc::new(Mutex::new(None));
        let reason = ended.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "provider connection ended");
                if let Ok(mut r) = reason.lock() {
                    *r = Some(describe(&e));
                }
            }
        });
        Ok(Conn {
            sender,
            identity,
            ended,
        })
    }

    /// Sends `request` to the provider gateway at `address`, which must be
    /// `expected`, and waits for the head of its answer. The whole
    /// exchange, body and proof included, must end within `timeout`.
    /// Returns the answer's head and the rest of the answer, whose body is
    /// read with [`PeerAnswer::body`].
    pub async fn send(
        &self,
        tls: &Tls,
        address: &str,
        expected: ExpectedProvider,
        request: &Outgoing,
        timeout: Duration,
    ) -> Result<(http::response::Parts, PeerAnswer<'_>), PeerError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let key = format!("{address} {expected}");
        let gateway = expected.to_string();
        let result = tokio::time::timeout_at(
            deadline,
            self.send_inner(tls, address, &key, expected, request),
        )
        .await
        .unwrap_or(Err(PeerError::Timeout));
        match result {
            Ok((parts, body, conn)) => {
                self.note(&key, &gateway, |s| s.requests += 1);
                let answer = PeerAnswer {
                    identity: conn.identity.clone(),
                    body: Some(body),
                    tail: Vec::new(),
                    conn,
                    pool: self,
                    key,
                    gateway,
                    address: address.to_owned(),
                    deadline,
                };
                Ok((parts, answer))
            }
            Err(e) => {
                self.failed(&key, &gateway, &e, false);
                Err(e)
            }
        }
    }

    /// Counts a failure; `counted` if its request was already counted
    /// (the answer's head had come).
    fn failed(&self, key: &str, gateway: &str, e: &PeerError, counted: bool) {
        let message = e.to_string();
        self.note(key, gateway, |s| {
            if !counted {
                s.requests += 1;
            }
            s.failures += 1;
            s.last_error = Some(message);
        });
    }

    async fn send_inner(
        &self,
        tls: &Tls,
        address: &str,
        key: &str,
        expected: ExpectedProvider,
        outgoing: &Outgoing,
    ) -> Result<(http::response::Parts, Incoming, Conn), PeerError> {
        let mut reused = self.take_idle(key);
        loop {
            let fresh = reused.is_none();
            let mut conn = match reused.take() {
                Some(conn) => conn,
                None => {
                    let conn = self.connect(tls, address, &expected).await?;
                    self.note(key, &expected.to_string(), |s| s.connections_opened += 1);
                    conn
                }
            };
            if conn.sender.ready().await.is_err() {
                if fresh {
                    tokio::task::yield_now().await;
                    let why = conn
                        .ended
                        .lock()
                        .ok()
                        .and_then(|r| r.clone())
                        .unwrap_or_else(|| "no reason given".into());
                    return Err(PeerError::Unreachable(format!(
                        "{address} closed the connection right after the TLS handshake: {why}"
                    )));
                }
                reused = self.take_idle(key);
                continue;
            }
            let request = outgoing.build(address)?;
            match conn.sender.send_request(request).await {
                Ok(response) => {
                    let (parts, incoming) = response.into_parts();
                    return Ok((parts, incoming, conn));
                }
                Err(e) => {
                    // A pooled connection the provider closed meanwhile:
                    // the request never left, try a new one.
                    if !fresh && (e.is_canceled() || e.is_closed() || e.is_incomplete_message()) {
                        reused = self.take_idle(key);
                        continue;
                    }
                    // On a fresh connection, an error before any answer
                    // is the provider refusing or dropping us (with TLS
                    // 1.3 its refusal of our certificate arrives here).
                    return Err(if fresh {
                        PeerError::Unreachable(format!(
                            "{address} refused or dropped the connection: {}",
                            describe(&e)
                        ))
                    } else {
                        PeerError::Broken(format!("exchanging with {address}: {}", describe(&e)))
                    });
                }
            }
        }
    }

    fn take_idle(&self, key: &str) -> Option<Conn> {
        let mut idle = self.idle.lock().ok()?;
        let conns = idle.get_mut(key)?;
        while let Some(conn) = conns.pop() {
            if !conn.sender.is_closed() {
                return Some(conn);
            }
        }
        None
    }

    fn put_idle(&self, key: &str, conn: Conn) {
        if let Ok(mut idle) = self.idle.lock() {
            let conns = idle.entry(key.to_owned()).or_default();
            if conns.len() < MAX_IDLE_PER_PEER {
                conns.push(conn);
            }
        }
    }

    /// Drops every idle connection (after a trust change, so that the next
    /// exchange re-checks the peer).
    pub fn clear(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    pub fn health(&self) -> Vec<PeerHealth> {
        let idle: HashMap<String, usize> = self
            .idle
            .lock()
            .map(|i| i.iter().map(|(k, v)| (k.clone(), v.len())).collect())
            .unwrap_or_default();
        let stats = self.stats.lock().map(|s| s.clone()).unwrap_or_default();
        let mut out: Vec<PeerHealth> = stats
            .into_iter()
            .map(|(key, s)| PeerHealth {
                address: key.split(' ').next().unwrap_or_default().to_owned(),
                gateway: s.gateway,
                idle_connections: idle.get(&key).copied().unwrap_or(0),
                connections_opened: s.connections_opened,
                requests: s.requests,
                failures: s.failures,
                last_error: s.last_error,
            })
            .collect();
        out.sort_by(|a, b| a.address.cmp(&b.address));
        out
    }
}

/// A provider gateway's answer after its head (which [`PeerPool::send`]
/// returns beside it). Its body and then what follows it (the proof, see
/// [`crate::receipt::Tail`]) are read separately, so that the consumer can
/// act on the body (check it, start its own audit commit) while the
/// provider's proof is still to come. The connection goes back to the pool once the answer
/// has been read to its end; an answer dropped before that closes it.
pub(crate) struct PeerAnswer<'a> {
    /// What the TLS handshake proved about the provider gateway.
    pub identity: PeerIdentity,
    /// `None` once the answer has ended.
    body: Option<Incoming>,
    /// What came after the body's known length, so far.
    tail: Vec<u8>,
    conn: Conn,
    pool: &'a PeerPool,
    key: String,
    gateway: String,
    address: String,
    deadline: tokio::time::Instant,
}

impl PeerAnswer<'_> {
    /// Reads the body, at most `max` bytes: exactly `len` bytes if the
    /// caller knows its length (what follows, the proof, is left for
    /// [`PeerAnswer::tail`]), else to its end.
    pub async fn body(&mut self, len: Option<u64>, max: usize) -> Result<Bytes, PeerError> {
        if len.is_some_and(|n| n > max as u64) {
            return Err(self.fail(PeerError::TooLarge));
        }
        let read = tokio::time::timeout_at(self.deadline, self.read_data(len, max))
            .await
            .unwrap_or(Err(PeerError::Timeout));
        read.map_err(|e| self.fail(e))
    }

    async fn read_data(&mut self, len: Option<u64>, max: usize) -> Result<Bytes, PeerError> {
        // Frames as they come: one frame (a small body) needs no copy.
        let mut frames: Vec<Bytes> = Vec::new();
        let mut got: u64 = 0;
        while len.is_none_or(|n| got < n) {
            let Some(mut data) = self.next_data().await? else {
                break;
            };
            if let Some(n) = len {
                // What goes past the body is the tail.
                let room = usize::try_from(n - got).unwrap_or(usize::MAX);
                if data.len() > room {
                    let rest = data.split_off(room);
                    self.push_tail(rest)?;
                }
            }
            got += data.len() as u64;
            if got > max as u64 {
                return Err(PeerError::TooLarge);
            }
            frames.push(data);
        }
        if len.is_some_and(|n| got < n) {
            return Err(PeerError::Broken(format!(
                "the answer of {} ended before the length its receipt says",
                self.address
            )));
        }
        Ok(match frames.len() {
            0 => Bytes::new(),
            1 => frames.swap_remove(0),
            _ => Bytes::from(frames.concat()),
        })
    }

    /// The next piece of the answer's data; `None` at its end. Trailers
    /// are not part of the protocol between gateways and are refused.
    async fn next_data(&mut self) -> Result<Option<Bytes>, PeerError> {
        loop {
            let Some(body) = self.body.as_mut() else {
                return Ok(None);
            };
            match body.frame().await {
                None => self.body = None,
                Some(Err(e)) => {
                    return Err(PeerError::Broken(format!(
                        "reading the answer of {}: {}",
                        self.address,
                        describe(&e)
                    )))
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if data.is_empty() => {}
                    Ok(data) => return Ok(Some(data)),
                    Err(_) => {
                        return Err(PeerError::Broken(format!(
                            "the answer of {} carries trailers, which gateways do not send",
                            self.address
                        )))
                    }
                },
            }
        }
    }

    fn push_tail(&mut self, data: Bytes) -> Result<(), PeerError> {
        if self.tail.len() + data.len() > MAX_TAIL {
            return Err(PeerError::Broken(format!(
                "what follows the body of the answer of {} is longer than {MAX_TAIL} bytes",
                self.address
            )));
        }
        self.tail.extend_from_slice(&data);
        Ok(())
    }

    /// Reads what follows the body to the answer's end (empty if nothing
    /// does), and gives the connection back to the pool.
    pub async fn tail(mut self) -> Result<Bytes, PeerError> {
        let read = tokio::time::timeout_at(self.deadline, self.read_tail())
            .await
            .unwrap_or(Err(PeerError::Timeout));
        match read {
            Ok(tail) => {
                self.pool.put_idle(&self.key, self.conn);
                Ok(tail)
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    async fn read_tail(&mut self) -> Result<Bytes, PeerError> {
        while let Some(data) = self.next_data().await? {
            self.push_tail(data)?;
        }
        Ok(Bytes::from(std::mem::take(&mut self.tail)))
    }

    fn fail(&self, e: PeerError) -> PeerError {
        self.pool.failed(&self.key, &self.gateway, &e, true);
        e
    }
}

/// The client for the member's own backends: plain HTTP/1.1, pooled.
pub(crate) struct BackendClient {
    client: Client<HttpConnector, Body>,
}

/// Why a backend call failed.
#[derive(Debug)]
pub(crate) enum BackendError {
    Unavailable(String),
    Timeout,
    Invalid(String),
}

impl BackendClient {
    pub fn new() -> BackendClient {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .http1_max_buf_size(super::BUFFER)
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(MAX_IDLE_PER_PEER)
            .build(connector);
        BackendClient { client }
    }

    /// Sends `request` and reads the whole answer within `timeout`.
    pub async fn send(
        &self,
        request: Request<Body>,
        max_body: usize,
        timeout: Duration,
    ) -> Result<(http::response::Parts, Bytes), BackendError> {
        let call = async {
            let response: Response<hyper::body::Incoming> =
                self.client.request(request).await.map_err(|e| {
                    use std::error::Error as _;
                    let mut why = e.to_string();
                    let mut source = e.source();
                    let mut parse = false;
                    while let Some(s) = source {
                        why.push_str(": ");
                        why.push_str(&s.to_string());
                        if let Some(h) = s.downcast_ref::<hyper::Error>() {
                            parse |= h.is_parse() || h.is_parse_status() || h.is_parse_too_large();
                        }
                        source = s.source();
                    }
                    if e.is_connect() {
                        BackendError::Unavailable(why)
                    } else if parse {
                        BackendError::Invalid(format!("the answer is not valid HTTP ({why})"))
                    } else {
                        BackendError::Invalid(why)
                    }
                })?;
            if let Err(e) = accord_xroad::check_framing(response.headers()) {
                return Err(BackendError::Invalid(format!(
                    "the answer's framing is ambiguous: {e}"
                )));
            }
            let (parts, body) = response.into_parts();
            let body = read_body(body, max_body).await.map_err(|e| match e {
                BodyError::TooLarge => BackendError::Invalid(format!(
                    "the answer's body is larger than the gateway's limit of {max_body} bytes"
                )),
                BodyError::Read(why) => BackendError::Invalid(format!("reading the answer: {why}")),
            })?;
            Ok((parts, body))
        };
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or(Err(BackendError::Timeout))
    }
}
