-- The gateway's audit log. Portable SQL: the same file creates the schema
-- on SQLite and on PostgreSQL (see accord-gateway/src/audit_store.rs).
-- One database holds one gateway's log; it is not the registry's database.

-- One row per entry, never updated or deleted. `entry` is the entry's
-- RFC 8785 canonical JSON exactly as hashed (TEXT, never JSONB: JSONB
-- would reorder keys and normalize numbers, so the stored bytes would no
-- longer be the bytes the tree commits to). `leaf_hash` is the lower-case
-- hex of SHA-256(0x00 || entry), computed at append time.
CREATE TABLE audit_entries (
    leaf_index BIGINT PRIMARY KEY,
    entry TEXT NOT NULL,
    leaf_hash TEXT NOT NULL
);

-- One row per group commit: the signed tree head after it. `root` and
-- `signature` are lower-case hex; `at` is RFC 3339 UTC with nanoseconds,
-- fixed width (the signature covers the exact nanosecond).
CREATE TABLE audit_checkpoints (
    size BIGINT PRIMARY KEY,
    log_id TEXT NOT NULL,
    root TEXT NOT NULL,
    at TEXT NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL
);

-- The compact range after the last group commit (the roots of the perfect
-- subtrees, largest first, as concatenated hex): what a restarted gateway
-- continues from without reading the log. Written in the same transaction
-- as the entries and the checkpoint, so it always matches the last one.
CREATE TABLE audit_head (
    singleton BIGINT PRIMARY KEY CHECK (singleton = 1),
    size BIGINT NOT NULL,
    peaks TEXT NOT NULL
);
INSERT INTO audit_head (singleton, size, peaks) VALUES (1, 0, '');
