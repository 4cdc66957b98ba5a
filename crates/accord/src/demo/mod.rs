//! `accord demo`: a whole federation on one machine, on SQLite, with
//! nothing to install.
//!
//! The federation is described as data (`federation.json`: members at
//! every level of government, in two countries and three sectors, with
//! their subsystems, services and OpenAPI documents) and seeded through the
//! same validated operations the HTTP API runs, so the demo can hold nothing
//! the API would refuse. Later parts of Accord (gateways, agreements,
//! exchanges, the portal) add their own steps to [`seed`] and lines to the
//! banner.

pub mod backends;
pub mod gateways;
pub mod traffic;

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use accord_domain::agreement::lifecycle::Action;
use accord_domain::agreement::AgreementTerms;
use accord_domain::{MemberId, Role};
use accord_registry::api::agreements::{self as agreement_ops, Actor, ReasonInput};
use accord_registry::api::gateways::{issue_certificate, CertificateInput};
use accord_registry::api::keys::{register_key, SigningKeyInput};
use accord_registry::api::members::{add_member, ContactInput, MemberInput};
use accord_registry::api::services::{add_service, add_subsystem, ServiceInput, SubsystemInput};
use accord_registry::api::tokens::{create_token, TokenInput};
use accord_registry::error::ApiError;
use accord_registry::{write_secret_file, InitOptions, Registry, RegistryPaths};

use crate::cli::DemoArgs;

const FEDERATION: &str = include_str!("federation.json");
const AGREEMENTS: &str = include_str!("agreements.json");

/// One demo agreement and how far its lifecycle goes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoAgreement {
    pub id: String,
    /// `active`, `proposed` or `suspended`.
    pub state: String,
    /// For a proposed agreement: the parties that already signed.
    #[serde(default)]
    pub signed_by: Vec<String>,
    /// For a suspended one: why.
    pub reason: Option<String>,
    pub terms: AgreementTerms,
}

pub fn agreements() -> anyhow::Result<Vec<DemoAgreement>> {
    serde_json::from_str(AGREEMENTS).context("the built-in demo agreements are malformed")
}

/// The demo federation, as `federation.json` describes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoFederation {
    pub instance: String,
    pub name: String,
    pub members: Vec<DemoMember>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoMember {
    pub class: String,
    pub code: String,
    pub name: String,
    pub level: String,
    pub country: String,
    pub sector: String,
    pub parent: Option<String>,
    pub contact: Option<ContactInput>,
    pub subsystems: Vec<DemoSubsystem>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoSubsystem {
    pub code: String,
    pub name: String,
    pub services: Vec<DemoService>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoService {
    pub code: String,
    pub version: Option<String>,
    pub title: String,
    pub description: String,
    pub personal_data: bool,
    pub data_categories: Vec<String>,
    pub openapi: serde_json::Value,
}

pub fn federation() -> anyhow::Result<DemoFederation> {
    serde_json::from_str(FEDERATION).context("the built-in demo federation is malformed")
}

/// What seeding made, for the banner.
#[derive(Debug, Default)]
pub struct Seeded {
    pub members: usize,
    pub subsystems: usize,
    pub services: usize,
    pub certificates: usize,
    /// Member administrator tokens written to files: (member, file).
    pub member_tokens: Vec<(MemberId, PathBuf)>,
    /// Agreements by the state they were left in.
    pub agreements: Vec<(String, String)>,
    /// Members' signing keys: (member, file).
    pub signing_keys: Vec<(MemberId, PathBuf)>,
}

fn demo_error(what: String) -> impl FnOnce(ApiError) -> anyhow::Error {
    move |e| anyhow::anyhow!("demo seed: {what}: {}", e.detail)
}

/// Fills a new registry with the demo federation.
/// `first_gateway_port`: the provider side of the first gateway; the
/// others follow (0: any free port).
pub async fn seed(
    registry: &Registry,
    dir: &Path,
    spec: &DemoFederation,
    first_gateway_port: u16,
) -> anyhow::Result<Seeded> {
    let admin = Role::FederationAdmin;
    let mut seeded = Seeded::default();
    let gateways_dir = dir.join("gateways");
    let tokens_dir = dir.join("tokens");
    for d in [&gateways_dir, &tokens_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut gateway_port = first_gateway_port;
    for m in &spec.members {
        let id = format!("{}/{}/{}", spec.instance, m.class, m.code);
        let input = MemberInput {
            id: Some(id.clone()),
            name: Some(m.name.clone()),
            level: Some(m.level.clone()),
            country: Some(m.country.clone()),
            sector: Some(m.sector.clone()),
            parent: m.parent.clone(),
            contact: m.contact.clone(),
        };
        let member = add_member(registry, &admin, &input)
            .await
            .map_err(demo_error(format!("member {id}")))?;
        seeded.members += 1;
        for s in &m.subsystems {
            let subsystem = add_subsystem(
                registry,
                &admin,
                &member.id,
                &SubsystemInput {
                    code: Some(s.code.clone()),
                    name: Some(s.name.clone()),
                },
            )
            .await
            .map_err(demo_error(format!("subsystem {id}/{}", s.code)))?;
            seeded.subsystems += 1;
            for svc in &s.services {
                add_service(
                    registry,
                    &admin,
                    &subsystem.id,
                    &ServiceInput {
                        code: Some(svc.code.clone()),
                        version: svc.version.clone(),
                        title: Some(svc.title.clone()),
                        description: Some(svc.description.clone()),
                        personal_data: Some(svc.personal_data),
                        data_categories: svc.data_categories.clone(),
                        openapi: Some(svc.openapi.clone()),
                    },
                )
                .await
                .map_err(demo_error(format!("service {}/{}", subsystem.id, svc.code)))?;
                seeded.services += 1;
            }
        }
        if !m.subsystems.is_empty() {
            // Every member that runs systems gets a gateway certificate,
            // with its key kept beside the demo (owner-only).
            let port = if first_gateway_port == 0 {
                gateways::reserve_port()?
            } else {
                gateway_port
            };
            let issued = issue_certificate(
                registry,
                &admin,
                &CertificateInput {
                    member: Some(id.clone()),
                    gateway: Some("gw1".into()),
                    address: Some(format!("https://127.0.0.1:{port}")),
                    csr_pem: None,
                    validity_days: Some(365),
                },
            )
            .await
            .map_err(demo_error(format!("gateway certificate of {id}")))?;
            gateway_port += 1;
            let stem = id.replace('/', "_");
            std::fs::write(
                gateways_dir.join(format!("{stem}_gw1.crt")),
                &issued.certificate.certificate_pem,
            )?;
            if let Some(key) = &issued.private_key_pem {
                write_secret_file(&gateways_dir.join(format!("{stem}_gw1.key")), key)?;
            }
            seeded.certificates += 1;
        }
        if m.class == "MUN" || m.sector == "civil-society" || m.code == "70000006" {
            // Member administrators, to show what a scoped token may do.
            let created = create_token(
                registry,
                &admin,
                &TokenInput {
                    role: Some("member-admin".into()),
                    member: Some(id.clone()),
                    label: Some(format!("demo administrator of {}", m.name)),
                },
            )
            .await
            .map_err(demo_error(format!("token of {id}")))?;
            let file = tokens_dir.join(format!("{}.token", id.replace('/', "_")));
            write_secret_file(&file, &created.token)?;
            seeded.member_tokens.push((member.id.clone(), file));
        }
    }
    seed_agreements(registry, dir, &mut seeded).await?;
    Ok(seeded)
}

/// The demo's agreements, taken as far through their lifecycle as each
/// says: every party gets a signing key (kept in an owner-only file), then
/// drafts, proposes and signs exactly as the CLI would.
async fn seed_agreements(
    registry: &Registry,
    dir: &Path,
    seeded: &mut Seeded,
) -> anyhow::Result<()> {
    let keys_dir = dir.join("signing-keys");
    std::fs::create_dir_all(&keys_dir)
        .with_context(|| format!("creating {}", keys_dir.display()))?;
    let demo = agreements()?;
    // Valid from the start of this year for four years, whenever the demo runs.
    let now = time::OffsetDateTime::now_utc();
    let start = time::Date::from_calendar_date(now.year(), time::Month::January, 1)
        .map(|d| d.midnight().assume_utc())
        .context("computing the demo's validity")?;
    let end = time::Date::from_calendar_date(now.year() + 4, time::Month::January, 1)
        .map(|d| d.midnight().assume_utc())
        .context("computing the demo's validity")?;
    let mut keys: Vec<(MemberId, ed25519_dalek::SigningKey)> = Vec::new();
    for agreement in &demo {
        for party in &agreement.terms.parties {
            if keys.iter().any(|(m, _)| m == &party.member) {
                continue;
            }
            let file = keys_dir.join(format!(
                "{}.key",
                party.member.to_string().replace('/', "_")
            ));
            let public = accord_ca::SigningKeyFile::generate(&file)?;
            let role = Role::MemberAdmin {
                member: party.member.clone(),
            };
            register_key(
                registry,
                &role,
                &party.member,
                &SigningKeyInput {
                    public_key_pem: Some(accord_ca::public_key_pem(&public)),
                },
            )
            .await
            .map_err(demo_error(format!("signing key of {}", party.member)))?;
            keys.push((
                party.member.clone(),
                accord_ca::SigningKeyFile::load(&file)?,
            ));
            seeded.signing_keys.push((party.member.clone(), file));
        }
    }
    let actor = |member: &MemberId| Actor {
        role: Role::MemberAdmin {
            member: member.clone(),
        },
        name: format!("accord demo, for {member}"),
    };
    for agreement in demo {
        let mut terms = agreement.terms.clone();
        terms.validity.start = start;
        terms.validity.end = Some(end);
        let first = terms
            .parties
            .first()
            .map(|p| p.member.clone())
            .context("a demo agreement has no parties")?;
        let what = format!("agreement {}", agreement.id);
        let signers: Vec<MemberId> = if agreement.state == "proposed" {
            agreement
                .signed_by
                .iter()
                .map(|m| m.parse())
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("demo {what}: {e}"))?
        } else {
            terms.parties.iter().map(|p| p.member.clone()).collect()
        };
        let signers = signers
            .into_iter()
            .map(|member| {
                keys.iter()
                    .find(|(m, _)| *m == member)
                    .cloned()
                    .context("a demo signer has no key")
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let established = agreement_ops::establish(registry, &agreement.id, terms, &signers)
            .await
            .map_err(demo_error(what.clone()))?;
        if agreement.state == "suspended" {
            let reason = ReasonInput {
                reason: agreement.reason.clone(),
            };
            agreement_ops::change_state(
                registry,
                &actor(&first),
                &established.id,
                Action::Suspend,
                &reason,
            )
            .await
            .map_err(demo_error(format!("suspending {what}")))?;
        }
        seeded.agreements.push((agreement.id, agreement.state));
    }
    Ok(())
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let (dir, _temporary) = match &args.dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let temp = tempfile::Builder::new()
                .prefix("accord-demo-")
                .tempdir()
                .context("creating a temporary directory for the demo")?;
            (temp.path().to_owned(), Some(temp))
        }
    };
    let paths = RegistryPaths::new(&dir, None);
    let (registry, seeded) = if paths.keys_dir().exists() {
        println!("reusing the demo federation in {}", dir.display());
        (Registry::open(&paths).await?, None)
    } else {
        let spec = federation()?;
        let options = InitOptions {
            instance: spec.instance.clone(),
            name: spec.name.clone(),
            member_classes: accord_registry::DEFAULT_MEMBER_CLASSES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let (registry, _admin) = Registry::init(&paths, &options).await?;
        let seeded = seed(&registry, &dir, &spec, args.gateway_ports).await?;
        (registry, Some(seeded))
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "listening on {}: is another registry or demo running? try --listen 127.0.0.1:0",
                args.listen
            )
        })?;
    let url = format!("http://{}", listener.local_addr()?);
    // The registry serves from now on: the gateways follow it.
    let (stop_registry, registry_stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = {
        let registry = registry.clone();
        tokio::spawn(async move {
            registry
                .serve(listener, async {
                    let _ = registry_stopped.await;
                })
                .await
        })
    };
    let exchanges = if args.registry_only {
        None
    } else {
        Some(start_exchanges(&registry, &url, &dir, &paths, &args).await?)
    };
    gateways::release_ports();
    banner(
        &registry,
        &url,
        &dir,
        &paths,
        seeded.as_ref(),
        args.dir.is_none(),
    )
    .await?;
    if let Some((gateways, lines)) = &exchanges {
        exchanges_banner(&url, gateways, lines);
    }
    println!();
    println!("The API is described at {url}/api/openapi.json. Stop with Ctrl-C.");
    crate::commands::shutdown_signal().await;
    if let Some((gateways, _)) = exchanges {
        gateways.shutdown().await;
    }
    let _ = stop_registry.send(());
    serving.await.context("the registry task")??;
    Ok(())
}

/// Starts the backends and the gateways and sends the scripted exchanges;
/// returns the gateways and a line per exchange.
async fn start_exchanges(
    registry: &Registry,
    url: &str,
    dir: &Path,
    paths: &RegistryPaths,
    args: &DemoArgs,
) -> anyhow::Result<(gateways::DemoGateways, Vec<String>)> {
    let spec = federation()?;
    let script = traffic::script()?;
    let down = traffic::backend_down(&script);
    let backends = backends::start(&spec).await?;
    let consumer_base = if args.gateway_ports == 0 {
        0
    } else {
        args.gateway_ports.saturating_add(100)
    };
    let gateways = gateways::start(
        registry,
        url,
        dir,
        paths,
        &spec,
        consumer_base,
        &down,
        backends,
    )
    .await?;
    let mut lines = Vec::new();
    let summary = traffic::run(
        &script,
        |client| gateways.consumer_url(client),
        |exchange, outcome| {
            let status = outcome.status.map_or("---".to_owned(), |s| s.to_string());
            let mut line = format!(
                "  {status} {:<34} {} ({} ms)",
                outcome.observed.to_string(),
                exchange.description,
                outcome.elapsed.as_millis()
            );
            if let Some(agreement) = &outcome.agreement {
                line.push_str(&format!("\n        {agreement}"));
            }
            if let (Some(error_type), Some(message)) = (&outcome.error_type, &outcome.error_message)
            {
                line.push_str(&format!("\n        {error_type}: {message}"));
            }
            if let Some(why) = &outcome.mismatch {
                line.push_str(&format!("  (unexpected: {why})"));
            }
            lines.push(line);
        },
    )
    .await?;
    lines.push(format!(
        "  {} exchanges: {} answered by the provider, {} denied by the agreements, {} failed{}",
        summary.total,
        summary.permitted,
        summary.denied,
        summary.failed,
        if summary.mismatched == 0 {
            String::new()
        } else {
            format!(", {} not as the script expects", summary.mismatched)
        }
    ));
    Ok((gateways, lines))
}

/// The banner's part about gateways: where they listen, what flowed, a
/// `curl` through two of them, and how to check their logs.
fn exchanges_banner(url: &str, gateways: &gateways::DemoGateways, lines: &[String]) {
    println!();
    println!("Gateways (consumer side: X-Road REST r1, /healthz, /metrics):");
    for g in &gateways.gateways {
        println!(
            "  {:<20} http://{}   provider side https://{}",
            g.member.to_string(),
            g.gateway.consumer_addr,
            g.gateway.provider_addr
        );
    }
    let services = gateways.backends.services().count();
    let servers: Vec<String> = gateways
        .backends
        .servers()
        .map(|(_, address)| address.port().to_string())
        .collect();
    println!(
        "  backends: {services} services' APIs on 127.0.0.1, ports {}",
        servers.join(", ")
    );
    println!();
    println!("Exchanges sent through the gateways:");
    for line in lines {
        println!("{line}");
    }
    let tallinn = gateways
        .gateways
        .iter()
        .find(|g| g.member.to_string() == "DEMO/MUN/75000001");
    if let Some(t) = tallinn {
        let gw = format!("http://{}", t.gateway.consumer_addr);
        println!();
        println!("Through two gateways (Tallinn's and the Population Register's), permitted:");
        println!(
            "  curl -i -H 'X-Road-Client: DEMO/MUN/75000001/social-benefits' \\\n      \
             -H 'X-Accord-Purpose: social-benefit-eligibility' -H 'X-Accord-Subject: 38001010008' \\\n      \
             {gw}/r1/DEMO/GOV/70000002/population-register/residence/v1/persons/38001010008/residence"
        );
        println!("Denied (no purpose given), and the answer says why:");
        println!(
            "  curl -i -H 'X-Road-Client: DEMO/MUN/75000001/social-benefits' -H 'X-Accord-Subject: 38001010008' \\\n      \
             {gw}/r1/DEMO/GOV/70000002/population-register/residence/v1/persons/38001010008/residence"
        );
        println!("  curl -s {gw}/healthz");
    }
    if let Some(g) = gateways.gateways.first() {
        println!();
        println!("Verify a gateway's audit log against the registry's checkpoints:");
        println!(
            "  accord --registry {url} audit verify --database {} --log {}/gw1",
            g.audit_database, g.member
        );
        println!(
            "  accord --registry {url} audit checkpoints --log {}/gw1",
            g.member
        );
        println!("Each gateway's configuration: {}", g.config_file.display());
    }
}

async fn banner(
    registry: &Registry,
    url: &str,
    dir: &Path,
    paths: &RegistryPaths,
    seeded: Option<&Seeded>,
    temporary: bool,
) -> anyhow::Result<()> {
    let f = &registry.federation;
    let (members, subsystems, services) = registry.store.counts().await?;
    println!("Accord demo federation {} — {}", f.instance, f.name);
    println!("registry listening on {url}");
    println!();
    println!("  catalogue   {members} members, {subsystems} subsystems, {services} services");
    if let Some(s) = seeded {
        println!(
            "  gateways    {} certificates issued by the federation CA (keys in {})",
            s.certificates,
            dir.join("gateways").display()
        );
        let by_state = |state: &str| s.agreements.iter().filter(|(_, st)| st == state).count();
        println!(
            "  agreements  {} active, {} proposed and awaiting a signature, {} suspended",
            by_state("active"),
            by_state("proposed"),
            by_state("suspended")
        );
        println!(
            "  signing     agreement-signing keys of {} members in {}",
            s.signing_keys.len(),
            dir.join("signing-keys").display()
        );
    }
    println!(
        "  data        {}{}",
        dir.display(),
        if temporary { " (removed at exit)" } else { "" }
    );
    println!("  admin token {}", paths.admin_token_file().display());
    println!();
    println!("Try:");
    println!("  curl -s {url}/api/v1/federation");
    println!("  curl -s '{url}/api/v1/services?level=national&q=residence'");
    println!("  curl -s {url}/api/v1/openapi/DEMO/GOV/70000002/population-register/residence/v1");
    println!("  accord --registry {url} member list");
    println!("  accord --registry {url} member list --level local --country EE");
    println!("  accord --registry {url} service list --q health");
    println!("  accord --registry {url} member show DEMO/GOV/70000002");
    println!("  accord --registry {url} gateway-cert list");
    println!("  accord --registry {url} agreement list");
    println!("  accord --registry {url} agreement show tallinn-residence-benefits");
    println!(
        "  accord --registry {url} agreement explain --client DEMO/MUN/75000001/social-benefits \\\n      \
         --service DEMO/GOV/70000002/population-register/residence/v1 --path /persons/38001010000/residence \\\n      \
         --purpose social-benefit-eligibility --subject"
    );
    println!(
        "  accord --registry {url} agreement export ee-fi-cross-border-residence --format odrl"
    );
    if let Some(s) = seeded {
        let sib_key = s
            .signing_keys
            .iter()
            .find(|(m, _)| m.code() == "70000006")
            .map(|(_, f)| f.display().to_string());
        let sib_token = dir.join("tokens").join("DEMO_GOV_70000006.token");
        if let Some(key) = sib_key {
            println!();
            println!("The food-bank agreement awaits the Social Insurance Board's signature:");
            println!(
                "  accord --registry {url} --token-file {} agreement sign food-bank-eligibility --member DEMO/GOV/70000006 --key {key}",
                sib_token.display()
            );
        }
        if let Some((member, file)) = s.member_tokens.iter().find(|(m, _)| m.class() == "MUN") {
            println!();
            println!("As {member}'s administrator (a token scoped to that member):");
            println!(
                "  accord --registry {url} --token-file {} subsystem add {member}/open-data --name 'Open data'",
                file.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_spans_levels_sectors_and_borders() {
        let spec = federation().unwrap();
        let has = |f: &dyn Fn(&DemoMember) -> bool| spec.members.iter().any(f);
        for level in ["local", "regional", "national", "supranational"] {
            assert!(has(&|m| m.level == level), "no {level} member");
        }
        for sector in ["public", "private", "civil-society"] {
            assert!(has(&|m| m.sector == sector), "no {sector} member");
        }
        assert!(has(&|m| m.country != "EE"), "no cross-border member");
        assert!(spec.members.iter().filter(|m| m.class == "MUN").count() >= 2);
        let services: usize = spec
            .members
            .iter()
            .flat_map(|m| &m.subsystems)
            .map(|s| s.services.len())
            .sum();
        assert!(services >= 10, "only {services} services");
    }
}
