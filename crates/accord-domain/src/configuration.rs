//! The signed federation configuration: everything a gateway needs to
//! decide and route requests with no network call per request.
//!
//! The registry publishes one document: the federation's members and
//! services, the gateways with the fingerprints of their valid certificates,
//! the revoked certificates, the CA certificate, the purpose vocabulary and
//! every agreement version in force (from which the gateway compiles its
//! decision index). The payload's canonical form (RFC 8785) has a SHA-256
//! digest, and the federation signs a domain-separated message naming that
//! digest with its Ed25519 key. A gateway is given the federation's public
//! key at set-up (its trust anchor) and accepts a configuration only if the
//! signature verifies and the configuration is not older than the one it
//! already has.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::agreement::{AgreementId, AgreementState, AgreementTerms};
use crate::catalogue::{Country, Level, Sector};
use crate::id::{MemberId, ServiceId};

/// The format tag every payload carries.
pub const FORMAT: &str = "accord-federation-configuration/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigMember {
    pub id: MemberId,
    pub name: String,
    pub level: Level,
    pub country: Country,
    pub sector: Sector,
    /// Codes of its subsystems.
    pub subsystems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigService {
    pub id: ServiceId,
    pub personal_data: bool,
}

/// A certificate a gateway may present: valid, not revoked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigCertificate {
    pub serial: String,
    pub fingerprint_sha256: String,
    pub not_after: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigGateway {
    pub member: MemberId,
    pub name: String,
    pub address: String,
    pub certificates: Vec<ConfigCertificate>,
    /// The key its audit checkpoints (and signed tree heads) verify with.
    pub audit_key_pem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokedCertificate {
    pub serial: String,
    pub fingerprint_sha256: String,
    pub revoked_at: String,
}

/// An agreement version in force (active or suspended).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigAgreement {
    #[schema(value_type = String)]
    pub id: AgreementId,
    pub version: u32,
    pub state: AgreementState,
    /// The digest every party signed.
    pub digest: String,
    pub terms: AgreementTerms,
}

/// What the federation publishes to its gateways.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigurationPayload {
    pub format: String,
    pub instance: String,
    pub name: String,
    /// The time of the latest change the configuration reflects (RFC 3339,
    /// fixed width, so it orders as text): a gateway refuses a configuration
    /// older than the one it has.
    pub as_of: String,
    pub ca_certificate_pem: String,
    pub members: Vec<ConfigMember>,
    pub services: Vec<ConfigService>,
    pub gateways: Vec<ConfigGateway>,
    pub revoked_certificates: Vec<RevokedCertificate>,
    pub purposes: Vec<String>,
    pub agreements: Vec<ConfigAgreement>,
}

/// A payload with its digest and the federation's signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignedConfiguration {
    pub payload: ConfigurationPayload,
    /// SHA-256 (hex) of the payload's canonical form; also its ETag.
    pub digest: String,
    /// Base64 Ed25519 signature over [`signing_message`] of the digest.
    pub signature: String,
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigurationError {
    #[error("the configuration has format {found:?}, this gateway reads {FORMAT}")]
    Format { found: String },
    #[error("the configuration cannot be canonicalized: {0}")]
    Canonical(String),
    #[error("the configuration's digest {claimed} does not match its content ({actual})")]
    Digest { claimed: String, actual: String },
    #[error("the configuration's signature is malformed")]
    MalformedSignature,
    #[error("the configuration's signature does not verify with the federation's anchor key")]
    BadSignature,
    #[error("the configuration is for federation {found}, this gateway belongs to {expected}")]
    Instance { expected: String, found: String },
    #[error("the configuration as of {offered} is older than the one held, as of {held}")]
    Older { offered: String, held: String },
}

/// The digest of a payload's canonical form.
pub fn digest(payload: &ConfigurationPayload) -> Result<String, ConfigurationError> {
    let bytes =
        serde_jcs::to_vec(payload).map_err(|e| ConfigurationError::Canonical(e.to_string()))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// What the federation's key signs for a configuration digest.
pub fn signing_message(digest_hex: &str) -> Vec<u8> {
    format!("accord federation configuration v1\n{digest_hex}").into_bytes()
}

impl SignedConfiguration {
    /// Signs a payload with `sign` (the federation key's signing function).
    pub fn sign(
        payload: ConfigurationPayload,
        sign: impl FnOnce(&[u8]) -> Signature,
    ) -> Result<SignedConfiguration, ConfigurationError> {
        let digest = digest(&payload)?;
        let signature = STANDARD.encode(sign(&signing_message(&digest)).to_bytes());
        Ok(SignedConfiguration {
            payload,
            digest,
            signature,
        })
    }

    /// Checks format, digest and signature against the anchor, and that
    /// the configuration is for `instance` and not older than `held_as_of`.
    pub fn verify(
        &self,
        anchor: &VerifyingKey,
        instance: &str,
        held_as_of: Option<&str>,
    ) -> Result<(), ConfigurationError> {
        if self.payload.format != FORMAT {
            return Err(ConfigurationError::Format {
                found: self.payload.format.clone(),
            });
        }
        let actual = digest(&self.payload)?;
        if actual != self.digest {
            return Err(ConfigurationError::Digest {
                claimed: self.digest.clone(),
                actual,
            });
        }
        let bytes = STANDARD
            .decode(&self.signature)
            .map_err(|_| ConfigurationError::MalformedSignature)?;
        let signature =
            Signature::from_slice(&bytes).map_err(|_| ConfigurationError::MalformedSignature)?;
        anchor
            .verify(&signing_message(&self.digest), &signature)
            .map_err(|_| ConfigurationError::BadSignature)?;
        if self.payload.instance != instance {
            return Err(ConfigurationError::Instance {
                expected: instance.to_owned(),
                found: self.payload.instance.clone(),
            });
        }
        if let Some(held) = held_as_of {
            if self.payload.as_of.as_str() < held {
                return Err(ConfigurationError::Older {
                    offered: self.payload.as_of.clone(),
                    held: held.to_owned(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn payload() -> ConfigurationPayload {
        ConfigurationPayload {
            format: FORMAT.into(),
            instance: "DEMO".into(),
            name: "Demo".into(),
            as_of: "2026-11-22T10:00:00.000Z".into(),
            ca_certificate_pem: "-----BEGIN CERTIFICATE-----".into(),
            members: vec![ConfigMember {
                id: "DEMO/GOV/1".parse().unwrap(),
                name: "Register".into(),
                level: Level::National,
                country: "EE".parse().unwrap(),
                sector: Sector::Public,
                subsystems: vec!["pop".into()],
            }],
            services: vec![ConfigService {
                id: "DEMO/GOV/1/pop/residence/v1".parse().unwrap(),
                personal_data: true,
            }],
            gateways: vec![],
            revoked_certificates: vec![],
            purposes: vec!["tax-assessment".into()],
            agreements: vec![],
        }
    }

    #[test]
    fn signed_configurations_verify_and_tampering_is_caught() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let signed = SignedConfiguration::sign(payload(), |m| key.sign(m)).unwrap();
        signed.verify(&key.verifying_key(), "DEMO", None).unwrap();
        signed
            .verify(
                &key.verifying_key(),
                "DEMO",
                Some("2026-11-22T09:00:00.000Z"),
            )
            .unwrap();

        let mut tampered = signed.clone();
        tampered.payload.services[0].personal_data = false;
        assert!(matches!(
            tampered.verify(&key.verifying_key(), "DEMO", None),
            Err(ConfigurationError::Digest { .. })
        ));
        let mut resigned_digest = tampered.clone();
        resigned_digest.digest = digest(&tampered.payload).unwrap();
        assert_eq!(
            resigned_digest.verify(&key.verifying_key(), "DEMO", None),
            Err(ConfigurationError::BadSignature)
        );
        let other = SigningKey::from_bytes(&[4; 32]);
        assert_eq!(
            signed.verify(&other.verifying_key(), "DEMO", None),
            Err(ConfigurationError::BadSignature)
        );
        assert!(matches!(
            signed.verify(&key.verifying_key(), "EE", None),
            Err(ConfigurationError::Instance { .. })
        ));
        assert!(matches!(
            signed.verify(
                &key.verifying_key(),
                "DEMO",
                Some("2026-11-23T00:00:00.000Z")
            ),
            Err(ConfigurationError::Older { .. })
        ));
    }

    #[test]
    fn the_digest_does_not_depend_on_json_layout() {
        let p = payload();
        let pretty = serde_json::to_string_pretty(&p).unwrap();
        let back: ConfigurationPayload = serde_json::from_str(&pretty).unwrap();
        assert_eq!(digest(&back).unwrap(), digest(&p).unwrap());
    }
}
