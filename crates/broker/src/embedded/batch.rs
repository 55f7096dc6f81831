//! The statements of one writer batch ([`Ctx`]): declare, publish, lease, settle, renew,
//! release and stats, all inside the batch's transaction.
//!
//! # Invariants
//!
//! - Every request of a batch runs in the same transaction; its answer is queued as a
//!   [`Reply`] and sent only once the batch's fate is known.
//! - Leasing moves a message past its queue's delivery limit to `<queue>.dlq` instead of
//!   delivering it again; FIFO by `seq` among visible messages.

use std::collections::{HashMap, HashSet};

use rusqlite::{params, Transaction};

use super::shared::{LeaseBatch, Leased, Op, Reply};
use crate::*;

/// What one operation of a batch works with.
pub(super) struct Ctx<'a> {
    pub(super) tx: &'a Transaction<'a>,
    pub(super) limits: &'a mut HashMap<String, u32>,
    pub(super) next_owner: &'a mut u64,
    pub(super) lease_ttl_ms: i64,
    /// One clock reading per batch: every operation in it happens "at" this time.
    pub(super) now: i64,
    /// Queues with messages added or freed: their consumers are woken after COMMIT.
    pub(super) touched: &'a mut HashSet<String>,
}

pub(super) fn json_err(e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

impl Ctx<'_> {
    /// Run one operation. Refusals (an undeclared queue) become the caller's answer; an SQL
    /// error aborts the whole batch.
    pub(super) fn apply(&mut self, op: Op, replies: &mut Vec<Reply>) -> rusqlite::Result<()> {
        match op {
            Op::Declare { specs, reply } => {
                let r = self.declare(&specs)?;
                replies.push(Reply::Unit(reply, r));
            }
            Op::Publish { queue, msgs, reply } => {
                let r = if self.limits.contains_key(&queue) {
                    for m in &msgs {
                        self.insert(&queue, m, self.now)?;
                    }
                    self.touched.insert(queue);
                    Ok(())
                } else {
                    Err(BrokerError::Unroutable { queue })
                };
                replies.push(Reply::Unit(reply, r));
            }
            Op::Subscribe { queue, reply } => {
                let r = if self.limits.contains_key(&queue) {
                    let owner = *self.next_owner;
                    *self.next_owner += 1;
                    Ok(owner)
                } else {
                    Err(BrokerError::Topology(format!(
                        "queue {queue} is not declared; declare it before consuming"
                    )))
                };
                replies.push(Reply::Owner(reply, r));
            }
            Op::Lease {
                queue,
                owner,
                max,
                reply,
            } => {
                let r = self.lease(&queue, owner, max)?;
                replies.push(Reply::Lease(reply, r));
            }
            Op::Ack { seq } => {
                self.tx
                    .prepare_cached("DELETE FROM messages WHERE seq = ?1")?
                    .execute([seq as i64])?;
            }
            Op::Retry {
                seq,
                queue,
                msg,
                delay,
                reply,
            } => {
                let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
                // Only a copy that is still there is replaced: when another holder (one that
                // took an expired lease over) settled it first, this retry is a no-op, or an
                // acked message would come back.
                let deleted = self
                    .tx
                    .prepare_cached("DELETE FROM messages WHERE seq = ?1")?
                    .execute([seq as i64])?;
                if deleted > 0 {
                    self.insert(&queue, &msg, self.now.saturating_add(delay_ms))?;
                }
                // Waiting consumers recompute when to wake.
                self.touched.insert(queue);
                replies.push(Reply::Unit(reply, Ok(())));
            }
            Op::Reject {
                seq,
                queue,
                msg,
                reason,
                reply,
            } => {
                self.dead_letter(seq, &queue, msg, &reason)?;
                replies.push(Reply::Unit(reply, Ok(())));
            }
            Op::Requeue { seq, owner, queue } => {
                self.tx
                    .prepare_cached(
                        "UPDATE messages SET lease_owner = NULL, lease_until = NULL
                         WHERE seq = ?1 AND lease_owner = ?2",
                    )?
                    .execute(params![seq as i64, owner as i64])?;
                self.touched.insert(queue);
            }
            Op::Renew { owner, seqs } => {
                let mut stmt = self.tx.prepare_cached(
                    "UPDATE messages SET lease_until = ?1 WHERE seq = ?2 AND lease_owner = ?3",
                )?;
                for seq in seqs {
                    stmt.execute(params![
                        self.now + self.lease_ttl_ms,
                        seq as i64,
                        owner as i64
                    ])?;
                }
            }
            Op::Release { owner, queue } => {
                let n = self
                    .tx
                    .prepare_cached(
                        "UPDATE messages SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?1",
                    )?
                    .execute([owner as i64])?;
                if n > 0 {
                    self.touched.insert(queue);
                }
            }
            Op::Stats { queue, reply } => {
                let r = self.stats(&queue)?;
                replies.push(Reply::Stats(reply, r));
            }
            Op::Ping { reply } => replies.push(Reply::Unit(reply, Ok(()))),
            Op::Shutdown { .. } => unreachable!("handled by run_batch"),
        }
        Ok(())
    }

    pub(super) fn declare(&mut self, specs: &[QueueSpec]) -> rusqlite::Result<Result<()>> {
        for spec in specs {
            if spec.name.is_empty() {
                return Ok(Err(BrokerError::Topology(
                    "a queue name cannot be empty".into(),
                )));
            }
        }
        for spec in specs {
            self.tx
                .prepare_cached(
                    "INSERT INTO queues(name, delivery_limit) VALUES (?1, ?2)
                     ON CONFLICT(name) DO UPDATE SET delivery_limit = excluded.delivery_limit",
                )?
                .execute(params![spec.name, spec.delivery_limit])?;
            self.limits.insert(spec.name.clone(), spec.delivery_limit);
            self.ensure_dlq(&dead_letter_queue(&spec.name))?;
        }
        Ok(Ok(()))
    }

    /// Dead-letter queues exist without a limit unless declared explicitly.
    pub(super) fn ensure_dlq(&mut self, dlq: &str) -> rusqlite::Result<()> {
        if !self.limits.contains_key(dlq) {
            self.tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO queues(name, delivery_limit) VALUES (?1, 0)",
                )?
                .execute([dlq])?;
            self.limits.insert(dlq.to_string(), 0);
        }
        Ok(())
    }

    pub(super) fn insert(
        &mut self,
        queue: &str,
        m: &Message,
        available_at: i64,
    ) -> rusqlite::Result<()> {
        let headers = serde_json::to_string(&m.headers).map_err(json_err)?;
        self.tx
            .prepare_cached(
                "INSERT INTO messages(queue, id, key, headers, attempt, body, available_at, delivery_count)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)",
            )?
            .execute(params![queue, m.id, m.key, headers, m.attempt, &m.body[..], available_at])?;
        Ok(())
    }

    /// Move the message `seq` of `queue` to `<queue>.dlq`, keeping the original with a reason.
    pub(super) fn dead_letter(
        &mut self,
        seq: u64,
        queue: &str,
        mut msg: Message,
        reason: &str,
    ) -> rusqlite::Result<()> {
        // Settled first by another holder (see Op::Retry): nothing to move.
        let deleted = self
            .tx
            .prepare_cached("DELETE FROM messages WHERE seq = ?1")?
            .execute([seq as i64])?;
        if deleted == 0 {
            return Ok(());
        }
        let dlq = dead_letter_queue(queue);
        self.ensure_dlq(&dlq)?;
        msg.headers
            .insert(HDR_DEAD_REASON.to_string(), reason.to_string());
        self.insert(&dlq, &msg, self.now)?;
        self.touched.insert(dlq);
        Ok(())
    }

    pub(super) fn lease(
        &mut self,
        queue: &str,
        owner: u64,
        max: usize,
    ) -> rusqlite::Result<Result<LeaseBatch>> {
        let Some(&limit) = self.limits.get(queue) else {
            return Ok(Err(BrokerError::Topology(format!(
                "queue {queue} is not declared"
            ))));
        };
        // Leases whose consumer showed no sign of life for lease_ttl: visible again.
        self.tx
            .prepare_cached(
                "UPDATE messages SET lease_owner = NULL, lease_until = NULL
                 WHERE queue = ?1 AND lease_owner IS NOT NULL AND lease_until <= ?2",
            )?
            .execute(params![queue, self.now])?;
        let mut rows = Vec::new();
        loop {
            let candidates = {
                let mut stmt = self.tx.prepare_cached(
                    "SELECT seq, id, key, headers, attempt, body, delivery_count
                     FROM messages INDEXED BY messages_free
                     WHERE queue = ?1 AND lease_owner IS NULL AND available_at <= ?2
                     ORDER BY seq LIMIT ?3",
                )?;
                let mapped = stmt.query_map(params![queue, self.now, max as i64], |r| {
                    let headers: String = r.get(3)?;
                    let body: Vec<u8> = r.get(5)?;
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        Message {
                            id: r.get(1)?,
                            key: r.get(2)?,
                            headers: serde_json::from_str(&headers).map_err(|e| {
                                rusqlite::Error::FromSqlConversionFailure(
                                    3,
                                    rusqlite::types::Type::Text,
                                    Box::new(e),
                                )
                            })?,
                            attempt: r.get(4)?,
                            body: Bytes::from(body),
                        },
                        r.get::<_, u32>(6)?,
                    ))
                })?;
                mapped.collect::<rusqlite::Result<Vec<_>>>()?
            };
            let found = candidates.len();
            let mut dead = 0;
            for (seq, message, count) in candidates {
                if limit > 0 && count >= limit {
                    let reason = format!(
                        "delivery limit reached: delivered {count} times without an ack (limit {limit})"
                    );
                    self.dead_letter(seq, queue, message, &reason)?;
                    dead += 1;
                    continue;
                }
                self.tx
                    .prepare_cached(
                        "UPDATE messages SET lease_owner = ?1, lease_until = ?2,
                             delivery_count = delivery_count + 1
                         WHERE seq = ?3",
                    )?
                    .execute(params![
                        owner as i64,
                        self.now + self.lease_ttl_ms,
                        seq as i64
                    ])?;
                rows.push(Leased {
                    seq,
                    message,
                    delivery_count: count + 1,
                });
            }
            // Refill only what dead-lettering took, and only while there may be more.
            if dead == 0 || found < max || !rows.is_empty() {
                break;
            }
        }
        let next_due_ms = if rows.is_empty() {
            self.next_due(queue)?
        } else {
            None
        };
        Ok(Ok(LeaseBatch { rows, next_due_ms }))
    }

    pub(super) fn next_due(&self, queue: &str) -> rusqlite::Result<Option<i64>> {
        let delayed: Option<i64> = self
            .tx
            .prepare_cached(
                "SELECT MIN(available_at) FROM messages INDEXED BY messages_due
                 WHERE queue = ?1 AND lease_owner IS NULL AND available_at > ?2",
            )?
            .query_row(params![queue, self.now], |r| r.get(0))?;
        let lease: Option<i64> = self
            .tx
            .prepare_cached(
                "SELECT MIN(lease_until) FROM messages INDEXED BY messages_expiry
                 WHERE queue = ?1 AND lease_owner IS NOT NULL",
            )?
            .query_row([queue], |r| r.get(0))?;
        Ok(match (delayed, lease) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    pub(super) fn stats(&self, queue: &str) -> rusqlite::Result<Result<QueueStats>> {
        if !self.limits.contains_key(queue) {
            return Ok(Err(BrokerError::Topology(format!(
                "queue {queue} is not declared"
            ))));
        }
        let count = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> rusqlite::Result<u64> {
            self.tx
                .prepare_cached(sql)?
                .query_row(p, |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
        };
        let ready = count(
            "SELECT COUNT(*) FROM messages INDEXED BY messages_due
             WHERE queue = ?1 AND lease_owner IS NULL AND available_at <= ?2",
            &[&queue, &self.now],
        )?;
        let delayed = count(
            "SELECT COUNT(*) FROM messages INDEXED BY messages_due
             WHERE queue = ?1 AND lease_owner IS NULL AND available_at > ?2",
            &[&queue, &self.now],
        )?;
        let unacked = count(
            "SELECT COUNT(*) FROM messages INDEXED BY messages_expiry
             WHERE queue = ?1 AND lease_owner IS NOT NULL",
            &[&queue],
        )?;
        let oldest: Option<i64> = self
            .tx
            .prepare_cached(
                "SELECT MIN(available_at) FROM messages INDEXED BY messages_due
                 WHERE queue = ?1 AND lease_owner IS NULL AND available_at <= ?2",
            )?
            .query_row(rusqlite::params![queue, self.now], |r| r.get(0))?;
        let age_ms = oldest.map_or(0, |t| self.now.saturating_sub(t).max(0) as u64);
        Ok(Ok(QueueStats {
            ready,
            unacked,
            delayed: Some(delayed),
            oldest_ready_age: Some(Duration::from_millis(age_ms)),
        }))
    }
}
