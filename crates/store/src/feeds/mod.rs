//! Pull feeds: per subscription, an append-only sequence of minimised events that an agency
//! pages through with a cursor, on SQLite and PostgreSQL (schema version 10).
//!
//! # Invariants ([`suite`] checks them on both stores)
//!
//! 1. **Gapless, monotonic sequence per subscription.** [`FeedStore::append`] gives a new entry
//!    the sequence number `last + 1` of its subscription under a write lock on the
//!    subscription's head row (SQLite `BEGIN IMMEDIATE`, PostgreSQL `SELECT … FOR UPDATE`), in
//!    the transaction that inserts the entry: two appenders (two gateway instances on one
//!    PostgreSQL) never take the same number, a rolled-back append leaves no hole, and entries
//!    become visible in sequence order (the lock is held until commit).
//! 2. **One entry per event.** An event id already in the subscription's feed is not appended
//!    again: [`Appended::Existing`] names its sequence number and nothing is written (a
//!    redelivered event never makes a second entry). The check runs under the head lock, so
//!    two instances appending the same event at once make one entry.
//! 3. **A cursor never points into a hole silently.** A cursor is the sequence number of the
//!    last entry the agency has (0 before the first). [`FeedStore::page`] answers entries
//!    `after < seq`, in order, at most `limit`, read in one snapshot with the head; a cursor
//!    below what retention purged is [`PageAnswer::Gone`] with the oldest cursor still served,
//!    never a page that skips; a cursor above the head is [`PageAnswer::Ahead`].
//! 4. **Pages are stable.** Entries are never changed once appended; only a prefix is purged.
//!    So the same `(after, limit)` returns the same entries each time (a page that was not full
//!    only grows at its end), across restarts and instances.
//! 5. **Retention purges a prefix.** [`FeedStore::purge`] removes the entries appended before a
//!    time, up to (not past) the first one appended at or after it, and remembers how far it
//!    went (`purged_through`) and the newest time it removed, so a replay from a time it no
//!    longer covers is [`Since::Gone`], not a shorter feed.
//! 6. **Replay from a time.** [`FeedStore::cursor_since`] answers the cursor after which every
//!    entry appended at or after the time follows.
//! 7. What an agency fetched is noted ([`FeedStore::note_fetched`], only ever raised) so the
//!    lag (the oldest unfetched entry) can be reported ([`FeedStore::stats`]).
//! 8. A payload above [`MAX_PAYLOAD_BYTES`] is refused ([`StoreError::TooLarge`]), nothing
//!    written; a page holds at most [`MAX_PAGE`] entries whatever the caller asks.
//!
//! A store's feeds are reached through [`crate::Store::feeds`] (the same connections).
//!
//! Schema (version 10; its statements are `IF NOT EXISTS`):
//! ```text
//! feed_heads    subscription PK, last_seq (0: none yet), purged_through (entries up to it
//!               are gone), purged_newest_ms (newest at_ms purged), fetched_through
//! feed_entries  (subscription, seq) PK, unique (subscription, event_id), dossier, kind,
//!               payload (the minimised JSON bytes), fields (JSON array), digest, at_ms;
//!               index (subscription, at_ms)
//! ```

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};

/// The largest payload one entry may carry.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;
/// The most entries one page holds.
pub const MAX_PAGE: u32 = 1000;

/// An entry to append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEntry {
    /// The event's id (the envelope id): one entry per event and subscription.
    pub event_id: String,
    /// The dossier code (the ordering key, not personal data).
    pub dossier: String,
    pub kind: String,
    /// The minimised payload, JSON bytes exactly as the agency receives them.
    pub payload: Vec<u8>,
    /// The field names the payload carries.
    pub fields: Vec<String>,
    /// SHA-256 of `payload` as the projection stated it.
    pub digest: String,
    /// Unix ms when it entered the feed (retention and replay by time read this).
    pub at_ms: i64,
}

/// A stored entry: its place in the feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: i64,
    #[serde(flatten)]
    pub entry: NewEntry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Appended under this sequence number.
    New(i64),
    /// The event was already in the feed under this sequence number: nothing written.
    Existing(i64),
}

impl Appended {
    pub fn seq(self) -> i64 {
        match self {
            Appended::New(s) | Appended::Existing(s) => s,
        }
    }
}

/// One page of a feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The cursor asked for.
    pub after: i64,
    /// In sequence order, starting at `after + 1` (invariant 3).
    pub entries: Vec<Entry>,
    /// The cursor to ask for next: the last entry's sequence number, or `after` when empty.
    pub next: i64,
    /// The feed's last sequence number when the page was read.
    pub head: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageAnswer {
    Page(Page),
    /// Entries after the cursor were purged by retention; `oldest` is the oldest cursor
    /// still served (what follows it is complete).
    Gone {
        oldest: i64,
    },
    /// The cursor is above the feed's last sequence number (`head`): not a cursor of this feed.
    Ahead {
        head: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// Page from this cursor to get every entry appended at or after the time.
    Cursor(i64),
    /// Entries appended at or after the time were purged; `oldest` is the oldest cursor served.
    Gone { oldest: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    /// Entries up to this sequence number are gone (after this purge and every earlier one).
    pub through: i64,
    /// Entries this call removed.
    pub removed: u64,
}

/// A feed's counters, for metrics and the ops API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeedStats {
    /// The last sequence number (0: nothing appended yet).
    pub head: i64,
    /// Entries up to this were purged: the oldest cursor served.
    pub purged_through: i64,
    /// The highest cursor the agency asked for.
    pub fetched_through: i64,
    /// Entries kept.
    pub entries: i64,
    /// `at_ms` of the oldest entry after `fetched_through` (the lag), if any.
    pub oldest_unfetched_ms: Option<i64>,
}

/// Per-subscription pull feeds (invariants in the module docs).
#[async_trait]
pub trait FeedStore: Send + Sync + 'static {
    /// Append an entry to `subscription`'s feed (invariants 1, 2, 8).
    async fn append(&self, subscription: &str, entry: NewEntry) -> Result<Appended>;
    /// The entries after `after`, at most `limit` (capped at [`MAX_PAGE`], at least 1).
    async fn page(&self, subscription: &str, after: i64, limit: u32) -> Result<PageAnswer>;
    /// The cursor from which every entry appended at or after `at_ms` follows.
    async fn cursor_since(&self, subscription: &str, at_ms: i64) -> Result<Since>;
    /// Remove the entries appended before `before_ms` (a prefix, invariant 5).
    async fn purge(&self, subscription: &str, before_ms: i64) -> Result<Purged>;
    /// The agency asked for entries after `through`: it has everything up to it.
    async fn note_fetched(&self, subscription: &str, through: i64) -> Result<()>;
    async fn stats(&self, subscription: &str) -> Result<FeedStats>;
}

fn check_size(subscription: &str, e: &NewEntry) -> Result<()> {
    if e.payload.len() > MAX_PAYLOAD_BYTES {
        return Err(StoreError::TooLarge {
            what: format!("the feed entry of event {} for {subscription}", e.event_id),
            size: e.payload.len(),
            cap: MAX_PAYLOAD_BYTES,
        });
    }
    Ok(())
}

fn fields_json(f: &[String]) -> String {
    serde_json::to_string(f).expect("strings serialise")
}

fn fields_from(json: &str) -> Result<Vec<String>> {
    serde_json::from_str(json).map_err(|e| StoreError::Malformed(format!("feed fields: {e}")))
}

fn clamp(limit: u32) -> i64 {
    i64::from(limit.clamp(1, MAX_PAGE))
}

/// The answer for a cursor given the head's numbers, before any entry is read.
fn judge(after: i64, last_seq: i64, purged_through: i64) -> Option<PageAnswer> {
    if after < purged_through {
        Some(PageAnswer::Gone {
            oldest: purged_through,
        })
    } else if after > last_seq {
        Some(PageAnswer::Ahead { head: last_seq })
    } else {
        None
    }
}

const ENTRY_COLS: &str = "seq, event_id, dossier, kind, payload, fields, digest, at_ms";

mod postgres;
pub(crate) mod schema;
mod sqlite;

/// The shared checks, run on both stores by `tests/feeds.rs`.
#[doc(hidden)]
pub mod suite;
