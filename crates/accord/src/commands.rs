//! What each subcommand does. Server commands (`registry init|serve`,
//! `demo`) work on a data directory and database; every other command is a
//! client of the registry's HTTP API, so the CLI can do nothing the API
//! would not allow.

use std::path::Path;

use anyhow::{bail, Context};
use reqwest::Method;

use accord_domain::Subsystem;
use accord_domain::{
    Gateway, GatewayCertificate, Member, MemberId, Service, ServiceId, SubsystemId,
};
use accord_registry::api::gateways::{CertificateInput, IssuedCertificateResponse, RevokeInput};
use accord_registry::api::members::{ContactInput, MemberDetail, MemberInput};
use accord_registry::api::services::{ServiceDetail, ServiceInput, SubsystemInput};
use accord_registry::api::tokens::{CreatedToken, TokenInfo, TokenInput};
use accord_registry::api::Paged;
use accord_registry::{InitOptions, Registry, RegistryPaths};

use crate::cli::*;
use crate::client::{query_string, RegistryClient};
use crate::output;

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let json = cli.json;
    let token = match (&cli.token, &cli.token_file) {
        (Some(t), _) => Some(t.trim().to_owned()),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the token file {}", path.display()))?
                .trim()
                .to_owned(),
        ),
        (None, None) => None,
    };
    let client = || RegistryClient::new(&cli.registry, token.clone());
    match cli.command {
        Command::Registry(RegistryCommand { command }) => registry(command, json).await,
        Command::Member(cmd) => member(&client()?, cmd, json).await,
        Command::Subsystem(cmd) => subsystem(&client()?, cmd, json).await,
        Command::Service(cmd) => service(&client()?, cmd, json).await,
        Command::Gateway(GatewayCommand::Serve { config, .. }) => gateway_serve(&config).await,
        Command::Gateway(GatewayCommand::AuditKey { gateway, key }) => {
            gateway_audit_key(&client()?, &gateway, &key, json).await
        }
        Command::GatewayCert(cmd) => gateway_cert(&client()?, cmd, json).await,
        Command::Agreement(cmd) => crate::agreement::run(&client()?, cmd, json).await,
        Command::Purpose(cmd) => crate::agreement::purpose(&client()?, cmd, json).await,
        Command::Audit(cmd) => crate::audit::run(&client()?, cmd, json).await,
        Command::Token(cmd) => token_cmd(&client()?, cmd, json).await,
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Bench(BenchCommand::Catalogue(args)) => crate::bench::catalogue(args).await,
        Command::Bench(BenchCommand::Relay(args)) => crate::bench_relay::run(args).await,
        Command::Bench(BenchCommand::Exchange(args)) => {
            crate::bench_exchange::run(args, json).await
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "accord", &mut std::io::stdout());
            Ok(())
        }
    }
}

fn paths(storage: &StorageArgs) -> RegistryPaths {
    RegistryPaths::new(&storage.data_dir, storage.database.clone())
}

async fn registry(command: RegistrySub, json: bool) -> anyhow::Result<()> {
    match command {
        RegistrySub::Init {
            storage,
            instance,
            name,
            member_classes,
        } => {
            let paths = paths(&storage);
            let options = InitOptions {
                instance,
                name,
                member_classes,
            };
            let (registry, token) = Registry::init(&paths, &options).await?;
            let f = &registry.federation;
            if json {
                return output::json(&serde_json::json!({
                    "instance": f.instance,
                    "name": f.name,
                    "ca_fingerprint_sha256": f.ca_fingerprint_sha256,
                    "keys_dir": paths.keys_dir(),
                    "admin_token_file": paths.admin_token_file(),
                    "admin_token": token.token,
                }));
            }
            println!("created federation {} ({})", f.instance, f.name);
            output::fields(&[
                ("database", accord_store::redact_url(&paths.database_url())),
                ("keys", paths.keys_dir().display().to_string()),
                ("CA fingerprint", f.ca_fingerprint_sha256.clone()),
                (
                    "admin token",
                    format!("written to {}", paths.admin_token_file().display()),
                ),
            ]);
            println!(
                "\nnext: accord registry serve --data-dir {}{}",
                storage.data_dir.display(),
                if storage.database.is_some() {
                    " --database ..."
                } else {
                    ""
                }
            );
            println!(
                "      export ACCORD_TOKEN_FILE={}",
                paths.admin_token_file().display()
            );
            Ok(())
        }
        RegistrySub::Serve { storage, listen } => {
            let paths = paths(&storage);
            let registry = Registry::open(&paths).await?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            let address = listener.local_addr()?;
            println!(
                "registry of federation {} listening on http://{address} ({})",
                registry.federation.instance,
                registry.store.engine().name()
            );
            registry.serve(listener, shutdown_signal()).await?;
            Ok(())
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

fn catalogue_query(f: &CatalogueFilterArgs, extra: &[(&str, Option<String>)]) -> String {
    let mut pairs = vec![
        ("level", f.level.clone()),
        ("country", f.country.clone()),
        ("sector", f.sector.clone()),
        ("q", f.q.clone()),
        ("page", Some(f.page.to_string())),
        ("per_page", Some(f.per_page.to_string())),
    ];
    pairs.extend(extra.iter().cloned());
    query_string(&pairs)
}

pub fn parse_member(id: &str) -> anyhow::Result<MemberId> {
    id.parse()
        .with_context(|| format!("{id:?} is not a member id (INSTANCE/CLASS/CODE)"))
}

async fn member(client: &RegistryClient, cmd: MemberCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        MemberCommand::Add {
            id,
            name,
            level,
            country,
            sector,
            parent,
            contact_name,
            contact_email,
        } => {
            let contact =
                (contact_name.is_some() || contact_email.is_some()).then_some(ContactInput {
                    name: contact_name,
                    email: contact_email,
                });
            let input = MemberInput {
                id: Some(id),
                name: Some(name),
                level: Some(level),
                country: Some(country),
                sector: Some(sector),
                parent,
                contact,
            };
            let member: Member = client
                .write(Method::POST, "/api/v1/members", Some(&input))
                .await?;
            if json {
                return output::json(&member);
            }
            println!("added member {} ({})", member.id, member.name);
            Ok(())
        }
        MemberCommand::List { filter } => {
            let page: Paged<Member> = client
                .get(&format!("/api/v1/members{}", catalogue_query(&filter, &[])))
                .await?;
            if json {
                return output::json(&page);
            }
            output::table(
                &["id", "name", "level", "country", "sector"],
                page.items
                    .iter()
                    .map(|m| {
                        vec![
                            m.id.to_string(),
                            m.name.clone(),
                            m.level.to_string(),
                            m.country.to_string(),
                            m.sector.to_string(),
                        ]
                    })
                    .collect(),
            );
            output::page_footer(page.items.len(), page.total, page.page, page.per_page);
            Ok(())
        }
        MemberCommand::Key(cmd) => crate::agreement::key(client, cmd, json).await,
        MemberCommand::Show { id } => {
            let id = parse_member(&id)?;
            let detail: MemberDetail = client.get(&RegistryClient::member_path(&id)).await?;
            if json {
                return output::json(&detail);
            }
            print_member(&detail);
            Ok(())
        }
    }
}

fn print_member(d: &MemberDetail) {
    let m = &d.member;
    output::fields(&[
        ("id", m.id.to_string()),
        ("name", m.name.clone()),
        ("level", m.level.to_string()),
        ("country", format!("{} ({})", m.country, m.country.name())),
        ("sector", m.sector.to_string()),
        (
            "parent",
            m.parent
                .as_ref()
                .map_or("-".to_owned(), ToString::to_string),
        ),
        (
            "contact",
            match (&m.contact_name, &m.contact_email) {
                (Some(n), Some(e)) => format!("{n} <{e}>"),
                (Some(n), None) => n.clone(),
                (None, Some(e)) => e.clone(),
                (None, None) => "-".into(),
            },
        ),
        ("created", m.created_at.clone()),
    ]);
    println!("\nsubsystems:");
    if d.subsystems.is_empty() {
        println!("  (none)");
    }
    for s in &d.subsystems {
        println!("  {}  {}", s.id, s.name);
    }
    println!("\ngateways:");
    if d.gateways.is_empty() {
        println!("  (none)");
    }
    for g in &d.gateways {
        println!("  {}  {}", g.name, g.address);
    }
}

async fn subsystem(
    client: &RegistryClient,
    cmd: SubsystemCommand,
    json: bool,
) -> anyhow::Result<()> {
    let SubsystemCommand::Add { id, name } = cmd;
    let id: SubsystemId = id
        .parse()
        .with_context(|| format!("{id:?} is not a subsystem id (INSTANCE/CLASS/CODE/SUBSYSTEM)"))?;
    let input = SubsystemInput {
        code: Some(id.code().to_owned()),
        name: Some(name),
    };
    let path = format!("{}/subsystems", RegistryClient::member_path(id.member()));
    let subsystem: Subsystem = client.write(Method::POST, &path, Some(&input)).await?;
    if json {
        return output::json(&subsystem);
    }
    println!("added subsystem {} ({})", subsystem.id, subsystem.name);
    Ok(())
}

async fn service(client: &RegistryClient, cmd: ServiceCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        ServiceCommand::Add {
            id,
            title,
            description,
            personal_data,
            categories,
            openapi,
        } => {
            let id: ServiceId = id.parse().with_context(|| {
                format!(
                    "{id:?} is not a service id (INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE[/VERSION])"
                )
            })?;
            let document = std::fs::read_to_string(&openapi)
                .with_context(|| format!("reading the OpenAPI document {}", openapi.display()))?;
            let input = ServiceInput {
                code: Some(id.code().to_owned()),
                version: id.version().map(str::to_owned),
                title: Some(title),
                description: Some(description),
                personal_data: Some(personal_data),
                data_categories: categories,
                // Sent as text so the registry, not the CLI, judges the JSON.
                openapi: Some(serde_json::Value::String(document)),
            };
            let path = RegistryClient::subsystem_services_path(id.subsystem());
            let detail: ServiceDetail = client.write(Method::POST, &path, Some(&input)).await?;
            if json {
                return output::json(&detail);
            }
            println!(
                "added service {} ({})",
                detail.service.id, detail.service.title
            );
            Ok(())
        }
        ServiceCommand::List {
            filter,
            personal_data,
            member,
        } => {
            let query = catalogue_query(
                &filter,
                &[
                    ("personal_data", personal_data.map(|p| p.to_string())),
                    ("member", member),
                ],
            );
            let page: Paged<Service> = client.get(&format!("/api/v1/services{query}")).await?;
            if json {
                return output::json(&page);
            }
            output::table(
                &["id", "title", "personal data", "categories"],
                page.items
                    .iter()
                    .map(|s| {
                        vec![
                            s.id.to_string(),
                            s.title.clone(),
                            if s.personal_data { "yes" } else { "no" }.to_owned(),
                            s.data_categories.join(","),
                        ]
                    })
                    .collect(),
            );
            output::page_footer(page.items.len(), page.total, page.page, page.per_page);
            Ok(())
        }
        ServiceCommand::Show { id, openapi } => {
            let id: ServiceId = id.parse().with_context(|| {
                format!(
                    "{id:?} is not a service id (INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE[/VERSION])"
                )
            })?;
            if openapi {
                let text = client
                    .get_text(&format!("/api/v1/openapi/{}", id.to_encoded()))
                    .await?;
                println!("{text}");
                return Ok(());
            }
            let detail: ServiceDetail = client.get(&RegistryClient::service_path(&id)).await?;
            if json {
                return output::json(&detail);
            }
            let s = &detail.service;
            output::fields(&[
                ("id", s.id.to_string()),
                ("title", s.title.clone()),
                ("description", s.description.clone()),
                (
                    "personal data",
                    if s.personal_data { "yes" } else { "no" }.into(),
                ),
                ("categories", s.data_categories.join(", ")),
                (
                    "openapi",
                    format!(
                        "{} at {}{}",
                        s.openapi_version,
                        client.base(),
                        detail.openapi_url
                    ),
                ),
                ("created", s.created_at.clone()),
            ]);
            Ok(())
        }
    }
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

async fn gateway_cert(
    client: &RegistryClient,
    cmd: GatewayCertCommand,
    json: bool,
) -> anyhow::Result<()> {
    match cmd {
        GatewayCertCommand::Issue {
            member,
            gateway,
            address,
            csr,
            key_out,
            cert_out,
            days,
        } => {
            let csr_pem = match &csr {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("reading the CSR {}", path.display()))?,
                ),
                None => None,
            };
            if csr_pem.is_none() && key_out.is_none() {
                bail!("without --csr the registry makes a key pair: give --key-out FILE to keep its private key");
            }
            if let Some(path) = &key_out {
                if path.exists() {
                    bail!("{} exists: choose another --key-out", path.display());
                }
            }
            let input = CertificateInput {
                member: Some(member),
                gateway: Some(gateway),
                address: Some(address),
                csr_pem,
                validity_days: Some(days),
            };
            let issued: IssuedCertificateResponse = client
                .write(Method::POST, "/api/v1/gateway-certificates", Some(&input))
                .await?;
            if let (Some(path), Some(key)) = (&key_out, &issued.private_key_pem) {
                write_private(path, key)?;
            }
            if let Some(path) = &cert_out {
                std::fs::write(path, &issued.certificate.certificate_pem)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            let c = &issued.certificate;
            if json {
                // The key went to --key-out; it is not echoed.
                return output::json(c);
            }
            println!(
                "issued certificate {} for {} gateway {}",
                c.serial, c.member, c.gateway
            );
            output::fields(&[
                ("subject", c.subject.clone()),
                ("fingerprint", c.fingerprint_sha256.clone()),
                ("valid", format!("{} to {}", c.not_before, c.not_after)),
                (
                    "certificate",
                    cert_out.map_or("(use --cert-out FILE to save it)".into(), |p| {
                        p.display().to_string()
                    }),
                ),
                (
                    "private key",
                    key_out.map_or("(yours, from the CSR)".into(), |p| p.display().to_string()),
                ),
            ]);
            Ok(())
        }
        GatewayCertCommand::List { member } => {
            let query = query_string(&[("member", member)]);
            let certs: Vec<GatewayCertificate> = client
                .get(&format!("/api/v1/gateway-certificates{query}"))
                .await?;
            if json {
                return output::json(&certs);
            }
            let gateways: Vec<Gateway> = client.get("/api/v1/gateways").await?;
            output::table(
                &[
                    "serial",
                    "member",
                    "gateway",
                    "address",
                    "not after",
                    "status",
                ],
                certs
                    .iter()
                    .map(|c| {
                        let address = gateways
                            .iter()
                            .find(|g| g.member == c.member && g.name == c.gateway)
                            .map_or("-".to_owned(), |g| g.address.clone());
                        vec![
                            c.serial.clone(),
                            c.member.to_string(),
                            c.gateway.clone(),
                            address,
                            c.not_after.clone(),
                            match &c.revoked_at {
                                Some(at) => format!("revoked {at}"),
                                None => "valid".into(),
                            },
                        ]
                    })
                    .collect(),
            );
            Ok(())
        }
        GatewayCertCommand::Revoke { serial, reason } => {
            let cert: GatewayCertificate = client
                .write(
                    Method::POST,
                    &format!("/api/v1/gateway-certificates/{serial}/revoke"),
                    Some(&RevokeInput {
                        reason: Some(reason),
                    }),
                )
                .await?;
            if json {
                return output::json(&cert);
            }
            println!(
                "revoked certificate {} of {} gateway {}",
                cert.serial, cert.member, cert.gateway
            );
            Ok(())
        }
    }
}

async fn token_cmd(client: &RegistryClient, cmd: TokenCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create {
            role,
            member,
            label,
        } => {
            let created: CreatedToken = client
                .write(
                    Method::POST,
                    "/api/v1/tokens",
                    Some(&TokenInput {
                        role: Some(role),
                        member,
                        label,
                    }),
                )
                .await?;
            if json {
                return output::json(&created);
            }
            let who = created
                .info
                .member
                .as_ref()
                .map_or(String::new(), |m| format!(" of {m}"));
            println!(
                "created token {} ({}{who})",
                created.info.id, created.info.role
            );
            println!("{}", created.token);
            eprintln!("keep it safe: it is shown only now");
            Ok(())
        }
        TokenCommand::Revoke { id } => {
            let info: TokenInfo = client
                .write(Method::DELETE, &format!("/api/v1/tokens/{id}"), None::<&()>)
                .await?;
            if json {
                return output::json(&info);
            }
            println!("revoked token {}", info.id);
            Ok(())
        }
        TokenCommand::List => {
            let tokens: Vec<TokenInfo> = client
                .write(Method::GET, "/api/v1/tokens", None::<&()>)
                .await?;
            if json {
                return output::json(&tokens);
            }
            output::table(
                &["id", "role", "member", "label", "created", "revoked"],
                tokens
                    .into_iter()
                    .map(|t| {
                        vec![
                            t.id,
                            t.role,
                            t.member.unwrap_or_else(|| "-".into()),
                            t.label,
                            t.created_at,
                            t.revoked_at.unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect(),
            );
            Ok(())
        }
    }
}

/// `accord gateway serve`: runs until SIGINT/SIGTERM, then stops accepting
/// and closes the audit log.
async fn gateway_serve(config: &std::path::Path) -> anyhow::Result<()> {
    let config = accord_gateway::GatewayConfig::load(config)?;
    let gateway = accord_gateway::Gateway::start(config).await?;
    println!(
        "gateway listening on http://{} (consumer side: X-Road REST r1, /healthz, /metrics); provider side https://{}",
        gateway.consumer_addr, gateway.provider_addr
    );
    shutdown_signal().await;
    gateway.shutdown().await;
    Ok(())
}

/// `accord gateway audit-key`: the key stays on the gateway's machine; the
/// registry gets the public half, which every other gateway then uses to
/// verify this one's receipts and checkpoints.
async fn gateway_audit_key(
    client: &RegistryClient,
    gateway: &str,
    key: &std::path::Path,
    json: bool,
) -> anyhow::Result<()> {
    let (member, name) = gateway
        .rsplit_once('/')
        .with_context(|| format!("{gateway:?} is not INSTANCE/CLASS/CODE/GATEWAY"))?;
    let member: MemberId = member
        .parse()
        .with_context(|| format!("{gateway:?} is not INSTANCE/CLASS/CODE/GATEWAY"))?;
    let created = !key.exists();
    let public = if created {
        accord_ca::SigningKeyFile::generate(key)?
    } else {
        accord_ca::SigningKeyFile::load(key)?.verifying_key()
    };
    let path = format!(
        "/api/v1/gateways/{}/{}/{}/{}/audit-key",
        percent_encoding::utf8_percent_encode(
            member.instance(),
            percent_encoding::NON_ALPHANUMERIC
        ),
        percent_encoding::utf8_percent_encode(member.class(), percent_encoding::NON_ALPHANUMERIC),
        percent_encoding::utf8_percent_encode(member.code(), percent_encoding::NON_ALPHANUMERIC),
        percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC),
    );
    let body = serde_json::json!({ "public_key_pem": accord_ca::public_key_pem(&public) });
    let answer: serde_json::Value = match client.write(Method::PUT, &path, Some(&body)).await {
        Ok(answer) => answer,
        Err(e) => {
            // A key the registry refused is of no use: leave nothing behind.
            if created {
                let _ = std::fs::remove_file(key);
            }
            return Err(e);
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        println!(
            "registered the audit key of {gateway} (key id {}); the key stays in {}",
            accord_audit::key_id(&public),
            key.display()
        );
    }
    Ok(())
}
