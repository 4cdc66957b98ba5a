-- Operational monitoring records that gateways report (no bodies): one per
-- exchange and side, keyed by the gateway and the record's id so a batch
-- sent twice is stored once.

CREATE TABLE operational_records (
    gateway TEXT NOT NULL,
    record_id TEXT NOT NULL,
    side TEXT NOT NULL,
    client TEXT NOT NULL,
    service TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    purpose TEXT,
    agreement TEXT,
    agreement_version BIGINT,
    grant_id TEXT,
    deny_reason TEXT,
    status BIGINT NOT NULL,
    success BIGINT NOT NULL,
    error_type TEXT,
    request_in_ms BIGINT NOT NULL,
    request_out_ms BIGINT,
    response_in_ms BIGINT,
    response_out_ms BIGINT NOT NULL,
    request_size BIGINT NOT NULL,
    response_size BIGINT NOT NULL,
    data_subject_pseudonym TEXT,
    received_at TEXT NOT NULL,
    PRIMARY KEY (gateway, record_id)
);
CREATE INDEX operational_records_by_agreement ON operational_records (agreement, request_in_ms);
CREATE INDEX operational_records_by_service ON operational_records (service, request_in_ms);
CREATE INDEX operational_records_by_subject ON operational_records (data_subject_pseudonym);
