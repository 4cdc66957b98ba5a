//! The federation registry: who is in the federation, what they offer, the
//! certificate authority that vouches for their gateways, and the tokens
//! that authorize changes — behind one HTTP API.
//!
//! Reading the catalogue is public; every write needs a bearer token bound
//! to a role (see [`auth`]). Each write validates its input against the
//! domain rules first and then runs in one database transaction, so a
//! refused request changes nothing. The API's OpenAPI document is generated
//! from the same handlers that serve the routes, so it cannot drift.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod auth;
pub mod configuration;
pub mod error;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;

use accord_ca::FederationKeys;
use accord_domain::id::{validate_part, Part};
use accord_store::{FederationRecord, NewToken, Store};

pub use auth::IssuedToken;

/// Largest request body the API reads (an OpenAPI document fits well).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Where a registry keeps its state.
#[derive(Debug, Clone)]
pub struct RegistryPaths {
    /// Holds `keys/` (the CA and signing keys, owner-only) and, by default,
    /// the SQLite database.
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; `None` means SQLite in `data_dir`.
    pub database_url: Option<String>,
}

impl RegistryPaths {
    pub fn new(data_dir: impl Into<PathBuf>, database_url: Option<String>) -> Self {
        RegistryPaths {
            data_dir: data_dir.into(),
            database_url,
        }
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.data_dir.join("keys")
    }

    /// The file `init` writes the first federation administrator token to.
    pub fn admin_token_file(&self) -> PathBuf {
        self.data_dir.join("admin.token")
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("registry.db").display()),
        }
    }
}

/// How to create a federation.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The X-Road instance code, e.g. `DEMO` or `EE`.
    pub instance: String,
    pub name: String,
    pub member_classes: Vec<String>,
}

/// The purpose vocabulary a new federation starts with; the federation
/// administrator adds more (`accord purpose add`).
pub const DEFAULT_PURPOSES: &[(&str, &str)] = &[
    ("tax-assessment", "Assessing and collecting taxes"),
    (
        "social-benefit-eligibility",
        "Deciding whether a person is entitled to a social benefit",
    ),
    (
        "public-health-statistics",
        "Producing anonymised public-health statistics",
    ),
    (
        "cross-border-residence",
        "Confirming residence between countries",
    ),
    ("school-enrolment", "Allocating school places"),
    (
        "pension-calculation",
        "Calculating pensions and insurance periods",
    ),
    ("customs-clearance", "Clearing goods through customs"),
    ("aid-distribution", "Distributing food and material aid"),
    (
        "registered-delivery",
        "Delivering registered letters to persons and companies",
    ),
    ("official-statistics", "Producing official statistics"),
];

/// The member classes a new federation accepts unless told otherwise.
pub const DEFAULT_MEMBER_CLASSES: &[&str] = &["GOV", "MUN", "COM", "NGO", "EDU"];

/// A running registry's shared state: cheap to clone, one per process.
#[derive(Clone)]
pub struct Registry {
    pub store: Store,
    keys: Arc<FederationKeys>,
    pub federation: Arc<FederationRecord>,
    /// The last federation configuration built, reused while nothing changed.
    configuration: Arc<tokio::sync::Mutex<Option<Arc<configuration::PublishedConfiguration>>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("instance", &self.federation.instance)
            .field("engine", &self.store.engine())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Creates a federation: its keys in `data_dir/keys`, its record and a
    /// first federation-administrator token in the database. Returns the
    /// token (its secret is shown only now).
    pub async fn init(
        paths: &RegistryPaths,
        options: &InitOptions,
    ) -> anyhow::Result<(Registry, IssuedToken)> {
        validate_part(Part::Instance, &options.instance)
            .with_context(|| format!("instance code {:?} is not valid", options.instance))?;
        if options.member_classes.is_empty() {
            bail!("a federation needs at least one member class");
        }
        for class in &options.member_classes {
            validate_part(Part::MemberClass, class)
                .with_context(|| format!("member class {class:?} is not valid"))?;
        }
        let name = accord_domain::catalogue::check_text(&options.name, 200)
            .map_err(|e| anyhow::anyhow!("federation name {e}"))?;
        std::fs::create_dir_all(&paths.data_dir)
            .with_context(|| format!("creating {}", paths.data_dir.display()))?;
        let store = Store::connect(&paths.database_url())
            .await
            .context("opening the registry database")?;
        if let Some(existing) = store.federation().await? {
            bail!(
                "the database already holds federation {} ({}); use `accord registry serve`",
                existing.instance,
                existing.name
            );
        }
        let keys_dir = paths.keys_dir();
        let keys_existed = keys_dir.exists();
        let keys = FederationKeys::create(&keys_dir, &options.instance, &name)?;
        let record = FederationRecord {
            instance: options.instance.clone(),
            name,
            member_classes: options.member_classes.clone(),
            ca_fingerprint_sha256: keys.ca_fingerprint_sha256(),
            ca_certificate_pem: keys.ca_certificate_pem().to_owned(),
            signing_public_key_pem: keys.signing_public_key_pem(),
            created_at: accord_store::now(),
        };
        let token = auth::issue_token();
        let written = async {
            let mut tx = store.begin().await?;
            tx.insert_federation(&record).await?;
            tx.insert_token(
                &NewToken {
                    id: token.id.clone(),
                    secret_sha256: token.secret_sha256.clone(),
                    role: accord_domain::Role::FederationAdmin,
                    label: "created by accord registry init".into(),
                },
                &record.created_at,
            )
            .await?;
            for (code, description) in DEFAULT_PURPOSES {
                tx.insert_purpose(code, description, &record.created_at)
                    .await?;
            }
            tx.commit().await
        }
        .await;
        if let Err(e) = written {
            // Leave nothing behind: a later init must be able to start over.
            if !keys_existed {
                let _ = std::fs::remove_dir_all(&keys_dir);
            }
            return Err(e).context("recording the federation");
        }
        write_secret_file(&paths.admin_token_file(), &token.token)?;
        Ok((
            Registry {
                store,
                keys: Arc::new(keys),
                federation: Arc::new(record),
                configuration: Arc::default(),
            },
            token,
        ))
    }

    /// Opens an existing federation (migrating its database if needed).
    pub async fn open(paths: &RegistryPaths) -> anyhow::Result<Registry> {
        if paths.database_url.is_none() && !paths.data_dir.join("registry.db").exists() {
            bail!(
                "no federation in {}: create one with `accord registry init --data-dir {}`",
                paths.data_dir.display(),
                paths.data_dir.display()
            );
        }
        let store = Store::connect(&paths.database_url())
            .await
            .context("opening the registry database")?;
        Registry::open_with_store(paths, store).await
    }

    /// Opens an existing federation on a store already connected.
    pub async fn open_with_store(paths: &RegistryPaths, store: Store) -> anyhow::Result<Registry> {
        let federation = store.federation().await?.with_context(|| {
            format!(
                "no federation in {}: create one with `accord registry init`",
                accord_store::redact_url(&paths.database_url())
            )
        })?;
        let keys = FederationKeys::load(&paths.keys_dir())?;
        if keys.ca_fingerprint_sha256() != federation.ca_fingerprint_sha256 {
            bail!(
                "the CA in {} is not the one federation {} was created with",
                paths.keys_dir().display(),
                federation.instance
            );
        }
        Ok(Registry {
            store,
            keys: Arc::new(keys),
            federation: Arc::new(federation),
            configuration: Arc::default(),
        })
    }

    pub fn keys(&self) -> &FederationKeys {
        &self.keys
    }

    /// The HTTP API, with its OpenAPI document at `/api/openapi.json`.
    pub fn router(&self) -> axum::Router {
        // One line per request for operators: method, path, status, time.
        // Tokens travel in headers, which are not logged.
        let trace = tower_http::trace::TraceLayer::new_for_http()
            .make_span_with(tower_http::trace::DefaultMakeSpan::new().level(tracing::Level::INFO))
            .on_request(())
            .on_response(
                tower_http::trace::DefaultOnResponse::new()
                    .level(tracing::Level::INFO)
                    .latency_unit(tower_http::LatencyUnit::Micros),
            );
        api::router(self.clone())
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .layer(trace)
    }

    /// Serves the API on `listener` until `shutdown` completes. Meanwhile a
    /// sweep marks agreements whose validity ended as expired, so their
    /// history says when even if nobody looks at them.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let sweeper = self.clone();
        let sweep = tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(30));
            loop {
                every.tick().await;
                if let Err(e) = api::agreements::expire_due(&sweeper).await {
                    tracing::warn!(detail = %e.detail, "expiry sweep failed");
                }
            }
        });
        let served = axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await;
        sweep.abort();
        served
    }
}

/// Writes a secret to a new file readable only by its owner.
pub fn write_secret_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|_| file.write_all(b"\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
