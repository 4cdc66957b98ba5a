//! The durable audit log: placeholder, being written.
