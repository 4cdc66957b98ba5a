//! What the integration tests of every Accord crate share, so that "every
//! storage test runs on SQLite and on PostgreSQL" is one mechanism, not a
//! copy per crate: the [`Engine`] a test runs on, [`on_both_engines!`] to
//! run a test once per engine, [`PgSchema`], a fresh PostgreSQL schema
//! dropped with the value, and [`free_port`] for what must know its port
//! before it listens. Under `CI=true` a PostgreSQL that cannot be
//! reached fails the test; elsewhere the PostgreSQL half says it skipped.
//!
//! A dev-dependency only: nothing here is part of Accord.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Connection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn name(engine: Engine)` of the calling module
/// once on SQLite and once on PostgreSQL, as `sqlite::name` and
/// `postgres::name`.
#[macro_export]
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Engine::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Engine::Postgres).await
                }
            )*
        }
    };
}

/// The PostgreSQL the tests use: `ACCORD_TEST_POSTGRES_URL`, or the local
/// server's `test` database.
pub fn postgres_base_url() -> String {
    std::env::var("ACCORD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh, empty PostgreSQL schema, dropped (with everything in it) when
/// the value is.
pub struct PgSchema {
    /// A URL whose connections see only this schema.
    pub url: String,
    name: String,
}

impl PgSchema {
    /// A new schema named after `prefix`, or `None` when PostgreSQL is not
    /// reachable outside CI (under `CI=true` that panics: a missing
    /// PostgreSQL is a failure, never a silent skip).
    pub async fn create(prefix: &str) -> Option<PgSchema> {
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
            .map_or(0, |d| d.as_nanos() as u64);
        let name = format!(
            "{prefix}_{:x}_{:x}_{}",
            std::process::id(),
            nanos,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut conn)
            .await
            .expect("creating a test schema");
        conn.close().await.ok();
        let sep = if base.contains('?') { '&' } else { '?' };
        Some(PgSchema {
            url: format!("{base}{sep}options=-c%20search_path%3D{name}"),
            name,
        })
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        // Drop runs outside async: use a thread with its own runtime.
        let base = postgres_base_url();
        let name = std::mem::take(&mut self.name);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&base).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA {name} CASCADE"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

/// A free loopback port below the kernel's ephemeral range, so that no
/// outgoing connection takes it between its choice and its use (it goes
/// into a certificate or a configuration first).
pub fn free_port() -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let floor = 10_000u16.min(ephemeral_low.saturating_sub(1_000));
    let span = ephemeral_low.saturating_sub(floor).max(1);
    loop {
        let port = floor + rand::random::<u16>() % span;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
