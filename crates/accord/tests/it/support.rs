//! What every integration test stands on: a fresh database per test on
//! SQLite or PostgreSQL, a real registry served on a free loopback port,
//! an HTTP client, the `accord` binary, and a snapshot of every table to
//! prove that a refused request changed nothing.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use accord_registry::{InitOptions, IssuedToken, Registry, RegistryPaths};
use serde_json::Value;
use sqlx::{Column, Connection, Row};
use tokio::sync::oneshot;

pub use accord_testkit::{on_both_engines, Engine, PgSchema};

/// A fresh, empty database; dropped (PostgreSQL schema) with the value.
pub struct TestDb {
    /// The URL to give the registry; `None` means SQLite in the data dir.
    pub url: Option<String>,
    _schema: Option<PgSchema>,
}

impl TestDb {
    /// A new database, or `None` when PostgreSQL is not running outside CI
    /// (under `CI=true` a missing PostgreSQL fails the test).
    pub async fn new(engine: Engine) -> Option<TestDb> {
        match engine {
            Engine::Sqlite => Some(TestDb {
                url: None,
                _schema: None,
            }),
            Engine::Postgres => {
                let schema = PgSchema::create("accord_t").await?;
                Some(TestDb {
                    url: Some(schema.url.clone()),
                    _schema: Some(schema),
                })
            }
        }
    }
}

/// A registry served on a free loopback port, stopped when dropped.
pub struct TestRegistry {
    pub url: String,
    pub admin_token: String,
    pub registry: Registry,
    pub paths: RegistryPaths,
    pub http: reqwest::Client,
    /// Held so the database and directory outlive the server.
    _db: TestDb,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
}

impl TestRegistry {
    /// A new federation `TEST` on `engine`, or `None` if that engine is
    /// not available outside CI.
    pub async fn start(engine: Engine) -> Option<TestRegistry> {
        let db = TestDb::new(engine).await?;
        let dir = tempfile::tempdir().expect("temp dir");
        let paths = RegistryPaths::new(dir.path().join("data"), db.url.clone());
        let options = InitOptions {
            instance: "TEST".into(),
            name: "Test federation".into(),
            member_classes: vec!["GOV".into(), "MUN".into(), "COM".into(), "NGO".into()],
        };
        let (registry, admin): (Registry, IssuedToken) = Registry::init(&paths, &options)
            .await
            .expect("registry init");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = registry.clone();
        tokio::spawn(async move {
            let _ = serving
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Some(TestRegistry {
            url,
            admin_token: admin.token.clone(),
            registry,
            paths,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            _db: db,
            _dir: dir,
            stop: Some(stop),
        })
    }

    pub fn database_url(&self) -> String {
        self.paths.database_url()
    }

    /// Sends a request; returns status, content type and the body as JSON
    /// (or as a JSON string when the body is not JSON).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, String, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        read(response).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let (status, _, body) = self.call("GET", path, None, None).await;
        (status, body)
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let (status, _, body) = self.call("POST", path, Some(token), Some(body)).await;
        (status, body)
    }

    /// Every row of every table, as text: equal snapshots mean an
    /// unchanged database.
    pub async fn snapshot(&self) -> Vec<String> {
        snapshot(&self.database_url()).await
    }

    /// Adds a member through the API as the federation administrator.
    pub async fn add_member(&self, id: &str, level: &str, country: &str, sector: &str) {
        let (status, body) = self
            .post(
                "/api/v1/members",
                &self.admin_token,
                serde_json::json!({
                    "id": id, "name": format!("Member {id}"), "level": level,
                    "country": country, "sector": sector,
                }),
            )
            .await;
        assert_eq!(status, 201, "adding {id}: {body}");
    }

    /// Adds a subsystem and a service with a small OpenAPI document.
    pub async fn add_service(&self, member: &str, subsystem: &str, service: &str, title: &str) {
        let (status, body) = self
            .post(
                &format!("/api/v1/members/{member}/subsystems"),
                &self.admin_token,
                serde_json::json!({"code": subsystem, "name": format!("{subsystem} system")}),
            )
            .await;
        assert!(status == 201 || status == 409, "subsystem: {status} {body}");
        let (status, body) = self
            .post(
                &format!("/api/v1/members/{member}/subsystems/{subsystem}/services"),
                &self.admin_token,
                service_body(service, title),
            )
            .await;
        assert_eq!(status, 201, "service {service}: {body}");
    }

    /// Creates a member administrator token through the API.
    pub async fn member_token(&self, member: &str) -> String {
        let (status, body) = self
            .post(
                "/api/v1/tokens",
                &self.admin_token,
                serde_json::json!({"role": "member-admin", "member": member, "label": "test"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().expect("token").to_owned()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn openapi_document(title: &str) -> Value {
    serde_json::json!({
        "openapi": "3.0.3",
        "info": {"title": title, "version": "1.0.0"},
        "paths": {"/persons/{id}": {"get": {"responses": {"200": {"description": "found"}}}}}
    })
}

pub fn service_body(code: &str, title: &str) -> Value {
    serde_json::json!({
        "code": code, "version": "v1", "title": title,
        "description": format!("{title}, for tests"),
        "personal_data": true, "data_categories": ["identity"],
        "openapi": openapi_document(title),
    })
}

pub async fn read(response: reqwest::Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, content_type, body)
}

const TABLES: &[&str] = &[
    "federation",
    "members",
    "subsystems",
    "services",
    "gateways",
    "gateway_certificates",
    "tokens",
    "purposes",
    "signing_keys",
    "agreements",
    "agreement_versions",
    "agreement_parties",
    "agreement_signatures",
    "agreement_events",
    "audit_checkpoints",
    "operational_records",
];

/// Runs one statement on the database directly, behind the registry's
/// back (to simulate tampering).
pub async fn execute(url: &str, sql: &str) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.expect("connect");
    let done = sqlx::query(sql).execute(&mut conn).await.expect("execute");
    assert!(done.rows_affected() > 0, "{sql} changed nothing");
    conn.close().await.ok();
}

pub async fn snapshot(url: &str) -> Vec<String> {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url)
        .await
        .expect("connect for snapshot");
    let mut out = Vec::new();
    for table in TABLES {
        let rows = sqlx::query(&format!("SELECT * FROM {table} ORDER BY 1"))
            .fetch_all(&mut conn)
            .await
            .expect("snapshot query");
        for row in rows {
            let mut line = format!("{table}:");
            for (i, column) in row.columns().iter().enumerate() {
                let value = match row.try_get::<Option<String>, _>(i) {
                    Ok(v) => format!("{v:?}"),
                    Err(_) => format!("{:?}", row.try_get::<Option<i64>, _>(i).ok().flatten()),
                };
                line.push_str(&format!(" {}={value}", column.name()));
            }
            out.push(line);
        }
    }
    conn.close().await.ok();
    out
}

/// Runs the `accord` binary with arguments; never waits for stdin.
pub async fn accord(args: &[&str]) -> Output {
    accord_in(None, args).await
}

pub async fn accord_in(dir: Option<&Path>, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_accord"));
    command
        .args(args)
        .env_remove("ACCORD_TOKEN")
        .env_remove("ACCORD_TOKEN_FILE")
        .env_remove("ACCORD_REGISTRY")
        .env_remove("ACCORD_DATABASE_URL")
        .env_remove("ACCORD_DATA_DIR")
        .stdin(std::process::Stdio::null());
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("accord finished in time")
        .expect("accord ran")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A long-running `accord` process (a server), killed when dropped.
pub struct Server {
    _child: tokio::process::Child,
    pub url: String,
    pub banner: Vec<String>,
}

impl Server {
    /// Kills the process and waits until it is gone (its ports are free).
    pub async fn stop(mut self) {
        let _ = self._child.kill().await;
    }

    /// Starts `accord args...` and waits for the line naming its URL
    /// (`... listening on http://...`).
    pub async fn start(args: &[&str]) -> Server {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_accord"))
            .args(args)
            .env_remove("ACCORD_DATABASE_URL")
            .env_remove("ACCORD_DATA_DIR")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn accord");
        let stdout = child.stdout.take().expect("stdout");
        // Stderr is kept for the failure message, and drained so the pipe
        // never fills.
        let stderr_lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        {
            let stderr = child.stderr.take().expect("stderr");
            let sink = stderr_lines.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Ok(mut sink) = sink.lock() {
                        if sink.len() < 200 {
                            sink.push(line);
                        }
                    }
                }
            });
        }
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let mut banner = Vec::new();
        let url = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                banner.push(line.clone());
                if let Some(at) = line.find("listening on http://") {
                    let url = line[at + "listening on ".len()..]
                        .split_whitespace()
                        .next()
                        .expect("url")
                        .to_owned();
                    return url;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            let errors = stderr_lines
                .lock()
                .map(|l| l.join("\n"))
                .unwrap_or_default();
            panic!("accord {args:?} exited before listening: {banner:?}\n{errors}");
        })
        .await
        .expect("server started in time");
        // The rest of the banner follows at once: take it, then keep
        // reading in the background so the pipe never fills.
        while let Ok(Ok(Some(line))) =
            tokio::time::timeout(Duration::from_millis(500), lines.next_line()).await
        {
            banner.push(line);
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Server {
            _child: child,
            url,
            banner,
        }
    }
}

pub fn file_mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

pub fn temp_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write temp file");
    path
}
