//! Accord's domain model: identifiers, the catalogue's entities, roles, and
//! the rules that make them valid.
//!
//! This crate does no I/O and cannot fail on the outside world: servers,
//! storage and the command line depend on it, never the other way round.
//! Everything here is a value and a rule, so the same checks hold whether a
//! member arrives through the HTTP API, the CLI or the demo seed.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod agreement;
pub mod auth;
pub mod catalogue;
pub mod configuration;
pub mod id;
pub mod monitoring;

pub use auth::Role;
pub use catalogue::{
    Country, FieldError, Gateway, GatewayCertificate, Level, Member, Sector, Service, Subsystem,
};
pub use id::{IdError, MemberId, Part, ServiceId, SubsystemId};
