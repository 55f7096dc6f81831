//! The queue file: its format check, tables and indexes, and what opening it does.
//!
//! # Invariants
//!
//! - A file of another format is refused, never misread ([`FORMAT`]).
//! - Opening releases every lease a previous process left (it is gone: the file is locked
//!   exclusively by its owner) and records the new owner in `meta`.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

use crate::*;

/// The `meta.format` this module reads and writes.
pub(super) const FORMAT: &str = "1";

/// Why opening failed: SQLite's error, or a file this build must not use.
pub(super) enum OpenError {
    Sql(rusqlite::Error),
    Refused(String),
}

impl From<rusqlite::Error> for OpenError {
    fn from(e: rusqlite::Error) -> Self {
        OpenError::Sql(e)
    }
}

/// Pragmas, schema, format check, instance record, release of stale leases. Returns the
/// declared queues with their delivery limits and the number of leases released.
pub(super) fn prepare(
    conn: &mut Connection,
) -> std::result::Result<(HashMap<String, u32>, usize), OpenError> {
    // EXCLUSIVE before the first WAL access: no shared-memory index, one process only.
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    conn.busy_timeout(Duration::from_millis(500))?;
    // Every statement stays prepared (rusqlite's default cache of 16 is the whole set's size).
    conn.set_prepared_statement_cache_capacity(64);
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(OpenError::Refused(format!(
            "journal_mode WAL refused (got {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS queues (
             name TEXT PRIMARY KEY,
             delivery_limit INTEGER NOT NULL
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS messages (
             seq INTEGER PRIMARY KEY AUTOINCREMENT,
             queue TEXT NOT NULL,
             id TEXT NOT NULL,
             key TEXT NOT NULL,
             headers TEXT NOT NULL,
             attempt INTEGER NOT NULL,
             body BLOB NOT NULL,
             available_at INTEGER NOT NULL,
             lease_owner INTEGER,
             lease_until INTEGER,
             delivery_count INTEGER NOT NULL DEFAULT 0
         );
         CREATE INDEX IF NOT EXISTS messages_free ON messages(queue, seq) WHERE lease_owner IS NULL;
         CREATE INDEX IF NOT EXISTS messages_due ON messages(queue, available_at) WHERE lease_owner IS NULL;
         CREATE INDEX IF NOT EXISTS messages_leased ON messages(lease_owner) WHERE lease_owner IS NOT NULL;
         CREATE INDEX IF NOT EXISTS messages_expiry ON messages(queue, lease_until) WHERE lease_owner IS NOT NULL;",
    )?;
    let format: Option<String> = tx
        .query_row("SELECT value FROM meta WHERE key = 'format'", [], |r| {
            r.get(0)
        })
        .optional()?;
    match format.as_deref() {
        None => {
            tx.execute(
                "INSERT INTO meta(key, value) VALUES ('format', ?1)",
                [FORMAT],
            )?;
        }
        Some(FORMAT) => {}
        Some(other) => {
            return Err(OpenError::Refused(format!(
                "unknown embedded queue format {other:?} (this build reads format {FORMAT})"
            )));
        }
    }
    let instance = uuid::Uuid::now_v7().to_string();
    let mut set = tx.prepare("INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)")?;
    set.execute(params!["instance", instance])?;
    set.execute(params!["opened_at", now_ms().to_string()])?;
    set.execute(params!["pid", std::process::id().to_string()])?;
    drop(set);
    let released = tx.execute(
        "UPDATE messages SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL",
        [],
    )?;
    let mut limits = HashMap::new();
    {
        let mut stmt = tx.prepare("SELECT name, delivery_limit FROM queues")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))?;
        for row in rows {
            let (name, limit) = row?;
            limits.insert(name, limit);
        }
    }
    tx.commit()?;
    Ok((limits, released))
}

pub(super) fn load_limits(conn: &Connection) -> rusqlite::Result<HashMap<String, u32>> {
    let mut stmt = conn.prepare("SELECT name, delivery_limit FROM queues")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))?;
    rows.collect()
}
