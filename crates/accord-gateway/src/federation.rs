//! The gateway's copy of the federation: fetched, verified, cached, and
//! usable while the registry is away — up to a grace period.
//!
//! Nothing a gateway needs per request is fetched per request: it holds the
//! signed federation configuration and the decision index compiled from it.
//! A background task long-polls the registry (`If-None-Match` + `?wait=`),
//! so a signed or suspended agreement reaches the gateway within seconds.
//! Each configuration is verified against the federation's public key (the
//! trust anchor given at set-up) and refused if older than the one held; it
//! is written to a cache file so a restarted gateway can work before the
//! registry answers. Freshness is the time the registry last confirmed the
//! configuration (a 200 or a 304); past the grace period the gateway stops
//! exchanging and says why, rather than enforce policy it can no longer
//! vouch for. A cache file that is refused at start (unreadable, or its
//! signature does not hold) stays named in the gateway's refusals and
//! health until a configuration is installed: the fetch errors that follow
//! while the registry is away must not hide it from the operator.
//!
//! What a configuration puts in force beyond decisions (the TLS trust: CA,
//! registered gateways, revocations) is installed by a hook
//! ([`ConfigSource::on_install`]) *before* the configuration is published:
//! once [`ConfigSource::current`] or the health endpoint shows a
//! configuration, every check made under it is in force. A revocation the
//! health endpoint reports is never still accepted on the next request.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use accord_domain::agreement::index::{Index, IndexedAgreement};
use accord_domain::configuration::SignedConfiguration;
use accord_domain::{MemberId, ServiceId, SubsystemId};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Where and how to get the configuration.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    /// The registry's base URL, e.g. `http://127.0.0.1:8700`.
    pub registry_url: String,
    /// The federation's instance code this gateway belongs to.
    pub instance: String,
    /// The federation's configuration-signing public key.
    pub anchor: VerifyingKey,
    /// Where the last verified configuration is kept.
    pub cache_file: PathBuf,
    /// How long the gateway keeps exchanging without the registry
    /// confirming its configuration.
    pub grace_period: Duration,
    /// How long one long poll waits at the registry.
    pub poll_wait: Duration,
    /// First delay before retrying after a failure (doubles up to 30 s).
    pub retry_delay: Duration,
}

/// A verified configuration, with what requests need looked up in advance.
#[derive(Debug)]
pub struct Federation {
    pub signed: SignedConfiguration,
    /// The decision index compiled from the agreements in force.
    pub index: Index,
    /// Services of the federation.
    pub services: HashSet<ServiceId>,
    /// Valid gateway certificates by SHA-256 fingerprint: (member, gateway name, address).
    pub gateways_by_fingerprint: HashMap<String, (MemberId, String, String)>,
    /// Fingerprints of revoked certificates.
    pub revoked: HashSet<String>,
    /// Subsystems of the federation's members.
    pub subsystems: HashSet<SubsystemId>,
    /// Positions in `signed.payload.gateways` of each member's gateways
    /// that have a valid certificate.
    pub gateways_by_member: HashMap<MemberId, Vec<usize>>,
    /// Position in `signed.payload.gateways` by gateway path `MEMBER/NAME`.
    pub gateway_by_path: HashMap<String, usize>,
}

impl Federation {
    fn compile(signed: SignedConfiguration) -> Federation {
        let p = &signed.payload;
        let index = Index::compile(p.agreements.iter().map(|a| IndexedAgreement {
            id: a.id.clone(),
            version: a.version,
            state: a.state,
            terms: a.terms.clone(),
        }));
        let services = p.services.iter().map(|s| s.id.clone()).collect();
        let mut gateways_by_fingerprint = HashMap::new();
        for g in &p.gateways {
            for c in &g.certificates {
                gateways_by_fingerprint.insert(
                    c.fingerprint_sha256.clone(),
                    (g.member.clone(), g.name.clone(), g.address.clone()),
                );
            }
        }
        let subsystems = p
            .members
            .iter()
            .flat_map(|m| {
                m.subsystems
                    .iter()
                    .filter_map(|code| m.id.subsystem(code).ok())
            })
            .collect();
        let mut gateways_by_member: HashMap<MemberId, Vec<usize>> = HashMap::new();
        let mut gateway_by_path = HashMap::new();
        for (i, g) in p.gateways.iter().enumerate() {
            gateway_by_path.insert(format!("{}/{}", g.member, g.name), i);
            if !g.certificates.is_empty() {
                gateways_by_member
                    .entry(g.member.clone())
                    .or_default()
                    .push(i);
            }
        }
        let revoked = p
            .revoked_certificates
            .iter()
            .map(|r| r.fingerprint_sha256.clone())
            .collect();
        Federation {
            signed,
            index,
            services,
            gateways_by_fingerprint,
            revoked,
            subsystems,
            gateways_by_member,
            gateway_by_path,
        }
    }

    /// The time of the latest change this configuration reflects.
    pub fn as_of(&self) -> &str {
        &self.signed.payload.as_of
    }
}

/// The cache file: the signed configuration and when the registry last
/// confirmed it.
#[derive(Debug, Serialize, Deserialize)]
struct CacheFile {
    confirmed_at_unix: u64,
    signed: SignedConfiguration,
}

/// Why the gateway cannot exchange on its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("the gateway has no federation configuration yet: {last_error}")]
    NoConfiguration { last_error: String },
    #[error(
        "the federation configuration was last confirmed {age_seconds} s ago, past the grace period of \
         {grace_seconds} s; the registry at {registry} cannot be reached: {last_error}"
    )]
    PastGrace {
        age_seconds: u64,
        grace_seconds: u64,
        registry: String,
        last_error: String,
    },
}

/// What the health endpoint reports about the configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConfigurationHealth {
    pub usable: bool,
    pub as_of: Option<String>,
    pub digest: Option<String>,
    /// Seconds since the registry last confirmed the configuration.
    pub age_seconds: Option<u64>,
    pub grace_seconds: u64,
    /// The last failure to fetch or verify, if the latest attempt failed.
    pub last_error: Option<String>,
    pub detail: String,
}

#[derive(Debug, Default, Clone)]
struct Status {
    confirmed_at: Option<SystemTime>,
    last_error: Option<String>,
    /// Why the cache file was not used at start, kept until a
    /// configuration is installed: a failed fetch afterwards must not hide
    /// that the cache on disk was refused.
    cache_refused: Option<String>,
}

/// What must be put in force with each configuration, before it is
/// published (see the module docs).
pub type InstallHook = Box<dyn Fn(&Federation) + Send + Sync>;

/// The gateway's source of federation configuration.
pub struct ConfigSource {
    settings: SourceSettings,
    current: watch::Sender<Option<Arc<Federation>>>,
    status: Mutex<Status>,
    /// Held while a configuration is installed, so that the hook and the
    /// publication happen together and in order.
    hook: Mutex<Option<InstallHook>>,
}

impl std::fmt::Debug for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigSource")
            .field("settings", &self.settings)
            .field("current", &self.current)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl ConfigSource {
    /// Loads the cached configuration if there is a valid one, and starts
    /// following the registry in the background.
    pub fn start(settings: SourceSettings) -> Arc<ConfigSource> {
        let (current, _) = watch::channel(None);
        let source = Arc::new(ConfigSource {
            settings,
            current,
            status: Mutex::new(Status::default()),
            hook: Mutex::new(None),
        });
        source.load_cache();
        // The follower holds only a weak reference: dropping the source
        // stops it.
        let follower = Arc::downgrade(&source);
        tokio::spawn(follow(follower));
        source
    }

    fn load_cache(&self) {
        let path = &self.settings.cache_file;
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                self.cache_refused(format!(
                    "reading the cached configuration {}: {e}",
                    path.display()
                ));
                return;
            }
        };
        let cached: CacheFile = match serde_json::from_str(&text) {
            Ok(c) => c,
            Err(e) => {
                self.cache_refused(format!(
                    "the cached configuration {} is unreadable: {e}",
                    path.display()
                ));
                return;
            }
        };
        if let Err(e) = cached
            .signed
            .verify(&self.settings.anchor, &self.settings.instance, None)
        {
            self.cache_refused(format!(
                "the cached configuration {} is refused: {e}",
                path.display()
            ));
            return;
        }
        let stamped = std::fs::read_to_string(confirmation_file(path))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let confirmed = UNIX_EPOCH + Duration::from_secs(cached.confirmed_at_unix.max(stamped));
        self.install(Federation::compile(cached.signed), confirmed);
        tracing::info!(file = %path.display(), "loaded the cached federation configuration");
    }

    fn failed(&self, error: String) {
        tracing::warn!(%error, "federation configuration");
        if let Ok(mut status) = self.status.lock() {
            status.last_error = Some(error);
        }
    }

    fn cache_refused(&self, error: String) {
        tracing::warn!(%error, "federation configuration");
        if let Ok(mut status) = self.status.lock() {
            status.last_error = Some(error.clone());
            status.cache_refused = Some(error);
        }
    }

    fn confirmed(&self, at: SystemTime) {
        if let Ok(mut status) = self.status.lock() {
            status.confirmed_at = Some(at);
            status.last_error = None;
            status.cache_refused = None;
        }
    }

    fn install(&self, federation: Federation, confirmed_at: SystemTime) {
        let hook = self.hook.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(hook) = hook.as_ref() {
            hook(&federation);
        }
        self.current.send_replace(Some(Arc::new(federation)));
        self.confirmed(confirmed_at);
    }

    /// Calls `hook` with every configuration from now on, before it is
    /// published, and at once with the one held (if any). One hook: a
    /// second call replaces the first.
    pub fn on_install(&self, hook: impl Fn(&Federation) + Send + Sync + 'static) {
        let mut slot = self.hook.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = self.current.borrow().clone() {
            hook(&held);
        }
        *slot = Some(Box::new(hook));
    }

    /// The configuration to decide with, if it is still within grace.
    pub fn current(&self) -> Result<Arc<Federation>, Unavailable> {
        let status = self.status_snapshot();
        let Some(federation) = self.current.borrow().clone() else {
            let last = status
                .last_error
                .unwrap_or_else(|| "the registry has not answered yet".into());
            let last_error = match status.cache_refused {
                Some(cache) if cache != last => format!("{last}; and {cache}"),
                _ => last,
            };
            return Err(Unavailable::NoConfiguration { last_error });
        };
        let age = status.confirmed_at.map_or(Duration::MAX, |c| {
            SystemTime::now().duration_since(c).unwrap_or_default()
        });
        if age > self.settings.grace_period {
            return Err(Unavailable::PastGrace {
                age_seconds: age.as_secs(),
                grace_seconds: self.settings.grace_period.as_secs(),
                registry: self.settings.registry_url.clone(),
                last_error: status.last_error.unwrap_or_else(|| "no answer".into()),
            });
        }
        Ok(federation)
    }

    fn status_snapshot(&self) -> Status {
        match self.status.lock() {
            Ok(s) => s.clone(),
            Err(_) => Status {
                last_error: Some("status lock poisoned".into()),
                ..Status::default()
            },
        }
    }

    pub fn health(&self) -> ConfigurationHealth {
        let Status {
            confirmed_at: confirmed,
            last_error,
            ..
        } = self.status_snapshot();
        let held = self.current.borrow().clone();
        let (usable, detail) = match self.current() {
            Ok(_) => (true, "exchanging on a verified configuration".to_owned()),
            Err(e) => (false, e.to_string()),
        };
        ConfigurationHealth {
            usable,
            as_of: held.as_ref().map(|f| f.as_of().to_owned()),
            digest: held.as_ref().map(|f| f.signed.digest.clone()),
            age_seconds: confirmed.map(|c| {
                SystemTime::now()
                    .duration_since(c)
                    .unwrap_or_default()
                    .as_secs()
            }),
            grace_seconds: self.settings.grace_period.as_secs(),
            last_error,
            detail,
        }
    }

    async fn poll_once(&self, client: &reqwest::Client) -> Result<(), String> {
        let held = self.current.borrow().clone();
        let url = format!(
            "{}/api/v1/federation/configuration?wait={}",
            self.settings.registry_url.trim_end_matches('/'),
            self.settings.poll_wait.as_secs()
        );
        let mut request = client.get(&url);
        if let Some(h) = &held {
            request = request.header("if-none-match", format!("\"{}\"", h.signed.digest));
        }
        let response = request.send().await.map_err(|e| {
            format!(
                "cannot reach the registry at {}: {e}",
                self.settings.registry_url
            )
        })?;
        let now = SystemTime::now();
        match response.status().as_u16() {
            304 => {
                // Remember the confirmation too, so a restart counts the
                // grace period from here, not from the last full fetch.
                let stamp = confirmation_file(&self.settings.cache_file);
                std::fs::write(&stamp, unix(now).to_string())
                    .map_err(|e| format!("writing {}: {e}", stamp.display()))?;
                self.confirmed(now);
                Ok(())
            }
            200 => {
                let signed: SignedConfiguration = response
                    .json()
                    .await
                    .map_err(|e| format!("the registry sent an unreadable configuration: {e}"))?;
                let held_as_of = held.as_ref().map(|h| h.as_of().to_owned());
                signed
                    .verify(
                        &self.settings.anchor,
                        &self.settings.instance,
                        held_as_of.as_deref(),
                    )
                    .map_err(|e| {
                        format!(
                            "refused the configuration from {}: {e}",
                            self.settings.registry_url
                        )
                    })?;
                write_cache(&self.settings.cache_file, &signed, now)?;
                let as_of = signed.payload.as_of.clone();
                let federation = tokio::task::spawn_blocking(move || Federation::compile(signed))
                    .await
                    .map_err(|e| format!("compiling the configuration failed: {e}"))?;
                self.install(federation, now);
                tracing::info!(%as_of, "installed a new federation configuration");
                Ok(())
            }
            status => Err(format!("the registry answered {status} for {url}")),
        }
    }
}

async fn follow(source: std::sync::Weak<ConfigSource>) {
    let Some(settings) = source.upgrade().map(|s| s.settings.clone()) else {
        return;
    };
    let client = match reqwest::Client::builder()
        .timeout(settings.poll_wait + Duration::from_secs(15))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            if let Some(s) = source.upgrade() {
                s.failed(format!("cannot build an HTTP client: {e}"));
            }
            return;
        }
    };
    let mut delay = settings.retry_delay;
    loop {
        let Some(s) = source.upgrade() else { return };
        match s.poll_once(&client).await {
            Ok(()) => delay = settings.retry_delay,
            Err(e) => {
                s.failed(e);
                drop(s);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// The small file that records the registry's latest 304.
fn confirmation_file(cache: &Path) -> PathBuf {
    cache.with_extension("confirmed")
}

/// Writes the cache atomically: a crash leaves the old file or the new one.
fn write_cache(
    path: &Path,
    signed: &SignedConfiguration,
    confirmed: SystemTime,
) -> Result<(), String> {
    let cache = CacheFile {
        confirmed_at_unix: unix(confirmed),
        signed: signed.clone(),
    };
    let json = serde_json::to_vec(&cache).map_err(|e| format!("serializing the cache: {e}"))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| format!("writing the configuration cache {}: {e}", path.display()))
}
