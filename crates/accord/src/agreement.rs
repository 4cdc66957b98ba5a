//! Agreement commands. Signing happens here, on the member's machine: the
//! CLI fetches the proposed version, recomputes its digest from the terms
//! it is shown (refusing if the registry's digest differs), signs with the
//! member's key file and sends only the signature. `verify` likewise checks
//! every signature locally instead of trusting the registry's word.

use std::path::Path;

use anyhow::{bail, Context};
use reqwest::Method;

use accord_ca::SigningKeyFile;
use accord_domain::agreement::canonical;
use accord_domain::agreement::{AgreementTerms, Contribution};
use accord_registry::api::agreements::{
    AgreementSummary, AgreementView, DraftInput, HistoryView, ImportInput, ReasonInput,
    SignatureInput, TermsInput, VersionView,
};
use accord_registry::api::decisions::{DecisionInput, DecisionView};
use accord_registry::api::federation::FederationInfo;
use accord_registry::api::keys::{Purpose, PurposeInput, SigningKey, SigningKeyInput};

use crate::cli::{AgreementCommand, ExportFormat, KeyCommand, PurposeCommand};
use crate::client::{query_string, RegistryClient};
use crate::commands::parse_member;
use crate::output;

fn read_terms(path: &Path) -> anyhow::Result<AgreementTerms> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the terms file {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid agreement terms", path.display()))
}

fn agreement_path(id: &str) -> String {
    format!("/api/v1/agreements/{id}")
}

/// The requested version, or the latest one.
async fn version_of(
    client: &RegistryClient,
    id: &str,
    version: Option<u32>,
) -> anyhow::Result<u32> {
    match version {
        Some(v) => Ok(v),
        None => {
            let view: AgreementView = client.get(&agreement_path(id)).await?;
            Ok(view.latest)
        }
    }
}

async fn fetch_version(
    client: &RegistryClient,
    id: &str,
    version: u32,
) -> anyhow::Result<VersionView> {
    client
        .get(&format!("{}/versions/{version}", agreement_path(id)))
        .await
}

fn print_version(v: &VersionView) {
    let t = &v.terms;
    output::fields(&[
        ("agreement", format!("{} version {}", v.id, v.version)),
        ("title", t.title.clone()),
        (
            "state",
            match &v.state_reason {
                Some(r) => format!("{} ({r})", v.state.as_str()),
                None => v.state.as_str().to_owned(),
            },
        ),
        (
            "supersedes",
            v.supersedes.map_or("-".into(), |s| format!("version {s}")),
        ),
        (
            "digest",
            v.digest
                .clone()
                .unwrap_or_else(|| "- (not proposed yet)".into()),
        ),
        (
            "valid",
            format!(
                "{} to {}",
                accord_store::format_time(t.validity.start),
                t.validity
                    .end
                    .map_or("open-ended".into(), accord_store::format_time)
            ),
        ),
    ]);
    println!("\nparties:");
    for p in &t.parties {
        let roles: Vec<&str> = p.roles.iter().map(|r| r.as_str()).collect();
        let signed = v
            .signatures
            .iter()
            .find(|s| s.member == p.member)
            .map_or(String::new(), |s| {
                format!("  signed {} (key {})", s.signed_at, s.key_id)
            });
        println!("  {}  {}{signed}", p.member, roles.join(", "));
    }
    println!("\ngrants:");
    for g in &t.grants {
        let purposes = g.purposes.join(", ");
        let ops: Vec<String> = g
            .operations
            .iter()
            .map(|o| format!("{} {}", o.methods.join("|"), o.path))
            .collect();
        println!(
            "  {}: purposes {purposes}; operations {}",
            g.id,
            ops.join("; ")
        );
        let consumers: Vec<String> = g.consumers.iter().map(ToString::to_string).collect();
        println!("    consumers {}", consumers.join(", "));
        for q in &g.quotas {
            println!("    quota {} per {}", q.limit, q.per.as_str());
        }
        if g.data_subject_required {
            println!("    each request must name a data subject");
        }
    }
    if !t.commitments.is_empty() {
        println!("\ncommitments:");
        for c in &t.commitments {
            let what = match &c.contribution {
                Contribution::Budget { amount, currency } => format!("budget {amount} {currency}"),
                Contribution::Staff { fte } => format!("staff {fte} FTE"),
                Contribution::Ict { description } => format!("ICT: {description}"),
                Contribution::Data { description } => format!("data: {description}"),
            };
            println!(
                "  {}: {what}  ({} to {})",
                c.party, c.period.from, c.period.until
            );
        }
    }
    if !t.indicators.is_empty() {
        println!("\nindicators:");
        for i in &t.indicators {
            println!(
                "  {}: {} — baseline {} {}, target {} {}",
                i.id, i.name, i.baseline, i.unit, i.target, i.unit
            );
        }
    }
    if !v.awaiting.is_empty() {
        let awaiting: Vec<String> = v.awaiting.iter().map(ToString::to_string).collect();
        println!("\nawaiting signatures of: {}", awaiting.join(", "));
    }
}

pub async fn run(client: &RegistryClient, cmd: AgreementCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        AgreementCommand::Draft { id, terms } => {
            let input = DraftInput {
                id,
                terms: read_terms(&terms)?,
            };
            let view: VersionView = client
                .write(Method::POST, "/api/v1/agreements", Some(&input))
                .await?;
            if json {
                return output::json(&view);
            }
            println!(
                "drafted agreement {} version {}; next: accord agreement propose {}",
                view.id, view.version, view.id
            );
        }
        AgreementCommand::Show { id, version } => {
            let view = match version {
                Some(v) => fetch_version(client, &id, v).await?,
                None => {
                    client
                        .get::<AgreementView>(&agreement_path(&id))
                        .await?
                        .current
                }
            };
            if json {
                return output::json(&view);
            }
            print_version(&view);
        }
        AgreementCommand::List { member, state } => {
            let query = query_string(&[("member", member), ("state", state)]);
            let list: Vec<AgreementSummary> =
                client.get(&format!("/api/v1/agreements{query}")).await?;
            if json {
                return output::json(&list);
            }
            output::table(
                &["id", "version", "state", "title", "parties"],
                list.iter()
                    .map(|a| {
                        vec![
                            a.id.to_string(),
                            a.version.to_string(),
                            a.state.as_str().to_owned(),
                            a.title.clone(),
                            a.parties.len().to_string(),
                        ]
                    })
                    .collect(),
            );
        }
        AgreementCommand::Edit { id, version, terms } => {
            let version = version_of(client, &id, version).await?;
            let input = TermsInput {
                terms: read_terms(&terms)?,
            };
            let view: VersionView = client
                .write(
                    Method::PUT,
                    &format!("{}/versions/{version}", agreement_path(&id)),
                    Some(&input),
                )
                .await?;
            if json {
                return output::json(&view);
            }
            println!("updated draft {} version {}", view.id, view.version);
        }
        AgreementCommand::Propose { id, version } => {
            let version = version_of(client, &id, version).await?;
            let view: VersionView = client
                .write(
                    Method::POST,
                    &format!("{}/versions/{version}/propose", agreement_path(&id)),
                    None::<&()>,
                )
                .await?;
            if json {
                return output::json(&view);
            }
            println!(
                "proposed {} version {} for signature\ndigest {}",
                view.id,
                view.version,
                view.digest.clone().unwrap_or_default()
            );
        }
        AgreementCommand::Sign {
            id,
            member,
            key,
            version,
        } => {
            let member = parse_member(&member)?;
            let federation: FederationInfo = client.get("/api/v1/federation").await?;
            let version = version_of(client, &id, version).await?;
            let view = fetch_version(client, &id, version).await?;
            let digest = canonical::digest(
                &federation.instance,
                &view.id,
                view.version,
                view.supersedes,
                &view.terms,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            match &view.digest {
                None => bail!("{id} version {version} is {}: only a proposed version can be signed", view.state.as_str()),
                Some(d) if d != &digest => bail!(
                    "the registry says the digest is {d}, but the terms it shows digest to {digest}: refusing to sign"
                ),
                Some(_) => {}
            }
            let signing_key = SigningKeyFile::load(&key)?;
            let input = SignatureInput {
                member: member.to_string(),
                key_id: canonical::key_id(&signing_key.verifying_key()),
                signature: canonical::sign(&signing_key, &digest),
            };
            let signed: VersionView = client
                .write(
                    Method::POST,
                    &format!("{}/versions/{version}/signatures", agreement_path(&id)),
                    Some(&input),
                )
                .await?;
            if json {
                return output::json(&signed);
            }
            println!("signed {id} version {version} as {member} (digest {digest})");
            if signed.state.as_str() == "active" {
                println!("every party has signed: the agreement is active");
            } else {
                let awaiting: Vec<String> =
                    signed.awaiting.iter().map(ToString::to_string).collect();
                println!("awaiting: {}", awaiting.join(", "));
            }
        }
        AgreementCommand::Verify { id, version } => {
            return verify(client, &id, version, json).await
        }
        AgreementCommand::Amend { id, terms } => {
            let input = TermsInput {
                terms: read_terms(&terms)?,
            };
            let view: VersionView = client
                .write(
                    Method::POST,
                    &format!("{}/amend", agreement_path(&id)),
                    Some(&input),
                )
                .await?;
            if json {
                return output::json(&view);
            }
            println!(
                "drafted version {} of {}, amending version {}; the current version stays in force until it is signed by every party",
                view.version,
                view.id,
                view.supersedes.unwrap_or_default()
            );
        }
        AgreementCommand::Suspend { id, reason } => {
            return change(client, &id, "suspend", reason, json).await
        }
        AgreementCommand::Resume { id, reason } => {
            return change(client, &id, "resume", reason, json).await
        }
        AgreementCommand::Terminate { id, reason } => {
            return change(client, &id, "terminate", reason, json).await
        }
        AgreementCommand::History { id } => {
            let history: HistoryView = client
                .get(&format!("{}/history", agreement_path(&id)))
                .await?;
            if json {
                return output::json(&history);
            }
            output::table(
                &["at", "version", "action", "state", "by", "detail"],
                history
                    .events
                    .iter()
                    .map(|e| {
                        vec![
                            e.at.clone(),
                            e.version.to_string(),
                            e.action.clone(),
                            match (&e.from_state, &e.to_state) {
                                (Some(a), Some(b)) if a != b => format!("{a} → {b}"),
                                (_, Some(b)) => b.clone(),
                                _ => "-".into(),
                            },
                            e.actor.clone(),
                            e.detail.clone(),
                        ]
                    })
                    .collect(),
            );
        }
        AgreementCommand::Export {
            id,
            format,
            version,
        } => {
            let version = version_of(client, &id, version).await?;
            let value: serde_json::Value = match format {
                ExportFormat::Odrl => {
                    client
                        .get(&format!("{}/versions/{version}/odrl", agreement_path(&id)))
                        .await?
                }
                ExportFormat::Json => {
                    serde_json::to_value(fetch_version(client, &id, version).await?.terms)?
                }
            };
            output::json(&value)?;
        }
        AgreementCommand::Import { offer, id } => {
            let text = std::fs::read_to_string(&offer)
                .with_context(|| format!("reading the offer {}", offer.display()))?;
            let offer: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", offer.display()))?;
            let view: VersionView = client
                .write(
                    Method::POST,
                    "/api/v1/agreements/import-odrl",
                    Some(&ImportInput { id, offer }),
                )
                .await?;
            if json {
                return output::json(&view);
            }
            println!(
                "imported the offer as draft {} version {}",
                view.id, view.version
            );
        }
        AgreementCommand::Explain {
            client: consumer,
            service,
            method,
            path,
            purpose,
            subject,
            at,
        } => {
            let input = DecisionInput {
                client: Some(consumer),
                service: Some(service),
                method: Some(method),
                path: Some(path),
                purpose,
                data_subject: subject,
                at,
            };
            let decision: DecisionView = client
                .write_public(Method::POST, "/api/v1/decisions", &input)
                .await?;
            if json {
                return output::json(&decision);
            }
            match decision.decision.as_str() {
                "permit" => println!("PERMIT: {}", decision.explanation),
                _ => println!(
                    "DENY ({}): {}",
                    decision.reason.map(|r| r.code()).unwrap_or("unknown"),
                    decision.explanation
                ),
            }
            println!(
                "({} agreements in force; {})",
                decision.agreements_in_force, decision.note
            );
        }
    }
    Ok(())
}

async fn change(
    client: &RegistryClient,
    id: &str,
    action: &str,
    reason: String,
    json: bool,
) -> anyhow::Result<()> {
    let view: VersionView = client
        .write(
            Method::POST,
            &format!("{}/{action}", agreement_path(id)),
            Some(&ReasonInput {
                reason: Some(reason),
            }),
        )
        .await?;
    if json {
        return output::json(&view);
    }
    println!(
        "agreement {} version {} is now {}",
        view.id,
        view.version,
        view.state.as_str()
    );
    Ok(())
}

async fn verify(
    client: &RegistryClient,
    id: &str,
    version: Option<u32>,
    json: bool,
) -> anyhow::Result<()> {
    let federation: FederationInfo = client.get("/api/v1/federation").await?;
    let version = version_of(client, id, version).await?;
    let view = fetch_version(client, id, version).await?;
    let digest = canonical::digest(
        &federation.instance,
        &view.id,
        view.version,
        view.supersedes,
        &view.terms,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut rows = Vec::new();
    let mut all_valid = view.digest.as_deref() == Some(digest.as_str());
    let mut report = Vec::new();
    for party in &view.terms.parties {
        let signature = view.signatures.iter().find(|s| s.member == party.member);
        let verdict = match signature {
            None => "not signed".to_owned(),
            Some(s) => {
                let keys: Vec<SigningKey> = client
                    .get(&format!(
                        "/api/v1/members/{}/signing-keys",
                        party.member.to_encoded()
                    ))
                    .await?;
                match keys.iter().find(|k| k.key_id == s.key_id) {
                    None => format!("key {} is not registered for {}", s.key_id, party.member),
                    Some(k) => match accord_ca::parse_public_key_pem(&k.public_key_pem) {
                        Err(e) => format!("key {} is unreadable: {e}", k.key_id),
                        Ok(public) => match canonical::verify(&public, &digest, &s.signature) {
                            Err(e) => e.detail,
                            Ok(()) => match &k.revoked_at {
                                Some(at) => format!("key {} was revoked at {at}", k.key_id),
                                None => "valid".to_owned(),
                            },
                        },
                    },
                }
            }
        };
        all_valid &= verdict == "valid";
        report.push(serde_json::json!({"member": party.member, "result": verdict}));
        rows.push(vec![
            party.member.to_string(),
            signature.map_or("-".into(), |s| s.key_id.clone()),
            verdict,
        ]);
    }
    if json {
        output::json(&serde_json::json!({
            "agreement": view.id, "version": view.version, "digest": digest,
            "recorded_digest": view.digest, "valid": all_valid, "parties": report,
        }))?;
    } else {
        println!(
            "{} version {}: digest of the terms {digest}",
            view.id, view.version
        );
        if view.digest.as_deref() != Some(digest.as_str()) {
            println!(
                "the registry recorded digest {}: the terms changed after proposal",
                view.digest.as_deref().unwrap_or("(none)")
            );
        }
        output::table(&["party", "key", "signature"], rows);
    }
    if !all_valid {
        bail!("{id} version {version} is not signed validly by every party");
    }
    if !json {
        println!("every party signed these terms with a valid key");
    }
    Ok(())
}

pub async fn key(client: &RegistryClient, cmd: KeyCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        KeyCommand::Generate { out } => {
            let public = SigningKeyFile::generate(&out)?;
            let key_id = canonical::key_id(&public);
            if json {
                return output::json(
                    &serde_json::json!({"key_id": key_id, "file": out, "public_key_pem": accord_ca::public_key_pem(&public)}),
                );
            }
            println!(
                "wrote signing key {key_id} to {} (owner-only)",
                out.display()
            );
            println!(
                "next: accord member key register MEMBER --key {}",
                out.display()
            );
        }
        KeyCommand::Register { member, key } => {
            let member = parse_member(&member)?;
            let signing_key = SigningKeyFile::load(&key)?;
            let input = SigningKeyInput {
                public_key_pem: Some(accord_ca::public_key_pem(&signing_key.verifying_key())),
            };
            let registered: SigningKey = client
                .write(
                    Method::POST,
                    &format!("/api/v1/members/{}/signing-keys", member.to_encoded()),
                    Some(&input),
                )
                .await?;
            if json {
                return output::json(&registered);
            }
            println!(
                "registered signing key {} for {}",
                registered.key_id, registered.member
            );
        }
        KeyCommand::List { member } => {
            let member = parse_member(&member)?;
            let keys: Vec<SigningKey> = client
                .get(&format!(
                    "/api/v1/members/{}/signing-keys",
                    member.to_encoded()
                ))
                .await?;
            if json {
                return output::json(&keys);
            }
            output::table(
                &["key id", "registered", "revoked"],
                keys.into_iter()
                    .map(|k| {
                        vec![
                            k.key_id,
                            k.created_at,
                            k.revoked_at.unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect(),
            );
        }
        KeyCommand::Revoke { key_id } => {
            let key: SigningKey = client
                .write(
                    Method::POST,
                    &format!("/api/v1/signing-keys/{key_id}/revoke"),
                    None::<&()>,
                )
                .await?;
            if json {
                return output::json(&key);
            }
            println!("revoked signing key {} of {}", key.key_id, key.member);
        }
    }
    Ok(())
}

pub async fn purpose(
    client: &RegistryClient,
    cmd: PurposeCommand,
    json: bool,
) -> anyhow::Result<()> {
    match cmd {
        PurposeCommand::List => {
            let purposes: Vec<Purpose> = client.get("/api/v1/purposes").await?;
            if json {
                return output::json(&purposes);
            }
            output::table(
                &["code", "description"],
                purposes
                    .into_iter()
                    .map(|p| vec![p.code, p.description])
                    .collect(),
            );
        }
        PurposeCommand::Add { code, description } => {
            let input = PurposeInput {
                code: Some(code),
                description: Some(description),
            };
            let purpose: Purpose = client
                .write(Method::POST, "/api/v1/purposes", Some(&input))
                .await?;
            if json {
                return output::json(&purpose);
            }
            println!("added purpose {}", purpose.code);
        }
    }
    Ok(())
}
