//! [`SignatureStore`] on SQLite.
//!
//! # Invariants
//!
//! - Every operation runs as one closure on the store's connection thread. A change (row, trail
//!   row, event) is one `BEGIN IMMEDIATE` transaction, so the write lock is taken before the
//!   request is read (invariant 2 of [`super`]); [`super::decide`] computes it, this file only
//!   loads and writes.
//! - A send mark ([`SignatureStore::begin_send`]) commits with `synchronous=FULL`: it is on disk
//!   before the service is called. Leases and poll notes commit with `synchronous=NORMAL` (WAL:
//!   a process crash loses nothing committed; a power cut may lose the last lease or poll count,
//!   which only makes a poll come early), as claims do.

use rusqlite::types::Value as Sql;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row, TransactionBehavior};

use super::*;
use crate::sql::Fail;
use crate::sqlite::SqliteStore;

impl Columns for Row<'_> {
    type Error = Fail;
    fn text(&self, i: usize) -> std::result::Result<String, Fail> {
        Ok(self.get(i)?)
    }
    fn opt_text(&self, i: usize) -> std::result::Result<Option<String>, Fail> {
        Ok(self.get(i)?)
    }
    fn int(&self, i: usize) -> std::result::Result<i64, Fail> {
        Ok(self.get(i)?)
    }
    fn opt_int(&self, i: usize) -> std::result::Result<Option<i64>, Fail> {
        Ok(self.get(i)?)
    }
    fn opt_bytes(&self, i: usize) -> std::result::Result<Option<Vec<u8>>, Fail> {
        Ok(self.get(i)?)
    }
    fn malformed(&self, what: String) -> Fail {
        Fail::Malformed(what)
    }
}

fn sql(v: Value) -> Sql {
    match v {
        Value::Text(Some(s)) => Sql::Text(s),
        Value::Int(Some(i)) => Sql::Integer(i),
        Value::Bytes(Some(b)) => Sql::Blob(b),
        Value::Text(None) | Value::Int(None) | Value::Bytes(None) => Sql::Null,
    }
}

fn ph(i: usize) -> String {
    format!("?{i}")
}

/// Rows of `SELECT <COLS> … <tail>`.
fn rows(
    conn: &Connection,
    tail: &str,
    args: impl rusqlite::Params,
) -> std::result::Result<Vec<SignatureRequest>, Fail> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM signature_requests {tail}",
        select_cols()
    ))?;
    let mut out = Vec::new();
    let mut rows = stmt.query(args)?;
    while let Some(r) = rows.next()? {
        out.push(decode(r)?);
    }
    Ok(out)
}

fn load(conn: &Connection, id: &str) -> std::result::Result<Option<SignatureRequest>, Fail> {
    Ok(rows(conn, "WHERE request_id = ?1", [id])?.pop())
}

fn write(conn: &Connection, w: &Write) -> std::result::Result<(), Fail> {
    conn.prepare_cached(&update_sql(ph))?
        .execute(params_from_iter(
            update_values(&w.next).into_iter().map(sql),
        ))?;
    insert_trail(conn, w.next.id(), Some(w.trail.from), &w.trail)?;
    if let Some(e) = &w.event {
        conn.prepare_cached(
            "INSERT INTO signature_outbox (id, request_id, kind, body, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![e.id, e.request_id, e.kind, e.body, e.created_ms])?;
    }
    Ok(())
}

fn insert_trail(
    conn: &Connection,
    id: &str,
    from: Option<RequestState>,
    t: &TrailEntry,
) -> std::result::Result<(), Fail> {
    conn.prepare_cached(
        "INSERT INTO signature_transitions (request_id, seq, from_state, to_state, actor, detail,
             at_ms)
         SELECT ?1, COALESCE(MAX(seq), -1) + 1, ?2, ?3, ?4, ?5, ?6
         FROM signature_transitions WHERE request_id = ?1",
    )?
    .execute(params![
        id,
        from.map(RequestState::as_str),
        t.to.as_str(),
        t.actor,
        t.detail,
        t.at_ms
    ])?;
    Ok(())
}

/// Apply `ops` in one `BEGIN IMMEDIATE` transaction.
fn apply_ops(
    conn: &mut Connection,
    ops: Vec<(String, Op)>,
) -> std::result::Result<Vec<OpResult>, Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut out = Vec::with_capacity(ops.len());
    for (id, op) in ops {
        let Some(cur) = load(&tx, &id)? else {
            out.push(OpResult::NotFound);
            continue;
        };
        out.push(match decide(&cur, &op) {
            Decision::Apply(w) => {
                write(&tx, &w)?;
                OpResult::Applied(w.next)
            }
            Decision::Unchanged => OpResult::Unchanged(cur),
            Decision::Refused(why) => OpResult::Refused(cur, why),
        });
    }
    tx.commit()?;
    Ok(out)
}

/// Run `f` with `synchronous=NORMAL` (leases and poll notes, see the module doc).
fn relaxed<T>(
    conn: &mut Connection,
    f: impl FnOnce(&mut Connection) -> std::result::Result<T, Fail>,
) -> std::result::Result<T, Fail> {
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let result = f(conn);
    conn.pragma_update(None, "synchronous", "FULL")?;
    result
}

/// Lease up to `limit` rows matching `cond` (params from ?3 on) to `instance`.
#[allow(clippy::too_many_arguments)]
fn lease(
    conn: &mut Connection,
    cond: &str,
    order: &str,
    extra: Vec<Sql>,
    now_ms: i64,
    instance: &str,
    lease_ms: i64,
    limit: u32,
) -> std::result::Result<Vec<SignatureRequest>, Fail> {
    let instance = instance.to_owned();
    relaxed(conn, move |conn| {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = extra.len();
        let sql_text = format!(
            "UPDATE signature_requests SET lease_holder = ?{h}, lease_until_ms = ?{u}
             WHERE request_id IN (
                 SELECT request_id FROM signature_requests
                 WHERE {cond} AND (lease_until_ms IS NULL OR lease_until_ms <= ?1)
                 ORDER BY {order} LIMIT ?2)
             RETURNING {cols}",
            h = n + 3,
            u = n + 4,
            cols = select_cols()
        );
        let mut args = vec![Sql::Integer(now_ms), Sql::Integer(i64::from(limit))];
        args.extend(extra);
        args.push(Sql::Text(instance));
        args.push(Sql::Integer(now_ms.saturating_add(lease_ms)));
        let mut out = Vec::new();
        {
            let mut stmt = tx.prepare_cached(&sql_text)?;
            let mut rows = stmt.query(params_from_iter(args))?;
            while let Some(r) = rows.next()? {
                out.push(decode(r)?);
            }
        }
        tx.commit()?;
        Ok(out)
    })
}

impl SqliteStore {
    async fn ops(&self, ops: Vec<(String, Op)>) -> Result<Vec<OpResult>> {
        self.call(move |conn| apply_ops(conn, ops)).await
    }

    async fn op(&self, id: &str, op: Op) -> Result<OpResult> {
        Ok(self
            .ops(vec![(id.to_owned(), op)])
            .await?
            .pop()
            .expect("one result per op"))
    }
}

#[async_trait]
impl SignatureStore for SqliteStore {
    async fn create(&self, n: NewRequest) -> Result<Created> {
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let row = fresh(n);
            let inserted = tx
                .prepare_cached(&insert_sql(ph))?
                .execute(params_from_iter(values(&row).into_iter().map(sql)))?;
            if inserted == 1 {
                let t = TrailEntry {
                    from: RequestState::Received,
                    to: RequestState::Received,
                    actor: row.request.source.clone(),
                    detail: created_detail(&row.request),
                    at_ms: row.request.created_ms,
                };
                insert_trail(&tx, row.id(), None, &t)?;
            }
            let stored = load(&tx, row.id())?.expect("inserted or existing");
            tx.commit()?;
            Ok(if inserted == 1 {
                Created::New(stored)
            } else {
                Created::Existing(stored)
            })
        })
        .await
    }

    async fn get(&self, request_id: &str) -> Result<Option<SignatureRequest>> {
        let id = request_id.to_owned();
        self.call(move |conn| load(conn, &id)).await
    }

    async fn trail(&self, request_id: &str) -> Result<Vec<Transition>> {
        let id = request_id.to_owned();
        type Raw = (String, i64, Option<String>, String, String, String, i64);
        let raws: Vec<Raw> = self
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {TRANSITION_COLS} FROM signature_transitions WHERE request_id = ?1
                     ORDER BY seq"
                ))?;
                let rows = stmt.query_map([id], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                })?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await?;
        raws.into_iter()
            .map(|(request_id, seq, from, to, actor, detail, at_ms)| {
                Ok(Transition {
                    request_id,
                    seq,
                    from: from.as_deref().map(parse_state).transpose()?,
                    to: parse_state(&to)?,
                    actor,
                    detail,
                    at_ms,
                })
            })
            .collect()
    }

    async fn transition(&self, change: Change) -> Result<Transitioned> {
        check_change(&change)?;
        let id = change.request_id.clone();
        Ok(self.op(&id, Op::Step(change)).await?.into())
    }

    async fn begin_send(
        &self,
        request_id: &str,
        instance: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<SendGuard> {
        let op = Op::BeginSend {
            instance: instance.to_owned(),
            now_ms,
            lease_ms,
        };
        Ok(send_guard(self.op(request_id, op).await?, now_ms))
    }

    async fn record_sent(
        &self,
        request_id: &str,
        transaction_id: &str,
        next_poll_ms: i64,
        actor: &str,
        at_ms: i64,
    ) -> Result<Transitioned> {
        let op = Op::RecordSent {
            transaction_id: transaction_id.to_owned(),
            next_poll_ms,
            actor: actor.to_owned(),
            at_ms,
        };
        Ok(self.op(request_id, op).await?.into())
    }

    async fn in_doubt_sends(&self, now_ms: i64, limit: u32) -> Result<Vec<SignatureRequest>> {
        self.call(move |conn| {
            rows(
                conn,
                "WHERE state = 'sending'
                   AND (send_lease_until_ms IS NULL OR send_lease_until_ms <= ?1)
                 ORDER BY send_started_ms, request_id LIMIT ?2",
                params![now_ms, limit],
            )
        })
        .await
    }

    async fn allow_resend(
        &self,
        request_id: &str,
        reason: &str,
        actor: &str,
        now_ms: i64,
    ) -> Result<Transitioned> {
        let op = Op::AllowResend {
            reason: reason.to_owned(),
            actor: actor.to_owned(),
            now_ms,
        };
        Ok(self.op(request_id, op).await?.into())
    }

    async fn due_for_poll(
        &self,
        service: &str,
        now_ms: i64,
        limit: u32,
        instance: &str,
        lease_ms: i64,
    ) -> Result<Vec<SignatureRequest>> {
        let (service, instance) = (service.to_owned(), instance.to_owned());
        let cond = format!(
            "service = ?3 AND state IN ({}) AND next_poll_ms <= ?1",
            state_list(RequestState::is_polled)
        );
        let mut out = self
            .call(move |conn| {
                lease(
                    conn,
                    &cond,
                    "next_poll_ms, request_id",
                    vec![Sql::Text(service)],
                    now_ms,
                    &instance,
                    lease_ms,
                    limit,
                )
            })
            .await?;
        out.sort_by(|a, b| (a.next_poll_ms, a.id()).cmp(&(b.next_poll_ms, b.id())));
        Ok(out)
    }

    async fn note_polls(&self, instance: &str, polls: &[(String, i64)], at_ms: i64) -> Result<u64> {
        let (polls, instance) = (polls.to_vec(), instance.to_owned());
        let sql_text = format!(
            "UPDATE signature_requests SET polls = polls + 1, next_poll_ms = ?3,
                 last_poll_ms = ?4,
                 lease_until_ms = CASE WHEN lease_holder = ?2 THEN NULL ELSE lease_until_ms END,
                 lease_holder = CASE WHEN lease_holder = ?2 THEN NULL ELSE lease_holder END
             WHERE request_id = ?1 AND state IN ({})",
            state_list(RequestState::is_polled)
        );
        self.call(move |conn| {
            relaxed(conn, |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut noted = 0;
                {
                    let mut stmt = tx.prepare_cached(&sql_text)?;
                    for (id, next_poll_ms) in &polls {
                        noted += stmt.execute(params![id, instance, next_poll_ms, at_ms])? as u64;
                    }
                }
                tx.commit()?;
                Ok(noted)
            })
        })
        .await
    }

    async fn due_for_work(
        &self,
        now_ms: i64,
        limit: u32,
        instance: &str,
        lease_ms: i64,
    ) -> Result<Vec<SignatureRequest>> {
        let instance = instance.to_owned();
        let cond = format!("state IN ({})", state_list(RequestState::is_work));
        let mut out = self
            .call(move |conn| {
                lease(
                    conn,
                    &cond,
                    "updated_ms, request_id",
                    Vec::new(),
                    now_ms,
                    &instance,
                    lease_ms,
                    limit,
                )
            })
            .await?;
        out.sort_by(|a, b| (a.updated_ms, a.id()).cmp(&(b.updated_ms, b.id())));
        Ok(out)
    }

    async fn defer(
        &self,
        request_id: &str,
        from: RequestState,
        actor: &str,
        detail: &str,
        until_ms: i64,
        at_ms: i64,
    ) -> Result<Transitioned> {
        let op = Op::Defer {
            from,
            actor: actor.to_owned(),
            detail: detail.to_owned(),
            until_ms,
            at_ms,
        };
        Ok(self.op(request_id, op).await?.into())
    }

    async fn expire_overdue(&self, now_ms: i64, limit: u32) -> Result<Vec<String>> {
        let cond = format!(
            "SELECT request_id FROM signature_requests
             WHERE state IN ({}) AND deadline_ms <= ?1 ORDER BY deadline_ms, request_id LIMIT ?2",
            state_list(RequestState::expires)
        );
        self.call(move |conn| {
            let ids: Vec<String> = conn
                .prepare_cached(&cond)?
                .query_map(params![now_ms, limit], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let ops = ids
                .iter()
                .map(|id| (id.clone(), Op::Expire { now_ms }))
                .collect();
            let results = apply_ops(conn, ops)?;
            Ok(ids
                .into_iter()
                .zip(results)
                .filter(|(_, r)| matches!(r, OpResult::Applied(_)))
                .map(|(id, _)| id)
                .collect())
        })
        .await
    }

    async fn unpublished(&self, limit: u32) -> Result<Vec<OutboxEvent>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, request_id, kind, body, created_ms FROM signature_outbox
                 WHERE published_ms IS NULL ORDER BY created_ms, id LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit], |r| {
                Ok(OutboxEvent {
                    id: r.get(0)?,
                    request_id: r.get(1)?,
                    kind: r.get(2)?,
                    body: r.get(3)?,
                    created_ms: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn mark_published(&self, id: &str, at_ms: i64) -> Result<()> {
        let id = id.to_owned();
        self.call(move |conn| {
            conn.execute(
                "UPDATE signature_outbox SET published_ms = ?2
                 WHERE id = ?1 AND published_ms IS NULL",
                params![id, at_ms],
            )?;
            Ok(())
        })
        .await
    }

    async fn claim_unpublished(
        &self,
        instance: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>> {
        let instance = instance.to_owned();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let events = {
                let mut stmt = tx.prepare_cached(
                    "SELECT id, request_id, kind, body, created_ms FROM signature_outbox
                     WHERE published_ms IS NULL
                       AND (claimed_until_ms IS NULL OR claimed_until_ms <= ?2 OR claimed_by = ?1)
                     ORDER BY created_ms, id LIMIT ?3",
                )?;
                let rows = stmt.query_map(params![instance, now_ms, limit], |r| {
                    Ok(OutboxEvent {
                        id: r.get(0)?,
                        request_id: r.get(1)?,
                        kind: r.get(2)?,
                        body: r.get(3)?,
                        created_ms: r.get(4)?,
                    })
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE signature_outbox SET claimed_by = ?2, claimed_until_ms = ?3 WHERE id = ?1",
                )?;
                for e in &events {
                    stmt.execute(params![e.id, instance, now_ms.saturating_add(lease_ms)])?;
                }
            }
            tx.commit()?;
            Ok(events)
        })
        .await
    }

    async fn release_claims(&self, instance: &str, ids: &[String]) -> Result<u64> {
        let (instance, ids) = (instance.to_owned(), ids.to_vec());
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut released = 0;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE signature_outbox SET claimed_by = NULL, claimed_until_ms = NULL
                     WHERE id = ?1 AND claimed_by = ?2 AND published_ms IS NULL",
                )?;
                for id in &ids {
                    released += stmt.execute(params![id, instance])? as u64;
                }
            }
            tx.commit()?;
            Ok(released)
        })
        .await
    }

    async fn list(&self, f: ListFilter) -> Result<Vec<SignatureRequest>> {
        let mut conds = Vec::new();
        let mut args: Vec<Sql> = Vec::new();
        let mut add = |cond: &str, v: Sql| {
            args.push(v);
            conds.push(format!("{cond} ?{}", args.len()));
        };
        if let Some(s) = f.state {
            add("state =", Sql::Text(s.as_str().into()));
        }
        if let Some(s) = f.service {
            add("service =", Sql::Text(s));
        }
        if let Some(d) = f.dossier_code {
            add("dossier_code =", Sql::Text(d));
        }
        if let Some(a) = f.after {
            add("request_id >", Sql::Text(a));
        }
        args.push(Sql::Integer(i64::from(list_limit(f.limit))));
        let tail = format!(
            "{} ORDER BY request_id LIMIT ?{}",
            if conds.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", conds.join(" AND "))
            },
            args.len()
        );
        self.call(move |conn| rows(conn, &tail, params_from_iter(args)))
            .await
    }

    async fn cancel(&self, request_id: &str, who: &str, at_ms: i64) -> Result<Transitioned> {
        let op = Op::Cancel {
            who: who.to_owned(),
            at_ms,
        };
        Ok(self.op(request_id, op).await?.into())
    }

    async fn cancels_to_notify(&self, limit: u32) -> Result<Vec<SignatureRequest>> {
        self.call(move |conn| {
            rows(
                conn,
                "WHERE service_cancel = 'pending' ORDER BY updated_ms, request_id LIMIT ?1",
                [limit],
            )
        })
        .await
    }

    async fn mark_cancel_notified(&self, request_id: &str, outcome: &str) -> Result<()> {
        let (id, outcome) = (request_id.to_owned(), outcome.to_owned());
        self.call(move |conn| {
            conn.execute(
                "UPDATE signature_requests SET service_cancel = ?2
                 WHERE request_id = ?1 AND service_cancel = 'pending'",
                params![id, outcome],
            )?;
            Ok(())
        })
        .await
    }

    async fn cancels_due(&self, now_ms: i64, limit: u32) -> Result<Vec<CancelDue>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT request_id, cancel_attempts FROM signature_requests
                 WHERE service_cancel = 'pending'
                   AND (cancel_next_ms IS NULL OR cancel_next_ms <= ?1)
                 ORDER BY updated_ms, request_id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![now_ms, limit], |r| {
                Ok(CancelDue {
                    request_id: r.get(0)?,
                    attempts: r.get::<_, i64>(1)?.clamp(0, i64::from(u32::MAX)) as u32,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn note_cancel_attempt(&self, request_id: &str, next_ms: i64) -> Result<()> {
        let id = request_id.to_owned();
        self.call(move |conn| {
            conn.execute(
                "UPDATE signature_requests
                 SET cancel_attempts = cancel_attempts + 1, cancel_next_ms = ?2
                 WHERE request_id = ?1 AND service_cancel = 'pending'",
                params![id, next_ms],
            )?;
            Ok(())
        })
        .await
    }

    async fn counts_by_state(&self) -> Result<Vec<StateCount>> {
        let raws: Vec<(String, String, i64)> = self
            .call(|conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT service, state, COUNT(*) FROM signature_requests
                     GROUP BY service, state ORDER BY service, state",
                )?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await?;
        raws.into_iter()
            .map(|(service, st, count)| {
                Ok(StateCount {
                    service,
                    state: parse_state(&st)?,
                    count,
                })
            })
            .collect()
    }

    async fn pending_by_service(&self) -> Result<Vec<ServicePending>> {
        let sql_text = format!(
            "SELECT service, COUNT(*), SUM(CASE WHEN state IN ({}) THEN 1 ELSE 0 END),
                 MIN(created_ms)
             FROM signature_requests WHERE state NOT IN ({})
             GROUP BY service ORDER BY service",
            state_list(RequestState::is_polled),
            state_list(RequestState::is_terminal)
        );
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(&sql_text)?;
            let rows = stmt.query_map([], |r| {
                Ok(ServicePending {
                    service: r.get(0)?,
                    pending: r.get(1)?,
                    waiting: r.get(2)?,
                    oldest_created_ms: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn put_blob(
        &self,
        request_id: &str,
        kind: BlobKind,
        bytes: &[u8],
        cap: usize,
        at_ms: i64,
    ) -> Result<BlobStored> {
        check_cap(
            &format!("the {} of {request_id}", kind.as_str()),
            bytes.len(),
            cap,
        )?;
        let (id, bytes, sha) = (request_id.to_owned(), bytes.to_vec(), sha256_hex(bytes));
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let existing: Option<String> = tx
                .query_row(
                    "SELECT sha256 FROM signature_blobs WHERE request_id = ?1 AND kind = ?2",
                    params![id, kind.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            let stored = match existing {
                Some(s) if s == sha => BlobStored::Same,
                Some(_) => BlobStored::Different,
                None => {
                    tx.execute(
                        "INSERT INTO signature_blobs (request_id, kind, bytes, size, sha256,
                             stored_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![id, kind.as_str(), bytes, bytes.len() as i64, sha, at_ms],
                    )?;
                    BlobStored::New
                }
            };
            tx.commit()?;
            Ok(stored)
        })
        .await
    }

    async fn blob(&self, request_id: &str, kind: BlobKind) -> Result<Option<Vec<u8>>> {
        let id = request_id.to_owned();
        self.call(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT bytes FROM signature_blobs WHERE request_id = ?1 AND kind = ?2",
                    params![id, kind.as_str()],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }
}
