//! [`SignatureStore`] on PostgreSQL.
//!
//! # Invariants
//!
//! - A change locks its request (`SELECT … FOR UPDATE`) in the transaction that writes the new
//!   row, the trail row and the event (invariants 2 and 5 of [`super`]); [`super::decide`]
//!   computes it. Several changes in one transaction (expiry) lock their rows in request-id
//!   order, so two instances expiring together cannot deadlock.
//! - Leases are one `UPDATE … WHERE request_id IN (SELECT … FOR UPDATE SKIP LOCKED)`: two
//!   instances asking at once get disjoint rows, neither waits for the other.
//! - Leases and poll notes run with `SET LOCAL synchronous_commit = off` (no wait for the WAL
//!   flush; a database crash may lose the last ones, never corrupt anything); state changes
//!   keep the server's setting.
//! - Connections come from the store's pool; a failed statement is `StoreError::Query`.

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::*;
use crate::postgres::PgStore;
use crate::sql::query;

impl Columns for Row {
    type Error = StoreError;
    fn text(&self, i: usize) -> Result<String> {
        self.try_get(i).map_err(|e| malformed(i, e))
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        self.try_get(i).map_err(|e| malformed(i, e))
    }
    fn int(&self, i: usize) -> Result<i64> {
        self.try_get(i).map_err(|e| malformed(i, e))
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        self.try_get(i).map_err(|e| malformed(i, e))
    }
    fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>> {
        self.try_get(i).map_err(|e| malformed(i, e))
    }
    fn malformed(&self, what: String) -> StoreError {
        StoreError::Malformed(what)
    }
}

fn malformed(i: usize, e: tokio_postgres::Error) -> StoreError {
    StoreError::Malformed(format!("signature_requests.{}: {e}", COLS[i]))
}

/// Leases and poll notes: not flushed at commit (see invariant 4 of [`super`]).
const UNFLUSHED: &str = "SET LOCAL synchronous_commit = off";

fn ph(i: usize) -> String {
    format!("${i}")
}

type Param = Box<dyn ToSql + Sync + Send>;

fn param(v: Value) -> Param {
    match v {
        Value::Text(s) => Box::new(s),
        Value::Int(i) => Box::new(i),
        Value::Bytes(b) => Box::new(b),
    }
}

fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

async fn rows(
    c: &impl GenericClient,
    tail: &str,
    args: &[&(dyn ToSql + Sync)],
) -> Result<Vec<SignatureRequest>> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {} FROM signature_requests {tail}",
            select_cols()
        ))
        .await
        .map_err(query)?;
    let rows = c.query(&stmt, args).await.map_err(query)?;
    rows.iter().map(decode).collect()
}

async fn insert_trail(
    c: &impl GenericClient,
    id: &str,
    from: Option<RequestState>,
    t: &TrailEntry,
) -> Result<()> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO signature_transitions (request_id, seq, from_state, to_state, actor,
                 detail, at_ms)
             SELECT $1, COALESCE(MAX(seq), -1) + 1, $2, $3, $4, $5, $6
             FROM signature_transitions WHERE request_id = $1",
        )
        .await
        .map_err(query)?;
    c.execute(
        &stmt,
        &[
            &id,
            &from.map(RequestState::as_str),
            &t.to.as_str(),
            &t.actor,
            &t.detail,
            &t.at_ms,
        ],
    )
    .await
    .map_err(query)?;
    Ok(())
}

async fn write(c: &impl GenericClient, w: &Write) -> Result<()> {
    let params: Vec<Param> = update_values(&w.next).into_iter().map(param).collect();
    let stmt = c.prepare_cached(&update_sql(ph)).await.map_err(query)?;
    c.execute(&stmt, &refs(&params)).await.map_err(query)?;
    insert_trail(c, w.next.id(), Some(w.trail.from), &w.trail).await?;
    if let Some(e) = &w.event {
        let stmt = c
            .prepare_cached(
                "INSERT INTO signature_outbox (id, request_id, kind, body, created_ms)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .await
            .map_err(query)?;
        c.execute(
            &stmt,
            &[&e.id, &e.request_id, &e.kind, &e.body, &e.created_ms],
        )
        .await
        .map_err(query)?;
    }
    Ok(())
}

impl PgStore {
    /// Apply `ops` in one transaction, locking rows in request-id order.
    async fn ops(&self, mut ops: Vec<(String, Op)>) -> Result<Vec<(String, OpResult)>> {
        ops.sort_by(|a, b| a.0.cmp(&b.0));
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(query)?;
        let mut out = Vec::with_capacity(ops.len());
        for (id, op) in ops {
            let cur = rows(&tx, "WHERE request_id = $1 FOR UPDATE", &[&id])
                .await?
                .pop();
            let Some(cur) = cur else {
                out.push((id, OpResult::NotFound));
                continue;
            };
            let result = match decide(&cur, &op) {
                Decision::Apply(w) => {
                    write(&tx, &w).await?;
                    OpResult::Applied(w.next)
                }
                Decision::Unchanged => OpResult::Unchanged(cur),
                Decision::Refused(why) => OpResult::Refused(cur, why),
            };
            out.push((id, result));
        }
        tx.commit().await.map_err(query)?;
        Ok(out)
    }

    async fn op(&self, id: &str, op: Op) -> Result<OpResult> {
        Ok(self
            .ops(vec![(id.to_owned(), op)])
            .await?
            .pop()
            .expect("one result per op")
            .1)
    }

    /// Lease up to `limit` rows matching `cond` (params from $5 on) to `instance`.
    #[allow(clippy::too_many_arguments)]
    async fn lease(
        &self,
        cond: &str,
        order: &str,
        extra: Vec<Param>,
        now_ms: i64,
        instance: &str,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<SignatureRequest>> {
        let sql = format!(
            "UPDATE signature_requests SET lease_holder = $3, lease_until_ms = $4
             WHERE request_id IN (
                 SELECT request_id FROM signature_requests
                 WHERE {cond} AND (lease_until_ms IS NULL OR lease_until_ms <= $1)
                 ORDER BY {order} LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING {}",
            select_cols()
        );
        let mut params: Vec<Param> = vec![
            Box::new(now_ms),
            Box::new(i64::from(limit)),
            Box::new(instance.to_owned()),
            Box::new(now_ms.saturating_add(lease_ms)),
        ];
        params.extend(extra);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(query)?;
        tx.batch_execute(UNFLUSHED).await.map_err(query)?;
        let rows = tx.query(&sql, &refs(&params)).await.map_err(query)?;
        tx.commit().await.map_err(query)?;
        rows.iter().map(decode).collect()
    }
}

#[async_trait]
impl SignatureStore for PgStore {
    async fn create(&self, n: NewRequest) -> Result<Created> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(query)?;
        let row = fresh(n);
        let params: Vec<Param> = values(&row).into_iter().map(param).collect();
        let inserted = tx
            .execute(&insert_sql(ph), &refs(&params))
            .await
            .map_err(query)?;
        if inserted == 1 {
            let t = TrailEntry {
                from: RequestState::Received,
                to: RequestState::Received,
                actor: row.request.source.clone(),
                detail: created_detail(&row.request),
                at_ms: row.request.created_ms,
            };
            insert_trail(&tx, row.id(), None, &t).await?;
        }
        let stored = rows(&tx, "WHERE request_id = $1", &[&row.id()])
            .await?
            .pop()
            .expect("inserted or existing");
        tx.commit().await.map_err(query)?;
        Ok(if inserted == 1 {
            Created::New(stored)
        } else {
            Created::Existing(stored)
        })
    }

    async fn get(&self, request_id: &str) -> Result<Option<SignatureRequest>> {
        let client = self.client().await?;
        Ok(rows(&client, "WHERE request_id = $1", &[&request_id])
            .await?
            .pop())
    }

    async fn trail(&self, request_id: &str) -> Result<Vec<Transition>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {TRANSITION_COLS} FROM signature_transitions WHERE request_id = $1
                     ORDER BY seq"
                ),
                &[&request_id],
            )
            .await
            .map_err(query)?;
        rows.iter()
            .map(|r| {
                let from: Option<String> = r.get(2);
                let to: String = r.get(3);
                Ok(Transition {
                    request_id: r.get(0),
                    seq: r.get(1),
                    from: from.as_deref().map(parse_state).transpose()?,
                    to: parse_state(&to)?,
                    actor: r.get(4),
                    detail: r.get(5),
                    at_ms: r.get(6),
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
        let client = self.client().await?;
        rows(
            &client,
            "WHERE state = 'sending'
               AND (send_lease_until_ms IS NULL OR send_lease_until_ms <= $1)
             ORDER BY send_started_ms, request_id LIMIT $2",
            &[&now_ms, &i64::from(limit)],
        )
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
        let cond = format!(
            "service = $5 AND state IN ({}) AND next_poll_ms <= $1",
            state_list(RequestState::is_polled)
        );
        let mut out = self
            .lease(
                &cond,
                "next_poll_ms, request_id",
                vec![Box::new(service.to_owned())],
                now_ms,
                instance,
                lease_ms,
                limit,
            )
            .await?;
        out.sort_by(|a, b| (a.next_poll_ms, a.id()).cmp(&(b.next_poll_ms, b.id())));
        Ok(out)
    }

    async fn note_polls(&self, instance: &str, polls: &[(String, i64)], at_ms: i64) -> Result<u64> {
        let sql = format!(
            "UPDATE signature_requests r SET polls = r.polls + 1, next_poll_ms = u.next,
                 last_poll_ms = $3,
                 lease_until_ms = CASE WHEN r.lease_holder = $4 THEN NULL
                                       ELSE r.lease_until_ms END,
                 lease_holder = CASE WHEN r.lease_holder = $4 THEN NULL ELSE r.lease_holder END
             FROM UNNEST($1::text[], $2::bigint[]) AS u(id, next)
             WHERE r.request_id = u.id AND r.state IN ({})",
            state_list(RequestState::is_polled)
        );
        // Sorted, so two pollers' batches lock shared rows in one order.
        let mut polls = polls.to_vec();
        polls.sort();
        let (ids, nexts): (Vec<String>, Vec<i64>) = polls.into_iter().unzip();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(query)?;
        tx.batch_execute(UNFLUSHED).await.map_err(query)?;
        let n = tx
            .execute(&sql, &[&ids, &nexts, &at_ms, &instance])
            .await
            .map_err(query)?;
        tx.commit().await.map_err(query)?;
        Ok(n)
    }

    async fn due_for_work(
        &self,
        now_ms: i64,
        limit: u32,
        instance: &str,
        lease_ms: i64,
    ) -> Result<Vec<SignatureRequest>> {
        let cond = format!("state IN ({})", state_list(RequestState::is_work));
        let mut out = self
            .lease(
                &cond,
                "updated_ms, request_id",
                Vec::new(),
                now_ms,
                instance,
                lease_ms,
                limit,
            )
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
        let ids: Vec<String> = {
            let client = self.client().await?;
            client
                .query(
                    &format!(
                        "SELECT request_id FROM signature_requests
                         WHERE state IN ({}) AND deadline_ms <= $1
                         ORDER BY deadline_ms, request_id LIMIT $2",
                        state_list(RequestState::expires)
                    ),
                    &[&now_ms, &i64::from(limit)],
                )
                .await
                .map_err(query)?
                .iter()
                .map(|r| r.get(0))
                .collect()
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ops = ids
            .into_iter()
            .map(|id| (id, Op::Expire { now_ms }))
            .collect();
        Ok(self
            .ops(ops)
            .await?
            .into_iter()
            .filter(|(_, r)| matches!(r, OpResult::Applied(_)))
            .map(|(id, _)| id)
            .collect())
    }

    async fn unpublished(&self, limit: u32) -> Result<Vec<OutboxEvent>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, request_id, kind, body, created_ms FROM signature_outbox
                 WHERE published_ms IS NULL ORDER BY created_ms, id LIMIT $1",
                &[&i64::from(limit)],
            )
            .await
            .map_err(query)?;
        Ok(rows
            .iter()
            .map(|r| OutboxEvent {
                id: r.get(0),
                request_id: r.get(1),
                kind: r.get(2),
                body: r.get(3),
                created_ms: r.get(4),
            })
            .collect())
    }

    async fn mark_published(&self, id: &str, at_ms: i64) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE signature_outbox SET published_ms = $2
                 WHERE id = $1 AND published_ms IS NULL",
                &[&id, &at_ms],
            )
            .await
            .map_err(query)?;
        Ok(())
    }

    async fn claim_unpublished(
        &self,
        instance: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>> {
        let client = self.client().await?;
        // SKIP LOCKED: a row another instance is claiming right now is left to it; the
        // re-check of the WHERE clause on a row claimed meanwhile keeps it out too.
        let rows = client
            .query(
                "UPDATE signature_outbox SET claimed_by = $1, claimed_until_ms = $2 + $3
                 WHERE id IN (
                     SELECT id FROM signature_outbox
                     WHERE published_ms IS NULL
                       AND (claimed_until_ms IS NULL OR claimed_until_ms <= $2 OR claimed_by = $1)
                     ORDER BY created_ms, id LIMIT $4
                     FOR UPDATE SKIP LOCKED)
                 RETURNING id, request_id, kind, body, created_ms",
                &[&instance, &now_ms, &lease_ms, &i64::from(limit)],
            )
            .await
            .map_err(query)?;
        let mut out: Vec<OutboxEvent> = rows
            .iter()
            .map(|r| OutboxEvent {
                id: r.get(0),
                request_id: r.get(1),
                kind: r.get(2),
                body: r.get(3),
                created_ms: r.get(4),
            })
            .collect();
        out.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(out)
    }

    async fn release_claims(&self, instance: &str, ids: &[String]) -> Result<u64> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE signature_outbox SET claimed_by = NULL, claimed_until_ms = NULL
                 WHERE id = ANY($1) AND claimed_by = $2 AND published_ms IS NULL",
                &[&ids, &instance],
            )
            .await
            .map_err(query)
    }

    async fn list(&self, f: ListFilter) -> Result<Vec<SignatureRequest>> {
        let mut conds = Vec::new();
        let mut params: Vec<Param> = Vec::new();
        let mut add = |cond: &str, v: Param| {
            params.push(v);
            conds.push(format!("{cond} ${}", params.len()));
        };
        if let Some(s) = f.state {
            add("state =", Box::new(s.as_str().to_owned()));
        }
        if let Some(s) = f.service {
            add("service =", Box::new(s));
        }
        if let Some(d) = f.dossier_code {
            add("dossier_code =", Box::new(d));
        }
        if let Some(a) = f.after {
            add("request_id >", Box::new(a));
        }
        params.push(Box::new(i64::from(list_limit(f.limit))));
        let tail = format!(
            "{} ORDER BY request_id LIMIT ${}",
            if conds.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", conds.join(" AND "))
            },
            params.len()
        );
        let client = self.client().await?;
        rows(&client, &tail, &refs(&params)).await
    }

    async fn cancel(&self, request_id: &str, who: &str, at_ms: i64) -> Result<Transitioned> {
        let op = Op::Cancel {
            who: who.to_owned(),
            at_ms,
        };
        Ok(self.op(request_id, op).await?.into())
    }

    async fn cancels_to_notify(&self, limit: u32) -> Result<Vec<SignatureRequest>> {
        let client = self.client().await?;
        rows(
            &client,
            "WHERE service_cancel = 'pending' ORDER BY updated_ms, request_id LIMIT $1",
            &[&i64::from(limit)],
        )
        .await
    }

    async fn mark_cancel_notified(&self, request_id: &str, outcome: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE signature_requests SET service_cancel = $2
                 WHERE request_id = $1 AND service_cancel = 'pending'",
                &[&request_id, &outcome],
            )
            .await
            .map_err(query)?;
        Ok(())
    }

    async fn cancels_due(&self, now_ms: i64, limit: u32) -> Result<Vec<CancelDue>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT request_id, cancel_attempts FROM signature_requests
                 WHERE service_cancel = 'pending'
                   AND (cancel_next_ms IS NULL OR cancel_next_ms <= $1)
                 ORDER BY updated_ms, request_id LIMIT $2",
                &[&now_ms, &i64::from(limit)],
            )
            .await
            .map_err(query)?;
        Ok(rows
            .iter()
            .map(|r| CancelDue {
                request_id: r.get(0),
                attempts: r.get::<_, i64>(1).clamp(0, i64::from(u32::MAX)) as u32,
            })
            .collect())
    }

    async fn note_cancel_attempt(&self, request_id: &str, next_ms: i64) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE signature_requests
                 SET cancel_attempts = cancel_attempts + 1, cancel_next_ms = $2
                 WHERE request_id = $1 AND service_cancel = 'pending'",
                &[&request_id, &next_ms],
            )
            .await
            .map_err(query)?;
        Ok(())
    }

    async fn counts_by_state(&self) -> Result<Vec<StateCount>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT service, state, COUNT(*) FROM signature_requests
                 GROUP BY service, state ORDER BY service, state",
                &[],
            )
            .await
            .map_err(query)?;
        rows.iter()
            .map(|r| {
                let st: String = r.get(1);
                Ok(StateCount {
                    service: r.get(0),
                    state: parse_state(&st)?,
                    count: r.get(2),
                })
            })
            .collect()
    }

    async fn pending_by_service(&self) -> Result<Vec<ServicePending>> {
        let sql = format!(
            "SELECT service, COUNT(*), COUNT(*) FILTER (WHERE state IN ({})), MIN(created_ms)
             FROM signature_requests WHERE state NOT IN ({})
             GROUP BY service ORDER BY service",
            state_list(RequestState::is_polled),
            state_list(RequestState::is_terminal)
        );
        let client = self.client().await?;
        let rows = client.query(&sql, &[]).await.map_err(query)?;
        Ok(rows
            .iter()
            .map(|r| ServicePending {
                service: r.get(0),
                pending: r.get(1),
                waiting: r.get(2),
                oldest_created_ms: r.get(3),
            })
            .collect())
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
        let sha = sha256_hex(bytes);
        let client = self.client().await?;
        let inserted = client
            .execute(
                "INSERT INTO signature_blobs (request_id, kind, bytes, size, sha256, stored_ms)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (request_id, kind) DO NOTHING",
                &[
                    &request_id,
                    &kind.as_str(),
                    &bytes,
                    &(bytes.len() as i64),
                    &sha,
                    &at_ms,
                ],
            )
            .await
            .map_err(query)?;
        if inserted == 1 {
            return Ok(BlobStored::New);
        }
        let existing: String = client
            .query_one(
                "SELECT sha256 FROM signature_blobs WHERE request_id = $1 AND kind = $2",
                &[&request_id, &kind.as_str()],
            )
            .await
            .map_err(query)?
            .get(0);
        Ok(if existing == sha {
            BlobStored::Same
        } else {
            BlobStored::Different
        })
    }

    async fn blob(&self, request_id: &str, kind: BlobKind) -> Result<Option<Vec<u8>>> {
        let client = self.client().await?;
        Ok(client
            .query_opt(
                "SELECT bytes FROM signature_blobs WHERE request_id = $1 AND kind = $2",
                &[&request_id, &kind.as_str()],
            )
            .await
            .map_err(query)?
            .map(|r| r.get(0)))
    }
}
