//! `accord bench relay`: a bare reverse proxy built of the gateways' own
//! stack (tokio, hyper's HTTP/1.1 server and client, rustls with mutual
//! TLS 1.3), for path (d) of `accord bench exchange`.
//!
//! Why it exists: two of these relays carry the benchmark's exchange
//! exactly as two gateways do (plain HTTP in, mutual TLS between them,
//! plain HTTP to the backend, bodies read whole at each hop, one
//! keep-alive upstream connection per client connection, one worker
//! thread each), but do none of Accord's work: no r1 protocol, decision,
//! hashes, receipts, audit log or monitoring. In the same run as nginx,
//! they measure what the stack itself costs on this machine: the part of
//! the distance between the gateways and nginx that no change inside the
//! gateways can close.
//!
//! Not for deployment: it forwards whatever comes to one fixed upstream.
//! The command is hidden; the benchmark starts it as a child process so
//! that its CPU time and peak memory are a real process's, like nginx's
//! and the gateways'.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONNECTION, TRANSFER_ENCODING};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Which side of the pair a relay is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RelayRole {
    /// Plain HTTP in, mutual TLS out (where the consumer gateway stands).
    Front,
    /// Mutual TLS in, plain HTTP out (where the provider gateway stands).
    Back,
}

/// `accord bench relay`.
#[derive(Debug, Args)]
pub struct RelayArgs {
    #[arg(long, value_enum)]
    pub role: RelayRole,
    /// Where to listen.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Where to forward: the back relay (front), the backend (back).
    #[arg(long)]
    pub upstream: SocketAddr,
    /// The CA that issued both relays' certificates (PEM).
    #[arg(long)]
    pub ca: PathBuf,
    /// This relay's certificate (PEM): a client certificate for the front,
    /// a server certificate for the back.
    #[arg(long)]
    pub cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long)]
    pub key: PathBuf,
    /// The name in the back relay's certificate (front only; by default
    /// the one `bench exchange`'s throwaway PKI issues).
    #[arg(long, default_value = crate::bench_exchange::NGINX_B_NAME)]
    pub server_name: String,
    /// Worker threads (the gateways in the benchmark run with one).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Largest request or response body carried, in bytes.
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    pub max_body: usize,
}

/// What every connection of one relay needs.
pub struct Relay {
    tls: Side,
    upstream: SocketAddr,
    max_body: usize,
}

/// A relay's TLS side, by role.
enum Side {
    /// How the front relay reaches the back relay.
    Front(TlsConnector, ServerName<'static>),
    /// How the back relay accepts the front relay.
    Back(TlsAcceptor),
}

impl Relay {
    /// Reads the certificates and keys and builds the TLS side.
    pub fn new(args: &RelayArgs) -> anyhow::Result<Relay> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for ca in read_certs(&args.ca)? {
            roots
                .add(ca)
                .with_context(|| format!("{} is not a usable CA", args.ca.display()))?;
        }
        let certs = read_certs(&args.cert)?;
        let key = PrivateKeyDer::from_pem_file(&args.key)
            .with_context(|| format!("reading the private key {}", args.key.display()))?;
        let tls = match args.role {
            RelayRole::Front => {
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_protocol_versions(&[&rustls::version::TLS13])?
                    .with_root_certificates(roots)
                    .with_client_auth_cert(certs, key)
                    .context("the front relay's client certificate")?;
                let name = ServerName::try_from(args.server_name.clone())
                    .with_context(|| format!("{:?} is not a server name", args.server_name))?;
                Side::Front(TlsConnector::from(Arc::new(config)), name)
            }
            RelayRole::Back => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()
                .context("the back relay's client certificate check")?;
                let config = rustls::ServerConfig::builder_with_provider(provider)
                    .with_protocol_versions(&[&rustls::version::TLS13])?
                    .with_client_cert_verifier(verifier)
                    .with_single_cert(certs, key)
                    .context("the back relay's certificate")?;
                Side::Back(TlsAcceptor::from(Arc::new(config)))
            }
        };
        Ok(Relay {
            tls,
            upstream: args.upstream,
            max_body: args.max_body,
        })
    }

    /// Serves connections on `listener` until the process is stopped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let relay = self.clone();
            tokio::spawn(async move {
                if let Err(e) = relay.connection(stream).await {
                    tracing::warn!(error = %format!("{e:#}"), "a relayed connection ended");
                }
            });
        }
    }

    /// One incoming connection and its own upstream connection.
    async fn connection(self: Arc<Self>, stream: TcpStream) -> anyhow::Result<()> {
        let upstream = TcpStream::connect(self.upstream)
            .await
            .with_context(|| format!("connecting to {}", self.upstream))?;
        let _ = upstream.set_nodelay(true);
        match &self.tls {
            Side::Front(connector, name) => {
                let upstream = connector
                    .connect(name.clone(), upstream)
                    .await
                    .context("TLS to the back relay")?;
                let sender = handshake(upstream).await?;
                self.relay(stream, sender).await
            }
            Side::Back(acceptor) => {
                let incoming = acceptor
                    .accept(stream)
                    .await
                    .context("TLS from the front relay")?;
                let sender = handshake(upstream).await?;
                self.relay(incoming, sender).await
            }
        }
    }

    /// Serves the requests of `incoming`, each forwarded on `sender`.
    async fn relay<IO>(&self, incoming: IO, sender: SendRequest<Full<Bytes>>) -> anyhow::Result<()>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let sender = Arc::new(Mutex::new(sender));
        let max_body = self.max_body;
        let service = hyper::service::service_fn(move |req| {
            let sender = sender.clone();
            async move { Ok::<_, Infallible>(forward(&sender, req, max_body).await) }
        });
        hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(incoming), service)
            .await
            .context("serving HTTP/1.1")
    }
}

/// An HTTP/1.1 client connection on `io`, driven by a task of its own.
async fn handshake<IO>(io: IO) -> anyhow::Result<SendRequest<Full<Bytes>>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .context("HTTP/1.1 to the upstream")?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "an upstream connection ended");
        }
    });
    Ok(sender)
}

/// The upstream's answer to `req`, or a 502 that says why there is none.
async fn forward(
    sender: &Mutex<SendRequest<Full<Bytes>>>,
    req: Request<Incoming>,
    max_body: usize,
) -> Response<Full<Bytes>> {
    match try_forward(sender, req, max_body).await {
        Ok(response) => response,
        Err(why) => {
            let mut response = Response::new(Full::new(Bytes::from(format!("{why:#}\n"))));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    }
}

async fn try_forward(
    sender: &Mutex<SendRequest<Full<Bytes>>>,
    req: Request<Incoming>,
    max_body: usize,
) -> anyhow::Result<Response<Full<Bytes>>> {
    let (parts, body) = req.into_parts();
    let body = whole(body, max_body, "the request body").await?;
    let mut request = Request::from_parts(parts, Full::new(body));
    remove_hop_by_hop(request.headers_mut());
    // One request at a time on the connection (HTTP/1.1): the answer's
    // body is read before the next request may be sent.
    let mut sender = sender.lock().await;
    sender.ready().await.context("the upstream connection")?;
    let response = sender
        .send_request(request)
        .await
        .context("the upstream's answer")?;
    let (parts, body) = response.into_parts();
    let body = whole(body, max_body, "the answer's body").await?;
    drop(sender);
    let mut response = Response::from_parts(parts, Full::new(body));
    remove_hop_by_hop(response.headers_mut());
    Ok(response)
}

/// A body read to its end, at most `max` bytes of it.
async fn whole(body: Incoming, max: usize, what: &str) -> anyhow::Result<Bytes> {
    Ok(Limited::new(body, max)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading {what}: {e}"))?
        .to_bytes())
}

/// Removes the headers that concern one hop only.
fn remove_hop_by_hop(headers: &mut hyper::HeaderMap) {
    for name in [CONNECTION, TRANSFER_ENCODING] {
        headers.remove(name);
    }
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", path.display());
    Ok(certs)
}

/// Runs `accord bench relay` until the process is stopped.
pub async fn run(args: RelayArgs) -> anyhow::Result<()> {
    let relay = Arc::new(Relay::new(&args)?);
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    relay.serve(listener).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench_exchange::{write_nginx_pki, Backend, NginxPki, NGINX_B_NAME};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn args(role: RelayRole, upstream: SocketAddr, pki: &NginxPki) -> RelayArgs {
        let (cert, key) = match role {
            RelayRole::Front => (&pki.a_cert, &pki.a_key),
            RelayRole::Back => (&pki.b_cert, &pki.b_key),
        };
        RelayArgs {
            role,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            upstream,
            ca: pki.ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
            server_name: NGINX_B_NAME.into(),
            threads: 1,
            max_body: 1024 * 1024,
        }
    }

    /// Starts a relay on a free loopback port and returns the port's address.
    async fn start(args: RelayArgs) -> SocketAddr {
        let relay = Arc::new(Relay::new(&args).unwrap());
        let listener = TcpListener::bind(args.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(relay.serve(listener));
        addr
    }

    /// A throwaway PKI, the benchmark's backend and a back relay in front of
    /// it (the directory and the backend live as long as the values).
    async fn back_relay() -> (tempfile::TempDir, NginxPki, Backend, SocketAddr) {
        let dir = tempfile::tempdir().unwrap();
        let pki = write_nginx_pki(dir.path()).unwrap();
        let backend = Backend::start().unwrap();
        let back = start(args(RelayRole::Back, backend.addr, &pki)).await;
        (dir, pki, backend, back)
    }

    async fn post(addr: SocketAddr, body: Vec<u8>) -> (StatusCode, Bytes) {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let request = Request::post("/echo")
            .header(hyper::header::HOST, "relay.test")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    }

    /// A request goes through both relays, with mutual TLS between them, to
    /// the benchmark's backend and back, several times on one connection
    /// pair; a request over the relay's body limit gets a 502 that says so.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_exchange_crosses_both_relays_over_mutual_tls() {
        let (_dir, pki, _backend, back) = back_relay().await;
        let front = start(args(RelayRole::Front, back, &pki)).await;
        for size in [0, 1, 1024, 64 * 1024] {
            let (status, body) = post(front, vec![b'x'; size]).await;
            assert_eq!(status, StatusCode::OK, "{size} bytes");
            assert_eq!(body.len(), size, "the backend answers as many bytes");
            assert!(body.iter().all(|&b| b == b'y'));
        }
        let (status, body) = post(front, vec![b'x'; 1024 * 1024 + 1]).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        let why = String::from_utf8_lossy(&body);
        assert!(why.contains("reading the request body"), "{why}");
    }

    /// The back relay serves only clients with a certificate of the CA, as
    /// nginx B does: a TLS client without one gets no answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_back_relay_refuses_a_client_without_a_certificate() {
        let (_dir, pki, _backend, back) = back_relay().await;

        let mut roots = rustls::RootCertStore::empty();
        for ca in read_certs(&pki.ca).unwrap() {
            roots.add(ca).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = TlsConnector::from(Arc::new(config));
        let name = ServerName::try_from(NGINX_B_NAME).unwrap();
        let tcp = TcpStream::connect(back).await.unwrap();
        // TLS 1.3: the client's side of the handshake may complete; the
        // refusal comes as an alert instead of an answer.
        let answer = async {
            let mut tls = connector.connect(name, tcp).await?;
            tls.write_all(
                b"GET /echo HTTP/1.1\r\nhost: b\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
            .await?;
            let mut buf = Vec::new();
            tls.read_to_end(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        };
        match tokio::time::timeout(std::time::Duration::from_secs(10), answer)
            .await
            .expect("the back relay neither answered nor closed")
        {
            // The alert names the missing certificate; the connection may
            // also be reset before it is read.
            Err(e) => assert!(
                format!("{e}").to_lowercase().contains("certificate")
                    || matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::BrokenPipe
                            | std::io::ErrorKind::UnexpectedEof
                    ),
                "refused, but not for the certificate: {e}"
            ),
            Ok(answer) => assert!(
                answer.is_empty(),
                "a client without a certificate got an answer: {}",
                String::from_utf8_lossy(&answer)
            ),
        }
    }
}
