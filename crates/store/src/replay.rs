//! Signatures already accepted: replay protection for signed inbound requests that survives a
//! restart and holds across instances sharing the store.
//!
//! # Invariants
//! - [`crate::Store::remember_signature`] is one atomic statement: of two requests carrying the
//!   same signature (same scope and id), exactly one gets `true`, on one instance or several.
//! - An entry counts until its `expires_ms` (the end of the signature's freshness window);
//!   after that the same id is accepted again only if the signature's own time still passes
//!   the freshness check, which by then it cannot. Expired entries are removed by
//!   [`crate::Store::forget_signatures`]; keeping them longer changes nothing but size.
//!
//! Schema (version 8): `seen_signatures (scope, id) PK, expires_ms`. `scope` is the signing
//! profile; `id` names the signature (`nonce:KEY:NONCE` or `sha256:HEX` of the signature value).

pub(crate) const SQLITE_V8: &str = "
CREATE TABLE IF NOT EXISTS seen_signatures (
    scope      TEXT NOT NULL,
    id         TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (scope, id)
) STRICT;
CREATE INDEX IF NOT EXISTS seen_signatures_expiry ON seen_signatures (expires_ms);
";

pub(crate) const PG_V8: &str = "
CREATE TABLE IF NOT EXISTS seen_signatures (
    scope      TEXT NOT NULL,
    id         TEXT NOT NULL,
    expires_ms BIGINT NOT NULL,
    PRIMARY KEY (scope, id)
);
CREATE INDEX IF NOT EXISTS seen_signatures_expiry ON seen_signatures (expires_ms);
";

/// Insert-or-revive: a live entry makes the statement change nothing (a replay).
pub(crate) const REMEMBER_SQLITE: &str = "
INSERT INTO seen_signatures (scope, id, expires_ms) VALUES (?1, ?2, ?3)
ON CONFLICT (scope, id) DO UPDATE SET expires_ms = excluded.expires_ms
  WHERE seen_signatures.expires_ms < ?4";

pub(crate) const REMEMBER_PG: &str = "
INSERT INTO seen_signatures (scope, id, expires_ms) VALUES ($1, $2, $3)
ON CONFLICT (scope, id) DO UPDATE SET expires_ms = excluded.expires_ms
  WHERE seen_signatures.expires_ms < $4";
