//! The remote-signing tables of both backends (migration 9, and 14: the outbox lease and the
//! cancel retry schedule; see the table list in [`super`]).
//!
//! # Invariants
//!
//! - Append only: an applied migration is never edited; a new change is a new version listed in
//!   `sqlite.rs` / `postgres.rs` (the one migration list per backend).
//! - Every statement is `IF NOT EXISTS`, so re-running the version is harmless.
//! - This file depends on nothing, so a backend can list this migration without importing the
//!   signature store built on top of it.

pub(crate) const SQLITE_V9: &str = "
CREATE TABLE IF NOT EXISTS signature_requests (
    request_id          TEXT PRIMARY KEY,
    idempotency_key     TEXT NOT NULL UNIQUE,
    source              TEXT NOT NULL,
    dossier_code        TEXT,
    dossier_key         TEXT,
    service             TEXT NOT NULL,
    signer_user_id      TEXT NOT NULL,
    signer_credential   TEXT,
    format              TEXT NOT NULL,
    reason              TEXT NOT NULL,
    document_ref        TEXT,
    document_sha256     TEXT NOT NULL,
    created_ms          INTEGER NOT NULL,
    deadline_ms         INTEGER NOT NULL,
    state               TEXT NOT NULL,
    certificate         BLOB,
    digest              BLOB,
    prepared            BLOB,
    transaction_id      TEXT,
    send_holder         TEXT,
    send_started_ms     INTEGER,
    send_lease_until_ms INTEGER,
    sends               INTEGER NOT NULL,
    resends             INTEGER NOT NULL,
    polls               INTEGER NOT NULL,
    next_poll_ms        INTEGER,
    last_poll_ms        INTEGER,
    lease_holder        TEXT,
    lease_until_ms      INTEGER,
    signature           BLOB,
    assembled_location  TEXT,
    failure_kind        TEXT,
    failure_reason      TEXT,
    cancelled_by        TEXT,
    service_cancel      TEXT,
    updated_ms          INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS signature_requests_poll
    ON signature_requests (service, state, next_poll_ms);
CREATE INDEX IF NOT EXISTS signature_requests_deadline ON signature_requests (state, deadline_ms);
CREATE INDEX IF NOT EXISTS signature_requests_send ON signature_requests (state, send_lease_until_ms);
CREATE INDEX IF NOT EXISTS signature_requests_dossier ON signature_requests (dossier_code);
CREATE INDEX IF NOT EXISTS signature_requests_cancel ON signature_requests (service_cancel);
CREATE TABLE IF NOT EXISTS signature_transitions (
    request_id TEXT NOT NULL REFERENCES signature_requests (request_id),
    seq        INTEGER NOT NULL,
    from_state TEXT,
    to_state   TEXT NOT NULL,
    actor      TEXT NOT NULL,
    detail     TEXT NOT NULL,
    at_ms      INTEGER NOT NULL,
    PRIMARY KEY (request_id, seq)
) STRICT;
CREATE TABLE IF NOT EXISTS signature_outbox (
    id           TEXT PRIMARY KEY,
    request_id   TEXT NOT NULL,
    kind         TEXT NOT NULL,
    body         TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    published_ms INTEGER
) STRICT;
CREATE INDEX IF NOT EXISTS signature_outbox_pending ON signature_outbox (published_ms, created_ms);
CREATE TABLE IF NOT EXISTS signature_blobs (
    request_id TEXT NOT NULL,
    kind       TEXT NOT NULL,
    bytes      BLOB NOT NULL,
    size       INTEGER NOT NULL,
    sha256     TEXT NOT NULL,
    stored_ms  INTEGER NOT NULL,
    PRIMARY KEY (request_id, kind)
) STRICT;
";

pub(crate) const PG_V9: &str = "
CREATE TABLE IF NOT EXISTS signature_requests (
    request_id          TEXT PRIMARY KEY,
    idempotency_key     TEXT NOT NULL UNIQUE,
    source              TEXT NOT NULL,
    dossier_code        TEXT,
    dossier_key         TEXT,
    service             TEXT NOT NULL,
    signer_user_id      TEXT NOT NULL,
    signer_credential   TEXT,
    format              TEXT NOT NULL,
    reason              TEXT NOT NULL,
    document_ref        TEXT,
    document_sha256     TEXT NOT NULL,
    created_ms          BIGINT NOT NULL,
    deadline_ms         BIGINT NOT NULL,
    state               TEXT NOT NULL,
    certificate         BYTEA,
    digest              BYTEA,
    prepared            BYTEA,
    transaction_id      TEXT,
    send_holder         TEXT,
    send_started_ms     BIGINT,
    send_lease_until_ms BIGINT,
    sends               BIGINT NOT NULL,
    resends             BIGINT NOT NULL,
    polls               BIGINT NOT NULL,
    next_poll_ms        BIGINT,
    last_poll_ms        BIGINT,
    lease_holder        TEXT,
    lease_until_ms      BIGINT,
    signature           BYTEA,
    assembled_location  TEXT,
    failure_kind        TEXT,
    failure_reason      TEXT,
    cancelled_by        TEXT,
    service_cancel      TEXT,
    updated_ms          BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS signature_requests_poll
    ON signature_requests (service, state, next_poll_ms);
CREATE INDEX IF NOT EXISTS signature_requests_deadline ON signature_requests (state, deadline_ms);
CREATE INDEX IF NOT EXISTS signature_requests_send ON signature_requests (state, send_lease_until_ms);
CREATE INDEX IF NOT EXISTS signature_requests_dossier ON signature_requests (dossier_code);
CREATE INDEX IF NOT EXISTS signature_requests_cancel ON signature_requests (service_cancel);
CREATE TABLE IF NOT EXISTS signature_transitions (
    request_id TEXT NOT NULL REFERENCES signature_requests (request_id),
    seq        BIGINT NOT NULL,
    from_state TEXT,
    to_state   TEXT NOT NULL,
    actor      TEXT NOT NULL,
    detail     TEXT NOT NULL,
    at_ms      BIGINT NOT NULL,
    PRIMARY KEY (request_id, seq)
);
CREATE TABLE IF NOT EXISTS signature_outbox (
    id           TEXT PRIMARY KEY,
    request_id   TEXT NOT NULL,
    kind         TEXT NOT NULL,
    body         TEXT NOT NULL,
    created_ms   BIGINT NOT NULL,
    published_ms BIGINT
);
CREATE INDEX IF NOT EXISTS signature_outbox_pending ON signature_outbox (published_ms, created_ms);
CREATE TABLE IF NOT EXISTS signature_blobs (
    request_id TEXT NOT NULL,
    kind       TEXT NOT NULL,
    bytes      BYTEA NOT NULL,
    size       BIGINT NOT NULL,
    sha256     TEXT NOT NULL,
    stored_ms  BIGINT NOT NULL,
    PRIMARY KEY (request_id, kind)
);
";

/// Migration 15: a lease on outbox rows (two instances never publish one outcome twice while
/// both live; a dead claimer's lease runs out and another takes over), and the retry schedule
/// of telling a service about a cancel (`cancel_attempts`, `cancel_next_ms`). SQLite has no
/// `ADD COLUMN IF NOT EXISTS`: the SQLite store runs those lines only for a missing column.
pub(crate) const SQLITE_V15: &str = "
ALTER TABLE signature_outbox ADD COLUMN IF NOT EXISTS claimed_by TEXT;
ALTER TABLE signature_outbox ADD COLUMN IF NOT EXISTS claimed_until_ms INTEGER;
ALTER TABLE signature_requests ADD COLUMN IF NOT EXISTS cancel_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE signature_requests ADD COLUMN IF NOT EXISTS cancel_next_ms INTEGER;
";

pub(crate) const PG_V15: &str = "
ALTER TABLE signature_outbox ADD COLUMN IF NOT EXISTS claimed_by TEXT;
ALTER TABLE signature_outbox ADD COLUMN IF NOT EXISTS claimed_until_ms BIGINT;
ALTER TABLE signature_requests ADD COLUMN IF NOT EXISTS cancel_attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE signature_requests ADD COLUMN IF NOT EXISTS cancel_next_ms BIGINT;
";
