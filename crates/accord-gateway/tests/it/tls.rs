//! Tests of mutual TLS between gateways: being written.
