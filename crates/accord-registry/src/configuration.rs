//! Building, signing and caching the federation configuration that
//! gateways fetch.
//!
//! Building it reads the whole catalogue, so the registry first asks the
//! database for the time of the latest change (`as_of`, one cheap query)
//! and rebuilds only when that moved. Several registry instances on one
//! database build the same bytes for the same state (everything is ordered
//! and canonical), so their ETags agree.

use std::collections::BTreeMap;
use std::sync::Arc;

use accord_domain::configuration::{
    ConfigAgreement, ConfigCertificate, ConfigGateway, ConfigMember, ConfigService,
    ConfigurationPayload, RevokedCertificate, SignedConfiguration, FORMAT,
};
use accord_domain::MemberId;

use crate::error::{ApiError, ApiResult};
use crate::Registry;

/// A signed configuration and its JSON, ready to send.
#[derive(Debug)]
pub struct PublishedConfiguration {
    pub as_of: String,
    /// When building it started (same clock and format as `as_of`).
    pub started: String,
    pub signed: SignedConfiguration,
    /// Serialized once, sent many times (cloning shares the bytes).
    pub json: axum::body::Bytes,
}

async fn build(registry: &Registry, as_of: String) -> ApiResult<ConfigurationPayload> {
    let store = &registry.store;
    let mut subsystems: BTreeMap<MemberId, Vec<String>> = BTreeMap::new();
    for id in store.all_subsystem_ids().await? {
        subsystems
            .entry(id.member().clone())
            .or_default()
            .push(id.code().to_owned());
    }
    let members = store
        .all_members()
        .await?
        .into_iter()
        .map(|m| ConfigMember {
            subsystems: subsystems.remove(&m.id).unwrap_or_default(),
            id: m.id,
            name: m.name,
            level: m.level,
            country: m.country,
            sector: m.sector,
        })
        .collect();
    let services = store
        .all_service_ids()
        .await?
        .into_iter()
        .map(|(id, personal_data)| ConfigService { id, personal_data })
        .collect();
    let now = accord_store::now();
    let certificates = store.certificates(None).await?;
    let gateways = store
        .gateways(None)
        .await?
        .into_iter()
        .map(|g| ConfigGateway {
            certificates: certificates
                .iter()
                .filter(|c| {
                    c.member == g.member
                        && c.gateway == g.name
                        && c.revoked_at.is_none()
                        && c.not_after > now
                })
                .map(|c| ConfigCertificate {
                    serial: c.serial.clone(),
                    fingerprint_sha256: c.fingerprint_sha256.clone(),
                    not_after: c.not_after.clone(),
                })
                .collect(),
            member: g.member,
            name: g.name,
            address: g.address,
            audit_key_pem: g.audit_key_pem,
        })
        .collect();
    let revoked_certificates = certificates
        .iter()
        .filter_map(|c| {
            c.revoked_at.as_ref().map(|at| RevokedCertificate {
                serial: c.serial.clone(),
                fingerprint_sha256: c.fingerprint_sha256.clone(),
                revoked_at: at.clone(),
            })
        })
        .collect();
    let agreements = store
        .versions_in_force()
        .await?
        .into_iter()
        .map(|v| ConfigAgreement {
            digest: v.digest.unwrap_or_default(),
            id: v.id,
            version: v.version,
            state: v.state,
            terms: v.terms,
        })
        .collect();
    let f = &registry.federation;
    Ok(ConfigurationPayload {
        format: FORMAT.to_owned(),
        instance: f.instance.clone(),
        name: f.name.clone(),
        as_of,
        ca_certificate_pem: f.ca_certificate_pem.clone(),
        members,
        services,
        gateways,
        revoked_certificates,
        purposes: store.purpose_codes().await?,
        agreements,
    })
}

/// The current configuration, rebuilt and re-signed only if something changed.
pub async fn current(registry: &Registry) -> ApiResult<Arc<PublishedConfiguration>> {
    crate::api::agreements::expire_due(registry).await?;
    let started = accord_store::now();
    let as_of = registry.store.configuration_as_of().await?;
    if let Some(cached) = registry.configuration.lock().await.as_ref() {
        // Timestamps have millisecond resolution: a configuration built in
        // the same millisecond as the last change may have missed a second
        // change stamped alike, so only one built strictly later is reused.
        if cached.as_of == as_of && cached.started > cached.as_of {
            return Ok(cached.clone());
        }
    }
    let payload = build(registry, as_of.clone()).await?;
    let keys = registry.keys();
    let signed =
        SignedConfiguration::sign(payload, |m| keys.sign(m)).map_err(ApiError::internal)?;
    let json = serde_json::to_string(&signed).map_err(ApiError::internal)?;
    let published = Arc::new(PublishedConfiguration {
        as_of,
        started,
        signed,
        json: axum::body::Bytes::from(json),
    });
    *registry.configuration.lock().await = Some(published.clone());
    Ok(published)
}
