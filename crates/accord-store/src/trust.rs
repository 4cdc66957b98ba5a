//! What the federation trusts: its own record (instance, CA fingerprint,
//! signing key), members' gateways and the certificates issued to them, and
//! the bearer tokens that authorize writes.
//!
//! Only public material is stored here. The CA's and the federation's
//! private keys stay in files (see `accord-ca`); tokens are stored as the
//! SHA-256 of their secret, never the secret.

use accord_domain::{Gateway, GatewayCertificate, MemberId, Role};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{conflict_on_unique, Result, Store, StoreError, Tx};

/// The federation this registry runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederationRecord {
    pub instance: String,
    pub name: String,
    /// Member classes the federation accepts, e.g. GOV, MUN, COM, NGO.
    pub member_classes: Vec<String>,
    pub ca_fingerprint_sha256: String,
    pub ca_certificate_pem: String,
    pub signing_public_key_pem: String,
    pub created_at: String,
}

/// A certificate the CA issued, to record.
#[derive(Debug, Clone)]
pub struct NewCertificate {
    pub serial: String,
    pub member: MemberId,
    pub gateway: String,
    pub subject: String,
    pub fingerprint_sha256: String,
    pub not_before: String,
    pub not_after: String,
    pub certificate_pem: String,
}

/// An audit checkpoint the registry accepted from a gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRecord {
    pub log_id: String,
    pub size: i64,
    /// Lower-case hex.
    pub root: String,
    pub at: String,
    pub key_id: String,
    /// Base64.
    pub signature: String,
    pub received_at: String,
}

/// A token to record: its id and the SHA-256 of its secret.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub id: String,
    pub secret_sha256: String,
    pub role: Role,
    pub label: String,
}

/// A stored token (without any secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub secret_sha256: String,
    pub role: Role,
    pub label: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}

fn federation_from_row(row: &AnyRow) -> Result<FederationRecord> {
    let classes: String = row.try_get("member_classes")?;
    Ok(FederationRecord {
        instance: row.try_get("instance")?,
        name: row.try_get("name")?,
        member_classes: classes.split(',').map(str::to_owned).collect(),
        ca_fingerprint_sha256: row.try_get("ca_fingerprint_sha256")?,
        ca_certificate_pem: row.try_get("ca_certificate_pem")?,
        signing_public_key_pem: row.try_get("signing_public_key_pem")?,
        created_at: row.try_get("created_at")?,
    })
}

fn gateway_from_row(row: &AnyRow) -> Result<Gateway> {
    let member: String = row.try_get("member_id")?;
    Ok(Gateway {
        member: member.parse().map_err(|e| corrupt("gateway member", e))?,
        name: row.try_get("name")?,
        address: row.try_get("address")?,
        audit_key_pem: row.try_get("audit_key_pem")?,
        created_at: row.try_get("created_at")?,
    })
}

fn certificate_from_row(row: &AnyRow) -> Result<GatewayCertificate> {
    let member: String = row.try_get("member_id")?;
    Ok(GatewayCertificate {
        serial: row.try_get("serial")?,
        member: member
            .parse()
            .map_err(|e| corrupt("certificate member", e))?,
        gateway: row.try_get("gateway_name")?,
        subject: row.try_get("subject")?,
        fingerprint_sha256: row.try_get("fingerprint_sha256")?,
        not_before: row.try_get("not_before")?,
        not_after: row.try_get("not_after")?,
        revoked_at: row.try_get("revoked_at")?,
        revocation_reason: row.try_get("revocation_reason")?,
        certificate_pem: row.try_get("certificate_pem")?,
    })
}

fn token_from_row(row: &AnyRow) -> Result<TokenRecord> {
    let kind: String = row.try_get("role")?;
    let member: Option<String> = row.try_get("member_id")?;
    let member = member
        .map(|m| m.parse::<MemberId>())
        .transpose()
        .map_err(|e| corrupt("token member", e))?;
    Ok(TokenRecord {
        id: row.try_get("id")?,
        secret_sha256: row.try_get("secret_sha256")?,
        role: Role::from_parts(&kind, member).map_err(|e| corrupt("token role", e))?,
        label: row.try_get("label")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

const CERT_COLUMNS: &str = "serial, member_id, gateway_name, subject, fingerprint_sha256, \
     not_before, not_after, revoked_at, revocation_reason, certificate_pem";
const TOKEN_COLUMNS: &str = "id, secret_sha256, role, member_id, label, created_at, revoked_at";

impl Tx {
    pub async fn insert_federation(&mut self, f: &FederationRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO federation (singleton, instance, name, member_classes, \
             ca_fingerprint_sha256, ca_certificate_pem, signing_public_key_pem, created_at) \
             VALUES (1, $1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(f.instance.clone())
        .bind(f.name.clone())
        .bind(f.member_classes.join(","))
        .bind(f.ca_fingerprint_sha256.clone())
        .bind(f.ca_certificate_pem.clone())
        .bind(f.signing_public_key_pem.clone())
        .bind(f.created_at.clone())
        .execute(self.conn())
        .await
        .map_err(conflict_on_unique(|| "the federation".to_owned()))?;
        Ok(())
    }

    pub async fn gateway(&mut self, member: &MemberId, name: &str) -> Result<Option<Gateway>> {
        let row = sqlx::query(
            "SELECT member_id, name, address, audit_key_pem, created_at FROM gateways \
             WHERE member_id = $1 AND name = $2",
        )
        .bind(member.to_string())
        .bind(name.to_owned())
        .fetch_optional(self.conn())
        .await?;
        row.as_ref().map(gateway_from_row).transpose()
    }

    /// Registers the gateway, or moves it to a new address.
    pub async fn upsert_gateway(&mut self, g: &Gateway, at: &str) -> Result<()> {
        let updated = sqlx::query(
            "UPDATE gateways SET address = $1, updated_at = $2 WHERE member_id = $3 AND name = $4",
        )
        .bind(g.address.clone())
        .bind(at.to_owned())
        .bind(g.member.to_string())
        .bind(g.name.clone())
        .execute(self.conn())
        .await?;
        if updated.rows_affected() == 0 {
            sqlx::query(
                "INSERT INTO gateways (member_id, name, address, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $4)",
            )
            .bind(g.member.to_string())
            .bind(g.name.clone())
            .bind(g.address.clone())
            .bind(at.to_owned())
            .execute(self.conn())
            .await
            .map_err(conflict_on_unique(|| {
                format!("gateway {} of {}", g.name, g.member)
            }))?;
        }
        Ok(())
    }

    pub async fn insert_certificate(&mut self, c: &NewCertificate, at: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO gateway_certificates (serial, member_id, gateway_name, subject, \
             fingerprint_sha256, not_before, not_after, certificate_pem, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(c.serial.clone())
        .bind(c.member.to_string())
        .bind(c.gateway.clone())
        .bind(c.subject.clone())
        .bind(c.fingerprint_sha256.clone())
        .bind(c.not_before.clone())
        .bind(c.not_after.clone())
        .bind(c.certificate_pem.clone())
        .bind(at.to_owned())
        .execute(self.conn())
        .await
        .map_err(conflict_on_unique(|| format!("certificate {}", c.serial)))?;
        Ok(())
    }

    pub async fn certificate(&mut self, serial: &str) -> Result<Option<GatewayCertificate>> {
        let sql = format!("SELECT {CERT_COLUMNS} FROM gateway_certificates WHERE serial = $1");
        let row = sqlx::query(&sql)
            .bind(serial.to_owned())
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(certificate_from_row).transpose()
    }

    /// Marks a certificate revoked; false if it already was.
    pub async fn revoke_certificate(
        &mut self,
        serial: &str,
        reason: &str,
        at: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE gateway_certificates SET revoked_at = $1, revocation_reason = $2 \
             WHERE serial = $3 AND revoked_at IS NULL",
        )
        .bind(at.to_owned())
        .bind(reason.to_owned())
        .bind(serial.to_owned())
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn insert_token(&mut self, t: &NewToken, at: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO tokens (id, secret_sha256, role, member_id, label, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(t.id.clone())
        .bind(t.secret_sha256.clone())
        .bind(t.role.kind())
        .bind(t.role.member().map(|m| m.to_string()))
        .bind(t.label.clone())
        .bind(at.to_owned())
        .execute(self.conn())
        .await
        .map_err(conflict_on_unique(|| format!("token {}", t.id)))?;
        Ok(())
    }

    pub async fn token(&mut self, id: &str) -> Result<Option<TokenRecord>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.to_owned())
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// Marks a token revoked; false if it already was.
    pub async fn revoke_token(&mut self, id: &str, at: &str) -> Result<bool> {
        let done =
            sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(at.to_owned())
                .bind(id.to_owned())
                .execute(self.conn())
                .await?;
        Ok(done.rows_affected() == 1)
    }
}

impl Store {
    pub async fn federation(&self) -> Result<Option<FederationRecord>> {
        let row = sqlx::query(
            "SELECT instance, name, member_classes, ca_fingerprint_sha256, ca_certificate_pem, \
             signing_public_key_pem, created_at FROM federation WHERE singleton = 1",
        )
        .fetch_optional(&mut *self.read().await?)
        .await?;
        row.as_ref().map(federation_from_row).transpose()
    }

    pub async fn gateways(&self, member: Option<&MemberId>) -> Result<Vec<Gateway>> {
        let rows = match member {
            Some(m) => {
                sqlx::query(
                    "SELECT member_id, name, address, audit_key_pem, created_at FROM gateways \
                     WHERE member_id = $1 ORDER BY member_id, name",
                )
                .bind(m.to_string())
                .fetch_all(&mut *self.read().await?)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT member_id, name, address, audit_key_pem, created_at FROM gateways \
                     ORDER BY member_id, name",
                )
                .fetch_all(&mut *self.read().await?)
                .await?
            }
        };
        rows.iter().map(gateway_from_row).collect()
    }

    pub async fn certificates(&self, member: Option<&MemberId>) -> Result<Vec<GatewayCertificate>> {
        let rows = match member {
            Some(m) => {
                let sql = format!(
                    "SELECT {CERT_COLUMNS} FROM gateway_certificates WHERE member_id = $1 \
                     ORDER BY created_at, serial"
                );
                sqlx::query(&sql)
                    .bind(m.to_string())
                    .fetch_all(&mut *self.read().await?)
                    .await?
            }
            None => {
                let sql = format!(
                    "SELECT {CERT_COLUMNS} FROM gateway_certificates ORDER BY created_at, serial"
                );
                sqlx::query(&sql)
                    .fetch_all(&mut *self.read().await?)
                    .await?
            }
        };
        rows.iter().map(certificate_from_row).collect()
    }

    pub async fn certificate(&self, serial: &str) -> Result<Option<GatewayCertificate>> {
        let sql = format!("SELECT {CERT_COLUMNS} FROM gateway_certificates WHERE serial = $1");
        let row = sqlx::query(&sql)
            .bind(serial.to_owned())
            .fetch_optional(&mut *self.read().await?)
            .await?;
        row.as_ref().map(certificate_from_row).transpose()
    }

    pub async fn token(&self, id: &str) -> Result<Option<TokenRecord>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.to_owned())
            .fetch_optional(&mut *self.read().await?)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    pub async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id");
        let rows = sqlx::query(&sql)
            .fetch_all(&mut *self.read().await?)
            .await?;
        rows.iter().map(token_from_row).collect()
    }
}

impl Store {
    /// The time of the latest change to anything the federation
    /// configuration holds: its version, as text that orders.
    pub async fn configuration_as_of(&self) -> Result<String> {
        let row = sqlx::query(
            "SELECT MAX(t) AS t FROM ( \
               SELECT MAX(created_at) AS t FROM federation \
               UNION ALL SELECT MAX(created_at) FROM members \
               UNION ALL SELECT MAX(created_at) FROM subsystems \
               UNION ALL SELECT MAX(updated_at) FROM services \
               UNION ALL SELECT MAX(updated_at) FROM gateways \
               UNION ALL SELECT MAX(created_at) FROM gateway_certificates \
               UNION ALL SELECT MAX(revoked_at) FROM gateway_certificates \
               UNION ALL SELECT MAX(updated_at) FROM agreement_versions \
               UNION ALL SELECT MAX(created_at) FROM purposes \
             ) changes",
        )
        .fetch_one(&mut *self.read().await?)
        .await?;
        let t: Option<String> = row.try_get("t")?;
        t.ok_or_else(|| StoreError::Corrupt("the federation record is missing".into()))
    }
}

fn checkpoint_from_row(row: &AnyRow) -> Result<CheckpointRecord> {
    Ok(CheckpointRecord {
        log_id: row.try_get("log_id")?,
        size: row.try_get("size")?,
        root: row.try_get("root")?,
        at: row.try_get("at")?,
        key_id: row.try_get("key_id")?,
        signature: row.try_get("signature")?,
        received_at: row.try_get("received_at")?,
    })
}

const CHECKPOINT_COLUMNS: &str = "log_id, size, root, at, key_id, signature, received_at";

impl Tx {
    /// Sets the key a gateway signs its audit checkpoints with.
    pub async fn set_gateway_audit_key(
        &mut self,
        member: &MemberId,
        name: &str,
        pem: &str,
        at: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE gateways SET audit_key_pem = $1, updated_at = $2 WHERE member_id = $3 AND name = $4",
        )
        .bind(pem.to_owned())
        .bind(at.to_owned())
        .bind(member.to_string())
        .bind(name.to_owned())
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The largest checkpoint held for a log.
    pub async fn latest_checkpoint(&mut self, log_id: &str) -> Result<Option<CheckpointRecord>> {
        let sql = format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE log_id = $1 ORDER BY size DESC LIMIT 1"
        );
        let row = sqlx::query(&sql)
            .bind(log_id.to_owned())
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(checkpoint_from_row).transpose()
    }

    pub async fn insert_checkpoint(&mut self, c: &CheckpointRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (log_id, size, root, at, key_id, signature, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(c.log_id.clone())
        .bind(c.size)
        .bind(c.root.clone())
        .bind(c.at.clone())
        .bind(c.key_id.clone())
        .bind(c.signature.clone())
        .bind(c.received_at.clone())
        .execute(self.conn())
        .await
        .map_err(conflict_on_unique(|| format!("checkpoint {} of {}", c.size, c.log_id)))?;
        Ok(())
    }
}

impl Store {
    /// Every checkpoint held for a log, smallest first.
    pub async fn checkpoints(&self, log_id: &str) -> Result<Vec<CheckpointRecord>> {
        let sql = format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE log_id = $1 ORDER BY size"
        );
        let rows = sqlx::query(&sql)
            .bind(log_id.to_owned())
            .fetch_all(&mut *self.read().await?)
            .await?;
        rows.iter().map(checkpoint_from_row).collect()
    }
}
