//! `gateway.toml`: what one gateway process is, in one file an operator can
//! read.
//!
//! A gateway needs few facts of its own: which member it speaks for and its
//! registered name, where the registry and the federation's anchor key are,
//! its TLS certificate and key, its audit key, where it listens on each
//! side, which information systems may call it, and which backend answers
//! each of its member's services. Everything else (members, services, other
//! gateways, certificates, agreements) comes from the signed federation
//! configuration. Relative paths are resolved against the file's directory,
//! so a gateway's directory can be moved whole.
//!
//! Loading checks everything that can be checked without the network and
//! says what is wrong with which key (`[services] service: ...`), so that a
//! typo fails at start-up rather than as a refused exchange later.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use accord_domain::{MemberId, ServiceId, SubsystemId};
use anyhow::{anyhow, bail, Context};
use ipnet::IpNet;
use serde::Deserialize;

/// A whole `gateway.toml`, with paths resolved.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub member: MemberId,
    pub name: String,
    pub registry: String,
    pub anchor: PathBuf,
    pub certificate: PathBuf,
    pub key: PathBuf,
    pub audit_key: PathBuf,
    pub state_dir: PathBuf,
    pub pseudonym_key: PathBuf,
    pub grace_period: Duration,
    pub consumer_listen: SocketAddr,
    pub clients: Vec<ClientRule>,
    pub provider_listen: SocketAddr,
    pub services: Vec<ServiceBackend>,
    pub audit_database: String,
    pub limits: Limits,
    pub checkpoint_interval: Duration,
    pub records_interval: Duration,
}

/// An information system's subsystem and the addresses it may call from.
#[derive(Debug, Clone)]
pub struct ClientRule {
    pub subsystem: SubsystemId,
    /// Empty: from anywhere.
    pub from: Vec<IpNet>,
}

impl ClientRule {
    pub fn allows(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        self.from.is_empty() || self.from.iter().any(|net| net.contains(&address))
    }
}

/// One of the member's services and the URL its requests go to.
#[derive(Debug, Clone)]
pub struct ServiceBackend {
    pub service: ServiceId,
    /// `http://host:port/base/`: the r1 path after the service id is appended.
    pub backend: hyper::Uri,
}

/// Sizes and timeouts.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request or response body, in bytes (larger: 413 / 502).
    pub max_body_bytes: usize,
    pub backend_timeout: Duration,
    pub provider_timeout: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    gateway: GatewaySection,
    consumer: ConsumerSection,
    provider: ProviderSection,
    #[serde(default)]
    services: Vec<ServiceSection>,
    audit: AuditSection,
    #[serde(default)]
    limits: LimitsSection,
    #[serde(default)]
    reporting: ReportingSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewaySection {
    member: String,
    name: String,
    registry: String,
    anchor: PathBuf,
    certificate: PathBuf,
    key: PathBuf,
    audit_key: PathBuf,
    state_dir: PathBuf,
    grace_period_s: Option<u64>,
    pseudonym_key: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsumerSection {
    listen: String,
    #[serde(default)]
    clients: Vec<ClientSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientSection {
    subsystem: String,
    #[serde(default)]
    from: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderSection {
    listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceSection {
    service: String,
    backend: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditSection {
    database: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    max_body_bytes: Option<usize>,
    backend_timeout_ms: Option<u64>,
    provider_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportingSection {
    checkpoint_interval_ms: Option<u64>,
    records_interval_ms: Option<u64>,
}

/// 10 MiB, as X-Road's default request size limit is of that order.
pub const DEFAULT_MAX_BODY: usize = 10 * 1024 * 1024;

impl GatewayConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> anyhow::Result<GatewayConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the gateway configuration {}", path.display()))?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        GatewayConfig::parse(&text, &base).with_context(|| format!("in {}", path.display()))
    }

    /// Parses `text`, resolving relative paths against `base`.
    pub fn parse(text: &str, base: &Path) -> anyhow::Result<GatewayConfig> {
        let file: File = toml::from_str(text).map_err(|e| anyhow!("{}", e.to_string().trim()))?;
        let g = file.gateway;
        let member: MemberId = g
            .member
            .parse()
            .map_err(|e| anyhow!("[gateway] member {:?}: {e}", g.member))?;
        accord_domain::id::validate_part(accord_domain::id::Part::Subsystem, &g.name)
            .map_err(|e| anyhow!("[gateway] name {:?}: {e}", g.name))?;
        let registry = g.registry.trim_end_matches('/').to_owned();
        if !(registry.starts_with("http://") || registry.starts_with("https://")) {
            bail!("[gateway] registry {registry:?}: expected an http:// or https:// URL");
        }
        let resolve = |p: &Path| -> PathBuf {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let state_dir = resolve(&g.state_dir);
        let listen = |section: &str, value: &str| -> anyhow::Result<SocketAddr> {
            value.parse().map_err(|_| {
                anyhow!("[{section}] listen {value:?}: expected an address and port such as 127.0.0.1:8080")
            })
        };
        let consumer_listen = listen("consumer", &file.consumer.listen)?;
        let provider_listen = listen("provider", &file.provider.listen)?;
        let mut clients = Vec::new();
        for (i, c) in file.consumer.clients.iter().enumerate() {
            let subsystem: SubsystemId = c.subsystem.parse().map_err(|e| {
                anyhow!(
                    "[[consumer.clients]] #{} subsystem {:?}: {e}",
                    i + 1,
                    c.subsystem
                )
            })?;
            if *subsystem.member() != member {
                bail!(
                    "[[consumer.clients]] #{} subsystem {subsystem}: not a subsystem of {member}, the member this gateway speaks for",
                    i + 1
                );
            }
            let from = c
                .from
                .iter()
                .map(|n| {
                    n.parse::<IpNet>()
                        .or_else(|_| n.parse::<IpAddr>().map(IpNet::from))
                        .map_err(|_| {
                            anyhow!(
                                "[[consumer.clients]] #{} from {n:?}: expected an address or a network such as 127.0.0.1/32",
                                i + 1
                            )
                        })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            clients.push(ClientRule { subsystem, from });
        }
        let mut services = Vec::new();
        for (i, s) in file.services.iter().enumerate() {
            let service: ServiceId = s
                .service
                .parse()
                .map_err(|e| anyhow!("[[services]] #{} service {:?}: {e}", i + 1, s.service))?;
            if *service.subsystem().member() != member {
                bail!(
                    "[[services]] #{} service {service}: not a service of {member}, the member this gateway speaks for",
                    i + 1
                );
            }
            if services
                .iter()
                .any(|b: &ServiceBackend| b.service == service)
            {
                bail!("[[services]] #{} service {service}: listed twice", i + 1);
            }
            let backend: hyper::Uri = s.backend.parse().map_err(|_| {
                anyhow!("[[services]] #{} backend {:?}: not a URL", i + 1, s.backend)
            })?;
            if backend.scheme_str() != Some("http") || backend.authority().is_none() {
                bail!(
                    "[[services]] #{} backend {:?}: expected http://host:port/path (backends are reached over plain HTTP on the member's own network)",
                    i + 1,
                    s.backend
                );
            }
            services.push(ServiceBackend { service, backend });
        }
        let audit_database = match file.audit.database.strip_prefix("sqlite://") {
            Some(rest) if !rest.starts_with('/') && !rest.starts_with(':') => {
                format!("sqlite://{}", resolve(Path::new(rest)).display())
            }
            _ => file.audit.database.clone(),
        };
        if !(audit_database.starts_with("sqlite:") || audit_database.starts_with("postgres")) {
            bail!("[audit] database: expected sqlite://PATH or postgres://...");
        }
        let l = file.limits;
        let backend_timeout = Duration::from_millis(l.backend_timeout_ms.unwrap_or(30_000));
        let limits = Limits {
            max_body_bytes: l.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY),
            backend_timeout,
            provider_timeout: l
                .provider_timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(backend_timeout + Duration::from_secs(5)),
        };
        if limits.max_body_bytes == 0 {
            bail!("[limits] max_body_bytes: must be positive");
        }
        let r = file.reporting;
        Ok(GatewayConfig {
            member,
            name: g.name,
            registry,
            anchor: resolve(&g.anchor),
            certificate: resolve(&g.certificate),
            key: resolve(&g.key),
            audit_key: resolve(&g.audit_key),
            pseudonym_key: g
                .pseudonym_key
                .map(|p| resolve(&p))
                .unwrap_or_else(|| state_dir.join("pseudonym.key")),
            state_dir,
            grace_period: Duration::from_secs(g.grace_period_s.unwrap_or(3600)),
            consumer_listen,
            clients,
            provider_listen,
            services,
            audit_database,
            limits,
            checkpoint_interval: Duration::from_millis(r.checkpoint_interval_ms.unwrap_or(10_000)),
            records_interval: Duration::from_millis(r.records_interval_ms.unwrap_or(1_000)),
        })
    }

    /// The gateway's identity and audit log id: `MEMBER/NAME`.
    pub fn log_id(&self) -> String {
        format!("{}/{}", self.member, self.name)
    }

    /// The backend for `service`, if this gateway serves it.
    pub fn backend(&self, service: &ServiceId) -> Option<&hyper::Uri> {
        self.services
            .iter()
            .find(|s| s.service == *service)
            .map(|s| &s.backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[gateway]
member = "DEMO/GOV/70000002"
name = "gw1"
registry = "http://127.0.0.1:8700/"
anchor = "keys/federation-signing.pub"
certificate = "gw1.crt"
key = "/etc/accord/gw1.key"
audit_key = "gw1-audit.key"
state_dir = "state"

[consumer]
listen = "127.0.0.1:8080"
[[consumer.clients]]
subsystem = "DEMO/GOV/70000002/population-register"
from = ["127.0.0.1/32", "10.0.0.5"]

[provider]
listen = "127.0.0.1:8701"

[[services]]
service = "DEMO/GOV/70000002/population-register/residence/v1"
backend = "http://127.0.0.1:9001/residence/"

[audit]
database = "sqlite://state/audit.db"
"#;

    #[test]
    fn a_good_file_loads_with_paths_resolved_and_defaults() {
        let c = GatewayConfig::parse(GOOD, Path::new("/srv/gw")).unwrap();
        assert_eq!(c.log_id(), "DEMO/GOV/70000002/gw1");
        assert_eq!(c.registry, "http://127.0.0.1:8700");
        assert_eq!(c.anchor, Path::new("/srv/gw/keys/federation-signing.pub"));
        assert_eq!(c.key, Path::new("/etc/accord/gw1.key"));
        assert_eq!(c.audit_database, "sqlite:///srv/gw/state/audit.db");
        assert_eq!(c.pseudonym_key, Path::new("/srv/gw/state/pseudonym.key"));
        assert_eq!(c.limits.max_body_bytes, DEFAULT_MAX_BODY);
        assert_eq!(c.limits.provider_timeout, Duration::from_secs(35));
        assert!(c.clients[0].allows("127.0.0.1".parse().unwrap()));
        assert!(c.clients[0].allows("10.0.0.5".parse().unwrap()));
        assert!(c.clients[0].allows("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!c.clients[0].allows("127.0.0.2".parse().unwrap()));
        let service: ServiceId = "DEMO/GOV/70000002/population-register/residence/v1"
            .parse()
            .unwrap();
        assert_eq!(
            c.backend(&service).map(|u| u.to_string()),
            Some("http://127.0.0.1:9001/residence/".to_owned())
        );
    }

    #[test]
    fn mistakes_name_the_key_and_the_problem() {
        let cases = [
            (
                "member = \"DEMO/GOV/70000002\"",
                "member = \"DEMO/GOV\"",
                "[gateway] member",
            ),
            ("name = \"gw1\"", "name = \"gw 1\"", "[gateway] name"),
            (
                "listen = \"127.0.0.1:8080\"",
                "listen = \"localhost\"",
                "[consumer] listen",
            ),
            (
                "subsystem = \"DEMO/GOV/70000002/population-register\"",
                "subsystem = \"DEMO/GOV/70000003/other\"",
                "not a subsystem of DEMO/GOV/70000002",
            ),
            ("\"10.0.0.5\"", "\"ten\"", "from \"ten\""),
            (
                "service = \"DEMO/GOV/70000002/population-register/residence/v1\"",
                "service = \"DEMO/GOV/70000009/x/residence\"",
                "not a service of DEMO/GOV/70000002",
            ),
            (
                "backend = \"http://127.0.0.1:9001/residence/\"",
                "backend = \"ftp://x/\"",
                "expected http://host:port/path",
            ),
            (
                "registry = \"http://127.0.0.1:8700/\"",
                "registry = \"x\"",
                "[gateway] registry",
            ),
            (
                "[audit]",
                "[audit]\nsurprise = 1",
                "unknown field `surprise`",
            ),
            (
                "database = \"sqlite://state/audit.db\"",
                "database = \"mysql://x\"",
                "[audit] database",
            ),
        ];
        for (from, to, expected) in cases {
            let text = GOOD.replacen(from, to, 1);
            assert_ne!(text, GOOD, "case {from} did not apply");
            let err = GatewayConfig::parse(&text, Path::new("/srv")).unwrap_err();
            let message = format!("{err:#}");
            assert!(
                message.contains(expected),
                "{expected:?} not in {message:?}"
            );
        }
    }
}
