-- Audit anchoring: each gateway signs checkpoints of its audit log with an
-- Ed25519 key whose public half is registered with its gateway record; the
-- registry keeps every checkpoint it accepted, so a log rewritten later no
-- longer matches what the registry holds.

ALTER TABLE gateways ADD COLUMN audit_key_pem TEXT;

CREATE TABLE audit_checkpoints (
    log_id TEXT NOT NULL,
    size BIGINT NOT NULL,
    root TEXT NOT NULL,
    at TEXT NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (log_id, size)
);
