//! Sync of dossiers and progress: `DongBoHoSoMC` and `CapNhatTienDoHoSoMC`, batched.
//!
//! # Invariants
//! - Concurrent deliveries of distinct dossiers share one `data` array, bounded by count and
//!   bytes, at most `batch_in_flight` calls at once; each lane still waits for its own item's
//!   answer, so one dossier's versions stay in order.
//! - **One bad item never takes its batch down.** The portal refuses a whole batch for one bad
//!   item and names it (`data[i]`): only the named items get the refusal (a progress step
//!   for a dossier the portal does not know yet waits for it: retried as `awaiting_dossier`),
//!   and the others are sent again together. A refusal naming nobody: each item alone.
//! - One [`Health`] per HTTP exchange: a batch's health is carried by one of its items, so
//!   the circuit breaker counts calls, not items.
//! - A batch's call is evidence for every envelope in it (their captures are merged).

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::client::{Called, Inner};
use super::request::service;
use super::response::{awaiting_dossier, named_items};
use crate::connectors::connector::Attempted;
use crate::evidence::capture::{within, Capture};
use crate::model::outcome::{Answer, Decision, Health};

/// A batch slot: which call the item belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Op {
    Upsert { updating: bool },
    Progress,
}

impl Op {
    /// Every batcher the connector runs.
    pub(super) const ALL: [Op; 3] = [
        Op::Upsert { updating: false },
        Op::Upsert { updating: true },
        Op::Progress,
    ];

    fn service(self) -> &'static str {
        match self {
            Op::Upsert { .. } => service::SYNC_DOSSIERS,
            Op::Progress => service::SYNC_PROGRESS,
        }
    }
}

/// One delivery's item, waiting for its batch's answer.
pub(super) struct Item {
    pub(super) value: Value,
    /// Its length as compact JSON (counted once, when submitted), for the batch's byte bound.
    pub(super) bytes: usize,
    pub(super) done: oneshot::Sender<Attempted>,
    /// The evidence capture of the delivery this item belongs to.
    pub(super) capture: Option<Capture>,
}

/// Collect items of one operation into batches and send them, at most `in_flight` calls at
/// once. A batch takes what is waiting when a call slot frees up (then lingers, if configured,
/// for companions): under load the batches grow, and an idle portal sees each item at once.
pub(super) async fn run_batcher(inner: Arc<Inner>, op: Op, mut rx: mpsc::Receiver<Item>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(inner.settings.in_flight.max(1)));
    let mut calls = tokio::task::JoinSet::new();
    // An item too big to join the previous batch: it starts the next one.
    let mut carry: Option<Item> = None;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let first = match carry.take() {
            Some(i) => i,
            None => match rx.recv().await {
                Some(i) => i,
                None => break,
            },
        };
        // Under a quota, gather only once a call could go: what arrives meanwhile joins it.
        inner.client.until_free().await;
        let mut items = vec![first];
        let mut bytes = items[0].bytes;
        let deadline = tokio::time::Instant::now() + inner.settings.linger;
        while items.len() < inner.settings.max_items {
            let next = match rx.try_recv() {
                Ok(i) => Some(i),
                Err(mpsc::error::TryRecvError::Empty) if inner.settings.linger.is_zero() => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    // Ok(None): the channel closed; Err: the linger ran out.
                    tokio::time::timeout_at(deadline, rx.recv())
                        .await
                        .unwrap_or(None)
                }
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            };
            let Some(item) = next else { break };
            let size = item.bytes;
            if bytes + size > inner.settings.max_bytes {
                // Too big to join: it starts the next batch.
                carry = Some(item);
                break;
            }
            bytes += size;
            items.push(item);
        }
        let inner2 = inner.clone();
        calls.spawn(async move {
            send_batch(&inner2, op, items).await;
            drop(slot);
        });
        while calls.try_join_next().is_some() {}
    }
    while calls.join_next().await.is_some() {}
}

/// Send a batch, isolating the items the portal names. The portal refuses a whole batch for
/// one bad item and names it (`data[i].…` in `result.errors`): the named items get the
/// refusal (a progress step for a dossier it does not know yet waits; an upsert refused for
/// existing / not existing is sent alone, which flips `isUpdating`), the others are sent
/// again together. A refusal naming nobody (or everybody) of several items: each is sent
/// alone. Each exchange's [`Health`] is carried by exactly one item.
async fn send_batch(inner: &Inner, op: Op, items: Vec<Item>) {
    let mut healths: std::collections::VecDeque<Health> = Default::default();
    let settle =
        |item: Item, mut a: Attempted, healths: &mut std::collections::VecDeque<Health>| {
            a.health = healths.pop_front().unwrap_or(Health::Silent);
            let _ = item.done.send(a);
        };
    let mut pending = items;
    while !pending.is_empty() {
        let values: Vec<&Value> = pending.iter().map(|i| &i.value).collect();
        // The batch's call is evidence for every envelope in it.
        let all = Capture::merge(pending.iter().filter_map(|i| i.capture.clone()));
        let (attempted, code, parsed) = within(Some(all), sync(inner, op, &values)).await;
        drop(values);
        healths.push_back(attempted.health);
        let item_refusal = matches!(
            attempted.answer,
            Answer::Http {
                status: 200..=299,
                ..
            }
        ) && !matches!(attempted.decision, Decision::Delivered);
        if pending.len() == 1 || !item_refusal {
            for item in pending {
                settle(item, attempted.clone(), &mut healths);
            }
            return;
        }
        let named = named_items(parsed.as_ref(), pending.len());
        if named.is_empty() || named.len() == pending.len() {
            if matches!(attempted.decision, Decision::Permanent { .. }) {
                // Refused as a whole without saying for whom: send each alone.
                for item in pending {
                    let (alone, _, _) =
                        within(item.capture.clone(), sync(inner, op, &[&item.value])).await;
                    let _ = item.done.send(alone);
                }
            } else {
                for item in pending {
                    settle(item, attempted.clone(), &mut healths);
                }
            }
            return;
        }
        let code = code.unwrap_or_default();
        let mut rest = Vec::with_capacity(pending.len());
        for (i, item) in pending.into_iter().enumerate() {
            let Some(errors) = named.get(&i) else {
                rest.push(item);
                continue;
            };
            let is = |codes: &[String]| codes.contains(&code);
            let upsert_flip = matches!(op, Op::Upsert { .. })
                && (is(&inner.settings.exists) || is(&inner.settings.not_found));
            if upsert_flip {
                let (alone, _, _) =
                    within(item.capture.clone(), sync(inner, op, &[&item.value])).await;
                let _ = item.done.send(alone);
                continue;
            }
            let decision = if op == Op::Progress && is(&inner.settings.not_found) {
                awaiting_dossier()
            } else {
                attempted.decision.clone()
            };
            let answer = match &attempted.answer {
                Answer::Http {
                    status,
                    retry_after,
                    ..
                } => Answer::Http {
                    status: *status,
                    retry_after: *retry_after,
                    body: format!("error_code {code}: {}", errors.join("; ")),
                },
                other => other.clone(),
            };
            let one = Attempted {
                answer,
                decision,
                ..attempted.clone()
            };
            settle(item, one, &mut healths);
        }
        pending = rest;
    }
}

/// Send one sync call for `op`. A single upsert is sent once more with `isUpdating`
/// flipped if the portal says the dossier exists / does not exist (a batch is not: its
/// items are told apart by [`send_batch`]). Returns the attempt, the `error_code` and
/// the parsed answer.
async fn sync(inner: &Inner, op: Op, data: &[&Value]) -> Called {
    let mut updating = matches!(op, Op::Upsert { updating: true });
    let mut flipped = data.len() > 1;
    loop {
        let mut fields = serde_json::Map::new();
        if let Op::Upsert { .. } = op {
            fields.insert("isUpdating".into(), Value::Bool(updating));
        }
        // The items go into the body by reference: no copy of the batch per call.
        let (attempted, code, parsed) = inner
            .call_items(op.service(), &inner.settings.url, &fields, Some(data))
            .await;
        if let (Op::Upsert { .. }, Some(code), false) = (op, code.as_deref(), flipped) {
            let flip = (!updating && inner.settings.exists.iter().any(|c| c == code))
                || (updating && inner.settings.not_found.iter().any(|c| c == code));
            if flip {
                updating = !updating;
                flipped = true;
                continue;
            }
        }
        if let (Op::Progress, Some(c)) = (op, code.as_deref()) {
            if inner.settings.not_found.iter().any(|n| n == c) {
                // The dossier is not at the portal yet (its snapshot is still on its way):
                // wait for it rather than dead-letter the step.
                let attempted = Attempted {
                    decision: awaiting_dossier(),
                    ..attempted
                };
                return (attempted, code, parsed);
            }
        }
        return (attempted, code, parsed);
    }
}
