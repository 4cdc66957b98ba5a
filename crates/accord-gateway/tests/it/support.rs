//! What the integration tests share: both storage engines, fresh databases.

pub use accord_testkit::{on_both_engines, Engine, PgSchema};
use sqlx::Connection;

/// A fresh, empty database: a SQLite file in a temporary directory, or a
/// PostgreSQL schema dropped with the value.
pub struct TestDb {
    pub url: String,
    _schema: Option<PgSchema>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// `None` when PostgreSQL is not running outside CI (under `CI=true` a
    /// missing PostgreSQL fails the test).
    pub async fn new(engine: Engine) -> Option<TestDb> {
        match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                Some(TestDb {
                    url: format!("sqlite://{}", dir.path().join("audit.db").display()),
                    _schema: None,
                    _dir: Some(dir),
                })
            }
            Engine::Postgres => {
                let schema = PgSchema::create("accord_gw").await?;
                Some(TestDb {
                    url: schema.url.clone(),
                    _schema: Some(schema),
                    _dir: None,
                })
            }
        }
    }

    /// Runs one statement behind the gateway's back.
    pub async fn execute(&self, sql: &str) {
        execute(&self.url, sql).await;
    }
}

/// Runs one statement on the database at `url` (a gateway's, behind its
/// back); it must change something.
pub async fn execute(url: &str, sql: &str) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let done = sqlx::query(sql).execute(&mut conn).await.unwrap();
    assert!(done.rows_affected() > 0, "{sql} changed nothing");
    conn.close().await.ok();
}

/// A registry served on a loopback listener, stopped by [`Self::stop`] or
/// when dropped.
pub struct ServedRegistry {
    pub url: String,
    address: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ServedRegistry {
    pub async fn start(registry: accord_registry::Registry, address: &str) -> ServedRegistry {
        let listener = tokio::net::TcpListener::bind(address).await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = registry
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await;
        });
        ServedRegistry {
            url: format!("http://{address}"),
            address,
            stop: Some(stop),
        }
    }

    /// Stops the registry and returns once it no longer accepts
    /// connections (open ones may still finish), so that what the test
    /// does next cannot reach it.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while tokio::net::TcpStream::connect(self.address).await.is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "the registry at {} still accepts connections",
                self.address
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}
