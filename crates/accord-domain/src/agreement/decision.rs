//! Decisions: placeholder, being written.
