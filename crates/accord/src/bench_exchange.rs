//! `accord bench exchange`: what one call between agencies costs when it
//! crosses two Accord gateways, next to what it costs without them and
//! through the setup agencies deploy otherwise.
//!
//! Four paths carry the same POST (1 KiB and 64 KiB bodies by default) to
//! the same backend, which answers with a body of the same size:
//!
//! - **(a) direct**: client → backend, plain HTTP/1.1 keep-alive: what the
//!   machine can do at all;
//! - **(b) nginx + mTLS**: client → nginx A → TLS 1.3 with client
//!   certificates → nginx B → backend: two reverse proxies with mutual TLS,
//!   what an exchange without Accord looks like;
//! - **(c) Accord gateways**: client → consumer gateway → mutual TLS →
//!   provider gateway → backend, with the X-Road REST protocol, an agreement
//!   deciding every call and both audit logs committed before the answer;
//! - **(d) bare relays**: client → relay A → mutual TLS → relay B →
//!   backend, two `accord bench relay` processes built of the gateways'
//!   own stack (tokio, hyper, rustls; one worker thread each, bodies read
//!   whole, one upstream connection per client connection) that do none of
//!   Accord's work: what that stack alone costs here, so that a run shows
//!   how much of the distance from (c) to (b) is Accord's and how much the
//!   stack's (see `bench_relay`).
//!
//! Why it is built this way:
//!
//! - **One run, all paths, interleaved per body size.** The machine this
//!   runs on is small and shared; figures taken minutes apart are not
//!   comparable, ratios taken in one run are. Every process (backend, both
//!   nginx, both gateways, registry, load generator) shares the same cores,
//!   as in the issue's measurements.
//! - **Rounds against bursts of noise.** The machine's speed can also
//!   change within a run: on 2026-12-07 one path's p50 went from 1.2 to
//!   2.5 ms between two runs minutes apart. `--rounds N` measures every
//!   path and size N times, in turn, so that a slow minute costs one round
//!   of each path rather than all of one, and reports the median round's
//!   throughput (that round whole, so its CPU time matches its rate) and
//!   the latency of all rounds' requests together, with each round's
//!   figures beside them.
//! - **A fair baseline.** nginx runs as a tuned deployment would: two
//!   workers each, keep-alive upstreams (`keepalive 64`, HTTP/1.1,
//!   `Connection ""`), TLS 1.3, no access log, bodies kept in memory, no
//!   per-connection request limit. Its certificates come from a throwaway CA
//!   made with rcgen for this run.
//! - **Our own load generator.** A small hyper 1 client instead of wrk: it
//!   runs wherever `accord` runs, checks every answer (2xx, and a body of
//!   the expected size; anything else is an error and the run is invalid),
//!   and measures exactly what is reported. One task per connection sends
//!   requests one after the other (a closed loop): throughput with 64
//!   connections, latency with one, each after an untimed warm-up on the
//!   same connections.
//! - **Threads.** The load generator runs on its own multi-threaded tokio
//!   runtime with one worker per core, so neither the in-process registry
//!   nor the backend can starve it and it can saturate the machine on path
//!   (a). The backend runs on a single-threaded runtime on its own thread:
//!   it is trivial, and one thread keeps it from taking more than its share
//!   of the cores the proxies need. The command's own runtime only
//!   orchestrates and serves the registry, which is idle while timing.
//! - **Nothing left behind.** Everything lives in a temporary directory;
//!   nginx and the gateways are child processes in their own process
//!   groups, stopped (SIGTERM, then SIGKILL) on every way out, errors and
//!   Ctrl-C included.
//! - **Gateways as deployed.** The federation (two members, a service, an
//!   agreement both parties signed, the gateways' certificates and audit
//!   keys) is created in-process through the registry's own operations and
//!   served on a loopback port; the gateways are this binary's `accord
//!   gateway serve --config gateway.toml`, so their peak memory is a real
//!   process's. They log at `warn` (`--gateway-log`), as nginx's access log
//!   is off.
//!
//! ```text
//! scripts/bench-exchange                    # installs nginx, builds the dist profile, runs
//! cargo run --profile dist -p accord -- bench exchange --duration 10 --json
//! cargo run --profile dist -p accord -- bench exchange --paths direct,nginx --sizes 1k,64k,1m
//! cargo run --profile dist -p accord -- bench exchange --rounds 3
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::{Args, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_TYPE, HOST};
use hyper::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, Barrier};
use tokio::task::JoinSet;

use crate::bench_relay::RelayRole;
use crate::demo::gateways::free_port;
use accord_domain::agreement::AgreementTerms;
use accord_domain::{MemberId, Role};
use accord_registry::api::agreements as agreement_ops;
use accord_registry::api::audit::{register_audit_key, AuditKeyInput};
use accord_registry::api::gateways::{issue_certificate, CertificateInput};
use accord_registry::api::keys::{add_purpose, register_key, PurposeInput, SigningKeyInput};
use accord_registry::api::members::{add_member, MemberInput};
use accord_registry::api::services::{add_service, add_subsystem, ServiceInput, SubsystemInput};
use accord_registry::error::ApiError;
use accord_registry::{write_secret_file, InitOptions, Registry, RegistryPaths};

use crate::output;

/// `accord bench exchange`.
#[derive(Debug, Args)]
pub struct BenchExchangeArgs {
    /// Seconds of load per path and body size, with --connections connections (e.g. 10, 2.5, 500ms).
    #[arg(long, default_value = "10", value_parser = parse_seconds)]
    pub duration: Duration,
    /// Seconds of one connection's sequential requests per path and body size, for latency.
    #[arg(long, default_value = "5", value_parser = parse_seconds)]
    pub latency_duration: Duration,
    /// Untimed load on the same connections before each measurement.
    #[arg(long, default_value = "1", value_parser = parse_seconds)]
    pub warmup: Duration,
    /// Keep-alive connections for the throughput measurement.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Measure every path and size this many times, in turn (a, b, c, d,
    /// a, b, ...): a burst of noise on a shared machine then hits one round
    /// of every path rather than all of one path. The report gives each
    /// path's median round for throughput and all rounds' requests together
    /// for latency, and every round's figures beside them.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Request (and response) body sizes, e.g. 1024,64k,1MiB.
    #[arg(long, value_delimiter = ',', default_value = "1KiB,64KiB", value_parser = parse_size)]
    pub sizes: Vec<usize>,
    /// Paths to measure: direct (a), nginx (b), accord (c), relay (d).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "direct,nginx,accord,relay"
    )]
    pub paths: Vec<ExchangePath>,
    /// The nginx binary (default: /usr/sbin/nginx, else nginx on PATH).
    #[arg(long)]
    pub nginx: Option<PathBuf>,
    /// Log filter of the gateway processes (ACCORD_LOG); warn matches nginx's access_log off.
    #[arg(long, default_value = "warn")]
    pub gateway_log: String,
    /// Worker threads of each gateway (`accord gateway serve --threads`)
    /// and of each bare relay of path (d). Both gateways, the load
    /// generator, the backend and the registry share this machine's cores;
    /// nginx runs two workers per instance.
    #[arg(long, default_value_t = 1)]
    pub gateway_threads: usize,
    /// Seconds to wait for the gateways to say they are ready.
    #[arg(long, default_value = "60", value_parser = parse_seconds)]
    pub gateway_timeout: Duration,
}

/// One way from the client to the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExchangePath {
    /// (a) client → backend.
    Direct,
    /// (b) client → nginx → mTLS → nginx → backend.
    Nginx,
    /// (c) client → Accord gateway → mTLS → Accord gateway → backend.
    Accord,
    /// (d) client → bare relay → mTLS → bare relay → backend.
    Relay,
}

impl ExchangePath {
    const ALL: [ExchangePath; 4] = [
        ExchangePath::Direct,
        ExchangePath::Nginx,
        ExchangePath::Accord,
        ExchangePath::Relay,
    ];

    fn label(self) -> &'static str {
        match self {
            ExchangePath::Direct => "(a) direct",
            ExchangePath::Nginx => "(b) nginx + mTLS",
            ExchangePath::Accord => "(c) Accord gateways",
            ExchangePath::Relay => "(d) bare relays",
        }
    }
}

// Targets from the issue, checked at the end.
/// (c) must carry at least this share of (b)'s throughput.
const MIN_SHARE_OF_NGINX: f64 = 0.5;
/// (c) may add at most this much to (a)'s median latency.
const MAX_ADDED_P50: Duration = Duration::from_millis(1);
/// Each gateway's peak resident memory must stay below this.
const MAX_GATEWAY_RSS_BYTES: u64 = 64 * 1024 * 1024;

/// How long a measurement may run past its end waiting for answers.
const ANSWER_GRACE: Duration = Duration::from_secs(10);
/// How long a stopped child gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// Largest body size accepted on the command line.
const MAX_BODY: usize = 8 * 1024 * 1024;

// The benchmark federation.
const INSTANCE: &str = "BENCH";
const CONSUMER_MEMBER: &str = "BENCH/GOV/1000";
const CLIENT_SUBSYSTEM: &str = "BENCH/GOV/1000/client";
const PROVIDER_MEMBER: &str = "BENCH/GOV/2000";
const PROVIDER_SUBSYSTEM_CODE: &str = "app";
const SERVICE: &str = "BENCH/GOV/2000/app/echo";
const PURPOSE: &str = "exchange-benchmark";
const GATEWAY_NAME: &str = "gw1";
/// The TLS name of nginx B in the throwaway PKI.
pub(crate) const NGINX_B_NAME: &str = "nginx-b.accord-bench.test";

/// Runs `accord bench exchange`.
pub async fn run(args: BenchExchangeArgs, json: bool) -> anyhow::Result<()> {
    check_args(&args)?;
    let dir = tempfile::Builder::new()
        .prefix("accord-bench-exchange-")
        .tempdir()
        .context("creating a temporary directory for the benchmark")?;
    // Everything `bench` starts is stopped when it returns (or is dropped on
    // Ctrl-C), before the directory is removed.
    let report = crate::bench::interruptible(bench(&args, dir.path())).await?;
    drop(dir);
    if json {
        output::json(&report)?;
    } else {
        print_report(&report);
    }
    if report.errors > 0 {
        bail!(
            "{} requests failed: these figures are not valid (first failure: {})",
            report.errors,
            report
                .results
                .iter()
                .find_map(|r| r.first_error.clone())
                .unwrap_or_default()
        );
    }
    Ok(())
}

fn check_args(args: &BenchExchangeArgs) -> anyhow::Result<()> {
    if args.duration.is_zero() || args.latency_duration.is_zero() {
        bail!("--duration and --latency-duration must be positive");
    }
    if args.connections == 0 || args.connections > 4096 {
        bail!("--connections must be between 1 and 4096");
    }
    if args.rounds == 0 || args.rounds > 100 {
        bail!("--rounds must be between 1 and 100");
    }
    if args.sizes.is_empty() || args.paths.is_empty() {
        bail!("give at least one --sizes and one --paths");
    }
    Ok(())
}

/// Starts everything, measures every path and size, reads peak memory.
async fn bench(args: &BenchExchangeArgs, dir: &Path) -> anyhow::Result<Report> {
    let mut paths: Vec<ExchangePath> = Vec::new();
    for p in ExchangePath::ALL {
        if args.paths.contains(&p) {
            paths.push(p);
        }
    }
    let nginx_bin = if paths.contains(&ExchangePath::Nginx) {
        Some(find_nginx(args.nginx.as_deref())?)
    } else {
        None
    };
    let accord_bin = if paths.contains(&ExchangePath::Accord) {
        Some(check_gateway_command().await?)
    } else {
        None
    };
    let relay_bin = if paths.contains(&ExchangePath::Relay) {
        Some(std::env::current_exe().context("finding this accord executable")?)
    } else {
        None
    };

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let nginx_version = match &nginx_bin {
        Some(bin) => Some(nginx_version(bin).await?),
        None => None,
    };
    eprintln!(
        "machine: {cpus} CPUs, {build} build{}; {} s with {} connections and {} s with one, \
         after {} s of warm-up, per path and body size{}",
        nginx_version
            .as_deref()
            .map(|v| format!(", {v}"))
            .unwrap_or_default(),
        args.duration.as_secs_f64(),
        args.connections,
        args.latency_duration.as_secs_f64(),
        args.warmup.as_secs_f64(),
        if args.rounds > 1 {
            format!(", {} rounds", args.rounds)
        } else {
            String::new()
        },
    );
    if cfg!(debug_assertions) {
        eprintln!("warning: debug build: run scripts/bench-exchange (or cargo run --release) for real figures");
    }

    let load = LoadRuntime::new(cpus)?;
    let backend = Backend::start()?;
    let max_size = args.sizes.iter().copied().max().unwrap_or(0);

    let mut targets: HashMap<ExchangePath, Arc<Target>> = HashMap::new();
    targets.insert(
        ExchangePath::Direct,
        Arc::new(Target::new(backend.addr, "/echo", &[])?),
    );
    let nginx = match &nginx_bin {
        Some(bin) => {
            let spinner = spinner("starting nginx A and B (mutual TLS between them)")?;
            let pair = NginxPair::start(bin, &dir.join("nginx"), backend.addr, max_size).await?;
            spinner.finish_and_clear();
            targets.insert(
                ExchangePath::Nginx,
                Arc::new(Target::new(pair.front_addr, "/echo", &[])?),
            );
            Some(pair)
        }
        None => None,
    };
    let accord = match &accord_bin {
        Some(bin) => {
            let pair = AccordPair::start(bin, &dir.join("accord"), backend.addr, args).await?;
            let path = format!("/r1/{SERVICE}/bench");
            targets.insert(
                ExchangePath::Accord,
                Arc::new(Target::new(
                    pair.consumer_addr,
                    &path,
                    &[
                        ("x-road-client", CLIENT_SUBSYSTEM.to_owned()),
                        ("x-accord-purpose", PURPOSE.to_owned()),
                    ],
                )?),
            );
            Some(pair)
        }
        None => None,
    };

    let relay = match &relay_bin {
        Some(bin) => {
            let pair = RelayPair::start(
                bin,
                &dir.join("relay"),
                backend.addr,
                max_size,
                args.gateway_threads,
            )
            .await?;
            targets.insert(
                ExchangePath::Relay,
                Arc::new(Target::new(pair.front_addr, "/echo", &[])?),
            );
            Some(pair)
        }
        None => None,
    };

    // Every path must answer correctly once before anything is timed.
    for &path in &paths {
        let target = targets
            .get(&path)
            .with_context(|| format!("no target for {}", path.label()))?;
        let body = Bytes::from(vec![b'x'; max_size]);
        probe(target, &body, Duration::from_secs(15))
            .await
            .map_err(|e| {
                let logs = match path {
                    ExchangePath::Direct => String::new(),
                    ExchangePath::Nginx => nginx.as_ref().map(NginxPair::logs).unwrap_or_default(),
                    ExchangePath::Accord => {
                        accord.as_ref().map(AccordPair::logs).unwrap_or_default()
                    }
                    ExchangePath::Relay => relay.as_ref().map(RelayPair::logs).unwrap_or_default(),
                };
                anyhow!("{} does not answer correctly: {e}{logs}", path.label())
            })?;
    }

    // The processes whose CPU time a path costs (direct: none; its backend
    // runs in this process, beside the load generator).
    let servers = |path: ExchangePath| -> Vec<u32> {
        match path {
            ExchangePath::Direct => Vec::new(),
            ExchangePath::Nginx => nginx
                .as_ref()
                .map(|n| vec![n.front.pid, n.back.pid])
                .unwrap_or_default(),
            ExchangePath::Accord => accord
                .as_ref()
                .map(|a| vec![a.consumer.pid, a.provider.pid])
                .unwrap_or_default(),
            ExchangePath::Relay => relay
                .as_ref()
                .map(|r| vec![r.front.pid, r.back.pid])
                .unwrap_or_default(),
        }
    };
    // Every round measures every size and path once, in the same order;
    // each size's body is made once and shared (`Bytes` clones are cheap).
    let mut rounds: Vec<(ExchangePath, usize, Bytes, Vec<Round>)> = Vec::new();
    for &size in &args.sizes {
        let body = Bytes::from(vec![b'x'; size]);
        for &path in &paths {
            rounds.push((path, size, body.clone(), Vec::with_capacity(args.rounds)));
        }
    }
    for round in 1..=args.rounds {
        for (path, size, body, measured) in &mut rounds {
            let (path, size) = (*path, *size);
            let target = targets
                .get(&path)
                .with_context(|| format!("no target for {}", path.label()))?;
            let mut prefix = format!("{} {}", path.label(), human_size(size));
            if args.rounds > 1 {
                prefix = format!("round {round}/{}: {prefix}", args.rounds);
            }
            let latency = measure(
                &load,
                target,
                body,
                LoadShape {
                    connections: 1,
                    warmup: args.warmup,
                    duration: args.latency_duration,
                },
                &format!("{prefix}: latency, 1 connection"),
                &[],
            )
            .await?;
            let throughput = measure(
                &load,
                target,
                body,
                LoadShape {
                    connections: args.connections,
                    warmup: args.warmup,
                    duration: args.duration,
                },
                &format!("{prefix}: throughput, {} connections", args.connections),
                &servers(path),
            )
            .await?;
            measured.push(Round {
                throughput,
                latency,
            });
        }
    }
    let results: Vec<PathResult> = rounds
        .into_iter()
        .map(|(path, size, _, measured)| PathResult::new(path, size, args.connections, measured))
        .collect();

    let mut memory = Vec::new();
    if let Some(pair) = &nginx {
        memory.push(MemoryResult::read(
            ExchangePath::Nginx,
            "nginx A (front: plain HTTP in, mTLS out)",
            pair.front.pid,
        )?);
        memory.push(MemoryResult::read(
            ExchangePath::Nginx,
            "nginx B (back: mTLS in, plain HTTP out)",
            pair.back.pid,
        )?);
    }
    if let Some(pair) = &accord {
        memory.push(MemoryResult::read(
            ExchangePath::Accord,
            "Accord consumer gateway",
            pair.consumer.pid,
        )?);
        memory.push(MemoryResult::read(
            ExchangePath::Accord,
            "Accord provider gateway",
            pair.provider.pid,
        )?);
    }

    if let Some(pair) = &relay {
        memory.push(MemoryResult::read(
            ExchangePath::Relay,
            "relay A (front: plain HTTP in, mTLS out)",
            pair.front.pid,
        )?);
        memory.push(MemoryResult::read(
            ExchangePath::Relay,
            "relay B (back: mTLS in, plain HTTP out)",
            pair.back.pid,
        )?);
    }

    // Stop the children now, in order, rather than at the end of scope.
    drop(relay);
    drop(accord);
    drop(nginx);
    drop(backend);
    drop(load);

    let checks = checks(&results, &memory);
    let errors = results.iter().map(|r| r.errors()).sum();
    Ok(Report {
        machine: Machine {
            cpus,
            build,
            nginx: nginx_version,
        },
        settings: Settings {
            duration_s: args.duration.as_secs_f64(),
            latency_duration_s: args.latency_duration.as_secs_f64(),
            warmup_s: args.warmup.as_secs_f64(),
            connections: args.connections,
            sizes: args.sizes.clone(),
            rounds: args.rounds,
        },
        results,
        memory,
        checks,
        errors,
        valid: errors == 0,
    })
}

// ---------------------------------------------------------------------------
// Command-line values

/// Seconds as `10`, `2.5`, `10s` or `500ms`.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, scale) = if let Some(ms) = t.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(s) = t.strip_suffix('s') {
        (s, 1.0)
    } else {
        (t, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds (e.g. 10, 2.5, 500ms)"))?;
    Duration::try_from_secs_f64(value * scale)
        .map_err(|_| format!("{text:?} is not a duration of zero or more seconds"))
}

/// Bytes as `1024`, `64k`, `64KiB`, `1m` or `1MiB` (k and m are powers of 1024).
fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let value: usize = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 1024, 64k, 1MiB)"))?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit (use k or m, powers of 1024)"
            ))
        }
    };
    let bytes = value
        .checked_mul(scale)
        .filter(|b| (1..=MAX_BODY).contains(b))
        .ok_or_else(|| format!("{text:?}: a body size must be between 1 byte and 8 MiB"))?;
    Ok(bytes)
}

fn human_size(bytes: usize) -> String {
    if bytes >= 1024 * 1024 && bytes % (1024 * 1024) == 0 {
        format!("{} MiB", bytes / (1024 * 1024))
    } else if bytes >= 1024 && bytes % 1024 == 0 {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

// ---------------------------------------------------------------------------
// The load generator

/// Where requests go, and what they carry besides the body.
struct Target {
    addr: SocketAddr,
    uri: Uri,
    headers: HeaderMap,
}

impl Target {
    fn new(
        addr: SocketAddr,
        path: &str,
        extra: &[(&'static str, String)],
    ) -> anyhow::Result<Target> {
        let uri: Uri = path
            .parse()
            .with_context(|| format!("{path:?} is not a request path"))?;
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_str(&addr.to_string())?);
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        for (name, value) in extra {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).with_context(|| format!("header {name}"))?,
            );
        }
        Ok(Target { addr, uri, headers })
    }

    fn request(&self, body: Bytes) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

type Sender = SendRequest<Full<Bytes>>;

/// Opens one HTTP/1.1 connection; its driver runs on the current runtime.
async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("setting TCP_NODELAY: {e}"))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {addr}: {e}"))?;
    tokio::spawn(async move {
        // Its failure shows in the next request on it.
        let _ = connection.await;
    });
    Ok(sender)
}

/// One request and its whole answer, on `sender` (opened or reopened as
/// needed; kept only while the server keeps the connection alive). An
/// answer is right if it is 2xx with a body as large as the request's.
async fn exchange(
    sender: &mut Option<Sender>,
    target: &Target,
    body: &Bytes,
    reconnects: &mut u64,
) -> Result<(), String> {
    let mut s = match sender.take() {
        Some(s) if !s.is_closed() => s,
        _ => match connect(target.addr).await {
            Ok(s) => {
                *reconnects += 1;
                s
            }
            Err(e) => {
                // Do not spin on a refused connection.
                tokio::time::sleep(Duration::from_millis(10)).await;
                return Err(e);
            }
        },
    };
    s.ready()
        .await
        .map_err(|e| format!("connection to {} lost: {e}", target.addr))?;
    let response = s
        .send_request(target.request(body.clone()))
        .await
        .map_err(|e| format!("request to {} failed: {e}", target.addr))?;
    let status = response.status();
    let keep_alive = !response
        .headers()
        .get(CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let mut incoming = response.into_body();
    let mut received = 0usize;
    let mut snippet = Vec::new();
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|e| format!("reading the answer ({status}): {e}"))?;
        if let Some(data) = frame.data_ref() {
            received += data.len();
            if !status.is_success() && snippet.len() < 300 {
                let room = 300 - snippet.len();
                snippet.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
    }
    if keep_alive {
        *sender = Some(s);
    }
    if !status.is_success() {
        return Err(format!(
            "answered {status}: {}",
            String::from_utf8_lossy(&snippet).trim()
        ));
    }
    if received != body.len() {
        return Err(format!(
            "answered {received} bytes, expected {}",
            body.len()
        ));
    }
    Ok(())
}

/// Tries one request until it succeeds or `patience` runs out.
async fn probe(target: &Target, body: &Bytes, patience: Duration) -> Result<(), String> {
    let until = Instant::now() + patience;
    let mut sender = None;
    let mut reconnects = 0;
    loop {
        let attempt = tokio::time::timeout(
            ANSWER_GRACE,
            exchange(&mut sender, target, body, &mut reconnects),
        )
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", ANSWER_GRACE.as_secs())));
        match attempt {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= until => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// How many connections, for how long.
#[derive(Debug, Clone, Copy)]
struct LoadShape {
    connections: usize,
    warmup: Duration,
    duration: Duration,
}

/// What one connection's task measured after its warm-up.
#[derive(Debug, Default)]
struct ConnectionStats {
    requests: u64,
    errors: u64,
    reconnects: u64,
    /// Nanoseconds per successful request.
    latencies: Vec<u64>,
    first_error: Option<String>,
}

/// What one measurement measured, over all its connections.
#[derive(Debug, Default)]
struct LoadResult {
    requests: u64,
    errors: u64,
    reconnects: u64,
    elapsed: Duration,
    /// CPU seconds the path's servers used while timing (none for direct).
    server_cpu_s: Option<f64>,
    /// Nanoseconds per successful request, ascending.
    latencies: Vec<u64>,
    first_error: Option<String>,
}

/// One connection's loop: warm up, wait for the others, then requests one
/// after the other until its deadline.
async fn connection_task(
    target: Arc<Target>,
    body: Bytes,
    shape: LoadShape,
    barrier: Arc<Barrier>,
    done: Arc<AtomicU64>,
) -> ConnectionStats {
    let mut stats = ConnectionStats::default();
    let mut sender = None;
    let warm_until = Instant::now() + shape.warmup;
    let mut ignored = 0;
    // Open the connection even without a warm-up, so the clock does not time it.
    let _ = exchange(&mut sender, &target, &body, &mut ignored).await;
    while Instant::now() < warm_until {
        let _ = tokio::time::timeout(
            ANSWER_GRACE,
            exchange(&mut sender, &target, &body, &mut ignored),
        )
        .await;
        done.fetch_add(1, Ordering::Relaxed);
    }
    barrier.wait().await;
    let deadline = Instant::now() + shape.duration;
    let give_up = tokio::time::Instant::from_std(deadline + ANSWER_GRACE);
    while Instant::now() < deadline {
        let started = Instant::now();
        let outcome = tokio::time::timeout_at(
            give_up,
            exchange(&mut sender, &target, &body, &mut stats.reconnects),
        )
        .await;
        match outcome {
            Ok(Ok(())) => {
                stats.requests += 1;
                let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                stats.latencies.push(nanos);
            }
            Ok(Err(e)) => {
                stats.errors += 1;
                stats.first_error.get_or_insert(e);
            }
            Err(_) => {
                stats.errors += 1;
                stats.first_error.get_or_insert(format!(
                    "no answer within {} s after the end of the measurement",
                    ANSWER_GRACE.as_secs()
                ));
                break;
            }
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    stats
}

/// The load generator's own runtime (see the module comment).
struct LoadRuntime(Option<tokio::runtime::Runtime>);

impl LoadRuntime {
    fn new(workers: usize) -> anyhow::Result<LoadRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .thread_name("bench-load")
            .enable_all()
            .build()
            .context("starting the load generator's runtime")?;
        Ok(LoadRuntime(Some(runtime)))
    }

    fn handle(&self) -> anyhow::Result<&tokio::runtime::Handle> {
        self.0
            .as_ref()
            .map(tokio::runtime::Runtime::handle)
            .context("the load generator's runtime is stopped")
    }
}

impl Drop for LoadRuntime {
    fn drop(&mut self) {
        // Dropping a runtime may not block inside another runtime.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Runs one measurement, showing its progress.
async fn measure(
    load: &LoadRuntime,
    target: &Arc<Target>,
    body: &Bytes,
    shape: LoadShape,
    what: &str,
    servers: &[u32],
) -> anyhow::Result<LoadResult> {
    let handle = load.handle()?;
    let total = shape.warmup + shape.duration;
    let bar = ProgressBar::new(u64::try_from(total.as_millis()).unwrap_or(u64::MAX));
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {msg}")
            .context("the progress bar template")?
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_owned());
    let phase_started = Instant::now();
    let barrier = Arc::new(Barrier::new(shape.connections + 1));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..shape.connections {
        tasks.spawn_on(
            connection_task(
                target.clone(),
                body.clone(),
                shape,
                barrier.clone(),
                done.clone(),
            ),
            handle,
        );
    }
    let tick = |phase: &str| {
        let ms = u64::try_from(phase_started.elapsed().as_millis()).unwrap_or(u64::MAX);
        bar.set_position(ms.min(bar.length().unwrap_or(ms)));
        bar.set_message(format!(
            "{phase}, {} requests",
            done.load(Ordering::Relaxed)
        ));
    };
    let mut ticker = tokio::time::interval(Duration::from_millis(200));

    let all_warm = tokio::time::timeout(shape.warmup + ANSWER_GRACE * 2, barrier.wait());
    tokio::pin!(all_warm);
    loop {
        tokio::select! {
            warm = &mut all_warm => {
                warm.map_err(|_| anyhow!("{what}: the connections did not finish warming up"))?;
                break;
            }
            _ = ticker.tick() => tick("warming up"),
        }
    }
    let started = Instant::now();
    let cpu_before = (!servers.is_empty())
        .then(|| cpu_seconds(servers))
        .flatten();
    done.store(0, Ordering::Relaxed);
    let mut stats = Vec::with_capacity(shape.connections);
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(s) => stats.push(s.with_context(|| format!("{what}: a connection's task failed"))?),
                None => break,
            },
            _ = ticker.tick() => tick("timing"),
        }
    }
    let elapsed = started.elapsed();
    let server_cpu_s = cpu_before
        .zip(cpu_seconds(servers))
        .map(|(before, after)| after - before);
    bar.finish_and_clear();

    let mut result = LoadResult {
        requests: 0,
        errors: 0,
        reconnects: 0,
        elapsed,
        server_cpu_s,
        latencies: Vec::with_capacity(stats.iter().map(|s| s.latencies.len()).sum()),
        first_error: None,
    };
    for s in stats {
        result.requests += s.requests;
        result.errors += s.errors;
        result.reconnects += s.reconnects;
        result.latencies.extend(s.latencies);
        if result.first_error.is_none() {
            result.first_error = s.first_error;
        }
    }
    result.latencies.sort_unstable();
    Ok(result)
}

// ---------------------------------------------------------------------------
// The backend

/// An echo server on its own thread and single-threaded runtime.
pub(crate) struct Backend {
    pub(crate) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Backend {
    pub(crate) fn start() -> anyhow::Result<Backend> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the backend's runtime")?;
        let std_listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("binding a local port for the backend")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let listener = {
            let _entered = runtime.enter();
            TcpListener::from_std(std_listener).context("the backend's listener")?
        };
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("bench-backend".into())
            .spawn(move || runtime.block_on(serve_backend(listener, stopped)))
            .context("starting the backend's thread")?;
        Ok(Backend {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve_backend(listener: TcpListener, stopped: oneshot::Receiver<()>) {
    // Answers are slices of one buffer, so answering costs no allocation.
    let filler = Bytes::from(vec![b'y'; MAX_BODY]);
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let filler = filler.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            echo(request, filler.clone())
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                // E.g. out of file descriptors: wait for some to close.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
}

/// Reads the whole request body and answers as many bytes.
async fn echo(
    request: Request<Incoming>,
    filler: Bytes,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let mut body = request.into_body();
    let mut received = 0usize;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            received += data.len();
        }
    }
    let mut response = if received <= filler.len() {
        Response::new(Full::new(filler.slice(..received)))
    } else {
        let mut too_large = Response::new(Full::new(Bytes::new()));
        *too_large.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        too_large
    };
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}

// ---------------------------------------------------------------------------
// Child processes

/// A child process in its own process group, stopped with the whole group
/// when dropped.
struct ChildGroup {
    name: String,
    child: Child,
    pid: u32,
    /// Its standard output and error.
    output: PathBuf,
}

impl ChildGroup {
    fn spawn(name: &str, mut command: Command, output: &Path) -> anyhow::Result<ChildGroup> {
        let out = std::fs::File::create(output)
            .with_context(|| format!("creating {}", output.display()))?;
        let err = out.try_clone()?;
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let pid = child
            .id()
            .with_context(|| format!("{name} has no process id"))?;
        Ok(ChildGroup {
            name: name.to_owned(),
            child,
            pid,
            output: output.to_owned(),
        })
    }

    /// `Some` once it exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM to the group, SIGKILL after [`STOP_GRACE`]; also kills what
    /// is left of the group after the leader exited on its own.
    fn stop(&mut self) {
        if self.exited().is_none() {
            signal_group(self.pid, "TERM");
            let until = Instant::now() + STOP_GRACE;
            while self.exited().is_none() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            if self.exited().is_none() {
                signal_group(self.pid, "KILL");
                let _ = self.child.start_kill();
                let until = Instant::now() + STOP_GRACE;
                while self.exited().is_none() && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        // The leader is gone; a member left behind (e.g. an nginx worker
        // whose master crashed) still holds the group id, so this reaches
        // only our processes.
        if group_has_members(self.pid) {
            signal_group(self.pid, "KILL");
        }
    }
}

impl Drop for ChildGroup {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends `signal` to process group `pgid` with kill(1): the code forbids
/// `unsafe`, and this needs no extra dependency.
fn signal_group(pgid: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// `(ppid, pgrp)` from the text of `/proc/PID/stat`.
fn parse_stat(stat: &str) -> Option<(u32, u32)> {
    // The command name is in parentheses and may hold spaces and ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let _state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((ppid, pgrp))
}

/// CPU time (user + system, all threads) in clock ticks from the text of
/// `/proc/PID/stat`: fields 14 and 15.
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: state is field 3, so utime (14) is the 12th here.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Linux reports process times in USER_HZ ticks, 100 per second on every
/// architecture it exposes to user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds used so far by `pids` and their descendants (threads
/// included); `None` if one of them cannot be read.
fn cpu_seconds(pids: &[u32]) -> Option<f64> {
    let mut ticks = 0;
    for &root in pids {
        for pid in process_tree(root) {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            ticks += parse_stat_cpu_ticks(&stat)?;
        }
    }
    Some(ticks as f64 / TICKS_PER_SECOND)
}

/// Every process: `pid → (ppid, pgrp)`.
fn processes() -> HashMap<u32, (u32, u32)> {
    let mut all = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return all;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(fields) = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .as_deref()
            .and_then(parse_stat)
        {
            all.insert(pid, fields);
        }
    }
    all
}

fn group_has_members(pgid: u32) -> bool {
    processes().values().any(|&(_, pgrp)| pgrp == pgid)
}

/// `root` and all its descendants.
fn process_tree(root: u32) -> Vec<u32> {
    let all = processes();
    let mut tree = vec![root];
    let mut queue = VecDeque::from([root]);
    let mut seen = HashSet::from([root]);
    while let Some(parent) = queue.pop_front() {
        for (&pid, &(ppid, _)) in &all {
            if ppid == parent && seen.insert(pid) {
                tree.push(pid);
                queue.push_back(pid);
            }
        }
    }
    tree
}

/// `VmHWM` (peak resident set) in KiB from the text of `/proc/PID/status`.
fn parse_vm_hwm(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
}

/// The last lines of a log file, for error messages.
fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            let tail = &all[all.len().saturating_sub(lines)..];
            if tail.is_empty() {
                format!("\n--- {} is empty", path.display())
            } else {
                format!("\n--- end of {}:\n{}", path.display(), tail.join("\n"))
            }
        }
        Err(e) => format!("\n--- cannot read {}: {e}", path.display()),
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Waits until `addr` accepts connections, failing if `child` exits first.
async fn wait_listening(
    child: &mut ChildGroup,
    addr: SocketAddr,
    patience: Duration,
    logs: &[&Path],
) -> anyhow::Result<()> {
    let until = Instant::now() + patience;
    loop {
        if let Some(status) = child.exited() {
            let tails: String = logs.iter().map(|l| log_tail(l, 20)).collect();
            bail!("{} exited at start ({status}){tails}", child.name);
        }
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() >= until {
            let tails: String = logs.iter().map(|l| log_tail(l, 20)).collect();
            bail!(
                "{} did not listen on {addr} within {} s{tails}",
                child.name,
                patience.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn spinner(message: &str) -> anyhow::Result<ProgressBar> {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .context("the spinner template")?,
    );
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    Ok(bar)
}

// ---------------------------------------------------------------------------
// (b) nginx

/// `--nginx`, else /usr/sbin/nginx, else nginx on PATH.
fn find_nginx(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        if path.is_file() {
            return Ok(path.to_owned());
        }
        bail!("--nginx {}: no such file", path.display());
    }
    let standard = Path::new("/usr/sbin/nginx");
    if standard.is_file() {
        return Ok(standard.to_owned());
    }
    if let Some(found) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nginx"))
            .find(|p| p.is_file())
    }) {
        return Ok(found);
    }
    bail!(
        "nginx is not installed (looked at /usr/sbin/nginx and on PATH), and path (b) needs it: \
         run scripts/bench-exchange, which installs it and runs this benchmark, or leave path (b) \
         out with --paths direct,accord"
    )
}

async fn nginx_version(bin: &Path) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .arg("-v")
        .output()
        .await
        .with_context(|| format!("running {} -v", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stderr);
    Ok(text
        .trim()
        .strip_prefix("nginx version: ")
        .unwrap_or(text.trim())
        .to_owned())
}

/// Which side of the mutual TLS link an nginx instance is.
#[derive(Debug, Clone)]
enum NginxRole {
    /// nginx A: plain HTTP in, TLS with a client certificate out.
    Front {
        client_cert: PathBuf,
        client_key: PathBuf,
        ca: PathBuf,
        server_name: String,
    },
    /// nginx B: TLS requiring a client certificate in, plain HTTP out.
    Back {
        cert: PathBuf,
        key: PathBuf,
        ca: PathBuf,
    },
}

/// One nginx instance's configuration.
#[derive(Debug, Clone)]
struct NginxSite {
    /// Its prefix: pid file, logs, temporary files.
    dir: PathBuf,
    listen: SocketAddr,
    upstream: SocketAddr,
    role: NginxRole,
    /// Largest request body: kept in memory whole.
    max_body: usize,
}

/// A path as an nginx string, quoted.
fn nginx_quote(path: &Path) -> String {
    let text = path.display().to_string();
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// nginx.conf for `site`.
fn nginx_config(site: &NginxSite) -> String {
    let q = |name: &str| nginx_quote(&site.dir.join(name));
    // Bodies stay in memory both ways, so no worker writes temporary files.
    let body_buffer_kib = site.max_body.div_ceil(1024).max(128);
    let (role, listen_tls, proxy_tls, scheme) = match &site.role {
        NginxRole::Front {
            client_cert,
            client_key,
            ca,
            server_name,
        } => (
            "nginx A (front): plain HTTP in, mutual TLS out",
            String::new(),
            format!(
                "            proxy_ssl_certificate {};\n\
                 \x20           proxy_ssl_certificate_key {};\n\
                 \x20           proxy_ssl_trusted_certificate {};\n\
                 \x20           proxy_ssl_verify on;\n\
                 \x20           proxy_ssl_verify_depth 1;\n\
                 \x20           proxy_ssl_name {server_name};\n\
                 \x20           proxy_ssl_protocols TLSv1.3;\n\
                 \x20           proxy_ssl_session_reuse on;\n",
                nginx_quote(client_cert),
                nginx_quote(client_key),
                nginx_quote(ca),
            ),
            "https",
        ),
        NginxRole::Back { cert, key, ca } => (
            "nginx B (back): mutual TLS in, plain HTTP out",
            format!(
                "        ssl_certificate {};\n\
                 \x20       ssl_certificate_key {};\n\
                 \x20       ssl_protocols TLSv1.3;\n\
                 \x20       ssl_client_certificate {};\n\
                 \x20       ssl_verify_client on;\n\
                 \x20       ssl_verify_depth 1;\n",
                nginx_quote(cert),
                nginx_quote(key),
                nginx_quote(ca),
            ),
            String::new(),
            "http",
        ),
    };
    let ssl = if listen_tls.is_empty() { "" } else { " ssl" };
    format!(
        "# {role}; written by accord bench exchange.\n\
         worker_processes 2;\n\
         pid {pid};\n\
         error_log {error_log} warn;\n\
         \n\
         events {{\n\
         \x20   worker_connections 4096;\n\
         }}\n\
         \n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   default_type application/octet-stream;\n\
         \x20   client_body_temp_path {client_body};\n\
         \x20   proxy_temp_path {proxy_temp};\n\
         \x20   fastcgi_temp_path {fastcgi_temp};\n\
         \x20   uwsgi_temp_path {uwsgi_temp};\n\
         \x20   scgi_temp_path {scgi_temp};\n\
         \x20   client_max_body_size {max_body_kib}k;\n\
         \x20   client_body_buffer_size {body_buffer_kib}k;\n\
         \x20   proxy_buffer_size 16k;\n\
         \x20   proxy_buffers 8 16k;\n\
         \x20   proxy_max_temp_file_size 0;\n\
         \x20   # The load generator keeps its connections for the whole run.\n\
         \x20   keepalive_timeout 300s;\n\
         \x20   keepalive_requests 100000000;\n\
         \n\
         \x20   upstream next_hop {{\n\
         \x20       server {upstream};\n\
         \x20       keepalive 64;\n\
         \x20       keepalive_timeout 300s;\n\
         \x20       keepalive_requests 100000000;\n\
         \x20   }}\n\
         \n\
         \x20   server {{\n\
         \x20       listen {listen}{ssl};\n\
         {listen_tls}\
         \x20       location / {{\n\
         \x20           proxy_pass {scheme}://next_hop;\n\
         \x20           proxy_http_version 1.1;\n\
         \x20           proxy_set_header Connection \"\";\n\
         {proxy_tls}\
         \x20       }}\n\
         \x20   }}\n\
         }}\n",
        pid = q("nginx.pid"),
        error_log = q("error.log"),
        client_body = q("tmp/client_body"),
        proxy_temp = q("tmp/proxy"),
        fastcgi_temp = q("tmp/fastcgi"),
        uwsgi_temp = q("tmp/uwsgi"),
        scgi_temp = q("tmp/scgi"),
        max_body_kib = body_buffer_kib,
        upstream = site.upstream,
        listen = site.listen,
    )
}

/// The throwaway PKI of the nginx pair (and of the relays).
pub(crate) struct NginxPki {
    pub(crate) ca: PathBuf,
    pub(crate) a_cert: PathBuf,
    pub(crate) a_key: PathBuf,
    pub(crate) b_cert: PathBuf,
    pub(crate) b_key: PathBuf,
}

/// A CA, a client certificate for nginx A and a server certificate for
/// nginx B, in `dir` (keys 0600).
pub(crate) fn write_nginx_pki(dir: &Path) -> anyhow::Result<NginxPki> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose, SanType,
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca_key = KeyPair::generate().context("generating the throwaway CA's key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "accord bench exchange throwaway CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params
        .self_signed(&ca_key)
        .context("making the throwaway CA")?;
    let leaf = |name: &str, usage: ExtendedKeyUsagePurpose| -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![name.to_owned()])?;
        params
            .subject_alt_names
            .push(SanType::IpAddress(Ipv4Addr::LOCALHOST.into()));
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let cert = params
            .signed_by(&key, &ca, &ca_key)
            .with_context(|| format!("issuing the certificate of {name}"))?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (a_pem, a_key_pem) = leaf(
        "nginx-a.accord-bench.test",
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    let (b_pem, b_key_pem) = leaf(NGINX_B_NAME, ExtendedKeyUsagePurpose::ServerAuth)?;
    let pki = NginxPki {
        ca: dir.join("ca.crt"),
        a_cert: dir.join("nginx-a.crt"),
        a_key: dir.join("nginx-a.key"),
        b_cert: dir.join("nginx-b.crt"),
        b_key: dir.join("nginx-b.key"),
    };
    for (path, pem) in [
        (&pki.ca, ca.pem()),
        (&pki.a_cert, a_pem),
        (&pki.b_cert, b_pem),
    ] {
        std::fs::write(path, pem).with_context(|| format!("writing {}", path.display()))?;
    }
    write_secret_file(&pki.a_key, &a_key_pem)?;
    write_secret_file(&pki.b_key, &b_key_pem)?;
    Ok(pki)
}

/// nginx A and B, running.
struct NginxPair {
    front_addr: SocketAddr,
    // Dropped (stopped) front first.
    front: ChildGroup,
    back: ChildGroup,
    front_dir: PathBuf,
    back_dir: PathBuf,
}

impl NginxPair {
    async fn start(
        bin: &Path,
        dir: &Path,
        backend: SocketAddr,
        max_body: usize,
    ) -> anyhow::Result<NginxPair> {
        let pki = write_nginx_pki(&dir.join("pki"))?;
        let back_addr = loopback(free_port()?);
        let front_addr = loopback(free_port()?);
        let back_dir = dir.join("b");
        let front_dir = dir.join("a");
        let back = start_nginx(
            bin,
            "nginx B",
            &NginxSite {
                dir: back_dir.clone(),
                listen: back_addr,
                upstream: backend,
                role: NginxRole::Back {
                    cert: pki.b_cert.clone(),
                    key: pki.b_key.clone(),
                    ca: pki.ca.clone(),
                },
                max_body,
            },
        )
        .await?;
        let front = start_nginx(
            bin,
            "nginx A",
            &NginxSite {
                dir: front_dir.clone(),
                listen: front_addr,
                upstream: back_addr,
                role: NginxRole::Front {
                    client_cert: pki.a_cert.clone(),
                    client_key: pki.a_key.clone(),
                    ca: pki.ca.clone(),
                    server_name: NGINX_B_NAME.to_owned(),
                },
                max_body,
            },
        )
        .await?;
        Ok(NginxPair {
            front_addr,
            front,
            back,
            front_dir,
            back_dir,
        })
    }

    /// The ends of both error logs, for error messages.
    fn logs(&self) -> String {
        [&self.front_dir, &self.back_dir]
            .iter()
            .map(|d| log_tail(&d.join("error.log"), 10))
            .collect()
    }
}

async fn start_nginx(bin: &Path, name: &str, site: &NginxSite) -> anyhow::Result<ChildGroup> {
    let tmp = site.dir.join("tmp");
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let conf = site.dir.join("nginx.conf");
    std::fs::write(&conf, nginx_config(site))
        .with_context(|| format!("writing {}", conf.display()))?;
    let error_log = site.dir.join("error.log");
    let output = site.dir.join("output.log");
    let mut command = Command::new(bin);
    command
        .arg("-p")
        .arg(&site.dir)
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(&error_log)
        .arg("-g")
        .arg("daemon off;");
    let mut child = ChildGroup::spawn(name, command, &output)?;
    wait_listening(
        &mut child,
        site.listen,
        Duration::from_secs(10),
        &[&output, &error_log],
    )
    .await?;
    Ok(child)
}

// ---------------------------------------------------------------------------
// (d) bare relays

/// Relay A and B (`accord bench relay`), running, with the throwaway PKI of
/// nginx's path (relay A holds the client certificate, relay B the server
/// certificate).
struct RelayPair {
    front_addr: SocketAddr,
    // Dropped (stopped) front first.
    front: ChildGroup,
    back: ChildGroup,
    dir: PathBuf,
}

impl RelayPair {
    async fn start(
        bin: &Path,
        dir: &Path,
        backend: SocketAddr,
        max_body: usize,
        threads: usize,
    ) -> anyhow::Result<RelayPair> {
        let pki = write_nginx_pki(&dir.join("pki"))?;
        let back_addr = loopback(free_port()?);
        let front_addr = loopback(free_port()?);
        let relay = |role, listen, upstream| RelayProcess {
            bin,
            dir,
            pki: &pki,
            role,
            listen,
            upstream,
            threads,
            max_body,
        };
        // B first: A connects to it for each client connection.
        let back = relay(RelayRole::Back, back_addr, backend).start().await?;
        let front = relay(RelayRole::Front, front_addr, back_addr)
            .start()
            .await?;
        Ok(RelayPair {
            front_addr,
            front,
            back,
            dir: dir.to_owned(),
        })
    }

    /// The ends of both relays' logs, for error messages.
    fn logs(&self) -> String {
        ["front.log", "back.log"]
            .iter()
            .map(|f| log_tail(&self.dir.join(f), 10))
            .collect()
    }
}

/// One `accord bench relay` process to start: relay A (front, with the
/// client certificate) or relay B (back, with the server certificate).
struct RelayProcess<'a> {
    bin: &'a Path,
    dir: &'a Path,
    pki: &'a NginxPki,
    role: RelayRole,
    listen: SocketAddr,
    upstream: SocketAddr,
    threads: usize,
    max_body: usize,
}

impl RelayProcess<'_> {
    /// Starts it and waits until it listens; its output goes to
    /// `ROLE.log` in the relays' directory.
    async fn start(self) -> anyhow::Result<ChildGroup> {
        let (name, role, cert, key) = match self.role {
            RelayRole::Front => ("relay A", "front", &self.pki.a_cert, &self.pki.a_key),
            RelayRole::Back => ("relay B", "back", &self.pki.b_cert, &self.pki.b_key),
        };
        let mut command = Command::new(self.bin);
        command
            .args(["bench", "relay", "--role", role])
            .arg("--listen")
            .arg(self.listen.to_string())
            .arg("--upstream")
            .arg(self.upstream.to_string())
            .arg("--ca")
            .arg(&self.pki.ca)
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .arg("--server-name")
            .arg(NGINX_B_NAME)
            .arg("--threads")
            .arg(self.threads.to_string())
            .arg("--max-body")
            .arg(self.max_body.max(1).to_string())
            .env("ACCORD_LOG", "warn");
        let log = self.dir.join(format!("{role}.log"));
        let mut child = ChildGroup::spawn(name, command, &log)?;
        wait_listening(&mut child, self.listen, Duration::from_secs(10), &[&log]).await?;
        Ok(child)
    }
}

// ---------------------------------------------------------------------------
// (c) Accord gateways

/// This binary, if it has `gateway serve`.
async fn check_gateway_command() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this accord executable")?;
    let out = Command::new(&exe)
        .args(["gateway", "serve", "--help"])
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {} gateway serve --help", exe.display()))?;
    if !out.status.success() {
        bail!(
            "{} has no `gateway serve` command, which path (c) runs: build one that has it, \
             or leave path (c) out with --paths direct,nginx",
            exe.display()
        );
    }
    Ok(exe)
}

/// One gateway's `gateway.toml`.
#[derive(Debug, Clone)]
struct GatewayToml {
    member: String,
    registry: String,
    consumer_listen: SocketAddr,
    clients: Vec<String>,
    provider_listen: SocketAddr,
    /// `(service, backend URL)`.
    services: Vec<(String, String)>,
}

fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The text of `gateway.toml`; its files sit beside it.
fn gateway_toml(g: &GatewayToml) -> String {
    let mut text = format!(
        "# Written by accord bench exchange; paths are relative to this file.\n\
         [gateway]\n\
         member = {member}\n\
         name = {name}\n\
         registry = {registry}\n\
         anchor = \"federation-signing.pub\"\n\
         certificate = \"{GATEWAY_NAME}.crt\"\n\
         key = \"{GATEWAY_NAME}.key\"\n\
         audit_key = \"{GATEWAY_NAME}-audit.key\"\n\
         state_dir = \"state\"\n\
         \n\
         [consumer]\n\
         listen = {consumer}\n",
        member = toml_string(&g.member),
        name = toml_string(GATEWAY_NAME),
        registry = toml_string(&g.registry),
        consumer = toml_string(&g.consumer_listen.to_string()),
    );
    for client in &g.clients {
        text.push_str(&format!(
            "\n[[consumer.clients]]\nsubsystem = {}\n",
            toml_string(client)
        ));
    }
    text.push_str(&format!(
        "\n[provider]\nlisten = {}\n",
        toml_string(&g.provider_listen.to_string())
    ));
    for (service, backend) in &g.services {
        text.push_str(&format!(
            "\n[[services]]\nservice = {}\nbackend = {}\n",
            toml_string(service),
            toml_string(backend)
        ));
    }
    text.push_str("\n[audit]\ndatabase = \"sqlite://state/audit.db\"\n");
    text
}

/// The in-process registry, served on a loopback port until dropped.
struct RegistryServer {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

/// The registry, both gateways and where to send requests.
struct AccordPair {
    consumer_addr: SocketAddr,
    // Dropped in this order: gateways first, then the registry they poll.
    consumer: ChildGroup,
    provider: ChildGroup,
    _registry: RegistryServer,
}

fn seed_error(what: &str) -> impl FnOnce(ApiError) -> anyhow::Error + '_ {
    move |e| anyhow!("seeding the benchmark federation: {what}: {}", e.detail)
}

impl AccordPair {
    async fn start(
        exe: &Path,
        dir: &Path,
        backend: SocketAddr,
        args: &BenchExchangeArgs,
    ) -> anyhow::Result<AccordPair> {
        let spinner = spinner("creating the benchmark federation")?;
        let consumer_dir = dir.join("consumer-gateway");
        let provider_dir = dir.join("provider-gateway");
        for d in [&consumer_dir, &provider_dir] {
            std::fs::create_dir_all(d.join("state"))
                .with_context(|| format!("creating {}", d.display()))?;
        }
        let consumer_toml = GatewayToml {
            member: CONSUMER_MEMBER.to_owned(),
            registry: String::new(),
            consumer_listen: loopback(free_port()?),
            clients: vec![CLIENT_SUBSYSTEM.to_owned()],
            provider_listen: loopback(free_port()?),
            services: Vec::new(),
        };
        let provider_toml = GatewayToml {
            member: PROVIDER_MEMBER.to_owned(),
            registry: String::new(),
            consumer_listen: loopback(free_port()?),
            clients: Vec::new(),
            provider_listen: loopback(free_port()?),
            services: vec![(SERVICE.to_owned(), format!("http://{backend}/"))],
        };

        let paths = RegistryPaths::new(dir.join("registry"), None);
        let (registry, _admin_token) = Registry::init(
            &paths,
            &InitOptions {
                instance: INSTANCE.into(),
                name: "Exchange benchmark federation".into(),
                member_classes: accord_registry::DEFAULT_MEMBER_CLASSES
                    .iter()
                    .map(|c| (*c).to_owned())
                    .collect(),
            },
        )
        .await
        .context("creating the benchmark federation")?;
        seed_federation(
            &registry,
            dir,
            &[
                (&consumer_dir, &consumer_toml),
                (&provider_dir, &provider_toml),
            ],
        )
        .await?;
        let anchor = paths.keys_dir().join(accord_ca::SIGNING_PUBLIC_KEY_FILE);

        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("binding a local port for the registry")?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = {
            let registry = registry.clone();
            tokio::spawn(async move {
                registry
                    .serve(listener, async {
                        let _ = stopped.await;
                    })
                    .await
            })
        };
        let registry_server = RegistryServer {
            url,
            stop: Some(stop),
            task,
        };

        spinner.set_message("starting the consumer and provider gateways");
        let mut gateways = Vec::new();
        for (name, gw_dir, toml) in [
            ("the consumer gateway", &consumer_dir, &consumer_toml),
            ("the provider gateway", &provider_dir, &provider_toml),
        ] {
            std::fs::copy(&anchor, gw_dir.join("federation-signing.pub"))
                .with_context(|| format!("copying {} for {name}", anchor.display()))?;
            let toml = GatewayToml {
                registry: registry_server.url.clone(),
                ..toml.clone()
            };
            let config = gw_dir.join("gateway.toml");
            std::fs::write(&config, gateway_toml(&toml))
                .with_context(|| format!("writing {}", config.display()))?;
            let mut command = Command::new(exe);
            command
                .arg("gateway")
                .arg("serve")
                .arg("--config")
                .arg(&config)
                .arg("--threads")
                .arg(args.gateway_threads.to_string())
                .current_dir(gw_dir)
                .env("ACCORD_LOG", &args.gateway_log)
                .env_remove("ACCORD_TOKEN")
                .env_remove("ACCORD_TOKEN_FILE");
            gateways.push(ChildGroup::spawn(
                name,
                command,
                &gw_dir.join("gateway.log"),
            )?);
        }
        let mut gateways = gateways.into_iter();
        let (Some(mut consumer), Some(mut provider)) = (gateways.next(), gateways.next()) else {
            bail!("the gateways did not start");
        };

        spinner.set_message("waiting for both gateways to be ready");
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?;
        let until = Instant::now() + args.gateway_timeout;
        for (gateway, addr) in [
            (&mut consumer, consumer_toml.consumer_listen),
            (&mut provider, provider_toml.consumer_listen),
        ] {
            wait_ready(&client, gateway, addr, until).await?;
        }
        spinner.finish_and_clear();
        Ok(AccordPair {
            consumer_addr: consumer_toml.consumer_listen,
            consumer,
            provider,
            _registry: registry_server,
        })
    }

    fn logs(&self) -> String {
        [&self.consumer.output, &self.provider.output]
            .iter()
            .map(|l| log_tail(l, 15))
            .collect()
    }
}

/// Polls `GET /healthz` until it says `"ready": true`.
async fn wait_ready(
    client: &reqwest::Client,
    gateway: &mut ChildGroup,
    addr: SocketAddr,
    until: Instant,
) -> anyhow::Result<()> {
    let url = format!("http://{addr}/healthz");
    loop {
        if let Some(status) = gateway.exited() {
            bail!(
                "{} exited ({status}){}",
                gateway.name,
                log_tail(&gateway.output, 30)
            );
        }
        let last = match client.get(&url).send().await {
            Ok(response) => {
                let status = response.status();
                match response.json::<serde_json::Value>().await {
                    Ok(health)
                        if health.get("ready").and_then(serde_json::Value::as_bool)
                            == Some(true) =>
                    {
                        return Ok(());
                    }
                    Ok(health) => format!("{status}: {health}"),
                    Err(e) => format!("{status}, not JSON: {e}"),
                }
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() >= until {
            bail!(
                "{} was not ready at {url} in time (last: {last}){}",
                gateway.name,
                log_tail(&gateway.output, 30)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Members, subsystems, the echo service, a purpose, the gateways'
/// certificates and audit keys, and an active agreement both parties signed.
async fn seed_federation(
    registry: &Registry,
    dir: &Path,
    gateways: &[(&PathBuf, &GatewayToml)],
) -> anyhow::Result<()> {
    let admin = Role::FederationAdmin;
    let consumer: MemberId = CONSUMER_MEMBER.parse()?;
    let provider: MemberId = PROVIDER_MEMBER.parse()?;
    for (member, name) in [
        (&consumer, "Benchmark consumer agency"),
        (&provider, "Benchmark provider agency"),
    ] {
        add_member(
            registry,
            &admin,
            &MemberInput {
                id: Some(member.to_string()),
                name: Some(name.into()),
                level: Some("national".into()),
                country: Some("EE".into()),
                sector: Some("public".into()),
                parent: None,
                contact: None,
            },
        )
        .await
        .map_err(seed_error("members"))?;
    }
    let client_code = CLIENT_SUBSYSTEM
        .rsplit('/')
        .next()
        .context("the client subsystem's code")?;
    for (member, code, name) in [
        (&consumer, client_code, "Benchmark client system"),
        (&provider, PROVIDER_SUBSYSTEM_CODE, "Benchmark echo system"),
    ] {
        add_subsystem(
            registry,
            &admin,
            member,
            &SubsystemInput {
                code: Some(code.into()),
                name: Some(name.into()),
            },
        )
        .await
        .map_err(seed_error("subsystems"))?;
    }
    let service_code = SERVICE.rsplit('/').next().context("the service's code")?;
    add_service(
        registry,
        &admin,
        &provider.subsystem(PROVIDER_SUBSYSTEM_CODE)?,
        &ServiceInput {
            code: Some(service_code.into()),
            version: None,
            title: Some("Echo".into()),
            description: Some("Answers a body as large as the request's.".into()),
            personal_data: Some(false),
            data_categories: Vec::new(),
            openapi: Some(serde_json::json!({
                "openapi": "3.0.3",
                "info": {"title": "Echo", "version": "1"},
                "paths": {"/bench": {"post": {"responses": {"200": {"description": "The same number of bytes"}}}}}
            })),
        },
    )
    .await
    .map_err(seed_error("the echo service"))?;
    add_purpose(
        registry,
        &admin,
        &PurposeInput {
            code: Some(PURPOSE.into()),
            description: Some("Measuring the cost of an exchange".into()),
        },
    )
    .await
    .map_err(seed_error("the purpose"))?;

    for (gw_dir, toml) in gateways {
        let member: MemberId = toml.member.parse()?;
        let issued = issue_certificate(
            registry,
            &admin,
            &CertificateInput {
                member: Some(toml.member.clone()),
                gateway: Some(GATEWAY_NAME.into()),
                address: Some(format!("https://{}", toml.provider_listen)),
                csr_pem: None,
                validity_days: Some(30),
            },
        )
        .await
        .map_err(seed_error("a gateway certificate"))?;
        std::fs::write(
            gw_dir.join(format!("{GATEWAY_NAME}.crt")),
            &issued.certificate.certificate_pem,
        )
        .context("writing a gateway certificate")?;
        let key = issued
            .private_key_pem
            .context("the registry returned no private key for a gateway")?;
        write_secret_file(&gw_dir.join(format!("{GATEWAY_NAME}.key")), &key)?;
        let audit_key =
            accord_ca::SigningKeyFile::generate(&gw_dir.join(format!("{GATEWAY_NAME}-audit.key")))
                .context("generating a gateway audit key")?;
        register_audit_key(
            registry,
            &admin,
            &member,
            GATEWAY_NAME,
            &AuditKeyInput {
                public_key_pem: Some(accord_ca::public_key_pem(&audit_key)),
            },
        )
        .await
        .map_err(seed_error("a gateway audit key"))?;
    }

    // The agreement, drafted, proposed and signed by both parties.
    let keys_dir = dir.join("signing-keys");
    std::fs::create_dir_all(&keys_dir)
        .with_context(|| format!("creating {}", keys_dir.display()))?;
    let mut keys = Vec::new();
    for member in [&provider, &consumer] {
        let file = keys_dir.join(format!("{}.key", member.to_string().replace('/', "_")));
        let public = accord_ca::SigningKeyFile::generate(&file)?;
        let role = Role::MemberAdmin {
            member: member.clone(),
        };
        register_key(
            registry,
            &role,
            member,
            &SigningKeyInput {
                public_key_pem: Some(accord_ca::public_key_pem(&public)),
            },
        )
        .await
        .map_err(seed_error("a member signing key"))?;
        keys.push((member.clone(), accord_ca::SigningKeyFile::load(&file)?));
    }
    let mut terms: AgreementTerms = serde_json::from_value(serde_json::json!({
        "title": "Exchange benchmark",
        "description": "The benchmark's client system may call the echo service.",
        "parties": [
            {"member": PROVIDER_MEMBER, "roles": ["provider"]},
            {"member": CONSUMER_MEMBER, "roles": ["consumer"]}
        ],
        "grants": [{
            "id": "echo",
            "services": {"services": [SERVICE]},
            "consumers": [CLIENT_SUBSYSTEM],
            "purposes": [PURPOSE],
            "operations": [{"methods": ["POST"], "path": "/**"}]
        }],
        "validity": {"start": "2000-01-01T00:00:00Z"}
    }))
    .context("the benchmark agreement's terms")?;
    let now = time::OffsetDateTime::now_utc();
    terms.validity.start = now - time::Duration::days(1);
    terms.validity.end = Some(now + time::Duration::days(30));
    let signed = agreement_ops::establish(registry, "exchange-benchmark", terms, &keys)
        .await
        .map_err(seed_error("establishing the agreement"))?;
    if signed.state != accord_domain::agreement::AgreementState::Active {
        bail!(
            "the benchmark agreement is {} after both signatures, not active",
            signed.state.as_str()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Results

/// The nearest-rank `percent` percentile of `sorted` (ascending): the
/// smallest value that at least `percent`% of the values are less than or
/// equal to. `None` if there are no values.
fn percentile(sorted: &[u64], percent: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    // Float error must not push an exact rank up by one (99% of 100 is 99).
    let exact = percent.clamp(0.0, 100.0) / 100.0 * n as f64;
    let rank = ((exact - 1e-9).ceil() as usize).clamp(1, n);
    sorted.get(rank - 1).copied()
}

fn ms(nanos: u64) -> f64 {
    nanos as f64 / 1_000_000.0
}

/// Latency figures of one measurement, in milliseconds.
#[derive(Debug, Clone, Serialize)]
struct Latency {
    p50_ms: f64,
    p99_ms: f64,
    mean_ms: f64,
    max_ms: f64,
}

impl Latency {
    fn of(sorted: &[u64]) -> Option<Latency> {
        let sum: u128 = sorted.iter().map(|&n| u128::from(n)).sum();
        let mean =
            u64::try_from(sum / u128::try_from(sorted.len()).ok().filter(|&n| n > 0)?).ok()?;
        Some(Latency {
            p50_ms: ms(percentile(sorted, 50.0)?),
            p99_ms: ms(percentile(sorted, 99.0)?),
            mean_ms: ms(mean),
            max_ms: ms(*sorted.last()?),
        })
    }
}

/// One measurement as reported.
#[derive(Debug, Clone, Serialize)]
struct Measurement {
    connections: usize,
    seconds: f64,
    requests: u64,
    errors: u64,
    reconnects: u64,
    requests_per_s: f64,
    latency: Option<Latency>,
    /// CPU time the path's two proxies (nginx A and B, or both gateways)
    /// used per request while timing: what the machine pays per exchange,
    /// which varies less from run to run than requests per second.
    server_cpu_us_per_request: Option<f64>,
}

impl Measurement {
    fn of(result: &LoadResult, connections: usize) -> Measurement {
        let seconds = result.elapsed.as_secs_f64();
        Measurement {
            connections,
            seconds,
            requests: result.requests,
            errors: result.errors,
            reconnects: result.reconnects,
            requests_per_s: result.requests as f64 / seconds.max(f64::EPSILON),
            latency: Latency::of(&result.latencies),
            server_cpu_us_per_request: result
                .server_cpu_s
                .filter(|_| result.requests > 0)
                .map(|cpu| cpu * 1e6 / result.requests as f64),
        }
    }
}

/// One round's two measurements of one path and body size.
#[derive(Debug)]
struct Round {
    throughput: LoadResult,
    latency: LoadResult,
}

/// One round's figures, as reported beside the merged ones.
#[derive(Debug, Clone, Serialize)]
struct RoundFigures {
    requests_per_s: f64,
    server_cpu_us_per_request: Option<f64>,
    latency_p50_ms: Option<f64>,
}

/// One path and body size.
#[derive(Debug, Clone, Serialize)]
struct PathResult {
    path: ExchangePath,
    label: &'static str,
    body_bytes: usize,
    /// `--connections` connections: the round with the median requests
    /// per second (the lower of the two middle ones for an even count),
    /// whole, so that its CPU time and load latency match its rate.
    throughput: Measurement,
    /// One connection: every round's requests together.
    latency: Measurement,
    /// Each round's figures, in the order they were measured.
    rounds: Vec<RoundFigures>,
    /// Failed requests in every round, under load and on one connection.
    errors: u64,
    first_error: Option<String>,
}

impl PathResult {
    /// Merges the rounds (at least one) of one path and size.
    fn new(path: ExchangePath, size: usize, connections: usize, rounds: Vec<Round>) -> Self {
        let figures: Vec<RoundFigures> = rounds
            .iter()
            .map(|r| {
                let throughput = Measurement::of(&r.throughput, connections);
                RoundFigures {
                    requests_per_s: throughput.requests_per_s,
                    server_cpu_us_per_request: throughput.server_cpu_us_per_request,
                    latency_p50_ms: Latency::of(&r.latency.latencies).map(|l| l.p50_ms),
                }
            })
            .collect();
        let mut by_rate: Vec<usize> = (0..rounds.len()).collect();
        by_rate.sort_by(|&a, &b| {
            figures[a]
                .requests_per_s
                .total_cmp(&figures[b].requests_per_s)
        });
        let median = by_rate
            .get(by_rate.len().saturating_sub(1) / 2)
            .copied()
            .unwrap_or(0);
        let first_error = rounds.iter().find_map(|r| {
            r.throughput
                .first_error
                .clone()
                .or_else(|| r.latency.first_error.clone())
        });
        let mut errors = 0;
        let mut latency = LoadResult::default();
        let mut throughput = LoadResult::default();
        for (i, round) in rounds.into_iter().enumerate() {
            errors += round.throughput.errors + round.latency.errors;
            latency.requests += round.latency.requests;
            latency.errors += round.latency.errors;
            latency.reconnects += round.latency.reconnects;
            latency.elapsed += round.latency.elapsed;
            latency.latencies.extend(round.latency.latencies);
            if i == median {
                throughput = round.throughput;
            }
        }
        latency.latencies.sort_unstable();
        PathResult {
            path,
            label: path.label(),
            body_bytes: size,
            throughput: Measurement::of(&throughput, connections),
            latency: Measurement::of(&latency, 1),
            rounds: figures,
            errors,
            first_error,
        }
    }

    fn errors(&self) -> u64 {
        self.errors
    }

    fn p50(&self) -> Option<f64> {
        self.latency.latency.as_ref().map(|l| l.p50_ms)
    }
}

/// Peak resident memory of one server (and its children).
#[derive(Debug, Clone, Serialize)]
struct MemoryResult {
    path: ExchangePath,
    process: &'static str,
    pids: Vec<u32>,
    /// Sum of the processes' VmHWM (pages shared after fork count in each).
    peak_rss_bytes: u64,
}

impl MemoryResult {
    fn read(path: ExchangePath, process: &'static str, pid: u32) -> anyhow::Result<MemoryResult> {
        let pids = process_tree(pid);
        let mut kib = 0;
        for &p in &pids {
            let file = format!("/proc/{p}/status");
            let status = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {file} ({process})"))?;
            kib += parse_vm_hwm(&status)
                .with_context(|| format!("{file} has no VmHWM ({process})"))?;
        }
        Ok(MemoryResult {
            path,
            process,
            pids,
            peak_rss_bytes: kib * 1024,
        })
    }

    fn mib(&self) -> f64 {
        self.peak_rss_bytes as f64 / (1024.0 * 1024.0)
    }
}

/// One of the issue's targets, checked.
#[derive(Debug, Clone, Serialize)]
struct Check {
    check: String,
    held: bool,
    detail: String,
}

fn checks(results: &[PathResult], memory: &[MemoryResult]) -> Vec<Check> {
    let mut checks = Vec::new();
    let find = |path: ExchangePath, size: usize| {
        results
            .iter()
            .find(|r| r.path == path && r.body_bytes == size)
    };
    let mut sizes: Vec<usize> = Vec::new();
    for r in results {
        if !sizes.contains(&r.body_bytes) {
            sizes.push(r.body_bytes);
        }
    }
    for size in sizes {
        let Some(accord) = find(ExchangePath::Accord, size) else {
            continue;
        };
        if let Some(nginx) = find(ExchangePath::Nginx, size) {
            let ratio = accord.throughput.requests_per_s
                / nginx.throughput.requests_per_s.max(f64::EPSILON);
            checks.push(Check {
                check: format!(
                    "(c) carries at least half of (b)'s throughput, {}",
                    human_size(size)
                ),
                held: ratio >= MIN_SHARE_OF_NGINX,
                detail: format!(
                    "{} vs {} requests/s: {ratio:.2}",
                    thousands(accord.throughput.requests_per_s),
                    thousands(nginx.throughput.requests_per_s)
                ),
            });
        }
        let direct_p50 = find(ExchangePath::Direct, size).and_then(PathResult::p50);
        if let (Some(a), Some(c)) = (direct_p50, accord.p50()) {
            let added = c - a;
            checks.push(Check {
                check: format!("(c) adds less than 1 ms to (a)'s p50, {}", human_size(size)),
                held: added < MAX_ADDED_P50.as_secs_f64() * 1000.0,
                detail: format!("p50 {c:.3} ms vs {a:.3} ms: +{added:.3} ms"),
            });
        }
    }
    for m in memory.iter().filter(|m| m.path == ExchangePath::Accord) {
        checks.push(Check {
            check: format!("{} stays below 64 MiB peak RSS", m.process),
            held: m.peak_rss_bytes < MAX_GATEWAY_RSS_BYTES,
            detail: format!("{:.1} MiB", m.mib()),
        });
    }
    checks
}

#[derive(Debug, Serialize)]
struct Machine {
    cpus: usize,
    build: &'static str,
    nginx: Option<String>,
}

#[derive(Debug, Serialize)]
struct Settings {
    duration_s: f64,
    latency_duration_s: f64,
    warmup_s: f64,
    connections: usize,
    sizes: Vec<usize>,
    rounds: usize,
}

/// Everything one run measured.
#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    settings: Settings,
    results: Vec<PathResult>,
    memory: Vec<MemoryResult>,
    checks: Vec<Check>,
    /// Failed requests over all measurements; any makes the run invalid.
    errors: u64,
    valid: bool,
}

/// `12345.6` as `12,346`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn print_report(report: &Report) {
    let find = |path: ExchangePath, size: usize| {
        report
            .results
            .iter()
            .find(|r| r.path == path && r.body_bytes == size)
    };
    let fmt_ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
    let mut rows = Vec::new();
    for r in &report.results {
        let nginx = find(ExchangePath::Nginx, r.body_bytes);
        let direct = find(ExchangePath::Direct, r.body_bytes);
        let vs_nginx = nginx
            .map(|n| r.throughput.requests_per_s / n.throughput.requests_per_s.max(f64::EPSILON))
            .map_or_else(|| "-".to_owned(), |x| format!("{x:.2}"));
        let added = match (r.p50(), direct.and_then(PathResult::p50)) {
            (Some(p), Some(d)) if r.path != ExchangePath::Direct => format!("{:+.3}", p - d),
            _ => "-".to_owned(),
        };
        rows.push(vec![
            r.label.to_owned(),
            human_size(r.body_bytes),
            thousands(r.throughput.requests_per_s),
            vs_nginx,
            fmt_ms(r.throughput.latency.as_ref().map(|l| l.p99_ms)),
            r.throughput
                .server_cpu_us_per_request
                .map_or_else(|| "-".to_owned(), |us| format!("{us:.0}")),
            fmt_ms(r.p50()),
            fmt_ms(r.latency.latency.as_ref().map(|l| l.p99_ms)),
            added,
            r.errors().to_string(),
        ]);
    }
    println!();
    output::table(
        &[
            "path",
            "body",
            "req/s",
            "vs (b)",
            "p99 ms (load)",
            // Headers are upper-cased, and an upper-case µ is a Greek M.
            "CPU us/req",
            "p50 ms",
            "p99 ms",
            "p50 vs (a)",
            "errors",
        ],
        rows,
    );
    println!(
        "\nreq/s and p99 (load): {} keep-alive connections for {} s; CPU us/req: the two proxies' \
         CPU time (user + system, all processes) under that load per request, in µs; p50 and p99: one \
         connection, requests one after the other, for {} s.",
        report.settings.connections, report.settings.duration_s, report.settings.latency_duration_s
    );
    if report.settings.rounds > 1 {
        println!(
            "{} rounds, every path in turn: req/s, p99 (load) and CPU are the median round's \
             (by req/s); p50 and p99 are over all rounds' requests. Each round:",
            report.settings.rounds
        );
        for r in &report.results {
            let rates: Vec<String> = r
                .rounds
                .iter()
                .map(|f| thousands(f.requests_per_s))
                .collect();
            let p50s: Vec<String> = r.rounds.iter().map(|f| fmt_ms(f.latency_p50_ms)).collect();
            println!(
                "  {} {}: req/s {}; p50 ms {}",
                r.label,
                human_size(r.body_bytes),
                rates.join(" / "),
                p50s.join(" / ")
            );
        }
    }
    if !report.memory.is_empty() {
        println!();
        output::table(
            &["server", "processes", "peak RSS MiB"],
            report
                .memory
                .iter()
                .map(|m| {
                    vec![
                        m.process.to_owned(),
                        m.pids.len().to_string(),
                        format!("{:.1}", m.mib()),
                    ]
                })
                .collect(),
        );
        println!("\npeak RSS: VmHWM summed over a server's processes (nginx: master and workers).");
    }
    if !report.checks.is_empty() {
        println!();
        for c in &report.checks {
            println!(
                "{}: {} ({})",
                c.check,
                if c.held { "held" } else { "NOT held" },
                c.detail
            );
        }
    }
    println!(
        "\nfor context, the issue measured on a machine like this one: (a) about 110,000/s; \
         (b) about 28,000/s with 1 KiB and 7,300/s with 64 KiB."
    );
    if report.errors > 0 {
        println!("\n{} requests failed: NOT valid.", report.errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(requests: u64, cpu_s: Option<f64>, latencies_ms: &[u64], errors: u64) -> LoadResult {
        LoadResult {
            requests,
            errors,
            reconnects: 0,
            elapsed: Duration::from_secs(1),
            server_cpu_s: cpu_s,
            latencies: latencies_ms.iter().map(|ms| ms * 1_000_000).collect(),
            first_error: (errors > 0).then(|| format!("{errors} failed")),
        }
    }

    #[test]
    fn rounds_report_the_median_rate_and_every_request_for_latency() {
        let rounds = vec![
            Round {
                throughput: load(3000, Some(0.3), &[9], 2),
                latency: load(2, None, &[1, 2], 0),
            },
            Round {
                throughput: load(1000, Some(0.2), &[7], 0),
                latency: load(1, None, &[3], 1),
            },
            Round {
                throughput: load(2000, Some(0.25), &[8], 0),
                latency: load(2, None, &[4, 5], 0),
            },
        ];
        let r = PathResult::new(ExchangePath::Accord, 1024, 64, rounds);
        // The median round whole: its rate, its CPU, its load latency.
        assert_eq!(r.throughput.requests_per_s, 2000.0);
        assert_eq!(r.throughput.server_cpu_us_per_request, Some(125.0));
        assert_eq!(r.throughput.latency.as_ref().map(|l| l.p50_ms), Some(8.0));
        assert_eq!(r.throughput.connections, 64);
        // Latency over all rounds' requests.
        assert_eq!(r.latency.requests, 5);
        assert_eq!(r.latency.seconds, 3.0);
        assert_eq!(r.p50(), Some(3.0));
        assert_eq!(r.latency.latency.as_ref().map(|l| l.max_ms), Some(5.0));
        // Every round, in the order measured.
        let rates: Vec<f64> = r.rounds.iter().map(|f| f.requests_per_s).collect();
        assert_eq!(rates, [3000.0, 1000.0, 2000.0]);
        let p50s: Vec<Option<f64>> = r.rounds.iter().map(|f| f.latency_p50_ms).collect();
        assert_eq!(p50s, [Some(1.0), Some(3.0), Some(4.0)]);
        // A failure in any round counts, even in a round not reported.
        assert_eq!(r.errors(), 3);
        assert_eq!(r.first_error.as_deref(), Some("2 failed"));

        // An even count takes the lower middle round; one round is itself.
        let two = PathResult::new(
            ExchangePath::Nginx,
            1024,
            64,
            vec![
                Round {
                    throughput: load(3000, None, &[1], 0),
                    latency: load(1, None, &[1], 0),
                },
                Round {
                    throughput: load(1000, None, &[1], 0),
                    latency: load(1, None, &[1], 0),
                },
            ],
        );
        assert_eq!(two.throughput.requests_per_s, 1000.0);
        assert_eq!(two.errors(), 0);
        assert_eq!(two.first_error, None);
        let one = PathResult::new(
            ExchangePath::Direct,
            1024,
            64,
            vec![Round {
                throughput: load(500, None, &[1], 0),
                latency: load(1, None, &[2], 0),
            }],
        );
        assert_eq!(one.throughput.requests_per_s, 500.0);
        assert_eq!(one.p50(), Some(2.0));
        assert_eq!(one.rounds.len(), 1);
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let sorted = [15, 20, 35, 40, 50];
        assert_eq!(percentile(&sorted, 5.0), Some(15));
        assert_eq!(percentile(&sorted, 30.0), Some(20));
        assert_eq!(percentile(&sorted, 40.0), Some(20));
        assert_eq!(percentile(&sorted, 50.0), Some(35));
        assert_eq!(percentile(&sorted, 99.0), Some(50));
        assert_eq!(percentile(&sorted, 100.0), Some(50));
        assert_eq!(percentile(&sorted, 0.0), Some(15));
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 50.0), Some(50));
        assert_eq!(percentile(&hundred, 99.0), Some(99));
        assert_eq!(percentile(&hundred, 99.9), Some(100));
        assert_eq!(percentile(&[], 50.0), None);
        let l = Latency::of(&[1_000_000, 2_000_000, 3_000_000, 10_000_000]).unwrap();
        assert_eq!(
            (l.p50_ms, l.p99_ms, l.mean_ms, l.max_ms),
            (2.0, 10.0, 4.0, 10.0)
        );
        assert!(Latency::of(&[]).is_none());
    }

    fn site(role: NginxRole) -> NginxSite {
        NginxSite {
            dir: PathBuf::from("/tmp/bench x/a"),
            listen: "127.0.0.1:18080".parse().unwrap(),
            upstream: "127.0.0.1:18081".parse().unwrap(),
            role,
            max_body: 64 * 1024,
        }
    }

    #[test]
    fn nginx_front_proxies_over_mutual_tls_with_keepalive() {
        let conf = nginx_config(&site(NginxRole::Front {
            client_cert: "/p/a.crt".into(),
            client_key: "/p/a.key".into(),
            ca: "/p/ca.crt".into(),
            server_name: NGINX_B_NAME.into(),
        }));
        for expected in [
            "worker_processes 2;",
            "pid \"/tmp/bench x/a/nginx.pid\";",
            "error_log \"/tmp/bench x/a/error.log\" warn;",
            "access_log off;",
            "client_body_temp_path \"/tmp/bench x/a/tmp/client_body\";",
            "client_body_buffer_size 128k;",
            "server 127.0.0.1:18081;",
            "keepalive 64;",
            "listen 127.0.0.1:18080;",
            "proxy_pass https://next_hop;",
            "proxy_http_version 1.1;",
            "proxy_set_header Connection \"\";",
            "proxy_ssl_certificate \"/p/a.crt\";",
            "proxy_ssl_certificate_key \"/p/a.key\";",
            "proxy_ssl_trusted_certificate \"/p/ca.crt\";",
            "proxy_ssl_verify on;",
            "proxy_ssl_name nginx-b.accord-bench.test;",
            "proxy_ssl_protocols TLSv1.3;",
        ] {
            assert!(
                conf.contains(expected),
                "{expected:?} missing from:\n{conf}"
            );
        }
        assert!(!conf.contains("ssl_verify_client"));
        assert!(!conf.contains("daemon"), "daemon off is given with -g");
        // Braces balance, so nginx can parse the nesting.
        assert_eq!(conf.matches('{').count(), conf.matches('}').count());
    }

    #[test]
    fn nginx_back_requires_client_certificates() {
        let mut s = site(NginxRole::Back {
            cert: "/p/b.crt".into(),
            key: "/p/b.key".into(),
            ca: "/p/ca.crt".into(),
        });
        s.max_body = 1024 * 1024;
        let conf = nginx_config(&s);
        for expected in [
            "listen 127.0.0.1:18080 ssl;",
            "ssl_certificate \"/p/b.crt\";",
            "ssl_certificate_key \"/p/b.key\";",
            "ssl_protocols TLSv1.3;",
            "ssl_client_certificate \"/p/ca.crt\";",
            "ssl_verify_client on;",
            "proxy_pass http://next_hop;",
            "keepalive 64;",
            "client_body_buffer_size 1024k;",
        ] {
            assert!(
                conf.contains(expected),
                "{expected:?} missing from:\n{conf}"
            );
        }
        assert!(!conf.contains("proxy_ssl"));
        assert_eq!(nginx_quote(Path::new("/a\"b")), "\"/a\\\"b\"");
    }

    #[test]
    fn gateway_toml_has_the_agreed_shape() {
        let text = gateway_toml(&GatewayToml {
            member: PROVIDER_MEMBER.into(),
            registry: "http://127.0.0.1:8700".into(),
            consumer_listen: "127.0.0.1:9000".parse().unwrap(),
            clients: vec![],
            provider_listen: "127.0.0.1:9001".parse().unwrap(),
            services: vec![(SERVICE.into(), "http://127.0.0.1:9002/".into())],
        });
        for expected in [
            "[gateway]\nmember = \"BENCH/GOV/2000\"\nname = \"gw1\"\nregistry = \"http://127.0.0.1:8700\"\n",
            "anchor = \"federation-signing.pub\"\n",
            "certificate = \"gw1.crt\"\nkey = \"gw1.key\"\naudit_key = \"gw1-audit.key\"\nstate_dir = \"state\"\n",
            "[consumer]\nlisten = \"127.0.0.1:9000\"\n",
            "[provider]\nlisten = \"127.0.0.1:9001\"\n",
            "[[services]]\nservice = \"BENCH/GOV/2000/app/echo\"\nbackend = \"http://127.0.0.1:9002/\"\n",
            "[audit]\ndatabase = \"sqlite://state/audit.db\"\n",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
        }
        assert!(!text.contains("[[consumer.clients]]"));
        let consumer = gateway_toml(&GatewayToml {
            member: CONSUMER_MEMBER.into(),
            registry: "http://127.0.0.1:8700".into(),
            consumer_listen: "127.0.0.1:9000".parse().unwrap(),
            clients: vec![CLIENT_SUBSYSTEM.into()],
            provider_listen: "127.0.0.1:9001".parse().unwrap(),
            services: vec![],
        });
        assert!(consumer.contains("[[consumer.clients]]\nsubsystem = \"BENCH/GOV/1000/client\"\n"));
        assert!(!consumer.contains("[[services]]"));
        assert_eq!(toml_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000A\"");
    }

    #[test]
    fn command_line_values() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("1m"), Ok(1024 * 1024));
        assert!(parse_size("0").is_err());
        assert!(parse_size("9MiB").is_err());
        assert!(parse_size("1g").is_err());
        assert!(parse_size("k").is_err());
        assert_eq!(parse_seconds("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_seconds("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_seconds("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("soon").is_err());
        assert_eq!(human_size(1024), "1 KiB");
        assert_eq!(human_size(65536), "64 KiB");
        assert_eq!(human_size(1000), "1000 B");
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
    }

    #[test]
    fn proc_files_are_read() {
        let stat = "1234 (nginx: worker (x) ) S 1200 1200 1200 0 -1 4194624 97 0 0 0";
        assert_eq!(parse_stat(stat), Some((1200, 1200)));
        assert_eq!(parse_stat("garbage"), None);
        // Fields 14 and 15 (utime, stime) of a real line.
        let full = "26494 (accord) S 26481 26494 26481 0 -1 4194560 5131 0 0 0 \
                    1520 377 0 0 20 0 7 0 90021 1068654592 13003 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(full), Some(1897));
        assert_eq!(parse_stat_cpu_ticks("1 (x) S 1 2"), None);
        // This process's CPU time is read live: busy work moves it on.
        let me = std::process::id();
        let first = cpu_seconds(&[me]).unwrap();
        let give_up = Instant::now() + Duration::from_secs(10);
        let mut spin = 0u64;
        let mut now = first;
        while now <= first && Instant::now() < give_up {
            for i in 0..1_000_000u64 {
                spin = spin.wrapping_add(std::hint::black_box(i * i));
            }
            now = cpu_seconds(&[me]).unwrap();
        }
        assert!(
            now > first,
            "{first} s then {now} s after busy work ({spin})"
        );
        let status = "Name:\tnginx\nVmPeak:\t   12000 kB\nVmHWM:\t    5320 kB\nVmRSS:\t 5000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(5320));
        assert_eq!(parse_vm_hwm("Name: x\n"), None);
        // This test's own process is in its own tree and has a peak RSS.
        let me = std::process::id();
        assert_eq!(process_tree(me).first(), Some(&me));
        let own = std::fs::read_to_string(format!("/proc/{me}/status")).unwrap();
        assert!(parse_vm_hwm(&own).unwrap() > 0);
    }
}
