//! Tests of the durable audit log: being written.
