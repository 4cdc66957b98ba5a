//! Accord's integration tests: one binary, real servers on loopback, real
//! SQLite and PostgreSQL databases, and the real `accord` executable.
//!
//! PostgreSQL is found at `ACCORD_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); each test gets its own
//! schema. Outside CI a missing PostgreSQL skips those tests with a notice;
//! under `CI=true` it fails them.

mod support;

mod agreements;
mod api;
mod audit;
mod bench;
mod cli;
mod demo;
mod gateway;
mod odrl;
