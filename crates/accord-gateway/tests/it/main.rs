//! The gateway's integration tests: a real registry on loopback, and the
//! gateway's configuration source following it over HTTP.

mod audit_store;
mod exchange;
mod federation;
mod support;
mod tls;
