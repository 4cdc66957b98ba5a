//! Co-operation agreements: multi-party, signed, versioned — and the
//! access policy itself.
//!
//! An agreement's terms ([`terms`]) say who may call what, for which
//! purposes and under which limits, what each party contributes, how
//! success is measured and how conflicts are resolved. A proposed version
//! has a canonical form (RFC 8785 JSON canonicalization of its terms and
//! identity) whose SHA-256 digest every party signs with its own Ed25519
//! key ([`canonical`]); it becomes active only when all have signed the
//! same digest. Lifecycle rules are pure functions here ([`lifecycle`]);
//! the registry stores what they decide. Active agreements compile into an
//! index ([`index`]) that answers each request with the agreement and grant
//! that permit it, or the reason it is denied ([`decision`]).

pub mod canonical;
pub mod decision;
pub mod index;
pub mod lifecycle;
pub mod odrl;
pub mod terms;
pub mod validate;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use lifecycle::AgreementState;
pub use terms::*;

/// An agreement's identifier: lower-case letters, digits and hyphens, 3 to
/// 64 characters, starting with a letter or digit (e.g.
/// `tallinn-population-residence`). Versions are numbered from 1.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgreementId(String);

impl AgreementId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for AgreementId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = (3..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-');
        if ok {
            Ok(AgreementId(s.to_owned()))
        } else {
            Err(format!(
                "{s:?} is not an agreement id (3 to 64 lower-case letters, digits and hyphens, not starting with a hyphen)"
            ))
        }
    }
}

impl fmt::Display for AgreementId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for AgreementId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AgreementId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A rule of the agreement model that a request broke. The slug is stable
/// (it is part of the API's problem bodies); the detail says what exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleViolation {
    /// E.g. `unknown-purpose`, `signature-by-non-party`, `transition-not-allowed`.
    pub rule: &'static str,
    /// The input field concerned, if one is (e.g. `grants[0].purposes[1]`).
    pub field: Option<String>,
    pub detail: String,
}

impl RuleViolation {
    pub fn new(rule: &'static str, detail: impl Into<String>) -> Self {
        RuleViolation {
            rule,
            field: None,
            detail: detail.into(),
        }
    }

    pub fn at(rule: &'static str, field: impl Into<String>, detail: impl Into<String>) -> Self {
        RuleViolation {
            rule,
            field: Some(field.into()),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for RuleViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{field}: {} ({})", self.detail, self.rule),
            None => write!(f, "{} ({})", self.detail, self.rule),
        }
    }
}

impl std::error::Error for RuleViolation {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_ids() {
        assert!("tallinn-residence".parse::<AgreementId>().is_ok());
        assert!("ab".parse::<AgreementId>().is_err());
        assert!("-abc".parse::<AgreementId>().is_err());
        assert!("Tallinn".parse::<AgreementId>().is_err());
    }
}
