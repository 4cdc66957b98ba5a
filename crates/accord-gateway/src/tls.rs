//! Mutual TLS between gateways: placeholder, being written.
