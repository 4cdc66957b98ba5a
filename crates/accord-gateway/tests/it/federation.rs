//! A gateway follows the registry's signed configuration: it gets it,
//! verifies it, sees changes within seconds, keeps working on its cached
//! copy while the registry is down, and stops, saying why, once the grace
//! period has passed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::ServedRegistry;
use accord_domain::Role;
use accord_gateway::federation::{ConfigSource, SourceSettings, Unavailable};
use accord_registry::api::members::{add_member, MemberInput};
use accord_registry::{InitOptions, Registry, RegistryPaths};

struct Running {
    registry: Registry,
    url: String,
    served: Option<ServedRegistry>,
    dir: tempfile::TempDir,
}

impl Running {
    async fn start() -> Running {
        let dir = tempfile::tempdir().unwrap();
        let paths = RegistryPaths::new(dir.path().join("registry"), None);
        let options = InitOptions {
            instance: "TEST".into(),
            name: "Test federation".into(),
            member_classes: vec!["GOV".into()],
        };
        let (registry, _) = Registry::init(&paths, &options).await.unwrap();
        let mut running = Running {
            registry,
            url: String::new(),
            served: None,
            dir,
        };
        running.serve_on("127.0.0.1:0").await;
        running
    }

    async fn serve_on(&mut self, address: &str) {
        let served = ServedRegistry::start(self.registry.clone(), address).await;
        self.url = served.url.clone();
        self.served = Some(served);
    }

    async fn stop(&mut self) {
        if let Some(mut served) = self.served.take() {
            served.stop().await;
        }
    }

    fn settings(&self, grace: Duration) -> SourceSettings {
        SourceSettings {
            registry_url: self.url.clone(),
            instance: "TEST".into(),
            anchor: self.registry.keys().verifying_key(),
            cache_file: self.dir.path().join("federation.json"),
            grace_period: grace,
            poll_wait: Duration::from_secs(2),
            retry_delay: Duration::from_millis(100),
        }
    }

    async fn add_member(&self, code: &str) {
        let input = MemberInput {
            id: Some(format!("TEST/GOV/{code}")),
            name: Some(format!("Agency {code}")),
            level: Some("national".into()),
            country: Some("EE".into()),
            sector: Some("public".into()),
            ..MemberInput::default()
        };
        add_member(&self.registry, &Role::FederationAdmin, &input)
            .await
            .unwrap();
    }
}

async fn until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn members(source: &ConfigSource) -> Option<Vec<String>> {
    source.current().ok().map(|f| {
        f.signed
            .payload
            .members
            .iter()
            .map(|m| m.id.to_string())
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_follows_the_registry_and_survives_its_absence() {
    let mut registry = Running::start().await;
    registry.add_member("1").await;
    let source = ConfigSource::start(registry.settings(Duration::from_secs(2)));
    let first = until("the first configuration", || members(&source)).await;
    assert_eq!(first, ["TEST/GOV/1"]);
    let health = source.health();
    assert!(health.usable && health.last_error.is_none(), "{health:?}");

    // A change at the registry arrives while the gateway long-polls.
    registry.add_member("2").await;
    let started = Instant::now();
    until("the change", || members(&source).filter(|m| m.len() == 2)).await;
    assert!(started.elapsed() < Duration::from_secs(5));

    // The registry goes away: the gateway keeps working within grace...
    registry.stop().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(source.current().is_ok(), "within the grace period");
    // ...and then refuses, naming the grace period and the registry.
    let error = until("the grace period to pass", || source.current().err()).await;
    match &error {
        Unavailable::PastGrace {
            grace_seconds,
            registry: url,
            ..
        } => {
            assert_eq!(*grace_seconds, 2);
            assert_eq!(url, &registry.url);
        }
        other => panic!("expected past grace, got {other:?}"),
    }
    let health = source.health();
    assert!(!health.usable);
    assert!(health.detail.contains("grace period"), "{health:?}");
    // The last attempt may still be waiting on the stopped registry's
    // socket (no error yet); when one is recorded, it names the registry.
    if let Some(error) = health.last_error {
        assert!(error.contains("cannot reach the registry"), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_gateway_starts_from_its_verified_cache() {
    let mut registry = Running::start().await;
    registry.add_member("1").await;
    let settings = registry.settings(Duration::from_secs(60));
    let source = ConfigSource::start(settings.clone());
    until("the first configuration", || members(&source)).await;
    drop(source);
    registry.stop().await;

    // Registry down, gateway restarted: it works from the cache file.
    let restarted = ConfigSource::start(settings.clone());
    assert_eq!(members(&restarted).unwrap(), ["TEST/GOV/1"]);

    // A cache file changed on disk is refused, not trusted.
    let text = std::fs::read_to_string(&settings.cache_file).unwrap();
    std::fs::write(&settings.cache_file, text.replace("Agency 1", "Agency X")).unwrap();
    let tampered = ConfigSource::start(settings.clone());
    let refused = |source: &ConfigSource| match source.current() {
        Err(Unavailable::NoConfiguration { last_error }) => {
            assert!(
                last_error.contains("refused") && last_error.contains("digest"),
                "{last_error}"
            );
            last_error
        }
        other => panic!("a tampered cache must not be used: {other:?}"),
    };
    refused(&tampered);
    // The registry is still down: once a fetch has failed too, the refusal
    // of the cache is still named, beside the fetch's error.
    until("a failed fetch", || {
        tampered
            .health()
            .last_error
            .filter(|e| e.contains("cannot reach the registry"))
    })
    .await;
    let both = refused(&tampered);
    assert!(both.contains("cannot reach the registry"), "{both}");
    assert!(tampered.health().detail.contains("digest"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_signed_by_another_key_is_refused() {
    let registry = Running::start().await;
    let mut settings = registry.settings(Duration::from_secs(60));
    settings.anchor = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key();
    let source = ConfigSource::start(settings);
    let error = until("a refusal", || source.health().last_error).await;
    assert!(
        error.contains("does not verify with the federation's anchor"),
        "{error}"
    );
    assert!(matches!(
        source.current(),
        Err(Unavailable::NoConfiguration { .. })
    ));
    let _keep: Arc<ConfigSource> = source;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_configuration_puts_in_force_is_in_force_before_it_is_published() {
    // The gateway's TLS trust (revocations, registered gateways) is put in
    // force by this hook: once a configuration shows in `current()` or the
    // health endpoint, its revocations must already hold.
    let registry = Running::start().await;
    registry.add_member("1").await;
    let source = ConfigSource::start(registry.settings(Duration::from_secs(60)));
    until("the first configuration", || members(&source)).await;

    type Seen = Vec<(usize, Option<usize>)>;
    let seen: Arc<std::sync::Mutex<Seen>> = Arc::default();
    let weak = Arc::downgrade(&source);
    let log = seen.clone();
    source.on_install(move |federation| {
        let published = weak.upgrade().and_then(|s| members(&s)).map(|m| m.len());
        log.lock()
            .unwrap()
            .push((federation.signed.payload.members.len(), published));
    });
    // Called at once with the configuration held.
    assert_eq!(*seen.lock().unwrap(), [(1, Some(1))]);

    registry.add_member("2").await;
    until("the change", || members(&source).filter(|m| m.len() == 2)).await;
    // The hook saw the new configuration while the old one was still the
    // published one.
    assert_eq!(*seen.lock().unwrap(), [(1, Some(1)), (2, Some(1))]);
}
