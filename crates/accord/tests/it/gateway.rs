//! `accord gateway serve` as an operator runs it: separate processes, each
//! from its own `gateway.toml` (the ones `accord demo` writes), killed with
//! SIGKILL in the middle of a load and restarted. Every exchange a client
//! got an answer for is in both gateways' audit logs, and both logs verify
//! against their own checkpoints and the registry's.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::Connection;

use crate::support::{accord, stderr, stdout, Server};

const CLIENT: &str = "DEMO/MUN/75000001/social-benefits";
const RESIDENCE: &str = "DEMO/GOV/70000002/population-register/residence/v1";

use accord_testkit::free_port;

/// A backend that answers every request with a small JSON document.
async fn backend() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = axum::Router::new().fallback(|| async {
        axum::Json(serde_json::json!({"address": {"municipality": "Tallinn"}}))
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{address}")
}

/// Points every `backend = "http://127.0.0.1:PORT/..."` of a gateway.toml
/// at `base`, keeping the path.
fn retarget(config: &Path, base: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    let out: Vec<String> = text
        .lines()
        .map(
            |line| match line.strip_prefix("backend = \"http://127.0.0.1:") {
                Some(rest) => {
                    let path = rest.find('/').map_or("/", |i| &rest[i..rest.len() - 1]);
                    format!("backend = \"{base}{path}\"")
                }
                None => line.to_owned(),
            },
        )
        .collect();
    std::fs::write(config, out.join("\n")).unwrap();
}

async fn logged_ids(database: &str) -> BTreeSet<String> {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(database).await.unwrap();
    let rows: Vec<(String,)> = sqlx::query_as("SELECT entry FROM audit_entries")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    rows.into_iter()
        .map(|(entry,)| {
            let v: serde_json::Value = serde_json::from_str(&entry).unwrap();
            v["exchange_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// The X-Road-Ids that got an answer (any HTTP answer: each was recorded
/// before it left), and those answered 200 (the provider's too).
type Answered = (BTreeSet<String>, BTreeSet<String>);

/// Sends requests from 16 tasks until told to stop.
fn load(consumer: String, stop: Arc<Mutex<bool>>) -> tokio::task::JoinHandle<Answered> {
    tokio::spawn(async move {
        let answered = Arc::new(Mutex::new((BTreeSet::new(), BTreeSet::new())));
        let mut tasks = Vec::new();
        for t in 0..16 {
            let consumer = consumer.clone();
            let stop = stop.clone();
            let answered = answered.clone();
            tasks.push(tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let mut n = 0;
                while !*stop.lock().unwrap() {
                    n += 1;
                    let id = format!("load-{t}-{n}");
                    let sent = http
                        .get(format!(
                            "{consumer}/r1/{RESIDENCE}/persons/38001010008/residence"
                        ))
                        .header("X-Road-Client", CLIENT)
                        .header("X-Road-Id", &id)
                        .header("X-Accord-Purpose", "social-benefit-eligibility")
                        .header("X-Accord-Subject", "38001010008")
                        .send()
                        .await;
                    if let Ok(response) = sent {
                        let ok = response.status() == 200;
                        if response.bytes().await.is_ok() {
                            let mut answered = answered.lock().unwrap();
                            answered.0.insert(id.clone());
                            if ok {
                                answered.1.insert(id);
                            }
                        }
                    } else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let answered = answered.lock().unwrap().clone();
        answered
    })
}

async fn verify(registry: &str, database: &str, log: &str) {
    let out = accord(&[
        "--registry",
        registry,
        "audit",
        "verify",
        "--database",
        database,
        "--log",
        log,
    ])
    .await;
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("intact"), "{}", stdout(&out));
}

async fn wait_ready(consumer: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = reqwest::get(format!("{consumer}/healthz"))
            .await
            .map(|r| r.status() == 200)
            .unwrap_or(false);
        if ready {
            return;
        }
        assert!(Instant::now() < deadline, "{consumer} did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_killed_under_load_restart_with_every_answered_exchange_in_a_verified_log() {
    let dir = tempfile::tempdir().unwrap();
    let demo_dir = dir.path().join("demo");
    let demo = demo_dir.to_str().unwrap();
    let registry_address = format!("127.0.0.1:{}", free_port());
    // The demo makes the federation and writes each gateway's configuration.
    let first = Server::start(&[
        "demo",
        "--dir",
        demo,
        "--listen",
        &registry_address,
        "--gateway-ports",
        "0",
    ])
    .await;
    first.stop().await;
    let registry = Server::start(&[
        "demo",
        "--dir",
        demo,
        "--listen",
        &registry_address,
        "--registry-only",
    ])
    .await;
    let registry_url = registry.url.clone();

    let backend = backend().await;
    let consumer_toml = demo_dir.join("gateways/DEMO_MUN_75000001/gateway.toml");
    let provider_toml = demo_dir.join("gateways/DEMO_GOV_70000002/gateway.toml");
    retarget(&provider_toml, &backend);
    let serve = |config: &Path| {
        let config = config.to_str().unwrap().to_owned();
        async move { Server::start(&["gateway", "serve", "--config", &config]).await }
    };
    let consumer = serve(&consumer_toml).await;
    let provider = serve(&provider_toml).await;
    let consumer_url = consumer.url.clone();
    wait_ready(&consumer_url).await;
    wait_ready(&provider.url).await;
    let consumer_db = format!(
        "sqlite://{}",
        demo_dir
            .join("gateways/DEMO_MUN_75000001/state/audit.db")
            .display()
    );
    let provider_db = format!(
        "sqlite://{}",
        demo_dir
            .join("gateways/DEMO_GOV_70000002/state/audit.db")
            .display()
    );

    // Kill the provider's gateway under load, then start it again.
    let stop = Arc::new(Mutex::new(false));
    let running = load(consumer_url.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    provider.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let provider = serve(&provider_toml).await;
    wait_ready(&provider.url).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Then the consumer's.
    consumer.stop().await;
    *stop.lock().unwrap() = true;
    let (answered, permitted) = running.await.unwrap();
    assert!(
        permitted.len() > 50,
        "only {} exchanges permitted",
        permitted.len()
    );

    let consumer = serve(&consumer_toml).await;
    wait_ready(&consumer.url).await;
    let consumer_ids = logged_ids(&consumer_db).await;
    let provider_ids = logged_ids(&provider_db).await;
    let missing: Vec<&String> = answered
        .iter()
        .filter(|id| !consumer_ids.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "answered but not in the consumer's log: {missing:?}"
    );
    // Every permitted answer carried the provider's receipt: the provider
    // recorded it durably first.
    let missing: Vec<&String> = permitted
        .iter()
        .filter(|id| !provider_ids.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "permitted but not in the provider's log: {missing:?}"
    );

    // The gateways anchored checkpoints before and after the crash, and
    // both logs verify against their own checkpoints and the registry's.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    verify(&registry_url, &consumer_db, "DEMO/MUN/75000001/gw1").await;
    verify(&registry_url, &provider_db, "DEMO/GOV/70000002/gw1").await;

    // And the restarted pair still exchanges: the provider answers (its
    // grant allows 100 calls a minute, which the load may have used up:
    // then the answer is that denial) and the consumer verified its receipt.
    let response = reqwest::Client::new()
        .get(format!(
            "{}/r1/{RESIDENCE}/persons/38001010008/residence",
            consumer.url
        ))
        .header("X-Road-Client", CLIENT)
        .header("X-Accord-Purpose", "social-benefit-eligibility")
        .header("X-Accord-Subject", "38001010008")
        .send()
        .await
        .unwrap();
    let error = response
        .headers()
        .get("x-road-error")
        .map(|v| v.to_str().unwrap().to_owned());
    match error.as_deref() {
        None => assert_eq!(response.status(), 200),
        Some(error) => assert_eq!(error, "Server.ServerProxy.AccessDenied.quota-exhausted"),
    }
    assert!(response.headers().contains_key("x-accord-receipt"));
    drop(registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_administrator_registers_its_gateways_audit_key_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let demo_dir = dir.path().join("demo");
    let registry = Server::start(&[
        "demo",
        "--dir",
        demo_dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--gateway-ports",
        "0",
        "--registry-only",
    ])
    .await;
    let token = demo_dir.join("tokens/DEMO_MUN_75000001.token");
    let key = dir.path().join("gw1-audit.key");
    let run = |gateway: &'static str| {
        let (url, token, key) = (registry.url.clone(), token.clone(), key.clone());
        async move {
            accord(&[
                "--registry",
                &url,
                "--token-file",
                token.to_str().unwrap(),
                "gateway",
                "audit-key",
                gateway,
                "--key",
                key.to_str().unwrap(),
            ])
            .await
        }
    };
    // Another member's gateway: refused, and no key file is left behind.
    let out = run("DEMO/GOV/70000002/gw1").await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("may not"), "{}", stderr(&out));
    assert!(!key.exists());

    let out = run("DEMO/MUN/75000001/gw1").await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("registered the audit key"),
        "{}",
        stdout(&out)
    );
    assert_eq!(crate::support::file_mode(&key), 0o600);
    let public = accord_ca::public_key_pem(
        &accord_ca::SigningKeyFile::load(&key)
            .unwrap()
            .verifying_key(),
    );
    let configuration: serde_json::Value =
        reqwest::get(format!("{}/api/v1/federation/configuration", registry.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let gateway = configuration["payload"]["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["member"] == "DEMO/MUN/75000001" && g["name"] == "gw1")
        .unwrap()
        .clone();
    assert_eq!(gateway["audit_key_pem"].as_str(), Some(public.as_str()));
}
