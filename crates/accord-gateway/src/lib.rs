//! A member's gateway: every call between agencies passes through two of
//! them. This crate holds what a gateway runs on; today that is its copy of
//! the federation ([`federation`]): the signed configuration, verified
//! against the federation's anchor key, cached on disk, followed by long
//! polling, and usable while the registry is away up to a grace period.
//! The request path (X-Road REST on the consumer side, mutual TLS between
//! gateways, decisions, signatures and the audit log) builds on it.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod audit_store;
pub mod config;
pub mod federation;
pub mod metrics;
pub mod quota;
pub mod receipt;
pub mod server;
pub mod tls;

pub use config::GatewayConfig;
pub use server::Gateway;
