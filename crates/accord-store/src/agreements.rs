//! Agreements as stored: versions with their terms (JSON), state and
//! digest, the parties' signatures, the history of events, the purpose
//! vocabulary and members' signing keys.
//!
//! The store keeps what the lifecycle rules (in `accord-domain`) decided;
//! it decides nothing itself. Terms are stored as the JSON the parties
//! wrote, and the digest is always recomputed from them when signatures are
//! checked, so an edit made behind the registry's back shows up as
//! signatures that no longer verify.

use accord_domain::agreement::{AgreementId, AgreementState, AgreementTerms};
use accord_domain::MemberId;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::{conflict_on_unique, Result, Store, StoreError, Tx};

/// One version of an agreement.
#[derive(Debug, Clone)]
pub struct AgreementVersionRecord {
    pub id: AgreementId,
    pub version: u32,
    pub supersedes: Option<u32>,
    pub state: AgreementState,
    pub terms: AgreementTerms,
    pub digest: Option<String>,
    pub state_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A party's signature on a version's digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureRecord {
    pub member: MemberId,
    pub key_id: String,
    pub digest: String,
    pub signature: String,
    pub signed_at: String,
}

/// A member's registered signing key (public half).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    pub key_id: String,
    pub member: MemberId,
    pub public_key_pem: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// Something that happened to an agreement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgreementEvent {
    pub seq: i64,
    pub version: u32,
    pub at: String,
    /// Who acted: a role and token id, or `registry` for automatic changes.
    pub actor: String,
    pub action: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub detail: String,
}

/// A purpose in the federation's vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurposeRecord {
    pub code: String,
    pub description: String,
    pub created_at: String,
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}

fn version_u32(v: i64) -> Result<u32> {
    u32::try_from(v).map_err(|_| corrupt("agreement version", v))
}

fn version_from_row(row: &AnyRow) -> Result<AgreementVersionRecord> {
    let id: String = row.try_get("agreement_id")?;
    let state: String = row.try_get("state")?;
    let terms: String = row.try_get("terms")?;
    let supersedes: Option<i64> = row.try_get("supersedes")?;
    Ok(AgreementVersionRecord {
        id: id.parse().map_err(|e| corrupt("agreement id", e))?,
        version: version_u32(row.try_get("version")?)?,
        supersedes: supersedes.map(version_u32).transpose()?,
        state: AgreementState::parse(&state).ok_or_else(|| corrupt("agreement state", &state))?,
        terms: serde_json::from_str(&terms).map_err(|e| corrupt("agreement terms", e))?,
        digest: row.try_get("digest")?,
        state_reason: row.try_get("state_reason")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn signature_from_row(row: &AnyRow) -> Result<SignatureRecord> {
    let member: String = row.try_get("member_id")?;
    Ok(SignatureRecord {
        member: member.parse().map_err(|e| corrupt("signature member", e))?,
        key_id: row.try_get("key_id")?,
        digest: row.try_get("digest")?,
        signature: row.try_get("signature")?,
        signed_at: row.try_get("signed_at")?,
    })
}

fn key_from_row(row: &AnyRow) -> Result<SigningKeyRecord> {
    let member: String = row.try_get("member_id")?;
    Ok(SigningKeyRecord {
        key_id: row.try_get("key_id")?,
        member: member
            .parse()
            .map_err(|e| corrupt("signing key member", e))?,
        public_key_pem: row.try_get("public_key_pem")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn event_from_row(row: &AnyRow) -> Result<AgreementEvent> {
    Ok(AgreementEvent {
        seq: row.try_get("seq")?,
        version: version_u32(row.try_get("version")?)?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        from_state: row.try_get("from_state")?,
        to_state: row.try_get("to_state")?,
        detail: row.try_get("detail")?,
    })
}

const VERSION_COLUMNS: &str = "agreement_id, version, supersedes, state, terms, digest, \
     state_reason, created_at, updated_at";

async fn version(
    conn: &mut AnyConnection,
    id: &AgreementId,
    v: u32,
) -> Result<Option<AgreementVersionRecord>> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM agreement_versions WHERE agreement_id = $1 AND version = $2"
    );
    let row = sqlx::query(&sql)
        .bind(id.to_string())
        .bind(i64::from(v))
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(version_from_row).transpose()
}

async fn versions(
    conn: &mut AnyConnection,
    id: &AgreementId,
) -> Result<Vec<AgreementVersionRecord>> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM agreement_versions WHERE agreement_id = $1 ORDER BY version"
    );
    let rows = sqlx::query(&sql)
        .bind(id.to_string())
        .fetch_all(conn)
        .await?;
    rows.iter().map(version_from_row).collect()
}

async fn signatures(
    conn: &mut AnyConnection,
    id: &AgreementId,
    v: u32,
) -> Result<Vec<SignatureRecord>> {
    let rows = sqlx::query(
        "SELECT member_id, key_id, digest, signature, signed_at FROM agreement_signatures \
         WHERE agreement_id = $1 AND version = $2 ORDER BY member_id",
    )
    .bind(id.to_string())
    .bind(i64::from(v))
    .fetch_all(conn)
    .await?;
    rows.iter().map(signature_from_row).collect()
}

async fn signing_key(conn: &mut AnyConnection, key_id: &str) -> Result<Option<SigningKeyRecord>> {
    let row = sqlx::query(
        "SELECT key_id, member_id, public_key_pem, created_at, revoked_at FROM signing_keys WHERE key_id = $1",
    )
    .bind(key_id.to_owned())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(key_from_row).transpose()
}

async fn purpose_codes(conn: &mut AnyConnection) -> Result<Vec<String>> {
    let rows = sqlx::query("SELECT code FROM purposes ORDER BY code")
        .fetch_all(conn)
        .await?;
    rows.iter().map(|r| Ok(r.try_get("code")?)).collect()
}

impl Tx {
    pub async fn insert_purpose(&mut self, code: &str, description: &str, at: &str) -> Result<()> {
        sqlx::query("INSERT INTO purposes (code, description, created_at) VALUES ($1, $2, $3)")
            .bind(code.to_owned())
            .bind(description.to_owned())
            .bind(at.to_owned())
            .execute(self.conn())
            .await
            .map_err(conflict_on_unique(|| format!("purpose {code}")))?;
        Ok(())
    }

    pub async fn purpose_codes(&mut self) -> Result<Vec<String>> {
        purpose_codes(self.conn()).await
    }

    pub async fn insert_signing_key(&mut self, key: &SigningKeyRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO signing_keys (key_id, member_id, public_key_pem, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(key.key_id.clone())
        .bind(key.member.to_string())
        .bind(key.public_key_pem.clone())
        .bind(key.created_at.clone())
        .execute(self.conn())
        .await
        .map_err(conflict_on_unique(|| format!("signing key {}", key.key_id)))?;
        Ok(())
    }

    pub async fn signing_key(&mut self, key_id: &str) -> Result<Option<SigningKeyRecord>> {
        signing_key(self.conn(), key_id).await
    }

    pub async fn revoke_signing_key(&mut self, key_id: &str, at: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE signing_keys SET revoked_at = $1 WHERE key_id = $2 AND revoked_at IS NULL",
        )
        .bind(at.to_owned())
        .bind(key_id.to_owned())
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn agreement_exists(&mut self, id: &AgreementId) -> Result<bool> {
        let row = sqlx::query("SELECT id FROM agreements WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(self.conn())
            .await?;
        Ok(row.is_some())
    }

    pub async fn insert_agreement(&mut self, id: &AgreementId, by: &str, at: &str) -> Result<()> {
        sqlx::query("INSERT INTO agreements (id, created_at, created_by) VALUES ($1, $2, $3)")
            .bind(id.to_string())
            .bind(at.to_owned())
            .bind(by.to_owned())
            .execute(self.conn())
            .await
            .map_err(conflict_on_unique(|| format!("agreement {id}")))?;
        Ok(())
    }

    /// Adds a version (normally a draft), with its parties.
    pub async fn insert_version(&mut self, v: &AgreementVersionRecord) -> Result<()> {
        let terms = serde_json::to_string(&v.terms).map_err(|e| corrupt("agreement terms", e))?;
        sqlx::query(
            "INSERT INTO agreement_versions (agreement_id, version, supersedes, state, terms, digest, \
             validity_end, state_reason, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        )
        .bind(v.id.to_string())
        .bind(i64::from(v.version))
        .bind(v.supersedes.map(i64::from))
        .bind(v.state.as_str())
        .bind(terms)
        .bind(v.digest.clone())
        .bind(v.terms.validity.end.map(crate::format_time))
        .bind(v.state_reason.clone())
        .bind(v.created_at.clone())
        .execute(self.conn())
        .await
        .map_err(conflict_on_unique(|| format!("agreement {} version {}", v.id, v.version)))?;
        self.replace_parties(&v.id, v.version, &v.terms).await
    }

    async fn replace_parties(
        &mut self,
        id: &AgreementId,
        v: u32,
        terms: &AgreementTerms,
    ) -> Result<()> {
        sqlx::query("DELETE FROM agreement_parties WHERE agreement_id = $1 AND version = $2")
            .bind(id.to_string())
            .bind(i64::from(v))
            .execute(self.conn())
            .await?;
        for party in &terms.parties {
            sqlx::query("INSERT INTO agreement_parties (agreement_id, version, member_id) VALUES ($1, $2, $3)")
                .bind(id.to_string())
                .bind(i64::from(v))
                .bind(party.member.to_string())
                .execute(self.conn())
                .await
                .map_err(conflict_on_unique(|| format!("party {} of agreement {id}", party.member)))?;
        }
        Ok(())
    }

    /// Replaces a draft's terms.
    pub async fn update_terms(
        &mut self,
        id: &AgreementId,
        v: u32,
        terms: &AgreementTerms,
        at: &str,
    ) -> Result<()> {
        let json = serde_json::to_string(terms).map_err(|e| corrupt("agreement terms", e))?;
        sqlx::query(
            "UPDATE agreement_versions SET terms = $1, validity_end = $2, updated_at = $3 \
             WHERE agreement_id = $4 AND version = $5",
        )
        .bind(json)
        .bind(terms.validity.end.map(crate::format_time))
        .bind(at.to_owned())
        .bind(id.to_string())
        .bind(i64::from(v))
        .execute(self.conn())
        .await?;
        self.replace_parties(id, v, terms).await
    }

    /// Moves a version to `state`, with the reason and (on proposal) the digest.
    pub async fn set_state(
        &mut self,
        id: &AgreementId,
        v: u32,
        state: AgreementState,
        reason: Option<&str>,
        digest: Option<&str>,
        at: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE agreement_versions SET state = $1, state_reason = $2, \
             digest = COALESCE($3, digest), updated_at = $4 WHERE agreement_id = $5 AND version = $6",
        )
        .bind(state.as_str())
        .bind(reason.map(str::to_owned))
        .bind(digest.map(str::to_owned))
        .bind(at.to_owned())
        .bind(id.to_string())
        .bind(i64::from(v))
        .execute(self.conn())
        .await?;
        Ok(())
    }

    pub async fn insert_signature(
        &mut self,
        id: &AgreementId,
        v: u32,
        s: &SignatureRecord,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO agreement_signatures (agreement_id, version, member_id, key_id, digest, signature, signed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id.to_string())
        .bind(i64::from(v))
        .bind(s.member.to_string())
        .bind(s.key_id.clone())
        .bind(s.digest.clone())
        .bind(s.signature.clone())
        .bind(s.signed_at.clone())
        .execute(self.conn())
        .await
        .map_err(conflict_on_unique(|| format!("a signature of {} on agreement {id} version {v}", s.member)))?;
        Ok(())
    }

    pub async fn version(
        &mut self,
        id: &AgreementId,
        v: u32,
    ) -> Result<Option<AgreementVersionRecord>> {
        version(self.conn(), id, v).await
    }

    pub async fn versions(&mut self, id: &AgreementId) -> Result<Vec<AgreementVersionRecord>> {
        versions(self.conn(), id).await
    }

    pub async fn signatures(&mut self, id: &AgreementId, v: u32) -> Result<Vec<SignatureRecord>> {
        signatures(self.conn(), id, v).await
    }

    /// Appends to an agreement's history.
    pub async fn add_event(&mut self, id: &AgreementId, e: &AgreementEvent) -> Result<()> {
        let row = sqlx::query(
            "SELECT COALESCE(MAX(seq), 0) AS n FROM agreement_events WHERE agreement_id = $1",
        )
        .bind(id.to_string())
        .fetch_one(self.conn())
        .await?;
        let next: i64 = row.try_get::<i64, _>("n")? + 1;
        sqlx::query(
            "INSERT INTO agreement_events (agreement_id, seq, version, at, actor, action, from_state, to_state, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id.to_string())
        .bind(next)
        .bind(i64::from(e.version))
        .bind(e.at.clone())
        .bind(e.actor.clone())
        .bind(e.action.clone())
        .bind(e.from_state.clone())
        .bind(e.to_state.clone())
        .bind(e.detail.clone())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Versions in force whose validity ended by `now` (RFC 3339 text).
    pub async fn due_for_expiry(&mut self, now: &str) -> Result<Vec<(AgreementId, u32)>> {
        due_for_expiry(self.conn(), now).await
    }
}

async fn due_for_expiry(conn: &mut AnyConnection, now: &str) -> Result<Vec<(AgreementId, u32)>> {
    {
        let rows = sqlx::query(
            "SELECT agreement_id, version FROM agreement_versions \
             WHERE state IN ('active', 'suspended') AND validity_end IS NOT NULL AND validity_end <= $1",
        )
        .bind(now.to_owned())
        .fetch_all(conn)
        .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("agreement_id")?;
                Ok((
                    id.parse().map_err(|e| corrupt("agreement id", e))?,
                    version_u32(r.try_get("version")?)?,
                ))
            })
            .collect()
    }
}

impl Store {
    /// Versions in force whose validity ended by `now` (a read: callers
    /// open a write transaction only when there is something to expire).
    pub async fn due_for_expiry(&self, now: &str) -> Result<Vec<(AgreementId, u32)>> {
        due_for_expiry(&mut *self.read().await?, now).await
    }

    pub async fn purposes(&self) -> Result<Vec<PurposeRecord>> {
        let rows = sqlx::query("SELECT code, description, created_at FROM purposes ORDER BY code")
            .fetch_all(&mut *self.read().await?)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(PurposeRecord {
                    code: r.try_get("code")?,
                    description: r.try_get("description")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    pub async fn signing_key(&self, key_id: &str) -> Result<Option<SigningKeyRecord>> {
        signing_key(&mut *self.read().await?, key_id).await
    }

    pub async fn signing_keys_of(&self, member: &MemberId) -> Result<Vec<SigningKeyRecord>> {
        let rows = sqlx::query(
            "SELECT key_id, member_id, public_key_pem, created_at, revoked_at FROM signing_keys \
             WHERE member_id = $1 ORDER BY created_at, key_id",
        )
        .bind(member.to_string())
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    pub async fn agreement_version(
        &self,
        id: &AgreementId,
        v: u32,
    ) -> Result<Option<AgreementVersionRecord>> {
        version(&mut *self.read().await?, id, v).await
    }

    pub async fn agreement_versions(
        &self,
        id: &AgreementId,
    ) -> Result<Vec<AgreementVersionRecord>> {
        versions(&mut *self.read().await?, id).await
    }

    pub async fn agreement_signatures(
        &self,
        id: &AgreementId,
        v: u32,
    ) -> Result<Vec<SignatureRecord>> {
        signatures(&mut *self.read().await?, id, v).await
    }

    pub async fn agreement_events(&self, id: &AgreementId) -> Result<Vec<AgreementEvent>> {
        let rows = sqlx::query(
            "SELECT seq, version, at, actor, action, from_state, to_state, detail FROM agreement_events \
             WHERE agreement_id = $1 ORDER BY seq",
        )
        .bind(id.to_string())
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// The latest version of each agreement, optionally only those where
    /// `member` is a party or in `state`, ordered by id.
    pub async fn latest_agreement_versions(
        &self,
        member: Option<&MemberId>,
        state: Option<AgreementState>,
    ) -> Result<Vec<AgreementVersionRecord>> {
        let mut sql = format!(
            "SELECT {VERSION_COLUMNS} FROM agreement_versions v WHERE version = \
             (SELECT MAX(version) FROM agreement_versions w WHERE w.agreement_id = v.agreement_id)"
        );
        let mut args = Vec::new();
        if let Some(m) = member {
            args.push(m.to_string());
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM agreement_parties p WHERE p.agreement_id = v.agreement_id \
                 AND p.version = v.version AND p.member_id = ${})",
                args.len()
            ));
        }
        if let Some(s) = state {
            args.push(s.as_str().to_owned());
            sql.push_str(&format!(" AND state = ${}", args.len()));
        }
        sql.push_str(" ORDER BY agreement_id");
        let mut query = sqlx::query(&sql);
        for a in &args {
            query = query.bind(a.as_str());
        }
        let rows = query.fetch_all(&mut *self.read().await?).await?;
        rows.iter().map(version_from_row).collect()
    }

    /// Every version in force (active or suspended): what the index holds.
    pub async fn versions_in_force(&self) -> Result<Vec<AgreementVersionRecord>> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM agreement_versions WHERE state IN ('active', 'suspended') \
             ORDER BY agreement_id, version"
        );
        let rows = sqlx::query(&sql)
            .fetch_all(&mut *self.read().await?)
            .await?;
        rows.iter().map(version_from_row).collect()
    }

    pub async fn purpose_codes(&self) -> Result<Vec<String>> {
        purpose_codes(&mut *self.read().await?).await
    }
}
