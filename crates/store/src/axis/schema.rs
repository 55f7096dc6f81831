//! The axis tables of both backends (migration 11; see [`super`]). Append only; every
//! statement `IF NOT EXISTS`; this file depends on nothing.

pub(crate) const SQLITE_V11: &str = "
CREATE TABLE IF NOT EXISTS axis_taken (
    take_key     TEXT PRIMARY KEY,
    axis_id      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    envelope_id  TEXT NOT NULL,
    taken_ms     INTEGER NOT NULL,
    published_ms INTEGER,
    acked_ms     INTEGER
) STRICT;
CREATE TABLE IF NOT EXISTS axis_status (
    document_id TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    direction   TEXT NOT NULL,
    code        TEXT,
    word        TEXT,
    axis_id     TEXT NOT NULL,
    detail      TEXT NOT NULL,
    at_ms       INTEGER NOT NULL,
    PRIMARY KEY (document_id, seq)
) STRICT;
";

pub(crate) const PG_V11: &str = "
CREATE TABLE IF NOT EXISTS axis_taken (
    take_key     TEXT PRIMARY KEY,
    axis_id      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    envelope_id  TEXT NOT NULL,
    taken_ms     BIGINT NOT NULL,
    published_ms BIGINT,
    acked_ms     BIGINT
);
CREATE TABLE IF NOT EXISTS axis_status (
    document_id TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    direction   TEXT NOT NULL,
    code        TEXT,
    word        TEXT,
    axis_id     TEXT NOT NULL,
    detail      TEXT NOT NULL,
    at_ms       BIGINT NOT NULL,
    PRIMARY KEY (document_id, seq)
);
";
