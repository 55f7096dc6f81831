//! The clock of the store: [`now_ms`], unix milliseconds, for the timestamps the store itself
//! writes (`applied_at_ms` of migrations, claim leases, leadership renewals).
//!
//! # Invariants
//! - This file imports nothing else of the crate, so every other file may import it without
//!   making a circle.
//! - Timestamps the callers pass in (`at_ms` of records) are theirs; only what the store decides
//!   on its own reads this clock.

/// Now as unix milliseconds (for `applied_at_ms` in the migration tables).
pub(crate) fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}
