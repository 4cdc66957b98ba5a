-- The registry's catalogue. Portable SQL: the same file creates the schema
-- on SQLite and on PostgreSQL. Identifiers are natural keys in their X-Road
-- text form; timestamps are RFC 3339 UTC text (fixed width, so they sort);
-- booleans are BIGINT 0/1 (sqlx's Any driver has no SQLite boolean).

CREATE TABLE federation (
    singleton BIGINT PRIMARY KEY CHECK (singleton = 1),
    instance TEXT NOT NULL,
    name TEXT NOT NULL,
    member_classes TEXT NOT NULL,
    ca_fingerprint_sha256 TEXT NOT NULL,
    ca_certificate_pem TEXT NOT NULL,
    signing_public_key_pem TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE members (
    id TEXT PRIMARY KEY,
    instance TEXT NOT NULL,
    class TEXT NOT NULL,
    code TEXT NOT NULL,
    name TEXT NOT NULL,
    level TEXT NOT NULL,
    country TEXT NOT NULL,
    sector TEXT NOT NULL,
    parent_id TEXT REFERENCES members (id),
    contact_name TEXT,
    contact_email TEXT,
    search_text TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX members_by_level_country ON members (level, country, sector);
CREATE INDEX members_by_country ON members (country);
CREATE INDEX members_by_sector ON members (sector);
CREATE INDEX members_by_parent ON members (parent_id);

CREATE TABLE subsystems (
    id TEXT PRIMARY KEY,
    member_id TEXT NOT NULL REFERENCES members (id),
    code TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (member_id, code)
);

-- Level, country and sector are the providing member's, copied here when
-- the service is added (members' attributes do not change), so a filtered,
-- paged search reads one narrow table in id order through one index.
-- The OpenAPI documents, which can be large, live in their own table.
CREATE TABLE services (
    id TEXT PRIMARY KEY,
    subsystem_id TEXT NOT NULL REFERENCES subsystems (id),
    member_id TEXT NOT NULL REFERENCES members (id),
    code TEXT NOT NULL,
    version TEXT,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    personal_data BIGINT NOT NULL,
    data_categories TEXT NOT NULL,
    openapi_version TEXT NOT NULL,
    level TEXT NOT NULL,
    country TEXT NOT NULL,
    sector TEXT NOT NULL,
    search_text TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX services_by_member ON services (member_id, id);
CREATE INDEX services_by_subsystem ON services (subsystem_id);
CREATE INDEX services_by_level_country ON services (level, country, id);
CREATE INDEX services_by_country ON services (country, id);
CREATE INDEX services_by_sector ON services (sector, id);

CREATE TABLE service_documents (
    service_id TEXT PRIMARY KEY REFERENCES services (id),
    document TEXT NOT NULL
);

CREATE TABLE gateways (
    member_id TEXT NOT NULL REFERENCES members (id),
    name TEXT NOT NULL,
    address TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (member_id, name)
);

CREATE TABLE gateway_certificates (
    serial TEXT PRIMARY KEY,
    member_id TEXT NOT NULL,
    gateway_name TEXT NOT NULL,
    subject TEXT NOT NULL,
    fingerprint_sha256 TEXT NOT NULL UNIQUE,
    not_before TEXT NOT NULL,
    not_after TEXT NOT NULL,
    certificate_pem TEXT NOT NULL,
    revoked_at TEXT,
    revocation_reason TEXT,
    created_at TEXT NOT NULL,
    FOREIGN KEY (member_id, gateway_name) REFERENCES gateways (member_id, name)
);
CREATE INDEX gateway_certificates_by_member ON gateway_certificates (member_id);

CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    role TEXT NOT NULL,
    member_id TEXT REFERENCES members (id),
    label TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
