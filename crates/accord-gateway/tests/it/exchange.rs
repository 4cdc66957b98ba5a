//! End to end: a real registry, two real gateways with mutual TLS and a
//! real backend, on loopback; the gateways' audit logs and the registry on
//! SQLite and on PostgreSQL. An information system calls with the X-Road
//! REST protocol r1 and gets the backend's answer with the agreement named,
//! or an X-Road error saying why not; every exchange is in both gateways'
//! logs, which verify and match the checkpoints the registry anchored.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use accord_domain::agreement::AgreementTerms;
use accord_domain::{MemberId, Role};
use accord_gateway::audit_store::LogReader;
use accord_gateway::{Gateway, GatewayConfig};
use accord_registry::api::audit::{register_audit_key, AuditKeyInput};
use accord_registry::api::gateways::{
    issue_certificate, revoke_certificate, CertificateInput, RevokeInput,
};
use accord_registry::api::keys::{register_key, SigningKeyInput};
use accord_registry::api::members::{add_member, MemberInput};
use accord_registry::api::services::{add_service, add_subsystem, ServiceInput, SubsystemInput};
use accord_registry::{InitOptions, Registry, RegistryPaths};
use axum::extract::Request;
use axum::response::IntoResponse;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::on_both_engines;
use crate::support::{execute, Engine, ServedRegistry, TestDb};

const CONSUMER: &str = "TEST/GOV/1000";
const PROVIDER: &str = "TEST/GOV/2000";
const CLIENT: &str = "TEST/GOV/1000/benefits";
const PEOPLE: &str = "TEST/GOV/2000/register/people/v1";
const ECHO: &str = "TEST/GOV/2000/register/echo";
const SLOW: &str = "TEST/GOV/2000/register/slow";
const GARBAGE: &str = "TEST/GOV/2000/register/garbage";
const DOWN: &str = "TEST/GOV/2000/register/down";
const LIMITED: &str = "TEST/GOV/2000/register/limited";
/// A second system of the consumer, allowed to call only from 127.0.0.2
/// and covered by no grant.
const ARCHIVE: &str = "TEST/GOV/1000/archive";

/// What the backend saw of each request.
type Seen = Arc<Mutex<Vec<(String, String, HashMap<String, String>)>>>;

/// A backend for the provider's services: `/people/...` answers JSON,
/// `/echo` echoes, `/slow` answers after 3 s, `/redirect` redirects.
async fn backend(seen: Seen) -> SocketAddr {
    let handler = move |req: Request| {
        let seen = seen.clone();
        async move {
            let (parts, body) = req.into_parts();
            let headers = parts
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let path = parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            seen.lock()
                .unwrap()
                .push((parts.method.to_string(), path.clone(), headers));
            let body = axum::body::to_bytes(body, 1 << 24).await.unwrap();
            if path.starts_with("/people/people/") || path.starts_with("/people/") {
                let id = parts
                    .uri
                    .path()
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                return axum::Json(json!({"id": id, "name": "Mari Maasikas", "city": "Tartu"}))
                    .into_response();
            }
            if path.contains("/slow") {
                tokio::time::sleep(Duration::from_secs(3)).await;
                return "late".into_response();
            }
            if path.contains("/redirect") {
                return (
                    http::StatusCode::FOUND,
                    [(http::header::LOCATION, "http://127.0.0.1:1/elsewhere")],
                    "moved",
                )
                    .into_response();
            }
            (
                [
                    ("content-type", "application/octet-stream"),
                    ("x-backend", "echo"),
                    ("x-road-client", "FORGED/BY/BACKEND/x"),
                ],
                body,
            )
                .into_response()
        }
    };
    let router = axum::Router::new().fallback(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    address
}

/// A "backend" that answers anything with bytes that are not HTTP.
async fn garbage_backend() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(b"\x00\x01 this is not HTTP\r\n\r\n").await;
            });
        }
    });
    address
}

use accord_testkit::free_port;

/// A gateway's files, made the way an operator would.
struct GatewayFiles {
    dir: PathBuf,
    member: String,
    provider_port: u16,
    serial: String,
}

struct Federation {
    engine: Engine,
    registry: Registry,
    url: String,
    served: Option<ServedRegistry>,
    dir: tempfile::TempDir,
    dbs: Vec<TestDb>,
    signing_keys: HashMap<String, ed25519_dalek::SigningKey>,
    backend: SocketAddr,
    garbage: SocketAddr,
    seen: Seen,
}

impl Federation {
    async fn start(engine: Engine) -> Option<Federation> {
        let registry_db = TestDb::new(engine).await?;
        let dir = tempfile::tempdir().unwrap();
        let database_url = (engine == Engine::Postgres).then(|| registry_db.url.clone());
        let paths = RegistryPaths::new(dir.path().join("registry"), database_url);
        let options = InitOptions {
            instance: "TEST".into(),
            name: "Test federation".into(),
            member_classes: vec!["GOV".into()],
        };
        let (registry, _) = Registry::init(&paths, &options).await.unwrap();
        let seen: Seen = Arc::default();
        let mut f = Federation {
            engine,
            registry,
            url: String::new(),
            served: None,
            dir,
            dbs: vec![registry_db],
            signing_keys: HashMap::new(),
            backend: backend(seen.clone()).await,
            garbage: garbage_backend().await,
            seen,
        };
        f.serve().await;
        for (code, subsystem, services) in [
            ("1000", "benefits", vec![]),
            ("1000", "archive", vec![]),
            (
                "2000",
                "register",
                vec![
                    ("people", Some("v1")),
                    ("echo", None),
                    ("slow", None),
                    ("garbage", None),
                    ("down", None),
                    ("limited", None),
                ],
            ),
            ("3000", "other", vec![]),
        ] {
            f.member(code, subsystem, &services).await;
        }
        Some(f)
    }

    async fn serve(&mut self) {
        let served = ServedRegistry::start(self.registry.clone(), "127.0.0.1:0").await;
        self.url = served.url.clone();
        self.served = Some(served);
    }

    async fn stop_registry(&mut self) {
        if let Some(mut served) = self.served.take() {
            served.stop().await;
        }
    }

    async fn member(&mut self, code: &str, subsystem: &str, services: &[(&str, Option<&str>)]) {
        let admin = Role::FederationAdmin;
        let id = format!("TEST/GOV/{code}");
        let new_member = !self.signing_keys.contains_key(&id);
        if new_member {
            add_member(
                &self.registry,
                &admin,
                &MemberInput {
                    id: Some(id.clone()),
                    name: Some(format!("Agency {code}")),
                    level: Some("national".into()),
                    country: Some("EE".into()),
                    sector: Some("public".into()),
                    ..MemberInput::default()
                },
            )
            .await
            .unwrap();
        }
        let member: MemberId = id.parse().unwrap();
        let sub = add_subsystem(
            &self.registry,
            &admin,
            &member,
            &SubsystemInput {
                code: Some(subsystem.into()),
                name: Some(format!("{subsystem} system")),
            },
        )
        .await
        .unwrap();
        for (service, version) in services {
            add_service(
                &self.registry,
                &admin,
                &sub.id,
                &ServiceInput {
                    code: Some((*service).into()),
                    version: version.map(str::to_owned),
                    title: Some(format!("The {service} service")),
                    description: Some("For tests".into()),
                    personal_data: Some(*service == "people"),
                    data_categories: vec![],
                    openapi: Some(json!({
                        "openapi": "3.0.3",
                        "info": {"title": service, "version": "1"},
                        "paths": {"/": {"get": {"responses": {"200": {"description": "ok"}}}}}
                    })),
                },
            )
            .await
            .unwrap();
        }
        if !new_member {
            return;
        }
        let key_file = self.dir.path().join(format!("{code}-signing.key"));
        let public = accord_ca::SigningKeyFile::generate(&key_file).unwrap();
        register_key(
            &self.registry,
            &Role::MemberAdmin {
                member: member.clone(),
            },
            &member,
            &SigningKeyInput {
                public_key_pem: Some(accord_ca::public_key_pem(&public)),
            },
        )
        .await
        .unwrap();
        self.signing_keys
            .insert(id, accord_ca::SigningKeyFile::load(&key_file).unwrap());
    }

    /// Issues a certificate for `member`'s gateway `name`, makes and
    /// registers its audit key, and writes the files beside its config.
    async fn gateway_files(&mut self, member: &str, name: &str) -> GatewayFiles {
        let dir = self
            .dir
            .path()
            .join(format!("{}-{name}", member.replace('/', "_")));
        std::fs::create_dir_all(&dir).unwrap();
        let provider_port = free_port();
        let issued = issue_certificate(
            &self.registry,
            &Role::FederationAdmin,
            &CertificateInput {
                member: Some(member.into()),
                gateway: Some(name.into()),
                address: Some(format!("https://127.0.0.1:{provider_port}")),
                csr_pem: None,
                validity_days: Some(30),
            },
        )
        .await
        .unwrap();
        std::fs::write(dir.join("gw.crt"), &issued.certificate.certificate_pem).unwrap();
        write_private(
            &dir.join("gw.key"),
            issued.private_key_pem.as_deref().unwrap(),
        );
        let audit_public = accord_ca::SigningKeyFile::generate(&dir.join("audit.key")).unwrap();
        let member_id: MemberId = member.parse().unwrap();
        register_audit_key(
            &self.registry,
            &Role::MemberAdmin {
                member: member_id.clone(),
            },
            &member_id,
            name,
            &AuditKeyInput {
                public_key_pem: Some(accord_ca::public_key_pem(&audit_public)),
            },
        )
        .await
        .unwrap();
        std::fs::write(
            dir.join("anchor.pub"),
            accord_ca::public_key_pem(&self.registry.keys().verifying_key()),
        )
        .unwrap();
        GatewayFiles {
            dir,
            member: member.into(),
            provider_port,
            serial: issued.certificate.serial,
        }
    }

    /// A gateway.toml for `files`, with `extra` appended (services, limits).
    async fn config(&mut self, files: &GatewayFiles, clients: &str, extra: &str) -> GatewayConfig {
        let db = TestDb::new(self.engine).await.unwrap();
        let database = match self.engine {
            Engine::Sqlite => "sqlite://state/audit.db".to_owned(),
            Engine::Postgres => db.url.clone(),
        };
        self.dbs.push(db);
        let text = format!(
            r#"
[gateway]
member = "{member}"
name = "gw1"
registry = "{registry}"
anchor = "anchor.pub"
certificate = "gw.crt"
key = "gw.key"
audit_key = "audit.key"
state_dir = "state"
grace_period_s = 2

[consumer]
listen = "127.0.0.1:0"
{clients}

[provider]
listen = "127.0.0.1:{port}"

[audit]
database = "{database}"

[reporting]
checkpoint_interval_ms = 200
records_interval_ms = 200

{extra}
"#,
            member = files.member,
            registry = self.url,
            port = files.provider_port,
        );
        GatewayConfig::parse(&text, &files.dir).unwrap()
    }

    fn services_toml(&self) -> String {
        let base = format!("http://{}", self.backend);
        format!(
            r#"
[[services]]
service = "{PEOPLE}"
backend = "{base}/people/"
[[services]]
service = "{ECHO}"
backend = "{base}/echo"
[[services]]
service = "{SLOW}"
backend = "{base}/slow"
[[services]]
service = "{GARBAGE}"
backend = "http://{garbage}/"
[[services]]
service = "{LIMITED}"
backend = "{base}/echo"
[[services]]
service = "{DOWN}"
backend = "http://127.0.0.1:{down}/"
[limits]
backend_timeout_ms = 700
max_body_bytes = 100000
"#,
            garbage = self.garbage,
            down = free_port(),
        )
    }

    async fn agreement(&self, id: &str, terms: Value) {
        let terms: AgreementTerms = serde_json::from_value(terms).unwrap();
        let signers = terms
            .parties
            .iter()
            .map(|p| {
                (
                    p.member.clone(),
                    self.signing_keys[&p.member.to_string()].clone(),
                )
            })
            .collect::<Vec<_>>();
        accord_registry::api::agreements::establish(&self.registry, id, terms, &signers)
            .await
            .unwrap();
    }
}

fn write_private(path: &std::path::Path, contents: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    std::io::Write::write_all(&mut f, contents.as_bytes()).unwrap();
}

fn terms(grants: Value) -> Value {
    json!({
        "title": "Benefit checks",
        "description": "The benefits system reads people's records",
        "parties": [
            {"member": PROVIDER, "roles": ["provider"]},
            {"member": CONSUMER, "roles": ["consumer"]}
        ],
        "grants": grants,
        "validity": {"start": "2020-01-01T00:00:00Z", "end": "2099-01-01T00:00:00Z"}
    })
}

/// Two gateways, the consumer's and the provider's, both ready.
struct Pair {
    f: Federation,
    consumer: Gateway,
    provider: Gateway,
    consumer_files: GatewayFiles,
    http: reqwest::Client,
}

async fn until<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Pair {
    async fn start(engine: Engine) -> Option<Pair> {
        let mut f = Federation::start(engine).await?;
        f.agreement(
            "benefit-checks",
            terms(json!([
                {
                    "id": "people-lookup",
                    "services": {"services": [PEOPLE]},
                    "consumers": [CLIENT],
                    "purposes": ["social-benefit-eligibility"],
                    "operations": [{"methods": ["GET"], "path": "/people/*"}],
                    "data_subject_required": true
                },
                {
                    "id": "echo",
                    "services": {"services": [ECHO, SLOW, GARBAGE, DOWN]},
                    "consumers": [CLIENT],
                    "purposes": ["tax-assessment"],
                    "operations": [{"methods": ["GET", "HEAD", "POST", "PUT"], "path": "/**"}]
                },
                {
                    "id": "limited",
                    "services": {"services": [LIMITED]},
                    "consumers": [CLIENT],
                    "purposes": ["tax-assessment"],
                    "operations": [{"methods": ["GET"], "path": "/**"}],
                    "quotas": [{"limit": 2, "per": "minute"}]
                }
            ])),
        )
        .await;
        let consumer_files = f.gateway_files(CONSUMER, "gw1").await;
        let provider_files = f.gateway_files(PROVIDER, "gw1").await;
        let clients = format!(
            "[[consumer.clients]]\nsubsystem = \"{CLIENT}\"\nfrom = [\"127.0.0.1/32\"]\n\
             [[consumer.clients]]\nsubsystem = \"{ARCHIVE}\"\nfrom = [\"127.0.0.2\"]"
        );
        let consumer_config = f
            .config(
                &consumer_files,
                &clients,
                "[limits]\nmax_body_bytes = 100000",
            )
            .await;
        let services = f.services_toml();
        let provider_config = f.config(&provider_files, "", &services).await;
        let consumer = Gateway::start(consumer_config).await.unwrap();
        let provider = Gateway::start(provider_config).await.unwrap();
        let pair = Pair {
            f,
            consumer,
            provider,
            consumer_files,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        };
        for g in [&pair.consumer, &pair.provider] {
            until("the gateway to be ready", || async {
                g.health().await.ready.then_some(())
            })
            .await;
        }
        Some(pair)
    }

    fn url(&self, target: &str) -> String {
        format!("http://{}{target}", self.consumer.consumer_addr)
    }

    fn get(&self, target: &str) -> reqwest::RequestBuilder {
        self.http
            .get(self.url(target))
            .header("X-Road-Client", CLIENT)
    }

    /// A permitted call of the echo service with X-Road-Id `id`.
    async fn echo(&self, id: &str) -> reqwest::Result<reqwest::Response> {
        self.get(&format!("/r1/{ECHO}/x"))
            .header("X-Road-Id", id)
            .header("X-Accord-Purpose", "tax-assessment")
            .send()
            .await
    }
}

fn people(person: &str) -> String {
    format!("/r1/{PEOPLE}/people/{person}")
}

/// Asserts an X-Road error answer: status, `X-Road-Error`, body type and
/// a message containing `says`.
async fn assert_xroad_error(
    response: reqwest::Response,
    status: u16,
    error_type: &str,
    says: &str,
) {
    let got_status = response.status().as_u16();
    let got_type = response
        .headers()
        .get("x-road-error")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    assert_eq!(
        (got_status, got_type.as_deref()),
        (status, Some(error_type)),
        "{text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["type"], error_type, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(says), "{says:?} not in {message:?}");
    assert!(body["detail"].as_str().is_some_and(|d| d.len() == 36));
}

async fn log_entries(gateway_db_url: &str) -> Vec<accord_audit::AuditEntry> {
    let reader = LogReader::open(gateway_db_url).await.unwrap();
    let mut cursor = reader.entries(0);
    let mut out = Vec::new();
    while let Some(e) = cursor.next().await.unwrap() {
        out.push(accord_audit::AuditEntry::from_canonical_bytes(&e.entry).unwrap());
    }
    out
}

on_both_engines!(
    a_permitted_call_crosses_both_gateways_and_is_recorded_on_both_sides,
    denials_say_why_and_are_recorded_on_both_sides,
    malformed_requests_get_xroad_errors_and_audit_entries,
    backend_faults_are_answered_in_time_and_recorded,
    peer_faults_are_refused,
    bodies_of_every_size_are_hashed_into_both_entries,
    a_provider_whose_log_fails_sends_no_proof_and_the_exchange_fails,
    past_the_grace_period_the_gateway_refuses_and_says_why,
    a_gateway_cannot_speak_for_another_members_client,
);

async fn a_permitted_call_crosses_both_gateways_and_is_recorded_on_both_sides(engine: Engine) {
    let Some(pair) = Pair::start(engine).await else {
        return;
    };
    let response = pair
        .get(&format!("{}?fields=name", people("38001010001")))
        .header("X-Road-Id", "exchange-1")
        .header("X-Road-UserId", "EE38001010001")
        .header("X-Accord-Purpose", "social-benefit-eligibility")
        .header("X-Accord-Subject", "38001010001")
        .header("X-Custom", "passes")
        .header("Connection", "keep-alive, X-Hop")
        .header("X-Hop", "must not pass")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let h = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(h("x-road-client").as_deref(), Some(CLIENT));
    assert_eq!(h("x-road-service").as_deref(), Some(PEOPLE));
    assert_eq!(h("x-road-id").as_deref(), Some("exchange-1"));
    assert!(h("x-road-request-id").is_some());
    assert!(h("x-road-request-hash").is_some());
    assert_eq!(
        h("x-accord-agreement").as_deref(),
        Some("agreement=benefit-checks; version=1; grant=people-lookup")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], "38001010001");

    // What the backend saw: the path after the service id, the query, the
    // X-Road headers set by the gateway, user headers; no hop-by-hop
    // headers, no data subject.
    let (method, path, seen) = pair.f.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(method, "GET");
    assert_eq!(path, "/people/people/38001010001?fields=name");
    assert_eq!(seen.get("x-road-client").map(String::as_str), Some(CLIENT));
    assert_eq!(
        seen.get("x-road-id").map(String::as_str),
        Some("exchange-1")
    );
    assert_eq!(
        seen.get("x-road-userid").map(String::as_str),
        Some("EE38001010001")
    );
    assert_eq!(seen.get("x-custom").map(String::as_str), Some("passes"));
    assert_eq!(
        seen.get("x-accord-agreement").map(String::as_str),
        Some("agreement=benefit-checks; version=1; grant=people-lookup")
    );
    assert!(!seen.contains_key("x-hop"));
    assert!(!seen.contains_key("x-accord-subject"));

    // Both logs hold the exchange, with the subject only as a pseudonym.
    let consumer_db = pair.f.dbs[1].url.clone();
    let provider_db = pair.f.dbs[2].url.clone();
    let consumer_db = match engine {
        Engine::Sqlite => format!(
            "sqlite://{}",
            pair.consumer_files.dir.join("state/audit.db").display()
        ),
        Engine::Postgres => consumer_db,
    };
    let provider_db = match engine {
        Engine::Sqlite => format!(
            "sqlite://{}",
            pair.consumer_files
                .dir
                .parent()
                .unwrap()
                .join("TEST_GOV_2000-gw1/state/audit.db")
                .display()
        ),
        Engine::Postgres => provider_db,
    };
    for (db, side) in [
        (&consumer_db, accord_audit::Side::Consumer),
        (&provider_db, accord_audit::Side::Provider),
    ] {
        let entries = log_entries(db).await;
        let e = entries
            .iter()
            .find(|e| e.exchange_id == "exchange-1")
            .unwrap();
        assert_eq!(e.side, side);
        assert_eq!(e.client, CLIENT);
        assert_eq!(e.service, PEOPLE);
        assert_eq!(e.path, "/people/{subject}");
        assert_eq!(e.purpose.as_deref(), Some("social-benefit-eligibility"));
        assert_eq!(
            e.agreement.as_ref().map(|a| a.id.as_str()),
            Some("benefit-checks")
        );
        assert_eq!(e.grant.as_deref(), Some("people-lookup"));
        assert_eq!(e.status, 200);
        assert_eq!(e.decision, accord_audit::AuditDecision::Permit);
        let pseudonym = e.data_subject_pseudonym.as_deref().unwrap();
        assert!(!pseudonym.contains("38001010001"));
        let text = serde_json::to_string(e).unwrap();
        assert!(
            !text.contains("38001010001"),
            "the raw subject is in the log: {text}"
        );
    }

    // Operational records of both sides reach the registry, with the
    // agreement, and without the data subject.
    let records = until("both sides' operational records", || async {
        let records = pair
            .f
            .registry
            .store
            .operational_records(Some("benefit-checks"), 100)
            .await
            .unwrap();
        (records.len() >= 2).then_some(records)
    })
    .await;
    let mut sides: Vec<(&str, &str)> = records
        .iter()
        .map(|(gateway, r)| (gateway.as_str(), r.side.as_str()))
        .collect();
    sides.sort();
    assert_eq!(
        sides,
        [
            ("TEST/GOV/1000/gw1", "consumer"),
            ("TEST/GOV/2000/gw1", "provider")
        ]
    );
    for (_, r) in &records {
        assert_eq!(r.client, CLIENT);
        assert_eq!(r.status, 200);
        assert!(r.success);
        assert_eq!(r.grant.as_deref(), Some("people-lookup"));
        assert!(r.request_out_ms.is_some() && r.response_in_ms.is_some());
        assert!(!serde_json::to_string(r).unwrap().contains("38001010001"));
    }

    // Checkpoints reach the registry, and each log verifies against them.
    let provider_dir = pair
        .consumer_files
        .dir
        .parent()
        .unwrap()
        .join("TEST_GOV_2000-gw1");
    for (gateway, db, log_id, dir) in [
        (
            &pair.consumer,
            &consumer_db,
            "TEST/GOV/1000/gw1",
            pair.consumer_files.dir.clone(),
        ),
        (
            &pair.provider,
            &provider_db,
            "TEST/GOV/2000/gw1",
            provider_dir,
        ),
    ] {
        let size = gateway.health().await.audit.entries;
        until("the checkpoint to be anchored", || async {
            (gateway.health().await.audit.anchored_size >= Some(size)).then_some(())
        })
        .await;
        let anchored: Vec<accord_audit::SignedCheckpoint> = pair
            .http
            .get(format!("{}/api/v1/audit/checkpoints", pair.f.url))
            .query(&[("log", log_id)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(!anchored.is_empty());
        let key = accord_ca::SigningKeyFile::load(&dir.join("audit.key")).unwrap();
        let reader = LogReader::open(db).await.unwrap();
        let report = reader
            .verify(log_id, [key.verifying_key()], anchored)
            .await
            .unwrap();
        assert!(report.problem.is_none(), "{:?}", report.problem);
        assert!(report.anchored_size >= size, "{report:?}");
    }
    pair.consumer.shutdown().await;
    pair.provider.shutdown().await;
}

impl Pair {
    /// The federation administrator revokes the consumer gateway's certificate.
    async fn revoke_consumer_certificate(&self) {
        revoke_certificate(
            &self.f.registry,
            &Role::FederationAdmin,
            &self.consumer_files.serial,
            &RevokeInput {
                reason: Some("key compromise".into()),
            },
        )
        .await
        .unwrap();
    }

    fn consumer_db(&self) -> String {
        match self.f.engine {
            Engine::Sqlite => format!(
                "sqlite://{}",
                self.consumer_files.dir.join("state/audit.db").display()
            ),
            Engine::Postgres => self.f.dbs[1].url.clone(),
        }
    }

    fn provider_db(&self) -> String {
        match self.f.engine {
            Engine::Sqlite => format!(
                "sqlite://{}",
                self.f
                    .dir
                    .path()
                    .join("TEST_GOV_2000-gw1/state/audit.db")
                    .display()
            ),
            Engine::Postgres => self.f.dbs[2].url.clone(),
        }
    }

    /// The consumer's last entry for an exchange: its outcome (an answer
    /// whose proof fails after the body came has two, see
    /// [`Self::consumer_entries`]).
    async fn consumer_entry(&self, exchange_id: &str) -> accord_audit::AuditEntry {
        self.consumer_entries(exchange_id)
            .await
            .pop()
            .unwrap_or_else(|| panic!("no consumer entry for {exchange_id}"))
    }

    /// The consumer recorded the provider's answer as it came (200), then
    /// that it did not pass it on, with `error_type`: the proof that
    /// followed the body failed.
    async fn assert_not_passed_on(&self, exchange_id: &str, error_type: &str) {
        let entries = self.consumer_entries(exchange_id).await;
        assert_eq!(entries.len(), 2, "{entries:#?}");
        assert_eq!(
            (entries[0].status, entries[0].error_type.as_deref()),
            (200, None)
        );
        assert_eq!(
            (entries[1].status, entries[1].error_type.as_deref()),
            (500, Some(error_type))
        );
    }

    async fn consumer_entries(&self, exchange_id: &str) -> Vec<accord_audit::AuditEntry> {
        log_entries(&self.consumer_db())
            .await
            .into_iter()
            .filter(|e| e.exchange_id == exchange_id)
            .collect()
    }

    async fn provider_entry(&self, exchange_id: &str) -> accord_audit::AuditEntry {
        log_entries(&self.provider_db())
            .await
            .into_iter()
            .find(|e| e.exchange_id == exchange_id)
            .unwrap_or_else(|| panic!("no provider entry for {exchange_id}"))
    }
}

fn deny_reason(e: &accord_audit::AuditEntry) -> Option<&str> {
    match &e.decision {
        accord_audit::AuditDecision::Deny { reason } => Some(reason),
        accord_audit::AuditDecision::Permit => None,
    }
}

async fn denials_say_why_and_are_recorded_on_both_sides(engine: Engine) {
    let Some(pair) = Pair::start(engine).await else {
        return;
    };
    let echo = format!("/r1/{ECHO}/anything");
    let limited = format!("/r1/{LIMITED}/x");
    // (X-Road-Id, request, deny reason, words of the explanation)
    let cases: Vec<(&str, reqwest::RequestBuilder, &str, &str)> = vec![
        (
            "no-purpose",
            pair.get(&people("38001010001"))
                .header("X-Accord-Subject", "38001010001"),
            "purpose-not-covered",
            "purpose",
        ),
        (
            "other-purpose",
            pair.get(&echo)
                .header("X-Accord-Purpose", "school-enrolment"),
            "purpose-not-covered",
            "school-enrolment",
        ),
        (
            "no-subject",
            pair.get(&people("38001010001"))
                .header("X-Accord-Purpose", "social-benefit-eligibility"),
            "data-subject-required",
            "subject",
        ),
        (
            "wrong-method",
            pair.http
                .delete(pair.url(&people("38001010001")))
                .header("X-Road-Client", CLIENT)
                .header("X-Accord-Purpose", "social-benefit-eligibility")
                .header("X-Accord-Subject", "38001010001"),
            "operation-not-covered",
            "DELETE",
        ),
        (
            "quota-1",
            pair.get(&limited)
                .header("X-Accord-Purpose", "tax-assessment"),
            "",
            "",
        ),
        (
            "quota-2",
            pair.get(&limited)
                .header("X-Accord-Purpose", "tax-assessment"),
            "",
            "",
        ),
        (
            "quota-3",
            pair.get(&limited)
                .header("X-Accord-Purpose", "tax-assessment"),
            "quota-exhausted",
            "quota",
        ),
    ];
    for (id, request, reason, says) in cases {
        let response = request.header("X-Road-Id", id).send().await.unwrap();
        if reason.is_empty() {
            assert_eq!(response.status(), 200, "{id}");
            continue;
        }
        assert_eq!(
            response
                .headers()
                .get("x-road-id")
                .map(|v| v.to_str().unwrap().to_owned()),
            Some(id.to_owned())
        );
        assert!(
            response.headers().get("x-accord-agreement").is_none(),
            "{id}"
        );
        assert_xroad_error(
            response,
            500,
            &format!("Server.ServerProxy.AccessDenied.{reason}"),
            says,
        )
        .await;
        for entry in [pair.consumer_entry(id).await, pair.provider_entry(id).await] {
            assert_eq!(deny_reason(&entry), Some(reason), "{id}: {entry:?}");
            assert_eq!(entry.status, 500);
            assert_eq!(
                entry.error_type.as_deref(),
                Some(format!("Server.ServerProxy.AccessDenied.{reason}").as_str())
            );
        }
    }

    // A system of the consumer that no grant covers, calling from the
    // address it is allowed to use.
    let (status, headers, body) = raw(
        pair.consumer.consumer_addr,
        "127.0.0.2",
        &format!(
            "GET /r1/{ECHO}/x HTTP/1.1\r\nHost: gw\r\nX-Road-Client: {ARCHIVE}\r\n\
             X-Road-Id: archive-1\r\nX-Accord-Purpose: tax-assessment\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(
        headers.get("x-road-error").map(String::as_str),
        Some("Server.ServerProxy.AccessDenied.service-not-covered")
    );
    assert_eq!(
        deny_reason(&pair.provider_entry("archive-1").await),
        Some("service-not-covered")
    );
    pair.consumer.shutdown().await;
    pair.provider.shutdown().await;
}

/// Sends `request` as raw bytes from the address `from` (in 127.0.0.0/8)
/// and reads the answer: status, headers (lower-case names), body.
async fn raw(to: SocketAddr, from: &str, request: &str) -> (u16, HashMap<String, String>, String) {
    raw_bytes(to, from, request.as_bytes()).await
}

async fn raw_bytes(
    to: SocketAddr,
    from: &str,
    request: &[u8],
) -> (u16, HashMap<String, String>, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(to).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the gateway did not answer and close within 10 s"
    );
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

async fn malformed_requests_get_xroad_errors_and_audit_entries(engine: Engine) {
    let Some(pair) = Pair::start(engine).await else {
        return;
    };
    let gw = pair.consumer.consumer_addr;
    let echo = format!("/r1/{ECHO}/x");
    let big = "x".repeat(100_001);
    // (request head (CRLFs added), body, from, status, X-Road error type, words of the message)
    let cases: Vec<(String, String, &str, u16, &str, &str)> = vec![
        (
            format!("GET {echo} HTTP/1.1"),
            String::new(),
            "127.0.0.1",
            400,
            "Client.MissingHeaderField",
            "X-Road-Client",
        ),
        (
            format!("GET {echo} HTTP/1.1\r\nX-Road-Client: TEST/GOV/1000"),
            String::new(),
            "127.0.0.1",
            400,
            "Client.InvalidClientIdentifier",
            "TEST/GOV/1000",
        ),
        (
            format!("GET {echo} HTTP/1.1\r\nX-Road-Client: TEST/GOV/3000/other"),
            String::new(),
            "127.0.0.1",
            500,
            "Server.ClientProxy.UnknownMember",
            "not a subsystem of TEST/GOV/1000",
        ),
        (
            format!("GET {echo} HTTP/1.1\r\nX-Road-Client: TEST/GOV/1000/unlisted"),
            String::new(),
            "127.0.0.1",
            500,
            "Server.ClientProxy.UnknownMember",
            "not one of this gateway's information systems",
        ),
        (
            format!("GET {echo} HTTP/1.1\r\nX-Road-Client: {ARCHIVE}"),
            String::new(),
            "127.0.0.1",
            500,
            "Server.ClientProxy.SslAuthenticationFailed",
            "127.0.0.1",
        ),
        (
            format!("GET /r2/{ECHO} HTTP/1.1\r\nX-Road-Client: {CLIENT}"),
            String::new(),
            "127.0.0.1",
            400,
            "Client.InvalidProtocolVersion",
            "r2",
        ),
        (
            format!("GET /r1/TEST/GOV/2000 HTTP/1.1\r\nX-Road-Client: {CLIENT}"),
            String::new(),
            "127.0.0.1",
            400,
            "Client.BadRequest",
            "",
        ),
        (
            format!("GET /r1/TEST/GOV/2000/register/../echo HTTP/1.1\r\nX-Road-Client: {CLIENT}"),
            String::new(),
            "127.0.0.1",
            400,
            "Client.BadRequest",
            "",
        ),
        (
            format!("GET /r1/{ECHO}/a/%2e%2e/b HTTP/1.1\r\nX-Road-Client: {CLIENT}"),
            String::new(),
            "127.0.0.1",
            400,
            "Client.BadRequest",
            "",
        ),
        (
            format!("GET /r1/TEST/GOV/2000/register/nosuch HTTP/1.1\r\nX-Road-Client: {CLIENT}"),
            String::new(),
            "127.0.0.1",
            500,
            "Server.ClientProxy.UnknownService",
            "nosuch",
        ),
        (
            format!(
                "GET {echo} HTTP/1.1\r\nX-Road-Client: {CLIENT}\r\nX-Road-Id: a\r\nX-Road-Id: b"
            ),
            String::new(),
            "127.0.0.1",
            400,
            "Client.InvalidHeaderField",
            "X-Road-Id",
        ),
        (
            format!("TRACE {echo} HTTP/1.1\r\nX-Road-Client: {CLIENT}"),
            String::new(),
            "127.0.0.1",
            400,
            "Client.InvalidHttpMethod",
            "TRACE",
        ),
        (
            format!(
                "POST {echo} HTTP/1.1\r\nX-Road-Client: {CLIENT}\r\nContent-Length: {}",
                big.len()
            ),
            big.clone(),
            "127.0.0.1",
            413,
            "Client.RequestTooLarge",
            "100000",
        ),
        (
            format!(
                "POST {echo} HTTP/1.1\r\nX-Road-Client: {CLIENT}\r\nTransfer-Encoding: chunked"
            ),
            format!("{:x}\r\n{big}\r\n0\r\n\r\n", big.len()),
            "127.0.0.1",
            413,
            "Client.RequestTooLarge",
            "100000",
        ),
    ];
    for (i, (head, body, from, status, error_type, says)) in cases.into_iter().enumerate() {
        let before = log_entries(&pair.consumer_db()).await.len();
        let request = format!("{head}\r\nHost: gw\r\nConnection: close\r\n\r\n{body}");
        let (got, headers, text) = raw(gw, from, &request).await;
        assert_eq!(got, status, "case {i} {head:?}: {text}");
        assert_eq!(
            headers.get("x-road-error").map(String::as_str),
            Some(error_type),
            "case {i} {head:?}"
        );
        let json: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("case {i}: {text}"));
        assert_eq!(json["type"], error_type);
        assert!(
            json["message"].as_str().unwrap().contains(says),
            "case {i}: {says:?} not in {json}"
        );
        // One audit entry per refused request, saying what was refused.
        let entries = log_entries(&pair.consumer_db()).await;
        assert_eq!(entries.len(), before + 1, "case {i}: no audit entry");
        let last = entries.last().unwrap();
        assert_eq!(last.error_type.as_deref(), Some(error_type), "case {i}");
        assert_eq!(last.status, status);
    }
    // Nothing reached the provider.
    assert!(log_entries(&pair.provider_db()).await.is_empty());

    // A request refused before it is understood still keeps the data
    // subject out of the log: the query is not recorded, the subject in
    // the path is replaced.
    let (status, _, _) = raw(
        gw,
        "127.0.0.1",
        &format!(
            "GET /r1/{PEOPLE}/people/38001010001?code=38001010001 HTTP/1.1\r\nHost: gw\r\n\
             X-Accord-Subject: 38001010001\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status, 400);
    let entries = log_entries(&pair.consumer_db()).await;
    let last = entries.last().unwrap();
    assert_eq!(last.path, format!("/r1/{PEOPLE}/people/{{subject}}"));
    let text = serde_json::to_string(last).unwrap();
    assert!(!text.contains("38001010001"), "{text}");

    // Request smuggling: a length and a chunked body at once, with a second
    // request hidden where the length says the body is. The connection is
    // kept alive: whatever the first answer, the hidden request must never
    // be served.
    let (status, _, text) = raw(
        gw,
        "127.0.0.1",
        &format!(
            "POST {echo} HTTP/1.1\r\nHost: gw\r\nX-Road-Client: {CLIENT}\r\n\
             X-Accord-Purpose: tax-assessment\r\nContent-Length: 4\r\n\
             Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /r1/{ECHO}/smuggled HTTP/1.1\r\n\
             Host: gw\r\nX-Road-Client: {CLIENT}\r\nX-Accord-Purpose: tax-assessment\r\n\r\n"
        ),
    )
    .await;
    assert!(status == 400 || status == 200, "{status} {text}");
    assert_eq!(
        text.matches("HTTP/1.1").count(),
        0,
        "a second answer: {text}"
    );
    assert!(
        pair.f
            .seen
            .lock()
            .unwrap()
            .iter()
            .all(|(_, path, _)| !path.contains("smuggled")),
        "a smuggled request reached the backend"
    );
    pair.consumer.shutdown().await;
    pair.provider.shutdown().await;
}

async fn backend_faults_are_answered_in_time_and_recorded(engine: Engine) {
    let Some(pair) = Pair::start(engine).await else {
        return;
    };
    let cases = [
        (
            DOWN,
            "down",
            "Server.ServerProxy.ServiceFailed.NetworkError",
            "unavailable",
        ),
        (
            SLOW,
            "slow",
            "Server.ServerProxy.ServiceFailed.Timeout",
            "700 ms",
        ),
        (
            GARBAGE,
            "garbage",
            "Server.ServerProxy.ServiceFailed.InvalidResponse",
            "invalid answer",
        ),
    ];
    for (service, id, error_type, says) in cases {
        let started = Instant::now();
        let response = pair
            .get(&format!("/r1/{service}/x"))
            .header("X-Road-Id", id)
            .header("X-Accord-Purpose", "tax-assessment")
            .send()
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{id} took {:?}",
            started.elapsed()
        );
        assert_xroad_error(response, 500, error_type, says).await;
        let provider = pair.provider_entry(id).await;
        assert_eq!(provider.error_type.as_deref(), Some(error_type));
        assert_eq!(provider.decision, accord_audit::AuditDecision::Permit);
        assert_eq!(
            pair.consumer_entry(id).await.error_type.as_deref(),
            Some(error_type)
        );
    }
    // Redirects pass unchanged and are never followed; headers the backend
    // must not set are replaced.
    let response = pair
        .get(&format!("/r1/{ECHO}/redirect"))
        .header("X-Accord-Purpose", "tax-assessment")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(
        response.headers().get("location").unwrap(),
        "http://127.0.0.1:1/elsewhere"
    );
    let response = pair
        .http
        .post(pair.url(&format!("/r1/{ECHO}/echo")))
        .header("X-Road-Client", CLIENT)
        .header("X-Accord-Purpose", "tax-assessment")
        .body(vec![7u8; 65536])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get("x-road-client").unwrap(), CLIENT);
    assert_eq!(response.headers().get("x-backend").unwrap(), "echo");
    assert_eq!(response.bytes().await.unwrap().len(), 65536);
    pair.consumer.shutdown().await;
    pair.provider.shutdown().await;
}

async fn peer_faults_are_refused(engine: Engine) {
    let Some(pair) = Pair::start(engine).await else {
        return;
    };
    assert_eq!(pair.echo("before").await.unwrap().status(), 200);

    // The provider signs with a key the federation no longer lists for it.
    let provider: MemberId = PROVIDER.parse().unwrap();
    let other =
        accord_ca::SigningKeyFile::generate(&pair.f.dir.path().join("other-audit.key")).unwrap();
    let digest_before = pair.consumer.health().await.configuration.digest;
    register_audit_key(
        &pair.f.registry,
        &Role::MemberAdmin {
            member: provider.clone(),
        },
        &provider,
        "gw1",
        &AuditKeyInput {
            public_key_pem: Some(accord_ca::public_key_pem(&other)),
        },
    )
    .await
    .unwrap();
    until("the consumer to see the new audit key", || async {
        (pair.consumer.health().await.configuration.digest != digest_before).then_some(())
    })
    .await;
    let response = pair.echo("bad-signature").await.unwrap();
    assert_xroad_error(
        response,
        500,
        "Server.ClientProxy.InvalidSignatureValue",
        "does not verify",
    )
    .await;
    // The provider's proof comes after the body, while the consumer's own
    // entry is being written: that entry records the answer as it came,
    // and a second one that it was not passed on, and why.
    pair.assert_not_passed_on("bad-signature", "Server.ClientProxy.InvalidSignatureValue")
        .await;
    assert_eq!(
        pair.provider_entry("bad-signature").await.status,
        200,
        "the provider recorded what it answered"
    );

    // The consumer gateway's certificate is revoked: the provider refuses it.
    let digest_before = until("both gateways on one configuration", || async {
        let provider = pair.provider.health().await.configuration.digest;
        (provider == pair.consumer.health().await.configuration.digest).then_some(provider)
    })
    .await;
    pair.revoke_consumer_certificate().await;
    until("both gateways to see the revocation", || async {
        let provider = pair.provider.health().await.configuration.digest;
        let consumer = pair.consumer.health().await.configuration.digest;
        (provider != digest_before && consumer == provider).then_some(())
    })
    .await;
    let response = pair.echo("revoked").await.unwrap();
    assert_xroad_error(
        response,
        500,
        "Server.ClientProxy.NetworkError",
        "TEST/GOV/2000/gw1",
    )
    .await;
    assert_eq!(
        pair.consumer_entry("revoked").await.error_type.as_deref(),
        Some("Server.ClientProxy.NetworkError")
    );
    let metrics = pair
        .http
        .get(format!("http://{}/metrics", pair.provider.consumer_addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(|l| l
            .starts_with("accord_gateway_tls_refusals_total{side=\"Provider\"}")
            && !l.ends_with(" 0")),
        "{metrics}"
    );

    // The provider's gateway is down.
    let consumer_db = pair.consumer_db();
    let Pair {
        f,
        consumer,
        provider,
        http,
        ..
    } = pair;
    provider.shutdown().await;
    // A body large enough to be hashed aside: the failed exchange's entry
    // still records its hash.
    let body = vec![5u8; 40_000];
    let response = http
        .post(format!("http://{}/r1/{ECHO}/x", consumer.consumer_addr))
        .header("X-Road-Client", CLIENT)
        .header("X-Road-Id", "provider-down")
        .header("X-Accord-Purpose", "tax-assessment")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_xroad_error(
        response,
        500,
        "Server.ClientProxy.NetworkError",
        "cannot reach",
    )
    .await;
    let entry = log_entries(&consumer_db)
        .await
        .into_iter()
        .find(|e| e.exchange_id == "provider-down")
        .unwrap();
    assert_eq!(entry.request_size, 40_000);
    assert_eq!(
        entry.request_body_sha256,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body))
    );
    consumer.shutdown().await;
    drop(f);
}

async fn bodies_of_every_size_are_hashed_into_both_entries(engine: Engine) {
    use sha2::{Digest, Sha256};
    let Some(pair) = Pair::start(engine).await else {
        return;
    };
    // Small bodies are hashed in place; large ones aside while the request
    // travels on, and when several come at once, some in place again.
    let sizes = [0, 3, 16 * 1024, 64 * 1024, 70_001, 80_000, 90_000, 99_000];
    let calls: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            let body: Vec<u8> = (0..size).map(|j| (i * 31 + j * 7) as u8).collect();
            let request = pair
                .http
                .post(pair.url(&format!("/r1/{ECHO}/echo")))
                .header("X-Road-Client", CLIENT)
                .header("X-Road-Id", format!("hashed-{i}"))
                .header("X-Accord-Purpose", "tax-assessment")
                .body(body.clone());
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), 200);
                assert_eq!(response.bytes().await.unwrap(), body, "echoed");
                body
            })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        let body = call.await.unwrap();
        let sha = hex::encode(Sha256::digest(&body));
        let id = format!("hashed-{i}");
        for entry in [
            pair.consumer_entry(&id).await,
            pair.provider_entry(&id).await,
        ] {
            assert_eq!(entry.request_size, body.len() as u64, "{id}");
            assert_eq!(entry.request_body_sha256, sha, "{id} {:?}", entry.side);
            assert_eq!(entry.response_body_sha256, sha, "{id} {:?}", entry.side);
            assert_eq!(entry.status, 200);
        }
        assert_eq!(pair.consumer_entries(&id).await.len(), 1);
    }

    // HEAD: no body travels, so the proof comes as a header (there is no
    // chunked body to carry a trailer), and both entries record the empty
    // body that was sent, for a permitted call and for a refused one.
    for (id, service, status, error) in [
        ("head-permitted", ECHO, 200, None),
        (
            "head-denied",
            LIMITED,
            500,
            Some("Server.ServerProxy.AccessDenied.operation-not-covered"),
        ),
    ] {
        let response = pair
            .http
            .head(pair.url(&format!("/r1/{service}/x")))
            .header("X-Road-Client", CLIENT)
            .header("X-Road-Id", id)
            .header("X-Accord-Purpose", "tax-assessment")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{id}: {:?}", response.headers());
        assert!(
            response.headers().contains_key("x-accord-receipt-proof"),
            "{id}"
        );
        assert_eq!(
            response
                .headers()
                .get("x-road-error")
                .map(|v| v.to_str().unwrap()),
            error
        );
        let empty = hex::encode(Sha256::digest(b""));
        for entry in [pair.consumer_entry(id).await, pair.provider_entry(id).await] {
            assert_eq!(entry.method, "HEAD");
            assert_eq!(entry.status, status);
            assert_eq!(entry.response_body_sha256, empty, "{id} {:?}", entry.side);
            assert_eq!(entry.response_size, 0);
        }
    }
}

async fn a_provider_whose_log_fails_sends_no_proof_and_the_exchange_fails(engine: Engine) {
    let Some(pair) = Pair::start(engine).await else {
        return;
    };
    assert_eq!(pair.echo("before").await.unwrap().status(), 200);

    // A row written behind the provider gateway's back takes the index of
    // its next entry: its next group commit fails. Its answer's head and
    // body have left by then; what follows the body says the proof will
    // not come.
    let provider_db = pair.provider_db();
    let size = log_entries(&provider_db).await.len();
    execute(
        &provider_db,
        &format!(
            "INSERT INTO audit_entries (leaf_index, entry, leaf_hash) VALUES ({size}, '{{}}', '{}')",
            "00".repeat(32)
        ),
    )
    .await;
    let response = pair.echo("unrecorded").await.unwrap();
    assert_xroad_error(
        response,
        500,
        "Server.ServerProxy.InternalError",
        // The reason is in the consumer gateway's log, under the detail id.
        "quote the detail",
    )
    .await;
    pair.assert_not_passed_on("unrecorded", "Server.ServerProxy.InternalError")
        .await;

    // Without the stray row the provider's log takes entries again.
    execute(
        &provider_db,
        &format!("DELETE FROM audit_entries WHERE leaf_index = {size}"),
    )
    .await;
    let response = until("the provider's log to recover", || async {
        let response = pair.echo("after").await.unwrap();
        (response.status() == 200).then_some(response)
    })
    .await;
    assert!(response.headers().contains_key("x-accord-receipt-proof"));
    assert_eq!(pair.provider_entry("after").await.status, 200);
    assert!(!log_entries(&provider_db)
        .await
        .iter()
        .any(|e| e.exchange_id == "unrecorded"));
}

async fn past_the_grace_period_the_gateway_refuses_and_says_why(engine: Engine) {
    let Some(mut pair) = Pair::start(engine).await else {
        return;
    };
    // With the registry up, the long polls keep confirming the
    // configuration: longer than the grace period (2 s), still ready.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let health = pair.consumer.health().await;
    assert!(health.ready, "{:?}", health.configuration);
    pair.f.stop_registry().await;
    // Within the grace period (2 s) the cached configuration serves.
    assert_eq!(pair.echo("within-grace").await.unwrap().status(), 200);
    until("the grace period to pass", || async {
        (!pair.consumer.health().await.ready).then_some(())
    })
    .await;
    let health: Value = pair
        .http
        .get(format!("http://{}/healthz", pair.consumer.consumer_addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["ready"], false);
    let detail = health["configuration"]["detail"].as_str().unwrap();
    assert!(detail.contains("grace period"), "{detail}");
    let response = pair.echo("past-grace").await.unwrap();
    assert_xroad_error(
        response,
        500,
        "Server.ClientProxy.OutdatedGlobalConf",
        "grace period",
    )
    .await;
    assert_eq!(
        pair.consumer_entry("past-grace")
            .await
            .error_type
            .as_deref(),
        Some("Server.ClientProxy.OutdatedGlobalConf")
    );
    pair.consumer.shutdown().await;
    pair.provider.shutdown().await;
}

async fn a_gateway_cannot_speak_for_another_members_client(engine: Engine) {
    let Some(pair) = Pair::start(engine).await else {
        return;
    };
    // A client holding the consumer gateway's own certificate and key
    // (a compromised or misconfigured consumer gateway) calls the provider
    // directly, claiming another member's subsystem.
    let source = accord_gateway::federation::ConfigSource::start(
        accord_gateway::federation::SourceSettings {
            registry_url: pair.f.url.clone(),
            instance: "TEST".into(),
            anchor: pair.f.registry.keys().verifying_key(),
            cache_file: pair.f.dir.path().join("forger-cache.json"),
            grace_period: Duration::from_secs(60),
            poll_wait: Duration::from_secs(1),
            retry_delay: Duration::from_millis(100),
        },
    );
    let federation = until("a configuration", || async { source.current().ok() }).await;
    let trust = accord_gateway::tls::SharedTrust::new(
        accord_gateway::tls::TrustView::from_federation(&federation).unwrap(),
    );
    let dir = &pair.consumer_files.dir;
    let client = accord_gateway::tls::client_config(
        trust.clone(),
        &std::fs::read_to_string(dir.join("gw.crt")).unwrap(),
        &std::fs::read_to_string(dir.join("gw.key")).unwrap(),
    )
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(pair.provider.provider_addr)
        .await
        .unwrap();
    let (tls, _) = accord_gateway::tls::connect(
        &client,
        &trust,
        rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap(),
        accord_gateway::tls::ExpectedProvider {
            member: PROVIDER.parse().unwrap(),
            gateway: Some("gw1".into()),
        },
        tcp,
    )
    .await
    .unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get(format!("/r1/{ECHO}/x"))
        .header("host", "provider")
        .header("x-road-client", "TEST/GOV/3000/other")
        .header("x-road-id", "forged")
        .header("x-accord-purpose", "tax-assessment")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(
        response.headers()["x-road-error"],
        "Server.ClientProxy.SslAuthenticationFailed"
    );
    // Refused with a receipt like every answer, and recorded.
    assert!(response.headers().contains_key("x-accord-receipt"));
    let entry = pair.provider_entry("forged").await;
    assert_eq!(
        entry.error_type.as_deref(),
        Some("Server.ClientProxy.SslAuthenticationFailed")
    );
    assert!(
        pair.f.seen.lock().unwrap().is_empty(),
        "the backend was called"
    );

    // The certificate is revoked while this connection stays open: the
    // next request on it is refused.
    let digest_before = pair.provider.health().await.configuration.digest;
    pair.revoke_consumer_certificate().await;
    until("the provider to see the revocation", || async {
        (pair.provider.health().await.configuration.digest != digest_before).then_some(())
    })
    .await;
    let request = http::Request::get(format!("/r1/{ECHO}/x"))
        .header("host", "provider")
        .header("x-road-client", CLIENT)
        .header("x-road-id", "after-revocation")
        .header("x-accord-purpose", "tax-assessment")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(
        response.headers()["x-road-error"],
        "Server.ClientProxy.SslAuthenticationFailed"
    );
    let entry = pair.provider_entry("after-revocation").await;
    assert_eq!(entry.client, CLIENT);
    assert!(
        pair.f.seen.lock().unwrap().is_empty(),
        "the backend was called"
    );
    pair.consumer.shutdown().await;
    pair.provider.shutdown().await;
}
