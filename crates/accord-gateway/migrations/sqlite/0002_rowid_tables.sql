-- SQLite only. In SQLite a `BIGINT PRIMARY KEY` is not an alias of the
-- rowid: each table of 0001 was a rowid B-tree plus a separate index on
-- its key, so every group commit wrote two pages for the entries and two
-- for the checkpoint (five WAL frames with the head). As `INTEGER PRIMARY
-- KEY` the key is the rowid and each table is one B-tree: three frames per
-- commit. Same columns, same values, same uniqueness; rows are copied in
-- key order. PostgreSQL keeps 0001's tables (its primary key is an index
-- beside the heap either way).
CREATE TABLE audit_entries_by_rowid (
    leaf_index INTEGER PRIMARY KEY,
    entry TEXT NOT NULL,
    leaf_hash TEXT NOT NULL
);
INSERT INTO audit_entries_by_rowid (leaf_index, entry, leaf_hash)
    SELECT leaf_index, entry, leaf_hash FROM audit_entries ORDER BY leaf_index;
DROP TABLE audit_entries;
ALTER TABLE audit_entries_by_rowid RENAME TO audit_entries;

CREATE TABLE audit_checkpoints_by_rowid (
    size INTEGER PRIMARY KEY,
    log_id TEXT NOT NULL,
    root TEXT NOT NULL,
    at TEXT NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL
);
INSERT INTO audit_checkpoints_by_rowid (size, log_id, root, at, key_id, signature)
    SELECT size, log_id, root, at, key_id, signature FROM audit_checkpoints ORDER BY size;
DROP TABLE audit_checkpoints;
ALTER TABLE audit_checkpoints_by_rowid RENAME TO audit_checkpoints;

CREATE TABLE audit_head_by_rowid (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    size BIGINT NOT NULL,
    peaks TEXT NOT NULL
);
INSERT INTO audit_head_by_rowid (singleton, size, peaks)
    SELECT singleton, size, peaks FROM audit_head;
DROP TABLE audit_head;
ALTER TABLE audit_head_by_rowid RENAME TO audit_head;
