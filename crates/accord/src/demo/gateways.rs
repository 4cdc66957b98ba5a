//! The demo's gateways: one per member that runs systems, each with its
//! own `gateway.toml`, keys and audit log, all on loopback, in the demo's
//! process, with the demo backends behind the providers' services.
//!
//! Each gateway is configured exactly as an operator would configure one
//! (`DIR/gateways/MEMBER/gateway.toml`, written afresh on every run because
//! the backends' ports change), so the same directory can be served with
//! `accord gateway serve --config ...` once the demo is stopped. What only
//! exists once per gateway is made on first use and then reused: the audit
//! key (registered at the registry as the gateway's), the audit database
//! and the configuration cache. One pseudonym key is shared by all demo
//! gateways so that a data subject has one pseudonym across the federation.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use accord_domain::{MemberId, Role, ServiceId, SubsystemId};
use accord_gateway::{Gateway, GatewayConfig};
use accord_registry::api::audit::{register_audit_key, AuditKeyInput};
use accord_registry::{Registry, RegistryPaths};
use anyhow::Context;

use super::backends::Backends;
use super::DemoFederation;

/// A running demo gateway.
pub struct DemoGateway {
    pub member: MemberId,
    pub gateway: Gateway,
    pub config_file: PathBuf,
    pub audit_database: String,
}

pub struct DemoGateways {
    pub gateways: Vec<DemoGateway>,
    pub backends: Backends,
}

impl DemoGateways {
    /// The consumer side of `client`'s member's gateway.
    pub fn consumer_url(&self, client: &SubsystemId) -> Option<String> {
        self.gateways
            .iter()
            .find(|g| g.member == *client.member())
            .map(|g| format!("http://{}", g.gateway.consumer_addr))
    }

    /// Stops every gateway (their audit logs are closed) and the backends.
    pub async fn shutdown(self) {
        for g in self.gateways {
            g.gateway.shutdown().await;
        }
        let _ = self.backends.shutdown().await;
    }
}

/// A free loopback port below the kernel's ephemeral range. A port chosen
/// now and listened on later (after it went into a certificate or a
/// configuration) must not meanwhile become some outgoing connection's
/// ephemeral port, which happens often enough in the ephemeral range when
/// many programs (or tests) run at once.
pub fn free_port() -> anyhow::Result<u16> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let floor = 10_000u16.min(ephemeral_low.saturating_sub(1_000));
    let span = ephemeral_low.saturating_sub(floor).max(1);
    for _ in 0..200 {
        let port = floor + rand::random::<u16>() % span;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Ports chosen by [`reserve_port`], each held by a listener of this
/// process until [`release_port`] hands it to its gateway.
static RESERVED: std::sync::Mutex<Vec<std::net::TcpListener>> = std::sync::Mutex::new(Vec::new());

/// [`free_port`], kept bound until the gateway that will listen on it
/// starts: between the choice (a certificate, a configuration) and the
/// gateway's bind, seconds pass, and another program choosing its ports at
/// random (another demo, a test) could otherwise take the same one.
pub fn reserve_port() -> anyhow::Result<u16> {
    for _ in 0..200 {
        let port = free_port()?;
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            if let Ok(mut reserved) = RESERVED.lock() {
                reserved.push(listener);
            }
            return Ok(port);
        }
    }
    free_port()
}

/// Gives a reserved port back just before its gateway binds it (a port
/// this process did not reserve is left alone).
fn release_port(port: u16) {
    if let Ok(mut reserved) = RESERVED.lock() {
        reserved.retain(|l| l.local_addr().map_or(true, |a| a.port() != port));
    }
}

/// Gives back every port still reserved: with `--registry-only` no
/// gateway of this process binds them, the user's own gateways do.
pub fn release_ports() {
    if let Ok(mut reserved) = RESERVED.lock() {
        reserved.clear();
    }
}

/// The port of a registered `https://127.0.0.1:PORT` address.
fn port_of(address: &str) -> anyhow::Result<u16> {
    address
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .with_context(|| format!("the gateway address {address} has no port"))
}

/// Starts the backends and one gateway per demo member that runs systems.
/// `consumer_base`: the first consumer-side port (0: any free port).
#[allow(clippy::too_many_arguments)]
pub async fn start(
    registry: &Registry,
    registry_url: &str,
    dir: &Path,
    paths: &RegistryPaths,
    spec: &DemoFederation,
    consumer_base: u16,
    down: &BTreeSet<ServiceId>,
    backends: Backends,
) -> anyhow::Result<DemoGateways> {
    let registered: HashMap<MemberId, String> = registry
        .store
        .gateways(None)
        .await?
        .into_iter()
        .filter(|g| g.name == "gw1")
        .map(|g| (g.member, g.address))
        .collect();
    let gateways_dir = dir.join("gateways");
    let pseudonym_key = gateways_dir.join("pseudonym.key");
    let anchor = paths.keys_dir().join("federation-signing.pub");
    // Every audit key is registered before any gateway starts, so that each
    // one's first configuration already lists the others' keys.
    for m in spec.members.iter().filter(|m| !m.subsystems.is_empty()) {
        let id: MemberId = format!("{}/{}/{}", spec.instance, m.class, m.code).parse()?;
        if !registered.contains_key(&id) {
            continue;
        }
        let own = gateways_dir.join(id.to_string().replace('/', "_"));
        std::fs::create_dir_all(&own).with_context(|| format!("creating {}", own.display()))?;
        let audit_key = own.join("audit.key");
        if !audit_key.exists() {
            let public = accord_ca::SigningKeyFile::generate(&audit_key)?;
            register_audit_key(
                registry,
                &Role::MemberAdmin { member: id.clone() },
                &id,
                "gw1",
                &AuditKeyInput {
                    public_key_pem: Some(accord_ca::public_key_pem(&public)),
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("registering the audit key of {id}/gw1: {}", e.detail))?;
        }
    }
    let mut gateways = Vec::new();
    let mut consumer_port = consumer_base;
    for m in spec.members.iter().filter(|m| !m.subsystems.is_empty()) {
        let id: MemberId = format!("{}/{}/{}", spec.instance, m.class, m.code).parse()?;
        let Some(address) = registered.get(&id) else {
            continue;
        };
        let stem = id.to_string().replace('/', "_");
        let own = gateways_dir.join(&stem);
        let consumer = if consumer_base == 0 {
            reserve_port()?
        } else {
            let p = consumer_port;
            consumer_port += 1;
            p
        };
        let mut text = String::new();
        let _ = writeln!(
            text,
            "# The demo gateway of {name}; written by `accord demo` on each run.\n\
             [gateway]\nmember = \"{id}\"\nname = \"gw1\"\nregistry = \"{registry_url}\"\n\
             anchor = {anchor:?}\ncertificate = {cert:?}\nkey = {key:?}\naudit_key = \"audit.key\"\n\
             state_dir = \"state\"\npseudonym_key = {pseudonym:?}\n\n\
             [consumer]\nlisten = \"127.0.0.1:{consumer}\"",
            name = m.name,
            anchor = anchor.display().to_string(),
            cert = gateways_dir.join(format!("{stem}_gw1.crt")).display().to_string(),
            key = gateways_dir.join(format!("{stem}_gw1.key")).display().to_string(),
            pseudonym = pseudonym_key.display().to_string(),
        );
        for s in &m.subsystems {
            let _ = writeln!(
                text,
                "[[consumer.clients]]\nsubsystem = \"{id}/{}\"",
                s.code
            );
        }
        let provider = port_of(address)?;
        let _ = writeln!(text, "\n[provider]\nlisten = \"127.0.0.1:{provider}\"\n");
        for s in &m.subsystems {
            for svc in &s.services {
                let service = id
                    .subsystem(&s.code)?
                    .service(&svc.code, svc.version.as_deref())?;
                let backend = if down.contains(&service) {
                    // The demo's "system is down" exchange: nothing listens here.
                    format!("http://127.0.0.1:{}/", free_port()?)
                } else {
                    backends
                        .backend_url(&service)
                        .with_context(|| format!("no demo backend for {service}"))?
                };
                let _ = writeln!(
                    text,
                    "[[services]]\nservice = \"{service}\"\nbackend = \"{backend}\""
                );
            }
        }
        let _ = writeln!(
            text,
            "\n[audit]\ndatabase = \"sqlite://state/audit.db\"\n\n\
             [limits]\nbackend_timeout_ms = 5000\n\n\
             [reporting]\ncheckpoint_interval_ms = 1000\nrecords_interval_ms = 1000"
        );
        let config_file = own.join("gateway.toml");
        std::fs::write(&config_file, &text)
            .with_context(|| format!("writing {}", config_file.display()))?;
        let config = GatewayConfig::load(&config_file)?;
        let audit_database = config.audit_database.clone();
        release_port(consumer);
        release_port(provider);
        let gateway = Gateway::start(config)
            .await
            .with_context(|| format!("starting the gateway of {id}"))?;
        gateways.push(DemoGateway {
            member: id,
            gateway,
            config_file,
            audit_database,
        });
    }
    // Ready when each holds the registry's current configuration.
    let current: serde_json::Value = reqwest::Client::new()
        .get(format!("{registry_url}/api/v1/federation/configuration"))
        .send()
        .await
        .context("fetching the federation configuration")?
        .json()
        .await
        .context("reading the federation configuration")?;
    let digest = current["digest"].as_str().map(str::to_owned);
    let deadline = Instant::now() + Duration::from_secs(30);
    for g in &gateways {
        loop {
            let health = g.gateway.health().await;
            if health.ready && health.configuration.digest == digest {
                break;
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "the gateway of {} did not become ready: {}",
                    g.member,
                    g.gateway.health().await.configuration.detail
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(DemoGateways { gateways, backends })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserved_port_stays_taken_until_its_gateway_gets_it() {
        let port = reserve_port().unwrap();
        // Another program checking the port (as free_port does) finds it
        // taken, so it cannot choose it meanwhile.
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_err());
        release_port(port);
        let gateway = std::net::TcpListener::bind(("127.0.0.1", port));
        assert!(gateway.is_ok(), "port {port} still held: {gateway:?}");
    }
}
