//! The lifecycle of an agreement version, as pure rules.
//!
//! ```text
//! draft ──propose──▶ proposed ──(last signature)──▶ active ◀──resume── suspended
//!   ▲ edit             │ terminate                   │ suspend ──────────▶ │
//!   └──                ▼                             ├── terminate ──▶ terminated
//!                  terminated                        ├── validity ends ─▶ expired
//!                                                    └── amendment fully signed ─▶ superseded
//! ```
//!
//! An amendment is a new version (a draft that supersedes the current one);
//! the current version stays in force until the amendment is fully signed.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::RuleViolation;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgreementState {
    Draft,
    Proposed,
    Active,
    Suspended,
    Terminated,
    Expired,
    Superseded,
}

impl AgreementState {
    pub fn as_str(&self) -> &'static str {
        match self {
            AgreementState::Draft => "draft",
            AgreementState::Proposed => "proposed",
            AgreementState::Active => "active",
            AgreementState::Suspended => "suspended",
            AgreementState::Terminated => "terminated",
            AgreementState::Expired => "expired",
            AgreementState::Superseded => "superseded",
        }
    }

    pub fn parse(s: &str) -> Option<AgreementState> {
        [
            AgreementState::Draft,
            AgreementState::Proposed,
            AgreementState::Active,
            AgreementState::Suspended,
            AgreementState::Terminated,
            AgreementState::Expired,
            AgreementState::Superseded,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    /// Is this version in force (active or suspended), so the index holds it?
    pub fn in_force(&self) -> bool {
        matches!(self, AgreementState::Active | AgreementState::Suspended)
    }

    /// No transition leaves these states.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            AgreementState::Terminated | AgreementState::Expired | AgreementState::Superseded
        )
    }
}

/// Something a party or the federation does to an agreement version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Edit,
    Propose,
    Sign,
    Suspend,
    Resume,
    Terminate,
    Amend,
}

impl Action {
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Edit => "edit",
            Action::Propose => "propose",
            Action::Sign => "sign",
            Action::Suspend => "suspend",
            Action::Resume => "resume",
            Action::Terminate => "terminate",
            Action::Amend => "amend",
        }
    }
}

/// The state `action` leads to from `state`, or why it is not allowed.
/// (`Sign` stays `Proposed`; the caller activates once every party signed.)
pub fn transition(state: AgreementState, action: Action) -> Result<AgreementState, RuleViolation> {
    use AgreementState::*;
    let next = match (state, action) {
        (Draft, Action::Edit) => Some(Draft),
        (Draft, Action::Propose) => Some(Proposed),
        (Proposed, Action::Sign) => Some(Proposed),
        (Active, Action::Suspend) => Some(Suspended),
        (Suspended, Action::Resume) => Some(Active),
        (Proposed | Active | Suspended, Action::Terminate) => Some(Terminated),
        (Active | Suspended, Action::Amend) => Some(state),
        _ => None,
    };
    next.ok_or_else(|| {
        let hint = match (state, action) {
            (Active, Action::Sign) => "; it is already fully signed",
            (Active | Suspended, Action::Edit) => "; amend it instead, which makes a new version",
            (Proposed, Action::Edit) => {
                "; a proposed version is fixed, so its signatures stay valid"
            }
            (s, _) if s.is_final() => "; it is no longer in force",
            _ => "",
        };
        RuleViolation::new(
            "transition-not-allowed",
            format!(
                "cannot {} an agreement that is {}{hint}",
                action.as_str(),
                state.as_str()
            ),
        )
    })
}

/// The state as of `now`: a version in force whose validity ended is expired.
pub fn effective_state(
    state: AgreementState,
    validity_end: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> AgreementState {
    match validity_end {
        Some(end) if state.in_force() && end <= now => AgreementState::Expired,
        _ => state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AgreementState::*;

    #[test]
    fn allowed_and_refused_transitions() {
        assert_eq!(transition(Draft, Action::Propose).unwrap(), Proposed);
        assert_eq!(transition(Active, Action::Suspend).unwrap(), Suspended);
        assert_eq!(transition(Suspended, Action::Resume).unwrap(), Active);
        assert_eq!(transition(Active, Action::Terminate).unwrap(), Terminated);
        let err = transition(Active, Action::Sign).unwrap_err();
        assert_eq!(err.rule, "transition-not-allowed");
        assert!(err.detail.contains("already fully signed"));
        assert!(transition(Terminated, Action::Amend)
            .unwrap_err()
            .detail
            .contains("no longer in force"));
        assert!(transition(Proposed, Action::Edit).is_err());
        assert!(transition(Draft, Action::Sign).is_err());
        assert!(transition(Expired, Action::Resume).is_err());
    }

    #[test]
    fn validity_end_expires_versions_in_force() {
        let end = time::macros::datetime!(2026-06-30 23:59:59 UTC);
        let before = time::macros::datetime!(2026-06-01 0:00 UTC);
        let after = time::macros::datetime!(2026-07-01 0:00 UTC);
        assert_eq!(effective_state(Active, Some(end), before), Active);
        assert_eq!(effective_state(Active, Some(end), after), Expired);
        assert_eq!(effective_state(Suspended, Some(end), after), Expired);
        assert_eq!(effective_state(Proposed, Some(end), after), Proposed);
        assert_eq!(effective_state(Active, None, after), Active);
    }
}
