//! The gateway's durable store: delivery ledger, per-destination dossier versions, the
//! attempt trail and the dead letters. SQLite (the default, one file under the data
//! directory) and PostgreSQL (when several gateway instances share the work).
//!
//! # Invariants ([`suite`] holds the checks; `tests/sqlite.rs` and `tests/postgres.rs` run them)
//!
//! 1. **One outcome per (route, envelope id).** [`Store::record`] writes a whole batch in one
//!    transaction: either every row of the batch is durable or none is. Recording the same
//!    (route, envelope id) twice keeps the first final outcome (idempotent).
//! 2. **Natural-key idempotency.** When an outcome carries a natural key (e.g. dossier code +
//!    version), [`Store::natural_key_done`] answers `true` for it afterwards, whatever the
//!    envelope id was (two envelopes carrying the same effect are delivered once). A version's
//!    key (`KEY@v`) is answered from the delivered version, not stored twice
//!    ([`natural_keys`]).
//! 3. **Versions only move forward.** The version stored for (destination, key) is the maximum
//!    of every delivered version; a lower one never overwrites a higher one.
//!    Likewise the **accepted version** stored for (route, key) is the maximum of every
//!    [`AcceptedVersion`] recorded (several for one key in one batch: the highest wins); it is
//!    written in the same transaction as the rest of the batch. [`Store::versions`] reads both
//!    (delivered for the destination, accepted for the route) in one round trip.
//! 4. **Dead letters keep the original envelope bytes** exactly as received, with the reason,
//!    the attempts, the last answer and timestamps. Replay and drop are recorded with who did it;
//!    replaying an already replayed (or dropped) dead letter is a no-op that says so.
//! 5. Migrations are idempotent and run at open.
//! 6. **Recording the same batch twice is the same as once** (a retry after a commit whose
//!    answer was lost): attempts are unique per (route, envelope id, attempt, at_ms), and a dead
//!    letter identical to the stored one is skipped. A *different* dead letter under an existing
//!    id is a bug upstream (ids are UUIDv7): [`Store::record`] returns [`StoreError::Query`] and
//!    no row of that batch is written.
//!
//! 8. **Claims** ([`claims`], migration 6): [`Store::claim`] holds (destination, key) for one
//!    exchange, checks the delivered version *after* taking the row lock, and notes an exchange
//!    whose holder died mid-send as *in doubt*; [`Batch::releases`] release claims in the same
//!    transaction as their outcome. See [`claims`] for the full list.
//!
//! 7. **Evidence records** ([`evidence`], migrations 4 and 14) are appended to their hash chain
//!    in the same transaction as the rest of the batch, once per exchange key, as one chain link
//!    per chain and batch whose Merkle leaves are the exchanges ([`evidence_merkle`]); see
//!    [`evidence::verify_chains`] for what verification detects.
//!
//! 8. **One leader per singleton job.** [`Store::try_lead`] hands a job's [`LeadGuard`] to one
//!    caller at a time across every process sharing the store. PostgreSQL: a session-level
//!    advisory lock held by a dedicated connection (see [`postgres`]); SQLite: the process
//!    is alone on its data directory (the gateway's data-directory lock), so it always leads.
//!
//! 9. **Remote signing requests** ([`signatures`], migration 9): one persisted state machine
//!    per request id, changed only through its transition table, with a send guard so that a
//!    request never reaches an official's phone twice; see [`signatures`] for the full list.
//!
//! 10. **Pull feeds** ([`feeds`], migration 10): per subscription a gapless sequence of
//!     minimised events, one entry per event, paged by cursor; retention purges a prefix and a
//!     cursor into it is answered as gone, never as a shorter feed; see [`feeds`].
//! 11. **The document axis's receiving side** ([`axis`], migration 11): one take per received
//!     item (the envelope id it is published under, kept across a crash), and each
//!     document's append-only status history.
//!
//! Orders: trails ([`Store::outcomes_by_key`], [`Store::attempts_by_key`]) are oldest first by
//! `at_ms`, then insertion order; [`Store::dead_letters`] is oldest first by `dead_at_ms`, then id.
//!
//! 12. **Service-quality indicators** ([`indicators`], migration 12): a journal of facts applied
//!     once per event id in the same transaction as the dossier's folded state and the
//!     consumer's position; see [`indicators`] for the full list.
//! 13. **Push subscriptions' shared state** ([`subscriptions`], migration 13): disabled (why,
//!     since when) and failing since, one row per subscription, the same for every instance.
//!
//! # Files
//! Each file imports only files listed before it; this one declares them and re-exports their
//! public items (the paths callers use), and no file imports it back.
//! - `error.rs` ([`StoreError`], [`Result`]) and `clock.rs` (the store's own timestamps).
//! - `sql.rs`: SQL helpers shared by the backends.
//! - [`tls`]: TLS to PostgreSQL ([`PgTls`], verify-full semantics, `sslmode`).
//! - [`claims`] and `evidence_records.rs`: their topics' row types (and claims' SQL).
//! - [`evidence_merkle`]: batch links, their Merkle leaves and the chain walk.
//! - `records.rs`: the ledger's row types and the [`Batch`].
//! - `store.rs`: the [`Store`] trait and [`LeadGuard`].
//! - [`evidence`] (chain verification), [`replay`], `evidence_sql.rs` (the evidence tables).
//! - [`sqlite`] and [`postgres`]: the backends; [`payments`]: the payment store on top of them;
//!   [`signatures`]: the remote signing requests' state machines on top of them (migration 9);
//!   [`feeds`]: the agencies' pull feeds on top of them (migration 10).
//!   [`indicators`]: the indicators' journal and states on top of them (migration 12).
//!   [`subscriptions`]: the push subscriptions' shared state on top of them (migration 13).
//! - `open.rs`: [`open`] / [`open_tls`], the one place that picks a backend.
//! - [`suite`] and [`evidence_suite`] (hidden): the checks both backends run, with their shared
//!   builders in `suite_support.rs`.

pub mod axis;
pub mod claims;
mod clock;
mod error;
pub mod evidence;
pub mod evidence_merkle;
mod evidence_records;
mod evidence_sql;
#[doc(hidden)]
pub mod evidence_suite;
pub mod feeds;
pub mod indicators;
pub mod natural_keys;
mod open;
pub mod payments;
pub mod postgres;
mod records;
pub mod replay;
pub mod signatures;
mod sql;
pub mod sqlite;
mod store;
pub mod subscriptions;
#[doc(hidden)]
pub mod suite;
mod suite_support;
pub mod tls;

pub use claims::{Claim, ClaimRelease, ClaimRequest, InDoubt, InDoubtRow};

/// The PostgreSQL statements of the hot path whose plans a test checks on grown tables
/// (`tests/postgres.rs`: each must stay an index probe per request).
pub mod pg_statements {
    pub use crate::claims::{PG_KNOWN_MANY, PG_RELEASE_MANY};
    pub use crate::evidence_sql::PG_KNOWN_EXCHANGES;
}
pub use error::{Result, StoreError};
pub use evidence::{ChainHead, EvidenceRecord, StoredEvidence, TimeStampRow};
pub use open::{open, open_tls};
pub use records::{
    AcceptedVersion, AttemptRecord, Batch, DeadLetter, DeadLetterFilter, DeadLetterState,
    LedgerRow, NewDeadLetter, Outcome, OutcomeRecord, Settled, Versions, VersionsAsk,
};
pub use signatures::SignatureStore;
pub use store::{LeadGuard, Store};
pub use tls::{PgTls, TlsError, TlsFiles};
