//! Bearer tokens: how a write proves which role it is made under.
//!
//! A token reads `accord_<id>_<secret>`. The id is public (it names the
//! token in listings and revocations); the secret is 32 random bytes shown
//! once, when the token is created, and stored only as its SHA-256. Since the
//! secret is random and long, a plain hash is enough (no password hashing is
//! needed), and a lookup by id keeps checking constant-time.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};

use accord_domain::Role;

use crate::error::ApiError;
use crate::Registry;

const PREFIX: &str = "accord_";

/// A freshly made token: the full text (shown once) and what is stored.
pub struct IssuedToken {
    pub id: String,
    pub token: String,
    pub secret_sha256: String,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("id", &self.id)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Makes a new random token.
pub fn issue_token() -> IssuedToken {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut id);
    rand::thread_rng().fill_bytes(&mut secret);
    let id = hex::encode(id);
    let secret = URL_SAFE_NO_PAD.encode(secret);
    IssuedToken {
        token: format!("{PREFIX}{id}_{secret}"),
        secret_sha256: hash_secret(&secret),
        id,
    }
}

fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Splits a presented token into id and secret, if it has the right shape.
fn split_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit());
    (id_ok && !secret.is_empty()).then_some((id, secret))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The role of the request's bearer token, checked against the registry.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub token_id: String,
    pub role: Role,
}

impl Authenticated {
    /// Refuses unless the role may change what belongs to `member`.
    pub fn require_member(&self, member: &accord_domain::MemberId) -> Result<(), ApiError> {
        if self.role.may_administer(member) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "token {} is {} and may not change {member}",
                self.token_id, self.role
            )))
        }
    }

    /// Refuses unless the role is the federation administrator.
    pub fn require_federation_admin(&self, action: &str) -> Result<(), ApiError> {
        if self.role.is_federation_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "only the federation administrator may {action}; token {} is {}",
                self.token_id, self.role
            )))
        }
    }
}

impl FromRequestParts<Registry> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, registry: &Registry) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "this change needs an Authorization: Bearer <token> header; \
                     create a token with `accord token create`",
                )
            })?;
        let value = header
            .to_str()
            .map_err(|_| ApiError::unauthorized("the Authorization header is not ASCII text"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must use the Bearer scheme")
            })?
            .trim();
        let (id, secret) = split_token(token).ok_or_else(|| {
            ApiError::unauthorized("the bearer token is malformed: expected accord_<id>_<secret>")
        })?;
        let record = registry.store.token(id).await?.ok_or_else(|| {
            ApiError::unauthorized(format!("token {id} is not known to this registry"))
        })?;
        if !constant_time_eq(
            hash_secret(secret).as_bytes(),
            record.secret_sha256.as_bytes(),
        ) {
            return Err(ApiError::unauthorized(format!(
                "the secret of token {id} is wrong"
            )));
        }
        if let Some(at) = record.revoked_at {
            return Err(ApiError::unauthorized(format!(
                "token {id} was revoked at {at}"
            )));
        }
        Ok(Authenticated {
            token_id: record.id,
            role: record.role,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_split_and_hash() {
        let issued = issue_token();
        let (id, secret) = split_token(&issued.token).unwrap();
        assert_eq!(id, issued.id);
        assert_eq!(hash_secret(secret), issued.secret_sha256);
        assert!(!format!("{issued:?}").contains(secret));
        assert!(split_token("accord_xyz_abc").is_none());
        assert!(split_token("Bearer abc").is_none());
        assert!(split_token(&format!("accord_{}_", issued.id)).is_none());
    }

    #[test]
    fn equality_is_exact() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
