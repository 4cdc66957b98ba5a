//! Validation: placeholder.
