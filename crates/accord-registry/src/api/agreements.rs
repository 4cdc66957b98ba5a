//! Co-operation agreements over HTTP: draft, propose, sign, amend, suspend,
//! resume, terminate; versions, signatures, verification, history and ODRL.
//!
//! Only parties act on an agreement (through their member administrators);
//! the federation administrator may only suspend and resume. The registry
//! never holds a member's private key: parties sign the version's digest
//! themselves (`accord agreement sign`) and the registry checks the
//! signature against the key the member registered. Every state change is
//! one transaction together with the event that records it.

use std::collections::HashSet;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use accord_domain::agreement::canonical;
use accord_domain::agreement::lifecycle::{transition, Action};
use accord_domain::agreement::validate::{validate_terms, CatalogueView};
use accord_domain::agreement::{
    AgreementId, AgreementState, AgreementTerms, RuleViolation, ServiceScope,
};
use accord_domain::catalogue::{check_text, SHORT_TEXT_MAX};
use accord_domain::{MemberId, Role, ServiceId, SubsystemId};
use accord_store::{AgreementEvent, AgreementVersionRecord, SignatureRecord, Tx};

use super::{Body, Params, QueryParams};
use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult, Problem, ProblemKind};
use crate::Registry;

pub(super) fn router() -> OpenApiRouter<Registry> {
    OpenApiRouter::new()
        .routes(routes!(list_agreements, create_agreement))
        .routes(routes!(import_odrl))
        .routes(routes!(get_agreement))
        .routes(routes!(get_history))
        .routes(routes!(get_version, edit_version))
        .routes(routes!(propose_version))
        .routes(routes!(sign_version))
        .routes(routes!(verify_version))
        .routes(routes!(export_odrl))
        .routes(routes!(amend_agreement))
        .routes(routes!(suspend_agreement))
        .routes(routes!(resume_agreement))
        .routes(routes!(terminate_agreement))
}

/// Who is acting, as recorded in an agreement's history.
#[derive(Debug, Clone)]
pub struct Actor {
    pub role: Role,
    /// E.g. `member-admin of DEMO/MUN/75000001 (token 3f...)`.
    pub name: String,
}

impl From<&Authenticated> for Actor {
    fn from(a: &Authenticated) -> Self {
        Actor {
            role: a.role.clone(),
            name: format!("{} (token {})", a.role, a.token_id),
        }
    }
}

/// A new agreement: its id and the terms of its first version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DraftInput {
    #[schema(value_type = String, example = "tallinn-residence")]
    pub id: String,
    pub terms: AgreementTerms,
}

/// Terms for a draft or an amendment.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TermsInput {
    pub terms: AgreementTerms,
}

/// A party's signature on a proposed version's digest.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignatureInput {
    /// The signing party, `INSTANCE/CLASS/CODE`.
    pub member: String,
    /// The id of the key the member registered (`accord member key register`).
    pub key_id: String,
    /// Base64 Ed25519 signature over the version's signing message.
    pub signature: String,
}

/// Why a state changes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonInput {
    pub reason: Option<String>,
}

/// An ODRL Offer to import as a draft.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportInput {
    pub id: Option<String>,
    #[schema(value_type = Object)]
    pub offer: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SignatureView {
    pub member: MemberId,
    pub key_id: String,
    pub digest: String,
    pub signature: String,
    pub signed_at: String,
}

/// One version of an agreement, with its signatures.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionView {
    #[schema(value_type = String)]
    pub id: AgreementId,
    pub version: u32,
    pub supersedes: Option<u32>,
    pub state: AgreementState,
    pub state_reason: Option<String>,
    /// SHA-256 of the canonical form, once proposed: what parties sign.
    pub digest: Option<String>,
    pub terms: AgreementTerms,
    pub signatures: Vec<SignatureView>,
    /// Parties whose signature is still missing.
    pub awaiting: Vec<MemberId>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionSummary {
    pub version: u32,
    pub state: AgreementState,
    pub supersedes: Option<u32>,
    pub digest: Option<String>,
    pub updated_at: String,
}

/// An agreement: the version in force (if any), the latest, and all versions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AgreementView {
    #[schema(value_type = String)]
    pub id: AgreementId,
    pub in_force: Option<u32>,
    pub latest: u32,
    pub versions: Vec<VersionSummary>,
    /// The version in force, or the latest when none is.
    pub current: VersionView,
}

/// A line of an agreement listing.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AgreementSummary {
    #[schema(value_type = String)]
    pub id: AgreementId,
    pub version: u32,
    pub state: AgreementState,
    pub title: String,
    pub parties: Vec<MemberId>,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    pub seq: i64,
    pub version: u32,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub detail: String,
}

/// What happened to an agreement, oldest first, and its versions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HistoryView {
    #[schema(value_type = String)]
    pub id: AgreementId,
    pub versions: Vec<VersionSummary>,
    pub events: Vec<EventView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PartyCheck {
    pub member: MemberId,
    pub signed: bool,
    pub key_id: Option<String>,
    pub valid: bool,
    /// Why the signature does not count, when it does not.
    pub problem: Option<String>,
}

/// A version's signatures checked now, against the digest recomputed from its terms.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VerificationView {
    #[schema(value_type = String)]
    pub id: AgreementId,
    pub version: u32,
    pub state: AgreementState,
    pub digest: String,
    pub recorded_digest: Option<String>,
    pub digest_matches: bool,
    pub parties: Vec<PartyCheck>,
    /// Every party signed this digest with a valid, unrevoked key.
    pub valid: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AgreementPath {
    pub id: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct VersionPath {
    pub id: String,
    pub version: u32,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AgreementQuery {
    /// Only agreements this member is party to.
    pub member: Option<String>,
    /// Only agreements whose latest version is in this state.
    pub state: Option<String>,
}

fn parse_id(id: &str) -> ApiResult<AgreementId> {
    id.parse()
        .map_err(|e: String| ApiError::not_found(format!("no such agreement: {e}")))
}

fn conflict(v: RuleViolation) -> ApiError {
    ApiError::violation(ProblemKind::Conflict, v)
}

fn forbidden(v: RuleViolation) -> ApiError {
    ApiError::violation(ProblemKind::Forbidden, v)
}

/// The catalogue as validation sees it, loaded for the ids the terms name.
struct LoadedView {
    members: HashSet<MemberId>,
    subsystems: HashSet<SubsystemId>,
    services: HashSet<ServiceId>,
    purposes: HashSet<String>,
}

impl CatalogueView for LoadedView {
    fn member_exists(&self, m: &MemberId) -> bool {
        self.members.contains(m)
    }
    fn subsystem_exists(&self, s: &SubsystemId) -> bool {
        self.subsystems.contains(s)
    }
    fn service_exists(&self, s: &ServiceId) -> bool {
        self.services.contains(s)
    }
    fn purpose_exists(&self, p: &str) -> bool {
        self.purposes.contains(p)
    }
}

async fn load_view(tx: &mut Tx, terms: &AgreementTerms) -> ApiResult<LoadedView> {
    let mut view = LoadedView {
        members: HashSet::new(),
        subsystems: HashSet::new(),
        services: HashSet::new(),
        purposes: tx.purpose_codes().await?.into_iter().collect(),
    };
    for party in &terms.parties {
        if tx.member(&party.member).await?.is_some() {
            view.members.insert(party.member.clone());
        }
    }
    for grant in &terms.grants {
        match &grant.services {
            ServiceScope::Services(list) => {
                for s in list {
                    if tx.service(s).await?.is_some() {
                        view.services.insert(s.clone());
                    }
                }
            }
            ServiceScope::Subsystem(sub) => {
                if tx.subsystem(sub).await?.is_some() {
                    view.subsystems.insert(sub.clone());
                }
            }
        }
        for c in &grant.consumers {
            if tx.subsystem(c).await?.is_some() {
                view.subsystems.insert(c.clone());
            }
        }
    }
    Ok(view)
}

async fn check_terms(tx: &mut Tx, terms: &AgreementTerms) -> ApiResult<()> {
    let view = load_view(tx, terms).await?;
    let violations = validate_terms(terms, &view);
    if violations.is_empty() {
        Ok(())
    } else {
        Err(ApiError::violations(ProblemKind::InvalidInput, violations))
    }
}

/// The party a member administrator acts for; others may not act.
fn acting_party(role: &Role, terms: &AgreementTerms, action: &str) -> ApiResult<MemberId> {
    match role {
        Role::MemberAdmin { member } if terms.is_party(member) => Ok(member.clone()),
        Role::MemberAdmin { member } => Err(forbidden(RuleViolation::new(
            "not-a-party",
            format!("only parties may {action} this agreement, and {member} is not one"),
        ))),
        Role::FederationAdmin => Err(forbidden(RuleViolation::new(
            "not-a-party",
            format!(
                "only parties may {action} an agreement; the federation administrator may only suspend or resume one"
            ),
        ))),
    }
}

fn reason(input: &ReasonInput, action: &str) -> ApiResult<String> {
    check_text(input.reason.as_deref().unwrap_or(""), SHORT_TEXT_MAX)
        .map_err(|e| ApiError::field("reason", format!("{e}: say why you {action} the agreement")))
}

async fn record(
    tx: &mut Tx,
    id: &AgreementId,
    (version, action): (u32, &str),
    actor: &Actor,
    states: (Option<AgreementState>, Option<AgreementState>),
    detail: String,
    at: &str,
) -> ApiResult<()> {
    tx.add_event(
        id,
        &AgreementEvent {
            seq: 0,
            version,
            at: at.to_owned(),
            actor: actor.name.clone(),
            action: action.to_owned(),
            from_state: states.0.map(|s| s.as_str().to_owned()),
            to_state: states.1.map(|s| s.as_str().to_owned()),
            detail,
        },
    )
    .await?;
    Ok(())
}

/// Marks versions whose validity ended as expired (automatic, recorded).
pub async fn expire_due(registry: &Registry) -> ApiResult<usize> {
    let now = accord_store::now();
    if registry.store.due_for_expiry(&now).await?.is_empty() {
        return Ok(0);
    }
    let mut tx = registry.store.begin().await?;
    let due = tx.due_for_expiry(&now).await?;
    let registry_actor = Actor {
        role: Role::FederationAdmin,
        name: "registry".into(),
    };
    for (id, version) in &due {
        let from = tx.version(id, *version).await?.map(|v| v.state);
        tx.set_state(
            id,
            *version,
            AgreementState::Expired,
            Some("validity period ended"),
            None,
            &now,
        )
        .await?;
        record(
            &mut tx,
            id,
            (*version, "expire"),
            &registry_actor,
            (from, Some(AgreementState::Expired)),
            "the validity period ended".into(),
            &now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(due.len())
}

async fn version_view(tx: &mut Tx, v: AgreementVersionRecord) -> ApiResult<VersionView> {
    let signatures = tx.signatures(&v.id, v.version).await?;
    Ok(make_view(v, signatures))
}

fn make_view(v: AgreementVersionRecord, signatures: Vec<SignatureRecord>) -> VersionView {
    let awaiting = if v.state == AgreementState::Proposed {
        v.terms
            .parties
            .iter()
            .filter(|p| !signatures.iter().any(|s| s.member == p.member))
            .map(|p| p.member.clone())
            .collect()
    } else {
        Vec::new()
    };
    VersionView {
        id: v.id,
        version: v.version,
        supersedes: v.supersedes,
        state: v.state,
        state_reason: v.state_reason,
        digest: v.digest,
        terms: v.terms,
        signatures: signatures
            .into_iter()
            .map(|s| SignatureView {
                member: s.member,
                key_id: s.key_id,
                digest: s.digest,
                signature: s.signature,
                signed_at: s.signed_at,
            })
            .collect(),
        awaiting,
        created_at: v.created_at,
        updated_at: v.updated_at,
    }
}

fn summary(v: &AgreementVersionRecord) -> VersionSummary {
    VersionSummary {
        version: v.version,
        state: v.state,
        supersedes: v.supersedes,
        digest: v.digest.clone(),
        updated_at: v.updated_at.clone(),
    }
}

/// Drafts a new agreement (version 1).
pub async fn draft(
    registry: &Registry,
    actor: &Actor,
    input: &DraftInput,
) -> ApiResult<VersionView> {
    let id: AgreementId = input
        .id
        .parse()
        .map_err(|e: String| ApiError::field("id", e))?;
    let party = acting_party(&actor.role, &input.terms, "draft")?;
    expire_due(registry).await?;
    let mut tx = registry.store.begin().await?;
    if tx.agreement_exists(&id).await? {
        return Err(ApiError::conflict(format!("agreement {id} already exists")));
    }
    check_terms(&mut tx, &input.terms).await?;
    let at = accord_store::now();
    tx.insert_agreement(&id, &party.to_string(), &at).await?;
    let record_ = AgreementVersionRecord {
        id: id.clone(),
        version: 1,
        supersedes: None,
        state: AgreementState::Draft,
        terms: input.terms.clone(),
        digest: None,
        state_reason: None,
        created_at: at.clone(),
        updated_at: at.clone(),
    };
    tx.insert_version(&record_).await?;
    record(
        &mut tx,
        &id,
        (1, "draft"),
        actor,
        (None, Some(AgreementState::Draft)),
        format!("drafted: {}", input.terms.title),
        &at,
    )
    .await?;
    let view = version_view(&mut tx, record_).await?;
    tx.commit().await?;
    tracing::info!(agreement = %id, "agreement drafted");
    Ok(view)
}

async fn load_version(
    tx: &mut Tx,
    id: &AgreementId,
    version: u32,
) -> ApiResult<AgreementVersionRecord> {
    tx.version(id, version)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("agreement {id} has no version {version}")))
}

/// Replaces a draft's terms.
pub async fn edit(
    registry: &Registry,
    actor: &Actor,
    id: &AgreementId,
    version: u32,
    terms: &AgreementTerms,
) -> ApiResult<VersionView> {
    let mut tx = registry.store.begin().await?;
    let current = load_version(&mut tx, id, version).await?;
    acting_party(&actor.role, &current.terms, "edit")?;
    acting_party(&actor.role, terms, "edit")?;
    transition(current.state, Action::Edit).map_err(conflict)?;
    check_terms(&mut tx, terms).await?;
    let at = accord_store::now();
    tx.update_terms(id, version, terms, &at).await?;
    record(
        &mut tx,
        id,
        (version, "edit"),
        actor,
        (Some(current.state), Some(current.state)),
        "terms edited".into(),
        &at,
    )
    .await?;
    let updated = load_version(&mut tx, id, version).await?;
    let view = version_view(&mut tx, updated).await?;
    tx.commit().await?;
    Ok(view)
}

/// Fixes a draft's terms and computes the digest the parties will sign.
pub async fn propose(
    registry: &Registry,
    actor: &Actor,
    id: &AgreementId,
    version: u32,
) -> ApiResult<VersionView> {
    let mut tx = registry.store.begin().await?;
    let current = load_version(&mut tx, id, version).await?;
    acting_party(&actor.role, &current.terms, "propose")?;
    let next = transition(current.state, Action::Propose).map_err(conflict)?;
    check_terms(&mut tx, &current.terms).await?;
    let digest = canonical::digest(
        &registry.federation.instance,
        id,
        version,
        current.supersedes,
        &current.terms,
    )
    .map_err(|v| ApiError::violation(ProblemKind::InvalidInput, v))?;
    let at = accord_store::now();
    tx.set_state(id, version, next, None, Some(&digest), &at)
        .await?;
    record(
        &mut tx,
        id,
        (version, "propose"),
        actor,
        (Some(current.state), Some(next)),
        format!("proposed for signature; digest {digest}"),
        &at,
    )
    .await?;
    let updated = load_version(&mut tx, id, version).await?;
    let view = version_view(&mut tx, updated).await?;
    tx.commit().await?;
    tracing::info!(agreement = %id, version, "agreement proposed");
    Ok(view)
}

/// Records a party's signature; the last one activates the version.
pub async fn sign(
    registry: &Registry,
    actor: &Actor,
    id: &AgreementId,
    version: u32,
    input: &SignatureInput,
) -> ApiResult<VersionView> {
    let member: MemberId = input
        .member
        .parse()
        .map_err(|e: accord_domain::IdError| ApiError::field("member", e.to_string()))?;
    if !matches!(&actor.role, Role::MemberAdmin { member: own } if own == &member) {
        return Err(forbidden(RuleViolation::new(
            "signer-not-authorized",
            format!("a signature of {member} must be submitted with a token of {member}'s administrator; this token is {}", actor.role),
        )));
    }
    expire_due(registry).await?;
    let mut tx = registry.store.begin().await?;
    let current = load_version(&mut tx, id, version).await?;
    if !current.terms.is_party(&member) {
        return Err(forbidden(RuleViolation::at(
            "signature-by-non-party",
            "member",
            format!("{member} is not a party to agreement {id} version {version}"),
        )));
    }
    transition(current.state, Action::Sign).map_err(conflict)?;
    let recorded = current.digest.clone().unwrap_or_default();
    let digest = canonical::digest(
        &registry.federation.instance,
        id,
        version,
        current.supersedes,
        &current.terms,
    )
    .map_err(|v| ApiError::violation(ProblemKind::InvalidInput, v))?;
    if digest != recorded {
        return Err(conflict(RuleViolation::new(
            "terms-changed-after-proposal",
            format!("the stored terms now digest to {digest}, not the proposed {recorded}: the agreement was changed after proposal"),
        )));
    }
    let key = tx.signing_key(&input.key_id).await?.ok_or_else(|| {
        ApiError::violation(
            ProblemKind::InvalidInput,
            RuleViolation::at(
                "unknown-key",
                "key_id",
                format!("no signing key {} is registered", input.key_id),
            ),
        )
    })?;
    if key.member != member {
        return Err(ApiError::violation(
            ProblemKind::InvalidInput,
            RuleViolation::at(
                "key-not-owned",
                "key_id",
                format!("key {} belongs to {}, not {member}", key.key_id, key.member),
            ),
        ));
    }
    if let Some(at) = &key.revoked_at {
        return Err(ApiError::violation(
            ProblemKind::InvalidInput,
            RuleViolation::at(
                "signature-by-revoked-key",
                "key_id",
                format!("key {} was revoked at {at}", key.key_id),
            ),
        ));
    }
    let public =
        accord_ca::parse_public_key_pem(&key.public_key_pem).map_err(ApiError::internal)?;
    canonical::verify(&public, &digest, &input.signature)
        .map_err(|v| ApiError::violation(ProblemKind::InvalidInput, v))?;
    let existing = tx.signatures(id, version).await?;
    if existing.iter().any(|s| s.member == member) {
        return Err(conflict(RuleViolation::new(
            "already-signed",
            format!("{member} already signed version {version}"),
        )));
    }
    let at = accord_store::now();
    tx.insert_signature(
        id,
        version,
        &SignatureRecord {
            member: member.clone(),
            key_id: key.key_id.clone(),
            digest: digest.clone(),
            signature: input.signature.trim().to_owned(),
            signed_at: at.clone(),
        },
    )
    .await?;
    record(
        &mut tx,
        id,
        (version, "sign"),
        actor,
        (Some(current.state), Some(current.state)),
        format!("signed by {member} with key {}", key.key_id),
        &at,
    )
    .await?;
    let signed: HashSet<&MemberId> = existing
        .iter()
        .map(|s| &s.member)
        .chain(std::iter::once(&member))
        .collect();
    if current
        .terms
        .parties
        .iter()
        .all(|p| signed.contains(&p.member))
    {
        if let Some(old) = current.supersedes {
            let previous = load_version(&mut tx, id, old).await?;
            if previous.state.in_force() {
                tx.set_state(
                    id,
                    old,
                    AgreementState::Superseded,
                    Some(&format!("superseded by version {version}")),
                    None,
                    &at,
                )
                .await?;
                record(
                    &mut tx,
                    id,
                    (old, "supersede"),
                    actor,
                    (Some(previous.state), Some(AgreementState::Superseded)),
                    format!("replaced by version {version}"),
                    &at,
                )
                .await?;
            }
        }
        tx.set_state(id, version, AgreementState::Active, None, None, &at)
            .await?;
        record(
            &mut tx,
            id,
            (version, "activate"),
            actor,
            (Some(current.state), Some(AgreementState::Active)),
            "every party signed the same digest".into(),
            &at,
        )
        .await?;
        tracing::info!(agreement = %id, version, "agreement active");
    }
    let updated = load_version(&mut tx, id, version).await?;
    let view = version_view(&mut tx, updated).await?;
    tx.commit().await?;
    Ok(view)
}

/// The versions of an agreement, oldest first; not found if it has none.
async fn load_versions(tx: &mut Tx, id: &AgreementId) -> ApiResult<Vec<AgreementVersionRecord>> {
    let versions = tx.versions(id).await?;
    if versions.is_empty() {
        return Err(ApiError::not_found(format!(
            "agreement {id} does not exist"
        )));
    }
    Ok(versions)
}

/// The version in force among `versions`, or why `action` cannot proceed.
fn in_force<'v>(
    versions: &'v [AgreementVersionRecord],
    id: &AgreementId,
    action: Action,
) -> ApiResult<&'v AgreementVersionRecord> {
    versions
        .iter()
        .rev()
        .find(|v| v.state.in_force())
        .ok_or_else(|| {
            let latest = versions
                .last()
                .map(|v| v.state)
                .unwrap_or(AgreementState::Draft);
            // The lifecycle rule names the state when it forbids the action.
            conflict(transition(latest, action).err().unwrap_or_else(|| {
                RuleViolation::new(
                    "transition-not-allowed",
                    format!(
                        "cannot {} agreement {id}: no version is in force (the latest is {})",
                        action.as_str(),
                        latest.as_str()
                    ),
                )
            }))
        })
}

/// Makes a new draft version that will replace the one in force once signed.
pub async fn amend(
    registry: &Registry,
    actor: &Actor,
    id: &AgreementId,
    terms: &AgreementTerms,
) -> ApiResult<VersionView> {
    expire_due(registry).await?;
    let mut tx = registry.store.begin().await?;
    let versions = load_versions(&mut tx, id).await?;
    let current = in_force(&versions, id, Action::Amend)?.clone();
    let latest = versions.last().cloned().unwrap_or_else(|| current.clone());
    acting_party(&actor.role, &current.terms, "amend")?;
    acting_party(&actor.role, terms, "amend")?;
    transition(current.state, Action::Amend).map_err(conflict)?;
    if latest.version != current.version {
        return Err(conflict(RuleViolation::new(
            "amendment-pending",
            format!(
                "version {} ({}) already amends version {}; edit, sign or terminate it first",
                latest.version,
                latest.state.as_str(),
                current.version
            ),
        )));
    }
    check_terms(&mut tx, terms).await?;
    let at = accord_store::now();
    let version = latest.version + 1;
    let record_ = AgreementVersionRecord {
        id: id.clone(),
        version,
        supersedes: Some(current.version),
        state: AgreementState::Draft,
        terms: terms.clone(),
        digest: None,
        state_reason: None,
        created_at: at.clone(),
        updated_at: at.clone(),
    };
    tx.insert_version(&record_).await?;
    record(
        &mut tx,
        id,
        (version, "amend"),
        actor,
        (None, Some(AgreementState::Draft)),
        format!("amendment of version {}", current.version),
        &at,
    )
    .await?;
    let view = version_view(&mut tx, record_).await?;
    tx.commit().await?;
    Ok(view)
}

/// Suspends, resumes or terminates the agreement.
pub async fn change_state(
    registry: &Registry,
    actor: &Actor,
    id: &AgreementId,
    action: Action,
    input: &ReasonInput,
) -> ApiResult<VersionView> {
    let why = reason(input, action.as_str())?;
    expire_due(registry).await?;
    let mut tx = registry.store.begin().await?;
    let versions = load_versions(&mut tx, id).await?;
    let target = match (in_force(&versions, id, action), action) {
        (Ok(v), _) => v.clone(),
        // A proposal no one will sign can be terminated too.
        (Err(e), Action::Terminate) => versions
            .iter()
            .rev()
            .find(|v| v.state == AgreementState::Proposed)
            .cloned()
            .ok_or(e)?,
        (Err(e), _) => return Err(e),
    };
    match (&actor.role, action) {
        (Role::FederationAdmin, Action::Suspend | Action::Resume) => {}
        _ => {
            acting_party(&actor.role, &target.terms, action.as_str())?;
        }
    }
    let next = transition(target.state, action).map_err(conflict)?;
    let at = accord_store::now();
    tx.set_state(id, target.version, next, Some(&why), None, &at)
        .await?;
    record(
        &mut tx,
        id,
        (target.version, action.as_str()),
        actor,
        (Some(target.state), Some(next)),
        why,
        &at,
    )
    .await?;
    let updated = load_version(&mut tx, id, target.version).await?;
    let view = version_view(&mut tx, updated).await?;
    tx.commit().await?;
    tracing::info!(agreement = %id, version = target.version, action = action.as_str(), "agreement state changed");
    Ok(view)
}

/// Checks every party's signature on a version against its terms now.
pub async fn verify(
    registry: &Registry,
    id: &AgreementId,
    version: u32,
) -> ApiResult<VerificationView> {
    let v = registry
        .store
        .agreement_version(id, version)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("agreement {id} has no version {version}")))?;
    let digest = canonical::digest(
        &registry.federation.instance,
        id,
        version,
        v.supersedes,
        &v.terms,
    )
    .map_err(|e| ApiError::violation(ProblemKind::InvalidInput, e))?;
    let signatures = registry.store.agreement_signatures(id, version).await?;
    let mut parties = Vec::new();
    for party in &v.terms.parties {
        let Some(s) = signatures.iter().find(|s| s.member == party.member) else {
            parties.push(PartyCheck {
                member: party.member.clone(),
                signed: false,
                key_id: None,
                valid: false,
                problem: Some("not signed".into()),
            });
            continue;
        };
        let problem = match registry.store.signing_key(&s.key_id).await? {
            None => Some(format!("key {} is not registered", s.key_id)),
            Some(k) if k.member != party.member => {
                Some(format!("key {} belongs to {}", k.key_id, k.member))
            }
            Some(k) => match accord_ca::parse_public_key_pem(&k.public_key_pem) {
                Err(e) => Some(format!("key {} is unreadable: {e}", k.key_id)),
                Ok(public) => match canonical::verify(&public, &digest, &s.signature) {
                    Err(e) => Some(e.detail),
                    Ok(()) => k
                        .revoked_at
                        .map(|at| format!("key {} was revoked at {at}", k.key_id)),
                },
            },
        };
        parties.push(PartyCheck {
            member: party.member.clone(),
            signed: true,
            key_id: Some(s.key_id.clone()),
            valid: problem.is_none(),
            problem,
        });
    }
    let digest_matches = v.digest.as_deref() == Some(digest.as_str());
    Ok(VerificationView {
        id: id.clone(),
        version,
        state: v.state,
        valid: digest_matches && parties.iter().all(|p| p.valid),
        recorded_digest: v.digest,
        digest,
        digest_matches,
        parties,
    })
}

/// Search agreements.
#[utoipa::path(get, path = "/api/v1/agreements", tag = "agreements", params(AgreementQuery),
    responses((status = 200, description = "Latest version of each agreement", body = Vec<AgreementSummary>),
              (status = 422, description = "A filter is not valid", body = Problem, content_type = "application/problem+json")))]
async fn list_agreements(
    State(registry): State<Registry>,
    QueryParams(q): QueryParams<AgreementQuery>,
) -> ApiResult<Json<Vec<AgreementSummary>>> {
    expire_due(&registry).await?;
    let member = q
        .member
        .as_deref()
        .map(|m| m.parse::<MemberId>())
        .transpose()
        .map_err(|e| ApiError::field("member", e.to_string()))?;
    let state = q
        .state
        .as_deref()
        .map(|s| {
            AgreementState::parse(s)
                .ok_or_else(|| ApiError::field("state", format!("unknown state {s:?}")))
        })
        .transpose()?;
    let versions = registry
        .store
        .latest_agreement_versions(member.as_ref(), state)
        .await?;
    Ok(Json(
        versions
            .into_iter()
            .map(|v| AgreementSummary {
                parties: v.terms.parties.iter().map(|p| p.member.clone()).collect(),
                title: v.terms.title.clone(),
                id: v.id,
                version: v.version,
                state: v.state,
                updated_at: v.updated_at,
            })
            .collect(),
    ))
}

/// Draft a new agreement (an administrator of one of its parties).
#[utoipa::path(post, path = "/api/v1/agreements", tag = "agreements", request_body = DraftInput, security(("bearer" = [])),
    responses((status = 201, description = "The draft, version 1", body = VersionView),
              (status = 403, description = "Not a party", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "The id is taken", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "The terms break a rule", body = Problem, content_type = "application/problem+json")))]
async fn create_agreement(
    State(registry): State<Registry>,
    auth: Authenticated,
    Body(input): Body<DraftInput>,
) -> ApiResult<impl IntoResponse> {
    let view = draft(&registry, &Actor::from(&auth), &input).await?;
    let location = format!("/api/v1/agreements/{}", view.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(view),
    ))
}

/// Import an ODRL 2.2 Offer as a draft agreement (an administrator of one of its parties).
#[utoipa::path(post, path = "/api/v1/agreements/import-odrl", tag = "agreements", request_body = ImportInput, security(("bearer" = [])),
    responses((status = 201, description = "The draft", body = VersionView),
              (status = 422, description = "The offer does not map", body = Problem, content_type = "application/problem+json")))]
async fn import_odrl(
    State(registry): State<Registry>,
    auth: Authenticated,
    Body(input): Body<ImportInput>,
) -> ApiResult<impl IntoResponse> {
    let imported = accord_domain::agreement::odrl::import_offer(&input.offer)
        .map_err(|v| ApiError::violations(ProblemKind::InvalidInput, v))?;
    let id = match (&input.id, &imported.suggested_id) {
        (Some(id), _) => id.clone(),
        (None, Some(id)) => id.to_string(),
        (None, None) => {
            return Err(ApiError::field(
                "id",
                "is required: the offer suggests no agreement id",
            ))
        }
    };
    let view = draft(
        &registry,
        &Actor::from(&auth),
        &DraftInput {
            id,
            terms: imported.terms,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// One agreement: the version in force (or latest) and all versions.
#[utoipa::path(get, path = "/api/v1/agreements/{id}", tag = "agreements", params(AgreementPath),
    responses((status = 200, description = "The agreement", body = AgreementView),
              (status = 404, description = "No such agreement", body = Problem, content_type = "application/problem+json")))]
async fn get_agreement(
    State(registry): State<Registry>,
    Params(path): Params<AgreementPath>,
) -> ApiResult<Json<AgreementView>> {
    let id = parse_id(&path.id)?;
    expire_due(&registry).await?;
    let versions = registry.store.agreement_versions(&id).await?;
    let latest = versions
        .last()
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("agreement {id} does not exist")))?;
    let in_force = versions.iter().rev().find(|v| v.state.in_force()).cloned();
    let current = in_force.clone().unwrap_or(latest.clone());
    let signatures = registry
        .store
        .agreement_signatures(&id, current.version)
        .await?;
    Ok(Json(AgreementView {
        id,
        in_force: in_force.map(|v| v.version),
        latest: latest.version,
        versions: versions.iter().map(summary).collect(),
        current: make_view(current, signatures),
    }))
}

/// The full history of an agreement: versions and events, who and when.
#[utoipa::path(get, path = "/api/v1/agreements/{id}/history", tag = "agreements", params(AgreementPath),
    responses((status = 200, description = "The history", body = HistoryView),
              (status = 404, description = "No such agreement", body = Problem, content_type = "application/problem+json")))]
async fn get_history(
    State(registry): State<Registry>,
    Params(path): Params<AgreementPath>,
) -> ApiResult<Json<HistoryView>> {
    let id = parse_id(&path.id)?;
    expire_due(&registry).await?;
    let versions = registry.store.agreement_versions(&id).await?;
    if versions.is_empty() {
        return Err(ApiError::not_found(format!(
            "agreement {id} does not exist"
        )));
    }
    let events = registry.store.agreement_events(&id).await?;
    Ok(Json(HistoryView {
        id,
        versions: versions.iter().map(summary).collect(),
        events: events
            .into_iter()
            .map(|e| EventView {
                seq: e.seq,
                version: e.version,
                at: e.at,
                actor: e.actor,
                action: e.action,
                from_state: e.from_state,
                to_state: e.to_state,
                detail: e.detail,
            })
            .collect(),
    }))
}

/// One version, with its signatures.
#[utoipa::path(get, path = "/api/v1/agreements/{id}/versions/{version}", tag = "agreements", params(VersionPath),
    responses((status = 200, description = "The version", body = VersionView),
              (status = 404, description = "No such version", body = Problem, content_type = "application/problem+json")))]
async fn get_version(
    State(registry): State<Registry>,
    Params(path): Params<VersionPath>,
) -> ApiResult<Json<VersionView>> {
    let id = parse_id(&path.id)?;
    let v = registry
        .store
        .agreement_version(&id, path.version)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("agreement {id} has no version {}", path.version))
        })?;
    let signatures = registry
        .store
        .agreement_signatures(&id, path.version)
        .await?;
    Ok(Json(make_view(v, signatures)))
}

/// Replace a draft's terms (a party).
#[utoipa::path(put, path = "/api/v1/agreements/{id}/versions/{version}", tag = "agreements", params(VersionPath), request_body = TermsInput, security(("bearer" = [])),
    responses((status = 200, description = "The draft", body = VersionView),
              (status = 409, description = "Not a draft", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "The terms break a rule", body = Problem, content_type = "application/problem+json")))]
async fn edit_version(
    State(registry): State<Registry>,
    Params(path): Params<VersionPath>,
    auth: Authenticated,
    Body(input): Body<TermsInput>,
) -> ApiResult<Json<VersionView>> {
    let id = parse_id(&path.id)?;
    Ok(Json(
        edit(
            &registry,
            &Actor::from(&auth),
            &id,
            path.version,
            &input.terms,
        )
        .await?,
    ))
}

/// Propose a draft for signature (a party): its digest is fixed.
#[utoipa::path(post, path = "/api/v1/agreements/{id}/versions/{version}/propose", tag = "agreements", params(VersionPath), security(("bearer" = [])),
    responses((status = 200, description = "The proposed version and its digest", body = VersionView),
              (status = 409, description = "Not a draft", body = Problem, content_type = "application/problem+json")))]
async fn propose_version(
    State(registry): State<Registry>,
    Params(path): Params<VersionPath>,
    auth: Authenticated,
) -> ApiResult<Json<VersionView>> {
    let id = parse_id(&path.id)?;
    Ok(Json(
        propose(&registry, &Actor::from(&auth), &id, path.version).await?,
    ))
}

/// Submit a party's signature over the proposed digest (that party's administrator).
#[utoipa::path(post, path = "/api/v1/agreements/{id}/versions/{version}/signatures", tag = "agreements", params(VersionPath), request_body = SignatureInput, security(("bearer" = [])),
    responses((status = 200, description = "The version; active once every party signed", body = VersionView),
              (status = 403, description = "Not a party, or not this party's token", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "Not proposed, or already signed", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "Unknown, foreign or revoked key, or a bad signature", body = Problem, content_type = "application/problem+json")))]
async fn sign_version(
    State(registry): State<Registry>,
    Params(path): Params<VersionPath>,
    auth: Authenticated,
    Body(input): Body<SignatureInput>,
) -> ApiResult<Json<VersionView>> {
    let id = parse_id(&path.id)?;
    Ok(Json(
        sign(&registry, &Actor::from(&auth), &id, path.version, &input).await?,
    ))
}

/// Check a version's signatures now, against the digest of its terms.
#[utoipa::path(get, path = "/api/v1/agreements/{id}/versions/{version}/verification", tag = "agreements", params(VersionPath),
    responses((status = 200, description = "The check", body = VerificationView),
              (status = 404, description = "No such version", body = Problem, content_type = "application/problem+json")))]
async fn verify_version(
    State(registry): State<Registry>,
    Params(path): Params<VersionPath>,
) -> ApiResult<Json<VerificationView>> {
    let id = parse_id(&path.id)?;
    Ok(Json(verify(&registry, &id, path.version).await?))
}

/// A version as an ODRL 2.2 Agreement policy (JSON-LD).
#[utoipa::path(get, path = "/api/v1/agreements/{id}/versions/{version}/odrl", tag = "agreements", params(VersionPath),
    responses((status = 200, description = "ODRL 2.2 JSON-LD", content_type = "application/ld+json", body = Object),
              (status = 404, description = "No such version", body = Problem, content_type = "application/problem+json")))]
async fn export_odrl(
    State(registry): State<Registry>,
    Params(path): Params<VersionPath>,
) -> ApiResult<impl IntoResponse> {
    let id = parse_id(&path.id)?;
    let v = registry
        .store
        .agreement_version(&id, path.version)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("agreement {id} has no version {}", path.version))
        })?;
    let doc = accord_domain::agreement::odrl::export_agreement(
        &registry.federation.instance,
        &id,
        v.version,
        &v.terms,
    );
    Ok(([(header::CONTENT_TYPE, "application/ld+json")], Json(doc)))
}

/// Amend the agreement in force (a party): a new draft version that replaces it once fully signed.
#[utoipa::path(post, path = "/api/v1/agreements/{id}/amend", tag = "agreements", params(AgreementPath), request_body = TermsInput, security(("bearer" = [])),
    responses((status = 201, description = "The new draft version", body = VersionView),
              (status = 409, description = "Nothing in force, or an amendment is pending", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "The terms break a rule", body = Problem, content_type = "application/problem+json")))]
async fn amend_agreement(
    State(registry): State<Registry>,
    Params(path): Params<AgreementPath>,
    auth: Authenticated,
    Body(input): Body<TermsInput>,
) -> ApiResult<impl IntoResponse> {
    let id = parse_id(&path.id)?;
    let view = amend(&registry, &Actor::from(&auth), &id, &input.terms).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Suspend the agreement in force (a party or the federation administrator).
#[utoipa::path(post, path = "/api/v1/agreements/{id}/suspend", tag = "agreements", params(AgreementPath), request_body = ReasonInput, security(("bearer" = [])),
    responses((status = 200, description = "The suspended version", body = VersionView),
              (status = 409, description = "Not active", body = Problem, content_type = "application/problem+json")))]
async fn suspend_agreement(
    State(registry): State<Registry>,
    Params(path): Params<AgreementPath>,
    auth: Authenticated,
    Body(input): Body<ReasonInput>,
) -> ApiResult<Json<VersionView>> {
    let id = parse_id(&path.id)?;
    Ok(Json(
        change_state(&registry, &Actor::from(&auth), &id, Action::Suspend, &input).await?,
    ))
}

/// Resume a suspended agreement (a party or the federation administrator).
#[utoipa::path(post, path = "/api/v1/agreements/{id}/resume", tag = "agreements", params(AgreementPath), request_body = ReasonInput, security(("bearer" = [])),
    responses((status = 200, description = "The active version", body = VersionView),
              (status = 409, description = "Not suspended", body = Problem, content_type = "application/problem+json")))]
async fn resume_agreement(
    State(registry): State<Registry>,
    Params(path): Params<AgreementPath>,
    auth: Authenticated,
    Body(input): Body<ReasonInput>,
) -> ApiResult<Json<VersionView>> {
    let id = parse_id(&path.id)?;
    Ok(Json(
        change_state(&registry, &Actor::from(&auth), &id, Action::Resume, &input).await?,
    ))
}

/// Terminate the agreement (a party).
#[utoipa::path(post, path = "/api/v1/agreements/{id}/terminate", tag = "agreements", params(AgreementPath), request_body = ReasonInput, security(("bearer" = [])),
    responses((status = 200, description = "The terminated version", body = VersionView),
              (status = 409, description = "Nothing to terminate", body = Problem, content_type = "application/problem+json")))]
async fn terminate_agreement(
    State(registry): State<Registry>,
    Params(path): Params<AgreementPath>,
    auth: Authenticated,
    Body(input): Body<ReasonInput>,
) -> ApiResult<Json<VersionView>> {
    let id = parse_id(&path.id)?;
    Ok(Json(
        change_state(
            &registry,
            &Actor::from(&auth),
            &id,
            Action::Terminate,
            &input,
        )
        .await?,
    ))
}

/// Drafts `terms` as the first party, proposes them, and signs with each
/// of `signers` (member and its registered signing key), exactly as the
/// parties would through the API: the demo, the benchmarks and tests set
/// up agreements with it. Returns the version after the last signature.
pub async fn establish(
    registry: &Registry,
    id: &str,
    terms: AgreementTerms,
    signers: &[(MemberId, ed25519_dalek::SigningKey)],
) -> ApiResult<VersionView> {
    let actor = |member: &MemberId| Actor {
        role: Role::MemberAdmin {
            member: member.clone(),
        },
        name: format!("accord, for {member}"),
    };
    let first = terms
        .parties
        .first()
        .map(|p| p.member.clone())
        .ok_or_else(|| ApiError::field("terms.parties", "an agreement needs parties"))?;
    let drafted = draft(
        registry,
        &actor(&first),
        &DraftInput {
            id: id.to_owned(),
            terms,
        },
    )
    .await?;
    let mut view = propose(registry, &actor(&first), &drafted.id, drafted.version).await?;
    let digest = view.digest.clone().unwrap_or_default();
    for (member, key) in signers {
        let input = SignatureInput {
            member: member.to_string(),
            key_id: canonical::key_id(&key.verifying_key()),
            signature: canonical::sign(key, &digest),
        };
        view = sign(
            registry,
            &actor(member),
            &drafted.id,
            drafted.version,
            &input,
        )
        .await?;
    }
    Ok(view)
}
