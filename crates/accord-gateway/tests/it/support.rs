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
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.url).await.unwrap();
        let done = sqlx::query(sql).execute(&mut conn).await.unwrap();
        assert!(done.rows_affected() > 0, "{sql} changed nothing");
        conn.close().await.ok();
    }
}
