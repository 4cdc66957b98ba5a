//! `accord audit`: an auditor's view of a gateway's log. `verify` reads the
//! whole log offline (streaming, with a progress bar), checks every entry
//! against the gateway's signed checkpoints and the ones the registry
//! anchored, and names the first position where the log was altered,
//! truncated or forked — so an auditor needs neither the gateway's help nor
//! its private key.

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};

use accord_audit::checkpoint::SignedCheckpoint;
use accord_domain::configuration::SignedConfiguration;
use accord_gateway::audit_store::LogReader;
use accord_registry::api::audit::AnchoredCheckpoint;

use crate::cli::AuditCommand;
use crate::client::{query_string, RegistryClient};
use crate::output;

async fn anchored(client: &RegistryClient, log: &str) -> anyhow::Result<Vec<AnchoredCheckpoint>> {
    client
        .get(&format!(
            "/api/v1/audit/checkpoints{}",
            query_string(&[("log", Some(log.to_owned()))])
        ))
        .await
}

pub async fn run(client: &RegistryClient, cmd: AuditCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Checkpoints { log } => {
            let held = anchored(client, &log).await?;
            if json {
                return output::json(&held);
            }
            output::table(
                &["size", "root", "at", "key", "received"],
                held.into_iter()
                    .map(|c| vec![c.size.to_string(), c.root, c.at, c.key_id, c.received_at])
                    .collect(),
            );
            Ok(())
        }
        AuditCommand::Verify {
            database,
            log,
            key,
            no_registry,
        } => {
            let key = match key {
                Some(path) => {
                    let pem = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading the audit key {}", path.display()))?;
                    accord_ca::parse_public_key_pem(&pem)?
                }
                None => {
                    let config: SignedConfiguration =
                        client.get("/api/v1/federation/configuration").await?;
                    let pem = config
                        .payload
                        .gateways
                        .iter()
                        .find(|g| format!("{}/{}", g.member, g.name) == log)
                        .and_then(|g| g.audit_key_pem.clone())
                        .with_context(|| {
                            format!("the registry knows no audit key for gateway {log}; give --key")
                        })?;
                    accord_ca::parse_public_key_pem(&pem)?
                }
            };
            let registry: Vec<SignedCheckpoint> = if no_registry {
                Vec::new()
            } else {
                anchored(client, &log)
                    .await?
                    .into_iter()
                    .map(|c| serde_json::from_value(serde_json::to_value(c)?))
                    .collect::<Result<_, _>>()
                    .context("reading the registry's checkpoints")?
            };
            let anchored_count = registry.len();
            let reader = LogReader::open(&database).await?;
            let total = reader.size().await?;
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template("verifying {pos}/{len} entries {wide_bar} {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let report = reader
                .verify_with_progress(&log, [key], registry, |done| bar.set_position(done))
                .await?;
            bar.finish_and_clear();
            if json {
                output::json(&serde_json::json!({
                    "log": log,
                    "intact": report.is_intact(),
                    "size": report.size,
                    "root": hex::encode(report.root),
                    "signed_size": report.signed_size,
                    "anchored_size": report.anchored_size,
                    "checkpoints_checked": report.checkpoints_checked,
                    "problem": report.problem.as_ref().map(ToString::to_string),
                }))?;
            } else {
                output::fields(&[
                    ("log", log.clone()),
                    ("entries", report.size.to_string()),
                    ("root", hex::encode(report.root)),
                    ("signed up to", report.signed_size.to_string()),
                    (
                        "anchored up to",
                        format!(
                            "{} ({anchored_count} registry checkpoints)",
                            report.anchored_size
                        ),
                    ),
                    (
                        "checkpoints",
                        format!("{} checked", report.checkpoints_checked),
                    ),
                ]);
            }
            match &report.problem {
                Some(problem) => bail!("the audit log of {log} does not verify: {problem}"),
                None => {
                    if !json {
                        println!("the audit log is intact");
                    }
                    Ok(())
                }
            }
        }
    }
}
