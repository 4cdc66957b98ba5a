//! What the integration tests share: both storage engines, fresh databases.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Connection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn name(engine: Engine)` once on SQLite and once
/// on PostgreSQL, as `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Engine::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Engine::Postgres).await
                }
            )*
        }
    };
}

pub fn postgres_base_url() -> String {
    std::env::var("ACCORD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh, empty database: a SQLite file in a temporary directory, or a
/// PostgreSQL schema dropped with the value.
pub struct TestDb {
    pub url: String,
    schema: Option<String>,
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
                    schema: None,
                    _dir: Some(dir),
                })
            }
            Engine::Postgres => {
                let base = postgres_base_url();
                let mut conn = match sqlx::PgConnection::connect(&base).await {
                    Ok(conn) => conn,
                    Err(e) => {
                        if std::env::var("CI").as_deref() == Ok("true") {
                            panic!("CI=true and PostgreSQL at {base} is not reachable: {e}");
                        }
                        eprintln!("SKIPPED on PostgreSQL: {base} is not reachable ({e}); set CI=true to make this a failure");
                        return None;
                    }
                };
                static COUNTER: AtomicU64 = AtomicU64::new(0);
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64;
                let schema = format!(
                    "accord_gw_{:x}_{:x}_{}",
                    std::process::id(),
                    nanos,
                    COUNTER.fetch_add(1, Ordering::Relaxed)
                );
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&mut conn)
                    .await
                    .expect("creating a test schema");
                conn.close().await.ok();
                let sep = if base.contains('?') { '&' } else { '?' };
                Some(TestDb {
                    url: format!("{base}{sep}options=-c%20search_path%3D{schema}"),
                    schema: Some(schema),
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

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(schema) = self.schema.take() {
            // Drop runs outside async: use a thread with its own runtime.
            let base = postgres_base_url();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&base).await {
                        let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                            .execute(&mut conn)
                            .await;
                    }
                });
            })
            .join();
        }
    }
}
