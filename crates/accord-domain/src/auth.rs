//! Who may change what in the registry.
//!
//! Reading the public catalogue needs no role. Every write is made under a
//! role carried by a bearer token: the federation administrator may change
//! anything; a member administrator only its own member's subsystems,
//! services and gateways. The rule is a pure function so the HTTP layer and
//! the tests ask the same question.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::id::MemberId;

/// A role a token is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "role", rename_all = "kebab-case")]
pub enum Role {
    /// Runs the federation: members, certificates, tokens.
    FederationAdmin,
    /// Administers one member's subsystems, services and gateways.
    MemberAdmin {
        #[schema(value_type = String)]
        member: MemberId,
    },
}

impl Role {
    /// May this role change what belongs to `member`?
    pub fn may_administer(&self, member: &MemberId) -> bool {
        match self {
            Role::FederationAdmin => true,
            Role::MemberAdmin { member: own } => own == member,
        }
    }

    /// May this role change the federation itself (members, tokens)?
    pub fn is_federation_admin(&self) -> bool {
        matches!(self, Role::FederationAdmin)
    }

    /// The name stored with a token.
    pub fn kind(&self) -> &'static str {
        match self {
            Role::FederationAdmin => "federation-admin",
            Role::MemberAdmin { .. } => "member-admin",
        }
    }

    /// The member a member administrator is scoped to.
    pub fn member(&self) -> Option<&MemberId> {
        match self {
            Role::FederationAdmin => None,
            Role::MemberAdmin { member } => Some(member),
        }
    }

    /// Rebuilds a role from its stored kind and member.
    pub fn from_parts(kind: &str, member: Option<MemberId>) -> Result<Role, String> {
        match (kind, member) {
            ("federation-admin", None) => Ok(Role::FederationAdmin),
            ("member-admin", Some(member)) => Ok(Role::MemberAdmin { member }),
            ("member-admin", None) => Err("a member administrator needs a member".into()),
            ("federation-admin", Some(_)) => {
                Err("a federation administrator is not scoped to a member".into())
            }
            (other, _) => Err(format!(
                "unknown role {other:?}, expected federation-admin or member-admin"
            )),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::FederationAdmin => f.write_str("federation-admin"),
            Role::MemberAdmin { member } => write!(f, "member-admin of {member}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_admins_are_scoped_to_their_member() {
        let tax: MemberId = "DEMO/GOV/70000002".parse().unwrap();
        let town: MemberId = "DEMO/MUN/75000001".parse().unwrap();
        let admin = Role::MemberAdmin {
            member: tax.clone(),
        };
        assert!(admin.may_administer(&tax));
        assert!(!admin.may_administer(&town));
        assert!(!admin.is_federation_admin());
        assert!(Role::FederationAdmin.may_administer(&town));
    }

    #[test]
    fn roles_round_trip_through_their_stored_parts() {
        let m: MemberId = "DEMO/GOV/1".parse().unwrap();
        for role in [
            Role::FederationAdmin,
            Role::MemberAdmin { member: m.clone() },
        ] {
            let back = Role::from_parts(role.kind(), role.member().cloned()).unwrap();
            assert_eq!(back, role);
        }
        assert!(Role::from_parts("member-admin", None).is_err());
        assert!(Role::from_parts("root", None).is_err());
    }
}
