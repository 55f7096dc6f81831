//! The payment tables of both backends (migrations 5 and 7; see the table list in
//! [`super`]).
//!
//! # Invariants
//!
//! - Append only: an applied migration is never edited; a new change is a new version listed in
//!   `sqlite.rs` / `postgres.rs` (the one migration list per backend).
//! - Every statement is `IF NOT EXISTS`, so re-running a version is harmless.
//! - This file depends on nothing, so a backend can list these migrations without importing
//!   the payment store built on top of it.

pub(crate) const SQLITE_V5: &str = "
CREATE TABLE IF NOT EXISTS payment_orders (
    reference    TEXT PRIMARY KEY,
    provider     TEXT NOT NULL,
    dossier_code TEXT NOT NULL,
    fee_items    TEXT NOT NULL,
    amount       INTEGER NOT NULL,
    currency     TEXT NOT NULL,
    state        TEXT NOT NULL,
    provider_txn TEXT,
    pay_url      TEXT,
    created_ms   INTEGER NOT NULL,
    deadline_ms  INTEGER NOT NULL,
    updated_ms   INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS payment_orders_dossier ON payment_orders (dossier_code);
CREATE INDEX IF NOT EXISTS payment_orders_pending ON payment_orders (provider, state, deadline_ms);
CREATE INDEX IF NOT EXISTS payment_orders_created ON payment_orders (provider, created_ms);
CREATE TABLE IF NOT EXISTS payment_transitions (
    reference    TEXT NOT NULL REFERENCES payment_orders (reference),
    seq          INTEGER NOT NULL,
    from_state   TEXT,
    to_state     TEXT NOT NULL,
    source       TEXT NOT NULL,
    provider_txn TEXT,
    detail       TEXT NOT NULL,
    at_ms        INTEGER NOT NULL,
    PRIMARY KEY (reference, seq)
) STRICT;
CREATE TABLE IF NOT EXISTS payment_outbox (
    id           TEXT PRIMARY KEY,
    reference    TEXT NOT NULL,
    body         TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    published_ms INTEGER
) STRICT;
CREATE INDEX IF NOT EXISTS payment_outbox_pending ON payment_outbox (published_ms, created_ms);
";

/// Version 7: the fees each dossier's newest snapshot states (invariant 5).
pub(crate) const SQLITE_V7: &str = "
CREATE TABLE IF NOT EXISTS payment_known_fees (
    dossier_code TEXT PRIMARY KEY,
    version      INTEGER NOT NULL,
    fees         TEXT NOT NULL,
    updated_ms   INTEGER NOT NULL
) STRICT;
";

pub(crate) const PG_V7: &str = "
CREATE TABLE IF NOT EXISTS payment_known_fees (
    dossier_code TEXT PRIMARY KEY,
    version      BIGINT NOT NULL,
    fees         TEXT NOT NULL,
    updated_ms   BIGINT NOT NULL
);
";

pub(crate) const PG_V5: &str = "
CREATE TABLE IF NOT EXISTS payment_orders (
    reference    TEXT PRIMARY KEY,
    provider     TEXT NOT NULL,
    dossier_code TEXT NOT NULL,
    fee_items    TEXT NOT NULL,
    amount       BIGINT NOT NULL,
    currency     TEXT NOT NULL,
    state        TEXT NOT NULL,
    provider_txn TEXT,
    pay_url      TEXT,
    created_ms   BIGINT NOT NULL,
    deadline_ms  BIGINT NOT NULL,
    updated_ms   BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS payment_orders_dossier ON payment_orders (dossier_code);
CREATE INDEX IF NOT EXISTS payment_orders_pending ON payment_orders (provider, state, deadline_ms);
CREATE INDEX IF NOT EXISTS payment_orders_created ON payment_orders (provider, created_ms);
CREATE TABLE IF NOT EXISTS payment_transitions (
    reference    TEXT NOT NULL REFERENCES payment_orders (reference),
    seq          BIGINT NOT NULL,
    from_state   TEXT,
    to_state     TEXT NOT NULL,
    source       TEXT NOT NULL,
    provider_txn TEXT,
    detail       TEXT NOT NULL,
    at_ms        BIGINT NOT NULL,
    PRIMARY KEY (reference, seq)
);
CREATE TABLE IF NOT EXISTS payment_outbox (
    id           TEXT PRIMARY KEY,
    reference    TEXT NOT NULL,
    body         TEXT NOT NULL,
    created_ms   BIGINT NOT NULL,
    published_ms BIGINT
);
CREATE INDEX IF NOT EXISTS payment_outbox_pending ON payment_outbox (published_ms, created_ms);
";
