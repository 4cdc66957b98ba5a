//! The command line, as clap reads it. Each subcommand's help says what it
//! is for and what to try next, so a newcomer can follow `accord --help`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub const DEFAULT_REGISTRY: &str = "http://127.0.0.1:8700";

#[derive(Debug, Parser)]
#[command(
    name = "accord",
    version,
    about = "Accord: co-operation agreements between agencies, made to run",
    long_about = "Accord runs a federation of public agencies at every level of government: \
                  a registry of members and their services with a certificate authority, \
                  gateways through which agencies call each other, and the agreements that \
                  allow those calls.\n\n\
                  Start with `accord demo`: it creates a whole demo federation on SQLite and \
                  serves its registry at http://127.0.0.1:8700.",
    after_help = "Examples:\n  accord demo\n  accord member list --level local\n  \
                  accord service list --q residence\n  accord service show DEMO/GOV/70000002/population-register/residence/v1"
)]
pub struct Cli {
    /// The registry's API base URL.
    #[arg(long, global = true, env = "ACCORD_REGISTRY", default_value = DEFAULT_REGISTRY)]
    pub registry: String,

    /// Bearer token for changes (see `accord token create`).
    #[arg(long, global = true, env = "ACCORD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// File holding the bearer token, e.g. the admin.token that `registry init` writes.
    #[arg(long, global = true, env = "ACCORD_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// Print JSON instead of tables, for scripts.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Servers log what they do; client commands only their warnings.
    /// The async runtime's worker threads, where the command sets them.
    pub fn worker_threads(&self) -> Option<usize> {
        match &self.command {
            Command::Gateway(GatewayCommand::Serve { threads, .. }) => threads.map(|n| n.max(1)),
            Command::Bench(BenchCommand::Relay(args)) => Some(args.threads.max(1)),
            _ => None,
        }
    }

    pub fn default_log_filter(&self) -> &'static str {
        match &self.command {
            Command::Registry(RegistryCommand {
                command: RegistrySub::Serve { .. },
            })
            | Command::Gateway(_) => "info,sqlx=warn,tower_http=info",
            // The demo prints what happens; its logs would drown it.
            Command::Demo(_) => "warn,sqlx=error",
            _ => "warn",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, then serve, a federation registry.
    Registry(RegistryCommand),
    /// Members of the federation.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Subsystems of members.
    #[command(subcommand)]
    Subsystem(SubsystemCommand),
    /// Services that subsystems offer.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Co-operation agreements: draft, propose, sign, amend, suspend, explain decisions.
    #[command(subcommand)]
    Agreement(AgreementCommand),
    /// The federation's vocabulary of purposes that agreements allow.
    #[command(subcommand)]
    Purpose(PurposeCommand),
    /// Gateways' audit logs: verify one offline, list what the registry anchored.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Run a member's gateway: X-Road REST for its information systems, mutual TLS to other gateways.
    #[command(subcommand)]
    Gateway(GatewayCommand),
    /// Certificates for members' gateways, issued by the federation CA.
    #[command(subcommand, name = "gateway-cert")]
    GatewayCert(GatewayCertCommand),
    /// Bearer tokens for the registry's API.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Run a whole demo federation on this machine (SQLite, nothing to install).
    Demo(DemoArgs),
    /// Measure Accord's performance.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Print a shell completion script, e.g. `accord completions bash > /etc/bash_completion.d/accord`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Serve a gateway described by a gateway.toml (see the README for its keys).
    ///
    /// Example: accord gateway serve --config /etc/accord/gateway.toml
    Serve {
        /// The gateway's configuration file.
        #[arg(long, short, env = "ACCORD_GATEWAY_CONFIG")]
        config: PathBuf,
        /// Worker threads (default: one per CPU). Give 1 when several
        /// gateways share a small machine.
        #[arg(long, env = "ACCORD_GATEWAY_THREADS")]
        threads: Option<usize>,
    },
    /// Make a gateway's audit key (if the file does not exist) and register
    /// its public half at the registry, as the member's administrator.
    ///
    /// Example: accord gateway audit-key EE/GOV/70000001/gw1 --key /etc/accord/gw1-audit.key
    AuditKey {
        /// The gateway: INSTANCE/CLASS/CODE/GATEWAY.
        gateway: String,
        /// The Ed25519 key file (PKCS#8 PEM, created 0600 if missing).
        #[arg(long)]
        key: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct RegistryCommand {
    #[command(subcommand)]
    pub command: RegistrySub,
}

#[derive(Debug, Args, Clone)]
pub struct StorageArgs {
    /// Directory for the federation's keys (and the SQLite database by default).
    #[arg(long, env = "ACCORD_DATA_DIR", default_value = "accord-data")]
    pub data_dir: PathBuf,
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB. Default: SQLite in the data directory.
    #[arg(long, env = "ACCORD_DATABASE_URL", hide_env_values = true)]
    pub database: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RegistrySub {
    /// Create a federation: its CA and signing keys, its database, and a first admin token.
    Init {
        #[command(flatten)]
        storage: StorageArgs,
        /// X-Road instance code, e.g. EE or DEMO.
        #[arg(long)]
        instance: String,
        /// The federation's name.
        #[arg(long)]
        name: String,
        /// Member classes the federation accepts.
        #[arg(long, value_delimiter = ',', default_value = "GOV,MUN,COM,NGO,EDU")]
        member_classes: Vec<String>,
    },
    /// Serve the registry's HTTP API.
    Serve {
        #[command(flatten)]
        storage: StorageArgs,
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, env = "ACCORD_LISTEN", default_value = "127.0.0.1:8700")]
        listen: SocketAddr,
    },
}

/// Filters shared by catalogue listings.
#[derive(Debug, Args, Clone, Default)]
pub struct CatalogueFilterArgs {
    /// Level of government: local, regional, national, supranational.
    #[arg(long)]
    pub level: Option<String>,
    /// ISO 3166-1 alpha-2 country code, e.g. EE.
    #[arg(long)]
    pub country: Option<String>,
    /// Sector: public, private, civil-society.
    #[arg(long)]
    pub sector: Option<String>,
    /// Text to search for in names, titles, descriptions and identifiers.
    #[arg(long)]
    pub q: Option<String>,
    /// Page number, from 1.
    #[arg(long, default_value_t = 1)]
    pub page: u32,
    /// Entries per page, 1 to 200.
    #[arg(long, default_value_t = 20)]
    pub per_page: u32,
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Add a member (federation administrator).
    Add {
        /// Member id, INSTANCE/CLASS/CODE, e.g. DEMO/GOV/70000099.
        id: String,
        #[arg(long)]
        name: String,
        /// local, regional, national or supranational.
        #[arg(long)]
        level: String,
        /// ISO 3166-1 alpha-2 country code.
        #[arg(long)]
        country: String,
        /// public, private or civil-society.
        #[arg(long)]
        sector: String,
        /// Parent body's member id.
        #[arg(long)]
        parent: Option<String>,
        #[arg(long)]
        contact_name: Option<String>,
        #[arg(long)]
        contact_email: Option<String>,
    },
    /// List and search members.
    List {
        #[command(flatten)]
        filter: CatalogueFilterArgs,
    },
    /// Show a member with its subsystems and gateways.
    Show {
        /// Member id, INSTANCE/CLASS/CODE.
        id: String,
    },
    /// A member's Ed25519 signing keys, with which it signs agreements.
    #[command(subcommand)]
    Key(KeyCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Make a new signing key in a file only you can read (nothing is sent).
    Generate {
        /// Where to write the private key (PKCS#8 PEM, created 0600).
        #[arg(long)]
        out: PathBuf,
    },
    /// Register a key's public half with the registry (the member's administrator).
    Register {
        /// Member id, INSTANCE/CLASS/CODE.
        member: String,
        /// The private key file: only its public half is sent.
        #[arg(long)]
        key: PathBuf,
    },
    /// List a member's keys.
    List { member: String },
    /// Revoke a key: signatures made with it no longer count.
    Revoke { key_id: String },
}

#[derive(Debug, Subcommand)]
pub enum PurposeCommand {
    /// List the purposes agreements may name.
    List,
    /// Add a purpose (federation administrator).
    Add {
        code: String,
        #[arg(long)]
        description: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgreementCommand {
    /// Draft a new agreement from a terms file (JSON), as one of its parties.
    Draft {
        /// The agreement id, e.g. tallinn-residence.
        id: String,
        #[arg(long)]
        terms: PathBuf,
    },
    /// Show an agreement: the version in force (or latest), or --version N.
    Show {
        id: String,
        #[arg(long)]
        version: Option<u32>,
    },
    /// List agreements.
    List {
        /// Only those this member is party to.
        #[arg(long)]
        member: Option<String>,
        /// Only those whose latest version is in this state.
        #[arg(long)]
        state: Option<String>,
    },
    /// Replace a draft's terms.
    Edit {
        id: String,
        #[arg(long)]
        version: Option<u32>,
        #[arg(long)]
        terms: PathBuf,
    },
    /// Propose a draft for signature: its digest is fixed.
    Propose {
        id: String,
        #[arg(long)]
        version: Option<u32>,
    },
    /// Sign the proposed version with your member's key file.
    Sign {
        id: String,
        /// The signing party, INSTANCE/CLASS/CODE.
        #[arg(long)]
        member: String,
        /// The member's private signing key (from `accord member key generate`).
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        version: Option<u32>,
    },
    /// Check every party's signature yourself, from the terms, the signatures and the registered keys.
    Verify {
        id: String,
        #[arg(long)]
        version: Option<u32>,
    },
    /// Amend the agreement in force: a new draft version from a terms file.
    Amend {
        id: String,
        #[arg(long)]
        terms: PathBuf,
    },
    /// Suspend the agreement in force (a party or the federation administrator).
    Suspend {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Resume a suspended agreement.
    Resume {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Terminate the agreement (a party).
    Terminate {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Versions and events: who did what, when.
    History { id: String },
    /// Export a version in a standard form.
    Export {
        id: String,
        #[arg(long, value_enum, default_value = "odrl")]
        format: ExportFormat,
        #[arg(long)]
        version: Option<u32>,
    },
    /// Import an ODRL 2.2 Offer (JSON-LD) as a draft agreement.
    Import {
        #[arg(long)]
        offer: PathBuf,
        /// The agreement id (default: the one the offer suggests).
        #[arg(long)]
        id: Option<String>,
    },
    /// What the agreements in force decide for a request, and why.
    Explain {
        /// The calling subsystem, INSTANCE/CLASS/CODE/SUBSYSTEM.
        #[arg(long)]
        client: String,
        /// The service, INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE[/VERSION].
        #[arg(long)]
        service: String,
        #[arg(long, default_value = "GET")]
        method: String,
        #[arg(long, default_value = "/")]
        path: String,
        #[arg(long)]
        purpose: Option<String>,
        /// The request names a data subject.
        #[arg(long)]
        subject: bool,
        /// When (RFC 3339); now by default.
        #[arg(long)]
        at: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    /// ODRL 2.2 Agreement policy, JSON-LD.
    Odrl,
    /// The agreement's terms as Accord stores them.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum SubsystemCommand {
    /// Add a subsystem to a member (that member's administrator).
    Add {
        /// Subsystem id, INSTANCE/CLASS/CODE/SUBSYSTEM.
        id: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Add a service to a subsystem (that member's administrator).
    Add {
        /// Service id, INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE[/VERSION].
        id: String,
        #[arg(long)]
        title: String,
        #[arg(long)]
        description: String,
        /// Whether the service processes personal data.
        #[arg(long, action = clap::ArgAction::Set)]
        personal_data: bool,
        /// A data category (repeat for several), e.g. identity, address, health.
        #[arg(long = "category")]
        categories: Vec<String>,
        /// The service's OpenAPI 3 document (a JSON file).
        #[arg(long)]
        openapi: PathBuf,
    },
    /// List and search services.
    List {
        #[command(flatten)]
        filter: CatalogueFilterArgs,
        /// Only services that process personal data (true) or do not (false).
        #[arg(long)]
        personal_data: Option<bool>,
        /// Only this member's services.
        #[arg(long)]
        member: Option<String>,
    },
    /// Show a service; --openapi prints its OpenAPI document instead.
    Show {
        /// Service id, INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE[/VERSION].
        id: String,
        #[arg(long)]
        openapi: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GatewayCertCommand {
    /// Issue a certificate for a member's gateway, from a CSR or with a new key pair.
    Issue {
        /// The member, INSTANCE/CLASS/CODE.
        #[arg(long)]
        member: String,
        /// The gateway's name within the member, e.g. gw1.
        #[arg(long)]
        gateway: String,
        /// Where other gateways reach it, https://host:port.
        #[arg(long)]
        address: String,
        /// A PEM certificate signing request; without it a key pair is made for you.
        #[arg(long)]
        csr: Option<PathBuf>,
        /// Where to write the new private key (required without --csr; created 0600).
        #[arg(long)]
        key_out: Option<PathBuf>,
        /// Where to write the certificate (PEM).
        #[arg(long)]
        cert_out: Option<PathBuf>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// List issued certificates.
    List {
        /// Only this member's.
        #[arg(long)]
        member: Option<String>,
    },
    /// Revoke a certificate.
    Revoke {
        /// The certificate's serial (hex, from `gateway-cert list`).
        serial: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token (federation administrator); its secret is printed once.
    Create {
        /// federation-admin or member-admin.
        #[arg(long)]
        role: String,
        /// For member-admin: the member, INSTANCE/CLASS/CODE.
        #[arg(long)]
        member: Option<String>,
        /// What the token is for.
        #[arg(long)]
        label: Option<String>,
    },
    /// Revoke a token by its id.
    Revoke { id: String },
    /// List tokens (never their secrets).
    List,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify a gateway's whole audit log offline, against its own signed
    /// checkpoints and those the registry holds; says exactly where a log
    /// was altered, truncated or forked.
    Verify {
        /// The gateway's audit database (sqlite://PATH or postgres://...).
        #[arg(long, hide_env_values = true)]
        database: String,
        /// The log, i.e. the gateway: INSTANCE/CLASS/CODE/GATEWAY.
        #[arg(long)]
        log: String,
        /// The gateway's audit public key (PEM); by default taken from the
        /// registry's signed configuration.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Check only against the gateway's own checkpoints.
        #[arg(long)]
        no_registry: bool,
    },
    /// List the checkpoints the registry holds for a gateway's log.
    Checkpoints {
        /// INSTANCE/CLASS/CODE/GATEWAY.
        #[arg(long)]
        log: String,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory for the demo federation; a temporary one, removed at exit, if not given.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Address the registry listens on.
    #[arg(long, default_value = "127.0.0.1:8700")]
    pub listen: SocketAddr,
    /// First port of the gateways: their provider sides (mutual TLS) from
    /// here, their consumer sides (X-Road REST) from here + 100; 0 for any
    /// free ports.
    #[arg(long, default_value_t = 8701)]
    pub gateway_ports: u16,
    /// Start only the registry: no gateways, backends or exchanges.
    #[arg(long)]
    pub registry_only: bool,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Seed a large catalogue and time filtered, paged searches over HTTP, on SQLite and PostgreSQL.
    Catalogue(BenchCatalogueArgs),
    /// Compare an exchange direct, through nginx with mutual TLS, and through two Accord gateways.
    Exchange(crate::bench_exchange::BenchExchangeArgs),
    /// A bare hyper + rustls relay, started by `bench exchange` for its path (d).
    #[command(hide = true)]
    Relay(crate::bench_relay::RelayArgs),
}

#[derive(Debug, Args)]
pub struct BenchCatalogueArgs {
    #[arg(long, default_value_t = 10_000)]
    pub members: u32,
    #[arg(long, default_value_t = 100_000)]
    pub services: u32,
    /// Searches to time per engine.
    #[arg(long, default_value_t = 1_000)]
    pub searches: u32,
    /// PostgreSQL server to bench on (a scratch schema is made and dropped); "none" to skip.
    #[arg(
        long,
        env = "ACCORD_BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test",
        hide_env_values = true
    )]
    pub postgres: String,
}
