//! Accord's storage: one schema, one set of queries, two engines.
//!
//! SQLite is the embedded default, so `accord demo` needs nothing installed;
//! PostgreSQL is for production, where several registry instances share one
//! database. Both are reached through sqlx's `Any` driver with portable SQL
//! (`$n` placeholders, TEXT/BIGINT columns), so there is exactly one code
//! path to test, and the test suite runs it against both engines.
//!
//! Migrations are embedded in the binary and run at start-up. Every
//! multi-step write goes through a [`Tx`], which either commits whole or
//! leaves the database as it was.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod agreements;
mod catalogue;
mod monitoring;
mod trust;

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyConnection, AnyPool, Connection, Executor, Transaction};

pub use agreements::{
    AgreementEvent, AgreementVersionRecord, PurposeRecord, SignatureRecord, SigningKeyRecord,
};
pub use catalogue::{
    CatalogueFilter, NewMember, NewService, NewSubsystem, Page, Paged, ServiceDocument,
};
pub use trust::{CheckpointRecord, FederationRecord, NewCertificate, NewToken, TokenRecord};

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn name(&self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgresql",
        }
    }
}

/// What can go wrong in storage, as the layers above need to tell it apart.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A row with the same key exists (`what` names it for the user).
    #[error("{0} already exists")]
    Conflict(String),
    /// A row the write depends on does not exist.
    #[error("{0} does not exist")]
    Missing(String),
    #[error("database URL {url:?} is not supported: expected sqlite://PATH or postgres://...")]
    UnsupportedUrl { url: String },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrating the database schema failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

fn migrator() -> Migrator {
    let migrations = vec![
        Migration::new(
            1,
            Cow::Borrowed("catalogue"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../migrations/0001_catalogue.sql")),
            false,
        ),
        Migration::new(
            2,
            Cow::Borrowed("agreements"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../migrations/0002_agreements.sql")),
            false,
        ),
        Migration::new(
            3,
            Cow::Borrowed("audit"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../migrations/0003_audit.sql")),
            false,
        ),
        Migration::new(
            4,
            Cow::Borrowed("monitoring"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../migrations/0004_monitoring.sql")),
            false,
        ),
    ];
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

/// A connection pool on one database, with the schema migrated.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    engine: Engine,
}

impl Store {
    /// Connects to `url` (`sqlite://path` creates the file if missing;
    /// `postgres://...`) and runs the migrations.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let engine = if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Engine::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl {
                url: redact_url(url),
            });
        };
        let url = match engine {
            Engine::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let mut pool = AnyPoolOptions::new()
            .max_connections(match engine {
                Engine::Sqlite => 8,
                Engine::Postgres => 16,
            })
            .acquire_timeout(Duration::from_secs(10));
        if engine == Engine::Sqlite {
            pool = pool.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // WAL lets readers run beside the writer; the busy timeout
                    // makes a second writer wait instead of failing.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            });
        }
        let pool = pool.connect_with(options).await?;
        migrator().run(&pool).await?;
        Ok(Store { pool, engine })
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Starts a transaction: everything done through it commits together.
    pub async fn begin(&self) -> Result<Tx> {
        let tx = if self.engine == Engine::Sqlite {
            // Take the write lock up front, so two writers queue on the busy
            // timeout instead of one failing when it upgrades its lock.
            self.pool.begin_with("BEGIN IMMEDIATE").await?
        } else {
            self.pool.begin().await?
        };
        Ok(Tx { tx })
    }

    /// A connection for reads.
    pub async fn read(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>> {
        Ok(self.pool.acquire().await?)
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        conn.ping().await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// One transaction. Dropping it without [`Tx::commit`] rolls it back.
pub struct Tx {
    tx: Transaction<'static, sqlx::Any>,
}

impl Tx {
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }

    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

/// The current time as stored: RFC 3339 UTC with milliseconds, fixed width.
pub fn now() -> String {
    format_time(time::OffsetDateTime::now_utc())
}

/// Formats a time as stored.
pub fn format_time(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// A database URL with its password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Maps a unique-key violation to a conflict naming `what`.
pub(crate) fn conflict_on_unique(
    what: impl FnOnce() -> String,
) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation => {
            StoreError::Conflict(what())
        }
        sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::ForeignKeyViolation => {
            StoreError::Missing(format!("a record that {} refers to", what()))
        }
        _ => StoreError::Database(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_url("postgres://accord:s3cret@db.example:5432/registry"),
            "postgres://accord:***@db.example:5432/registry"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn times_are_fixed_width_utc() {
        let at = time::macros::datetime!(2026-01-02 03:04:05.006 +02:00);
        assert_eq!(format_time(at), "2026-01-02T01:04:05.006Z");
    }
}
