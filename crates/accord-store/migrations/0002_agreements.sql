-- Co-operation agreements: the federation's purpose vocabulary, members'
-- signing keys (public halves only), agreements and their versions, the
-- parties' signatures, and the full history of what happened to each.

CREATE TABLE purposes (
    code TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE signing_keys (
    key_id TEXT PRIMARY KEY,
    member_id TEXT NOT NULL REFERENCES members (id),
    public_key_pem TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX signing_keys_by_member ON signing_keys (member_id);

CREATE TABLE agreements (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);

CREATE TABLE agreement_versions (
    agreement_id TEXT NOT NULL REFERENCES agreements (id),
    version BIGINT NOT NULL,
    supersedes BIGINT,
    state TEXT NOT NULL,
    terms TEXT NOT NULL,
    digest TEXT,
    validity_end TEXT,
    state_reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (agreement_id, version)
);
CREATE INDEX agreement_versions_by_state ON agreement_versions (state);

CREATE TABLE agreement_parties (
    agreement_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    member_id TEXT NOT NULL REFERENCES members (id),
    PRIMARY KEY (agreement_id, version, member_id),
    FOREIGN KEY (agreement_id, version) REFERENCES agreement_versions (agreement_id, version)
);
CREATE INDEX agreement_parties_by_member ON agreement_parties (member_id);

CREATE TABLE agreement_signatures (
    agreement_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    member_id TEXT NOT NULL REFERENCES members (id),
    key_id TEXT NOT NULL REFERENCES signing_keys (key_id),
    digest TEXT NOT NULL,
    signature TEXT NOT NULL,
    signed_at TEXT NOT NULL,
    PRIMARY KEY (agreement_id, version, member_id),
    FOREIGN KEY (agreement_id, version) REFERENCES agreement_versions (agreement_id, version)
);

CREATE TABLE agreement_events (
    agreement_id TEXT NOT NULL REFERENCES agreements (id),
    seq BIGINT NOT NULL,
    version BIGINT NOT NULL,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT,
    detail TEXT NOT NULL,
    PRIMARY KEY (agreement_id, seq)
);
