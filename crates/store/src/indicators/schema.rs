//! The indicator tables of both backends (migration 12; see the table list in [`super`]).
//!
//! # Invariants
//!
//! - Append only: an applied migration is never edited; a new change is a new version listed in
//!   `sqlite.rs` / `postgres.rs` (the one migration list per backend).
//! - Every statement is `IF NOT EXISTS`, so re-running a version is harmless.

pub(crate) const SQLITE_V12: &str = "
CREATE TABLE IF NOT EXISTS indicator_journal (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT NOT NULL UNIQUE,
    key          TEXT NOT NULL,
    kind         TEXT NOT NULL,
    fact         TEXT NOT NULL,
    at_ms        INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS indicator_journal_by_key ON indicator_journal (key, seq);
CREATE TABLE IF NOT EXISTS indicator_dossiers (
    code         TEXT PRIMARY KEY,
    unit         TEXT NOT NULL,
    procedure    TEXT NOT NULL,
    received_ms  INTEGER,
    end_ms       INTEGER,
    state        TEXT NOT NULL,
    last_seq     INTEGER NOT NULL,
    updated_ms   INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS indicator_dossiers_window ON indicator_dossiers (received_ms, end_ms);
CREATE TABLE IF NOT EXISTS indicator_position (
    consumer     TEXT PRIMARY KEY,
    applied      INTEGER NOT NULL,
    last_event   TEXT NOT NULL,
    last_seq     INTEGER NOT NULL,
    updated_ms   INTEGER NOT NULL
) STRICT;
";

pub(crate) const PG_V12: &str = "
CREATE TABLE IF NOT EXISTS indicator_journal (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     TEXT NOT NULL UNIQUE,
    key          TEXT NOT NULL,
    kind         TEXT NOT NULL,
    fact         TEXT NOT NULL,
    at_ms        BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS indicator_journal_by_key ON indicator_journal ((key COLLATE \"C\"), seq);
CREATE TABLE IF NOT EXISTS indicator_dossiers (
    code         TEXT PRIMARY KEY,
    unit         TEXT NOT NULL,
    procedure    TEXT NOT NULL,
    received_ms  BIGINT,
    end_ms       BIGINT,
    state        TEXT NOT NULL,
    last_seq     BIGINT NOT NULL,
    updated_ms   BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS indicator_dossiers_window ON indicator_dossiers (received_ms, end_ms);
CREATE TABLE IF NOT EXISTS indicator_position (
    consumer     TEXT PRIMARY KEY,
    applied      BIGINT NOT NULL,
    last_event   TEXT NOT NULL,
    last_seq     BIGINT NOT NULL,
    updated_ms   BIGINT NOT NULL
);
";
