//! The pull-feed tables of both backends (migration 10; see the table list in [`super`]).
//!
//! # Invariants
//!
//! - Append only: an applied migration is never edited; a new change is a new version listed in
//!   `sqlite.rs` / `postgres.rs` (the one migration list per backend).
//! - Every statement is `IF NOT EXISTS`, so re-running the version is harmless.
//! - This file depends on nothing, so a backend can list this migration without importing the
//!   feed store built on top of it.

pub(crate) const SQLITE_V10: &str = "
CREATE TABLE IF NOT EXISTS feed_heads (
    subscription      TEXT PRIMARY KEY,
    last_seq          INTEGER NOT NULL,
    purged_through    INTEGER NOT NULL,
    purged_newest_ms  INTEGER,
    fetched_through   INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS feed_entries (
    subscription TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    event_id     TEXT NOT NULL,
    dossier      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    payload      BLOB NOT NULL,
    fields       TEXT NOT NULL,
    digest       TEXT NOT NULL,
    at_ms        INTEGER NOT NULL,
    PRIMARY KEY (subscription, seq),
    UNIQUE (subscription, event_id)
) STRICT;
CREATE INDEX IF NOT EXISTS feed_entries_at ON feed_entries (subscription, at_ms);
";

pub(crate) const PG_V10: &str = "
CREATE TABLE IF NOT EXISTS feed_heads (
    subscription      TEXT PRIMARY KEY,
    last_seq          BIGINT NOT NULL,
    purged_through    BIGINT NOT NULL,
    purged_newest_ms  BIGINT,
    fetched_through   BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS feed_entries (
    subscription TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    event_id     TEXT NOT NULL,
    dossier      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    payload      BYTEA NOT NULL,
    fields       TEXT NOT NULL,
    digest       TEXT NOT NULL,
    at_ms        BIGINT NOT NULL,
    PRIMARY KEY (subscription, seq),
    UNIQUE (subscription, event_id)
);
CREATE INDEX IF NOT EXISTS feed_entries_at ON feed_entries (subscription, at_ms);
";
