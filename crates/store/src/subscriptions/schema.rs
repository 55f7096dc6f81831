//! The subscription-state table of both backends (migration 13; see [`super`]).
//!
//! # Invariants
//!
//! - Append only: an applied migration is never edited; a new change is a new version listed in
//!   `sqlite.rs` / `postgres.rs` (the one migration list per backend).
//! - Every statement is `IF NOT EXISTS`, so re-running the version is harmless.
//! - This file depends on nothing, so a backend can list this migration without importing the
//!   store built on top of it.

pub(crate) const SQLITE_V13: &str = "
CREATE TABLE IF NOT EXISTS subscription_state (
    subscription      TEXT PRIMARY KEY,
    disabled_since_ms INTEGER,
    disabled_reason   TEXT,
    failing_since_ms  INTEGER,
    updated_ms        INTEGER NOT NULL
) STRICT;
";

pub(crate) const PG_V13: &str = "
CREATE TABLE IF NOT EXISTS subscription_state (
    subscription      TEXT PRIMARY KEY,
    disabled_since_ms BIGINT,
    disabled_reason   TEXT,
    failing_since_ms  BIGINT,
    updated_ms        BIGINT NOT NULL
);
";
