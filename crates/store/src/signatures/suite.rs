//! The shared checks of [`SignatureStore`](crate::signatures::SignatureStore), run on both
//! stores by `tests/signatures.rs`.
//!
//! # Invariants
//!
//! - Each check opens its own database by name through the caller's [`Opener`] (a file per name
//!   on SQLite, a schema per name on PostgreSQL), so the checks do not see each other's rows.
//!   Opening a name again reaches the same database: that is how a crash (dropping every handle
//!   mid-flow) and a second instance (a second handle) are simulated.
//! - Times are explicit unix-ms values, never the wall clock, so leases and deadlines are
//!   exact.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::*;

/// Opens (creating and migrating if needed) the database called `name`.
pub type Opener =
    dyn Fn(&str) -> Pin<Box<dyn Future<Output = Arc<dyn SignatureStore>> + Send>> + Send + Sync;

const CREATED: i64 = 1_000;
const DEADLINE: i64 = 1_000_000;
/// The send lease the checks use.
const LEASE: i64 = 1_000;

/// A request of `service` created at [`CREATED`] with deadline `deadline`.
pub fn request(id: &str, service: &str, deadline: i64) -> NewRequest {
    NewRequest {
        request_id: id.into(),
        idempotency_key: format!("idem-{id}"),
        source: "motcua".into(),
        dossier_code: Some(format!("DOSSIER-{}", id.len() % 3)),
        dossier_key: None,
        service: service.into(),
        signer_user_id: "079123456789".into(),
        signer_credential: Some("SERIAL-1".into()),
        format: "pades".into(),
        reason: "Ký kết quả".into(),
        document_ref: None,
        document_sha256: sha256_hex(id.as_bytes()),
        created_ms: CREATED,
        deadline_ms: deadline,
    }
}

/// The step a [`Change`] takes to reach `to`, if `transition` can reach it at all.
pub fn step_for(to: RequestState) -> Option<Step> {
    use RequestState::*;
    Some(match to {
        HashComputed => Step::HashComputed {
            certificate: b"cert-der".to_vec(),
            digest: vec![7; 32],
            prepared: vec![1; 4096],
        },
        Waiting => Step::Waiting {
            next_poll_ms: 3_000,
        },
        Signed => Step::Signed {
            signature: vec![9; 256],
        },
        Verified => Step::Verified,
        Timestamped => Step::Timestamped,
        Assembled => Step::Assembled {
            location: "blob:assembled".into(),
        },
        Completed => Step::Completed,
        Rejected => Step::Rejected {
            reason: "the official refused".into(),
        },
        Expired => Step::Expired {
            reason: "the service said EXPIRED".into(),
        },
        Failed => Step::Failed {
            kind: "service_error".into(),
            reason: "HTTP 500 three times".into(),
        },
        Received | Sending | Sent | Cancelled => return None,
    })
}

fn change(id: &str, from: RequestState, step: Step, at_ms: i64) -> Change {
    Change {
        request_id: id.into(),
        from,
        step,
        actor: "gw-1".into(),
        detail: "check".into(),
        at_ms,
    }
}

async fn step(s: &dyn SignatureStore, id: &str, from: RequestState, to: RequestState, at: i64) {
    let r = s
        .transition(change(id, from, step_for(to).expect("a step"), at))
        .await
        .unwrap();
    assert!(r.is_applied(), "{id}: {from:?} → {to:?}: {r:?}");
}

/// Create `id` and walk it to `target` along a legal path; times from 2,000 on. A `sending`
/// request is left with a live send lease until 2,002 + [`LEASE`].
pub async fn drive(s: &dyn SignatureStore, id: &str, service: &str, target: RequestState) {
    use RequestState::*;
    assert!(matches!(
        s.create(request(id, service, DEADLINE)).await.unwrap(),
        Created::New(_)
    ));
    let path: &[RequestState] = match target {
        Received => &[],
        HashComputed => &[HashComputed],
        Sending => &[HashComputed, Sending],
        Sent => &[HashComputed, Sending, Sent],
        Waiting => &[HashComputed, Sending, Sent, Waiting],
        Signed => &[HashComputed, Sending, Sent, Waiting, Signed],
        Verified => &[HashComputed, Sending, Sent, Waiting, Signed, Verified],
        Timestamped => &[
            HashComputed,
            Sending,
            Sent,
            Waiting,
            Signed,
            Verified,
            Timestamped,
        ],
        Assembled => &[
            HashComputed,
            Sending,
            Sent,
            Waiting,
            Signed,
            Verified,
            Assembled,
        ],
        Completed => &[
            HashComputed,
            Sending,
            Sent,
            Waiting,
            Signed,
            Verified,
            Assembled,
            Completed,
        ],
        Rejected => &[HashComputed, Sending, Sent, Waiting, Rejected],
        Expired => &[HashComputed, Sending, Sent, Waiting, Expired],
        Failed => &[Failed],
        Cancelled => &[Cancelled],
    };
    let mut from = Received;
    for (i, &to) in path.iter().enumerate() {
        let at = 2_000 + i as i64;
        match to {
            Sending => assert!(matches!(
                s.begin_send(id, "gw-1", at, LEASE).await.unwrap(),
                SendGuard::Permit(_)
            )),
            Sent => assert!(s
                .record_sent(id, &format!("T-{id}"), 3_000, "gw-1", at)
                .await
                .unwrap()
                .is_applied()),
            Cancelled => assert!(s.cancel(id, "operator:lan", at).await.unwrap().is_applied()),
            _ => step(s, id, from, to, at).await,
        }
        from = to;
    }
    assert_eq!(s.get(id).await.unwrap().unwrap().state, target);
}

/// Every check, each in its own database.
pub async fn all(open: &Opener) {
    table();
    create_twice(open).await;
    every_pair(open).await;
    send_guard_under_concurrency(open).await;
    in_doubt_sends(open).await;
    crash_at_each_state(open).await;
    poll_leases_between_instances(open).await;
    expiry(open).await;
    outbox_at_least_once(open).await;
    outbox_claims_between_instances(open).await;
    cancel_from_each_state(open).await;
    cancel_attempts_are_scheduled(open).await;
    blobs_and_caps(open).await;
    listing_and_counts(open).await;
    deferral(open).await;
}

/// The table itself: terminal states have no exits, nothing returns to `received`, every
/// non-terminal state can fail or be cancelled, and the success path is a chain.
pub fn table() {
    use RequestState::*;
    for from in RequestState::ALL {
        assert_eq!(RequestState::parse(from.as_str()), Some(from));
        assert!(!from.allows(Received));
        assert!(!from.allows(from), "{from:?} → itself is no move");
        if from.is_terminal() {
            assert!(RequestState::ALL.iter().all(|to| !from.allows(*to)));
        } else {
            assert_eq!(from.via(Cancelled), Some(Via::Cancel));
            assert!(from.allows(Failed), "{from:?} can fail");
        }
    }
    assert_eq!(RequestState::parse("nope"), None);
    let chain = [
        Received,
        HashComputed,
        Sending,
        Sent,
        Waiting,
        Signed,
        Verified,
        Assembled,
        Completed,
    ];
    for w in chain.windows(2) {
        assert!(w[0].allows(w[1]), "{:?} → {:?}", w[0], w[1]);
    }
    assert_eq!(Assembled.via(Completed), Some(Via::Transition));
    assert_eq!(HashComputed.via(Sending), Some(Via::BeginSend));
    assert_eq!(Sending.via(Sent), Some(Via::RecordSent));
    assert_eq!(Sending.via(HashComputed), Some(Via::AllowResend));
    assert!(
        !Signed.allows(Expired),
        "a signed request no longer expires"
    );
    assert!(!Received.allows(Signed), "no signature without a send");
    assert!(!Waiting.allows(Sending), "never a second send from waiting");
}

/// Invariant 1.
async fn create_twice(open: &Opener) {
    let s = open("create").await;
    let first = s.create(request("R1", "smartca", DEADLINE)).await.unwrap();
    let Created::New(stored) = first else {
        panic!("{first:?}")
    };
    assert_eq!(stored.state, RequestState::Received);
    assert_eq!(stored.request, request("R1", "smartca", DEADLINE));
    let mut replay = request("R1", "mysign", DEADLINE + 5);
    replay.reason = "another".into();
    assert_eq!(
        s.create(replay).await.unwrap(),
        Created::Existing(stored.clone())
    );
    let trail = s.trail("R1").await.unwrap();
    assert_eq!(trail.len(), 1);
    assert_eq!(
        (trail[0].seq, trail[0].from, trail[0].to),
        (0, None, RequestState::Received)
    );
    assert!(
        !trail[0].detail.contains("079123456789"),
        "no signer id in the trail"
    );
    assert!(
        !format!("{stored:?}").contains("079123456789"),
        "no signer id in Debug output"
    );
    // Same idempotency key under another request id: a clear error, nothing stored.
    let mut clash = request("R2", "smartca", DEADLINE);
    clash.idempotency_key = "idem-R1".into();
    assert!(s.create(clash).await.is_err());
    assert_eq!(s.get("R2").await.unwrap(), None);
    assert_eq!(s.get("nope").await.unwrap(), None);
    assert!(s.trail("nope").await.unwrap().is_empty());
}

/// Invariant 2: every (from, to) of `ALL × ALL` through the method that owns the edge.
async fn every_pair(open: &Opener) {
    use RequestState::*;
    let s = open("pairs").await;
    let s = s.as_ref();
    for from in RequestState::ALL {
        for to in RequestState::ALL {
            let id = format!("P-{}-{}", from.as_str(), to.as_str());
            drive(s, &id, "pairs", from).await;
            let trail_before = s.trail(&id).await.unwrap().len();
            let events_before = s.unpublished(1_000).await.unwrap().len();
            let at = 10_000;
            let applied = match to {
                Received => {
                    assert!(!from.allows(Received));
                    false
                }
                Sending => match s.begin_send(&id, "gw-2", at, LEASE).await.unwrap() {
                    SendGuard::Permit(p) => {
                        assert_eq!(p.attempt, 1);
                        assert_eq!(p.idempotency_key, format!("idem-{id}"));
                        true
                    }
                    other => {
                        assert_ne!(from, HashComputed, "{other:?}");
                        false
                    }
                },
                Sent => s
                    .record_sent(&id, "T-other", 12_000, "gw-2", at)
                    .await
                    .unwrap()
                    .is_applied(),
                Cancelled => s
                    .cancel(&id, "operator:lan", at)
                    .await
                    .unwrap()
                    .is_applied(),
                _ => {
                    let step = step_for(to).unwrap();
                    let r = s.transition(change(&id, from, step, at)).await.unwrap();
                    match (&r, from.via(to)) {
                        (Transitioned::Applied(_), Some(Via::Transition)) => true,
                        (Transitioned::Unchanged(_), _) if from == to => false,
                        (Transitioned::Refused { why, .. }, v) if v != Some(Via::Transition) => {
                            assert!(!why.is_empty());
                            if v == Some(Via::AllowResend) {
                                // The resend edge: refused while the send lease is live, then
                                // allowed once the send is in doubt.
                                assert!(!s
                                    .allow_resend(&id, "not there", "gw-2", 2_500)
                                    .await
                                    .unwrap()
                                    .is_applied());
                                s.allow_resend(&id, "not there", "gw-2", at)
                                    .await
                                    .unwrap()
                                    .is_applied()
                            } else {
                                false
                            }
                        }
                        other => panic!("{id}: unexpected {other:?}"),
                    }
                }
            };
            assert_eq!(applied, from.allows(to), "{id}");
            let now = s.get(&id).await.unwrap().unwrap();
            assert_eq!(now.state, if applied { to } else { from }, "{id}");
            let trail = s.trail(&id).await.unwrap();
            assert_eq!(trail.len(), trail_before + usize::from(applied), "{id}");
            if applied {
                let last = trail.last().unwrap();
                assert_eq!(
                    (last.from, last.to, last.at_ms),
                    (Some(from), to, at),
                    "{id}"
                );
            }
            let events = s.unpublished(1_000).await.unwrap();
            let new_event = usize::from(applied && to.is_terminal());
            assert_eq!(events.len(), events_before + new_event, "{id}");
            if new_event == 1 {
                let e = events.iter().find(|e| e.request_id == id).unwrap();
                let body: OutcomeBody = serde_json::from_str(&e.body).unwrap();
                assert_eq!(body.outcome, to);
                let kind = if to == Completed {
                    EVENT_COMPLETED
                } else {
                    EVENT_FAILED
                };
                assert_eq!(e.kind, kind);
            }
        }
    }
    // A change made from a stale view is refused, and says why.
    drive(s, "STALE", "pairs", Waiting).await;
    let r = s
        .transition(change("STALE", Sent, step_for(Signed).unwrap(), 20_000))
        .await
        .unwrap();
    let Transitioned::Refused { why, .. } = r else {
        panic!("{r:?}")
    };
    assert!(why.contains("waiting") && why.contains("sent"), "{why}");
    assert_eq!(
        s.transition(change("ghost", Received, Step::Verified, 1))
            .await
            .unwrap(),
        Transitioned::NotFound
    );
}

/// Invariant 3: of concurrent `begin_send`s on two handles, exactly one permit.
async fn send_guard_under_concurrency(open: &Opener) {
    let a = open("guard").await;
    let b = open("guard").await;
    for round in 0..5 {
        let id = format!("G{round}");
        drive(a.as_ref(), &id, "csc", RequestState::HashComputed).await;
        let mut tasks = Vec::new();
        for caller in 0..8 {
            let s = if caller % 2 == 0 {
                a.clone()
            } else {
                b.clone()
            };
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                s.begin_send(&id, &format!("gw-{caller}"), 5_000, LEASE)
                    .await
                    .unwrap()
            }));
        }
        let mut permits = 0;
        for t in tasks {
            match t.await.unwrap() {
                SendGuard::Permit(_) => permits += 1,
                SendGuard::InFlight { in_doubt, .. } => assert!(!in_doubt),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(permits, 1, "{id}: exactly one permit");
        let r = a.get(&id).await.unwrap().unwrap();
        assert_eq!((r.state, r.sends), (RequestState::Sending, 1));
    }
    // Not ready, past the deadline, not found.
    drive(a.as_ref(), "G-received", "csc", RequestState::Received).await;
    assert!(matches!(
        a.begin_send("G-received", "gw-1", 5_000, LEASE)
            .await
            .unwrap(),
        SendGuard::NotReady {
            state: RequestState::Received,
            ..
        }
    ));
    drive(a.as_ref(), "G-late", "csc", RequestState::HashComputed).await;
    let late = a
        .begin_send("G-late", "gw-1", DEADLINE, LEASE)
        .await
        .unwrap();
    assert!(
        matches!(&late, SendGuard::NotReady { why, .. } if why.contains("deadline")),
        "{late:?}"
    );
    assert_eq!(
        a.begin_send("ghost", "gw-1", 5_000, LEASE).await.unwrap(),
        SendGuard::NotFound
    );
}

/// Invariant 3: a send whose lease ran out is in doubt, never re-sent by itself.
async fn in_doubt_sends(open: &Opener) {
    use RequestState::*;
    let s = open("doubt").await;
    let s = s.as_ref();
    // D1: the service says the first send never arrived.
    drive(s, "D1", "smartca", HashComputed).await;
    let SendGuard::Permit(p) = s.begin_send("D1", "gw-1", 5_000, LEASE).await.unwrap() else {
        panic!("permit")
    };
    assert_eq!((p.attempt, p.lease_until_ms), (1, 6_000));
    assert!(s.in_doubt_sends(5_999, 10).await.unwrap().is_empty());
    let doubt = s.in_doubt_sends(6_000, 10).await.unwrap();
    assert_eq!(doubt.iter().map(|r| r.id()).collect::<Vec<_>>(), vec!["D1"]);
    assert!(doubt[0].send_in_doubt(6_000));
    assert_eq!(
        s.begin_send("D1", "gw-2", 6_500, LEASE).await.unwrap(),
        SendGuard::InFlight {
            holder: Some("gw-1".into()),
            since_ms: Some(5_000),
            in_doubt: true
        }
    );
    assert!(!s
        .allow_resend("D1", "not there", "gw-2", 5_500)
        .await
        .unwrap()
        .is_applied());
    let r = s
        .allow_resend(
            "D1",
            "SmartCA has no transaction for idem-D1",
            "gw-2",
            6_500,
        )
        .await
        .unwrap();
    let Transitioned::Applied(r) = r else {
        panic!("{r:?}")
    };
    assert_eq!((r.state, r.resends), (HashComputed, 1));
    assert!(s.in_doubt_sends(7_000, 10).await.unwrap().is_empty());
    let SendGuard::Permit(p) = s.begin_send("D1", "gw-2", 7_000, LEASE).await.unwrap() else {
        panic!("second permit")
    };
    assert_eq!(p.attempt, 2);
    assert!(s
        .record_sent("D1", "T-2", 8_000, "gw-2", 7_100)
        .await
        .unwrap()
        .is_applied());
    assert_eq!(
        s.begin_send("D1", "gw-3", 7_200, LEASE).await.unwrap(),
        SendGuard::AlreadySent {
            transaction_id: "T-2".into(),
            state: Sent
        }
    );
    assert!(matches!(
        s.record_sent("D1", "T-2", 8_000, "gw-2", 7_300)
            .await
            .unwrap(),
        Transitioned::Unchanged(_)
    ));
    assert!(matches!(
        s.record_sent("D1", "T-other", 8_000, "gw-2", 7_300)
            .await
            .unwrap(),
        Transitioned::Refused { .. }
    ));
    let trail = s.trail("D1").await.unwrap();
    assert!(trail.iter().any(|t| t.detail.contains("resend 1 allowed")));

    // D2: the service had it after all; record its transaction, no resend.
    drive(s, "D2", "smartca", Sending).await;
    assert_eq!(s.in_doubt_sends(9_000, 10).await.unwrap().len(), 1);
    assert!(s
        .record_sent("D2", "T-found", 9_500, "gw-2", 9_000)
        .await
        .unwrap()
        .is_applied());
    let r = s.get("D2").await.unwrap().unwrap();
    assert_eq!((r.state, r.sends, r.resends), (Sent, 1, 0));
    assert!(s.in_doubt_sends(9_000, 10).await.unwrap().is_empty());
    // A resend of a request already sent is refused.
    assert!(!s
        .allow_resend("D2", "confused", "gw-2", 99_000)
        .await
        .unwrap()
        .is_applied());
}

/// A request left in each state by an instance that died: what the next one finds.
async fn crash_at_each_state(open: &Opener) {
    use RequestState::*;
    {
        let s = open("crash").await;
        for st in RequestState::ALL {
            drive(s.as_ref(), &format!("C-{}", st.as_str()), "crash", st).await;
        }
        // Every handle dropped mid-flow: the "crash".
    }
    let s = open("crash").await;
    let now = 20_000; // past the send lease and every first poll, before the deadline
    for st in RequestState::ALL {
        let r = s.get(&format!("C-{}", st.as_str())).await.unwrap().unwrap();
        assert_eq!(r.state, st);
        assert_eq!(
            r.sends,
            i64::from(st != Received && st != HashComputed && st != Failed && st != Cancelled)
        );
        if matches!(st, Sent | Waiting | Signed | Completed) {
            assert_eq!(r.transaction_id, Some(format!("T-C-{}", st.as_str())));
        }
        if st == Completed {
            assert_eq!(r.prepared.as_deref(), Some(&[1u8; 4096][..]));
            assert_eq!(r.signature.as_deref(), Some(&[9u8; 256][..]));
        }
    }
    let ids = |rows: Vec<SignatureRequest>| -> BTreeSet<String> {
        rows.into_iter().map(|r| r.request.request_id).collect()
    };
    let expect = |states: &[RequestState]| -> BTreeSet<String> {
        states
            .iter()
            .map(|st| format!("C-{}", st.as_str()))
            .collect()
    };
    assert_eq!(
        ids(s
            .due_for_poll("crash", now, 100, "gw-2", 5_000)
            .await
            .unwrap()),
        expect(&[Sent, Waiting]),
        "polling resumes"
    );
    assert_eq!(
        ids(s.in_doubt_sends(now, 100).await.unwrap()),
        expect(&[Sending]),
        "the send in flight is in doubt, not re-sent"
    );
    assert!(matches!(
        s.begin_send("C-sending", "gw-2", now, LEASE).await.unwrap(),
        SendGuard::InFlight { in_doubt: true, .. }
    ));
    assert_eq!(
        ids(s.due_for_work(now, 100, "gw-2", 5_000).await.unwrap()),
        expect(&[
            Received,
            HashComputed,
            Signed,
            Verified,
            Timestamped,
            Assembled
        ]),
        "the gateway's own steps resume"
    );
    let published: BTreeSet<String> = s
        .unpublished(100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.request_id)
        .collect();
    assert_eq!(
        published,
        expect(&[Completed, Rejected, Expired, Failed, Cancelled]),
        "every terminal outcome is still to publish"
    );
    // What the dead instance had in hand is not handed out twice.
    assert!(s
        .due_for_poll("crash", now, 100, "gw-3", 5_000)
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .due_for_work(now, 100, "gw-3", 5_000)
        .await
        .unwrap()
        .is_empty());
}

/// Invariant 4: two instances never poll the same request at once; a dead one's lease ends.
async fn poll_leases_between_instances(open: &Opener) {
    let a = open("leases").await;
    let b = open("leases").await;
    for i in 0..10 {
        drive(
            a.as_ref(),
            &format!("L{i}"),
            "mysign",
            RequestState::Waiting,
        )
        .await;
    }
    drive(a.as_ref(), "L-other", "smartca", RequestState::Waiting).await;
    let ids = |rows: &[SignatureRequest]| -> BTreeSet<String> {
        rows.iter().map(|r| r.request.request_id.clone()).collect()
    };
    // Not due before next_poll_ms (3,000).
    assert!(a
        .due_for_poll("mysign", 2_999, 100, "A", 1_000)
        .await
        .unwrap()
        .is_empty());
    let (ra, rb) = tokio::join!(
        a.due_for_poll("mysign", 4_000, 6, "A", 1_000),
        b.due_for_poll("mysign", 4_000, 6, "B", 1_000)
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.len() + rb.len(), 10, "every due request once");
    assert!(ids(&ra).is_disjoint(&ids(&rb)), "never the same one twice");
    assert!(ra.iter().all(|r| r.lease_holder.as_deref() == Some("A")));
    assert!(ra.iter().all(|r| r.request.service == "mysign"));
    assert!(a
        .due_for_poll("mysign", 4_500, 100, "C", 1_000)
        .await
        .unwrap()
        .is_empty());
    // A notes its polls: the next poll moves, its lease ends. B "dies".
    let mut polls: Vec<(String, i64)> = ra.iter().map(|r| (r.id().to_owned(), 60_000)).collect();
    polls.push(("L-ghost".into(), 1));
    assert_eq!(
        a.note_polls("A", &polls, 4_100).await.unwrap(),
        ra.len() as u64,
        "one poll noted per polled request, none for an unknown id"
    );
    let noted = a.get(ra[0].id()).await.unwrap().unwrap();
    assert_eq!(
        (noted.polls, noted.next_poll_ms, noted.lease_holder),
        (1, Some(60_000), None)
    );
    assert_eq!(noted.last_poll_ms, Some(4_100));
    // After B's lease (until 5,000), A gets B's requests, not its own (not due until 60,000).
    let again = a
        .due_for_poll("mysign", 5_000, 100, "A", 1_000)
        .await
        .unwrap();
    assert_eq!(ids(&again), ids(&rb));
    // Soonest poll first.
    assert!(again
        .windows(2)
        .all(|w| w[0].next_poll_ms <= w[1].next_poll_ms));
    // A note from the instance that lost its lease still counts the poll, keeps A's lease.
    assert!(b.note_poll(rb[0].id(), "B", 61_000, 5_100).await.unwrap());
    let r = b.get(rb[0].id()).await.unwrap().unwrap();
    assert_eq!((r.polls, r.lease_holder.as_deref()), (1, Some("A")));
    // A request no longer polled is not noted.
    drive(a.as_ref(), "L-done", "mysign", RequestState::Signed).await;
    assert!(!a.note_poll("L-done", "A", 1, 1).await.unwrap());
    // A transition out of waiting clears the lease.
    step(
        a.as_ref(),
        rb[1].id(),
        RequestState::Waiting,
        RequestState::Signed,
        5_200,
    )
    .await;
    assert_eq!(a.get(rb[1].id()).await.unwrap().unwrap().lease_holder, None);
    // Work leases: two instances, disjoint; the holder keeps its lease through its own steps.
    let wa = a.due_for_work(6_000, 1, "A", 1_000).await.unwrap();
    let wb = b.due_for_work(6_000, 100, "B", 1_000).await.unwrap();
    assert_eq!(wa.len(), 1);
    assert!(ids(&wa).is_disjoint(&ids(&wb)));
    let w = &wa[0];
    let to = if w.state == RequestState::Signed {
        RequestState::Verified
    } else {
        RequestState::Assembled
    };
    let c = Change {
        actor: "A".into(),
        ..change(w.id(), w.state, step_for(to).unwrap(), 6_100)
    };
    let Transitioned::Applied(after) = a.transition(c).await.unwrap() else {
        panic!("applied")
    };
    assert_eq!(after.lease_holder.as_deref(), Some("A"));
    assert!(b
        .due_for_work(6_200, 100, "B", 1_000)
        .await
        .unwrap()
        .is_empty());
}

/// Invariant 6.
async fn expiry(open: &Opener) {
    let s = open("expiry").await;
    let s = s.as_ref();
    for st in RequestState::ALL {
        let id = format!("E-{}", st.as_str());
        drive(s, &id, "csc", st).await;
    }
    assert!(s
        .expire_overdue(DEADLINE - 1, 100)
        .await
        .unwrap()
        .is_empty());
    let mut expired = s.expire_overdue(DEADLINE, 100).await.unwrap();
    expired.sort();
    let mut expect: Vec<String> = RequestState::ALL
        .into_iter()
        .filter(|st| st.expires())
        .map(|st| format!("E-{}", st.as_str()))
        .collect();
    expect.sort();
    assert_eq!(expired, expect);
    let events = s.unpublished(100).await.unwrap();
    for st in RequestState::ALL {
        let id = format!("E-{}", st.as_str());
        let r = s.get(&id).await.unwrap().unwrap();
        if st.expires() {
            assert_eq!(r.state, RequestState::Expired);
            assert_eq!(r.failure_kind.as_deref(), Some("expired"));
            assert_eq!(r.service_cancel.is_some(), st.may_be_at_service(), "{id}");
            let last = s.trail(&id).await.unwrap().pop().unwrap();
            assert_eq!((last.from, last.to), (Some(st), RequestState::Expired));
            assert_eq!(last.actor, "expiry");
            let e = events.iter().find(|e| e.request_id == id).expect("event");
            let body: OutcomeBody = serde_json::from_str(&e.body).unwrap();
            assert_eq!(
                (e.kind.as_str(), body.reason_kind.as_deref()),
                (EVENT_FAILED, Some("expired"))
            );
            assert!(!e.body.contains("079123456789"), "no signer id in events");
        } else {
            assert_eq!(r.state, st, "{id} is left alone");
        }
    }
    assert!(s
        .expire_overdue(DEADLINE + 1, 100)
        .await
        .unwrap()
        .is_empty());
    // The limit bounds one round.
    for i in 0..3 {
        s.create(request(&format!("E-batch-{i}"), "csc", 50))
            .await
            .unwrap();
    }
    assert_eq!(s.expire_overdue(DEADLINE, 2).await.unwrap().len(), 2);
    assert_eq!(s.expire_overdue(DEADLINE, 2).await.unwrap().len(), 1);
}

/// Invariant 5: events stay until marked, across a restart, oldest first.
async fn outbox_at_least_once(open: &Opener) {
    {
        let s = open("outbox").await;
        drive(s.as_ref(), "O1", "smartca", RequestState::Completed).await;
        drive(s.as_ref(), "O2", "smartca", RequestState::Rejected).await;
    }
    let s = open("outbox").await;
    let events = s.unpublished(10).await.unwrap();
    // O2 was rejected (at 2,004) before O1 completed (at 2,007).
    assert_eq!(
        events
            .iter()
            .map(|e| e.request_id.as_str())
            .collect::<Vec<_>>(),
        vec!["O2", "O1"],
        "oldest first"
    );
    let rejected: OutcomeBody = serde_json::from_str(&events[0].body).unwrap();
    assert_eq!(events[0].kind, EVENT_FAILED);
    assert_eq!(rejected.reason_kind.as_deref(), Some("rejected"));
    assert_eq!(rejected.reason.as_deref(), Some("the official refused"));
    assert_eq!(rejected.document, None);
    let done: OutcomeBody = serde_json::from_str(&events[1].body).unwrap();
    assert_eq!(events[1].kind, EVENT_COMPLETED);
    assert_eq!(done.outcome, RequestState::Completed);
    assert_eq!(done.document.as_deref(), Some("blob:assembled"));
    assert_eq!(done.transaction_id.as_deref(), Some("T-O1"));
    assert_eq!(done.source, "motcua");
    assert_eq!(done.reason_kind, None);
    assert_eq!(s.unpublished(1).await.unwrap().len(), 1, "the limit holds");
    s.mark_published(&events[0].id, 50_000).await.unwrap();
    s.mark_published(&events[0].id, 60_000).await.unwrap();
    assert_eq!(
        s.unpublished(10).await.unwrap(),
        vec![events[1].clone()],
        "only the marked one left"
    );
    s.mark_published(&events[1].id, 50_000).await.unwrap();
    assert!(s.unpublished(10).await.unwrap().is_empty());
}

/// Invariant 9: two instances claiming at once get disjoint events; a live claim keeps
/// others off, an expired one is taken over, a released one at once; published ones never
/// come back.
async fn outbox_claims_between_instances(open: &Opener) {
    let a = open("claims").await;
    let b = open("claims").await;
    for i in 0..6 {
        drive(
            a.as_ref(),
            &format!("C{i}"),
            "smartca",
            RequestState::Completed,
        )
        .await;
    }
    let (ca, cb) = tokio::join!(
        a.claim_unpublished("gw-a", 10_000, 1_000, 4),
        b.claim_unpublished("gw-b", 10_000, 1_000, 4)
    );
    let (ca, cb) = (ca.unwrap(), cb.unwrap());
    let ids_a: BTreeSet<&str> = ca.iter().map(|e| e.id.as_str()).collect();
    let ids_b: BTreeSet<&str> = cb.iter().map(|e| e.id.as_str()).collect();
    assert!(ids_a.is_disjoint(&ids_b), "{ids_a:?} / {ids_b:?}");
    assert_eq!(ids_a.len() + ids_b.len(), 6, "every event claimed once");
    // Live claims keep everyone else off; the holder gets its own back.
    assert!(b
        .claim_unpublished("gw-c", 10_500, 1_000, 10)
        .await
        .unwrap()
        .is_empty());
    let again: BTreeSet<String> = a
        .claim_unpublished("gw-a", 10_500, 1_000, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        again,
        ids_a.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>()
    );
    // gw-a publishes its events; gw-b dies holding its own (lease until 11,000).
    for e in &ca {
        a.mark_published(&e.id, 10_600).await.unwrap();
    }
    assert!(a
        .claim_unpublished("gw-a", 10_900, 1_000, 10)
        .await
        .unwrap()
        .is_empty());
    let taken: BTreeSet<String> = a
        .claim_unpublished("gw-a", 11_000, 1_000, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        taken,
        ids_b.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
        "a dead claimer's events are taken over once its lease ran out"
    );
    // Released: claimable at once by another instance; someone else's claim is not released.
    let taken: Vec<String> = taken.into_iter().collect();
    assert_eq!(b.release_claims("gw-b", &taken).await.unwrap(), 0);
    assert_eq!(
        a.release_claims("gw-a", &taken).await.unwrap(),
        taken.len() as u64
    );
    assert_eq!(
        b.claim_unpublished("gw-b", 11_001, 1_000, 10)
            .await
            .unwrap()
            .len(),
        taken.len()
    );
    assert!(a.unpublished(10).await.unwrap().len() == taken.len());
}

/// Invariant 7's retries: a failed attempt is counted and scheduled; the request is due again
/// only then, and not at all once the service's answer is recorded.
async fn cancel_attempts_are_scheduled(open: &Opener) {
    let s = open("cancel_retry").await;
    let s = s.as_ref();
    drive(s, "R-waiting", "smartca", RequestState::Waiting).await;
    drive(s, "R-sent", "csc", RequestState::Sent).await;
    drive(s, "R-received", "csc", RequestState::Received).await;
    for id in ["R-waiting", "R-sent", "R-received"] {
        assert!(s
            .cancel(id, "operator:lan", 20_000)
            .await
            .unwrap()
            .is_applied());
    }
    let due = s.cancels_due(20_000, 10).await.unwrap();
    assert_eq!(
        due.iter()
            .map(|d| d.request_id.as_str())
            .collect::<BTreeSet<_>>(),
        ["R-sent", "R-waiting"].into(),
        "only requests that may be on a phone"
    );
    assert!(due.iter().all(|d| d.attempts == 0));
    s.note_cancel_attempt("R-waiting", 25_000).await.unwrap();
    let due = s.cancels_due(24_999, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].request_id, "R-sent");
    let due = s.cancels_due(25_000, 10).await.unwrap();
    let w = due.iter().find(|d| d.request_id == "R-waiting").unwrap();
    assert_eq!(w.attempts, 1);
    assert_eq!(
        s.cancels_due(25_000, 1).await.unwrap().len(),
        1,
        "the limit holds"
    );
    s.mark_cancel_notified("R-waiting", "cancelled")
        .await
        .unwrap();
    s.note_cancel_attempt("R-waiting", 99_000).await.unwrap();
    let due = s.cancels_due(100_000, 10).await.unwrap();
    assert_eq!(due.len(), 1, "a recorded answer is final");
    assert_eq!(due[0].request_id, "R-sent");
}

/// Invariant 7.
async fn cancel_from_each_state(open: &Opener) {
    let s = open("cancel").await;
    let s = s.as_ref();
    for st in RequestState::ALL {
        let id = format!("X-{}", st.as_str());
        drive(s, &id, "smartca", st).await;
        let r = s.cancel(&id, "operator:lan", 30_000).await.unwrap();
        match &r {
            Transitioned::Applied(r) => {
                assert!(!st.is_terminal(), "{id}");
                assert_eq!(r.state, RequestState::Cancelled);
                assert_eq!(r.cancelled_by.as_deref(), Some("operator:lan"));
                assert_eq!(r.failure_kind.as_deref(), Some("cancelled"));
                assert_eq!(r.service_cancel.is_some(), st.may_be_at_service(), "{id}");
            }
            Transitioned::Unchanged(_) => assert_eq!(st, RequestState::Cancelled),
            Transitioned::Refused { current, why } => {
                assert!(st.is_terminal() && st != RequestState::Cancelled, "{id}");
                assert_eq!(current.state, st);
                assert!(why.contains("terminal"), "{why}");
            }
            Transitioned::NotFound => panic!("{id}"),
        }
    }
    assert_eq!(
        s.cancel("ghost", "operator:lan", 1).await.unwrap(),
        Transitioned::NotFound
    );
    let notify: BTreeSet<String> = s
        .cancels_to_notify(100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.request.request_id)
        .collect();
    assert_eq!(
        notify,
        ["X-sending", "X-sent", "X-waiting"]
            .map(String::from)
            .into()
    );
    s.mark_cancel_notified("X-sent", "cancelled").await.unwrap();
    s.mark_cancel_notified("X-waiting", "unsupported")
        .await
        .unwrap();
    s.mark_cancel_notified("X-waiting", "late").await.unwrap();
    let left = s.cancels_to_notify(100).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id(), "X-sending");
    assert_eq!(
        s.get("X-waiting")
            .await
            .unwrap()
            .unwrap()
            .service_cancel
            .as_deref(),
        Some("unsupported"),
        "the first answer stays"
    );
    // A cancelled request is never sent and never polled.
    assert!(matches!(
        s.begin_send("X-hash_computed", "gw-1", 30_001, LEASE)
            .await
            .unwrap(),
        SendGuard::NotReady { .. }
    ));
    assert!(s
        .due_for_poll("smartca", DEADLINE, 100, "gw-1", 1_000)
        .await
        .unwrap()
        .is_empty());
}

/// Invariant 8.
async fn blobs_and_caps(open: &Opener) {
    let s = open("blobs").await;
    let doc: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    assert_eq!(
        s.put_blob("B1", BlobKind::Document, &doc, DEFAULT_BLOB_CAP, 1)
            .await
            .unwrap(),
        BlobStored::New
    );
    assert_eq!(
        s.blob("B1", BlobKind::Document).await.unwrap(),
        Some(doc.clone())
    );
    assert_eq!(s.blob("B1", BlobKind::Assembled).await.unwrap(), None);
    assert_eq!(
        s.put_blob("B1", BlobKind::Document, &doc, DEFAULT_BLOB_CAP, 2)
            .await
            .unwrap(),
        BlobStored::Same
    );
    assert_eq!(
        s.put_blob("B1", BlobKind::Document, b"other", DEFAULT_BLOB_CAP, 3)
            .await
            .unwrap(),
        BlobStored::Different
    );
    assert_eq!(
        s.blob("B1", BlobKind::Document).await.unwrap(),
        Some(doc),
        "first stays"
    );
    let err = s
        .put_blob("B2", BlobKind::Assembled, &[0; 2048], 1024, 4)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            StoreError::TooLarge {
                size: 2048,
                cap: 1024,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        msg.contains("assembled") && msg.contains("B2") && msg.contains("1024"),
        "{msg}"
    );
    assert_eq!(s.blob("B2", BlobKind::Assembled).await.unwrap(), None);
    // The prepared state has its own cap; nothing is written above it.
    drive(s.as_ref(), "B3", "csc", RequestState::Received).await;
    let big = Step::HashComputed {
        certificate: vec![1],
        digest: vec![2],
        prepared: vec![0; PREPARED_CAP + 1],
    };
    let err = s
        .transition(change("B3", RequestState::Received, big, 5))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { .. }), "{err:?}");
    assert_eq!(
        s.get("B3").await.unwrap().unwrap().state,
        RequestState::Received
    );
}

/// Operations: list, counts, pending.
async fn listing_and_counts(open: &Opener) {
    use RequestState::*;
    let s = open("listing").await;
    let s = s.as_ref();
    drive(s, "M1", "smartca", Waiting).await;
    drive(s, "M2", "smartca", Received).await;
    drive(s, "M3", "mysign", Waiting).await;
    drive(s, "M4", "mysign", Completed).await;
    drive(s, "M5", "smartca", Sent).await;
    let list = |f: ListFilter| async move {
        s.list(f)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.request.request_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        list(ListFilter::default()).await,
        ["M1", "M2", "M3", "M4", "M5"]
    );
    let smartca = ListFilter {
        service: Some("smartca".into()),
        ..Default::default()
    };
    assert_eq!(list(smartca.clone()).await, ["M1", "M2", "M5"]);
    let waiting = ListFilter {
        state: Some(Waiting),
        ..Default::default()
    };
    assert_eq!(list(waiting).await, ["M1", "M3"]);
    let dossier = request("M1", "", 0).dossier_code;
    let by_dossier = ListFilter {
        dossier_code: dossier.clone(),
        ..Default::default()
    };
    let listed = list(by_dossier).await;
    assert_eq!(
        listed.len(),
        5,
        "every M id has the same length: {listed:?}"
    );
    let page1 = list(ListFilter {
        limit: 2,
        ..smartca.clone()
    })
    .await;
    assert_eq!(page1, ["M1", "M2"]);
    let page2 = list(ListFilter {
        limit: 2,
        after: Some("M2".into()),
        ..smartca
    })
    .await;
    assert_eq!(page2, ["M5"]);
    let both = ListFilter {
        state: Some(Waiting),
        service: Some("mysign".into()),
        ..Default::default()
    };
    assert_eq!(list(both).await, ["M3"]);

    let counts = s.counts_by_state().await.unwrap();
    let count = |service: &str, state| {
        counts
            .iter()
            .find(|c| c.service == service && c.state == state)
            .map_or(0, |c| c.count)
    };
    assert_eq!(count("smartca", Waiting), 1);
    assert_eq!(count("smartca", Received), 1);
    assert_eq!(count("smartca", Sent), 1);
    assert_eq!(count("mysign", Completed), 1);
    assert_eq!(counts.iter().map(|c| c.count).sum::<i64>(), 5);
    let pending = s.pending_by_service().await.unwrap();
    assert_eq!(
        pending,
        vec![
            ServicePending {
                service: "mysign".into(),
                pending: 1,
                waiting: 1,
                oldest_created_ms: CREATED
            },
            ServicePending {
                service: "smartca".into(),
                pending: 3,
                waiting: 2,
                oldest_created_ms: CREATED
            },
        ]
    );
    // `show` in operations: the request and its trail.
    let (shown, trail) = s.show("M4").await.unwrap().unwrap();
    assert_eq!(shown.state, Completed);
    assert_eq!(s.show("ghost").await.unwrap(), None);
    assert_eq!(
        trail.iter().map(|t| t.to).collect::<Vec<_>>(),
        vec![
            Received,
            HashComputed,
            Sending,
            Sent,
            Waiting,
            Signed,
            Verified,
            Assembled,
            Completed
        ]
    );
    assert!(trail
        .windows(2)
        .all(|w| w[0].seq + 1 == w[1].seq && Some(w[0].to) == w[1].from));
}

/// Invariant 9: a deferred step keeps its state, holds the lease until the retry, counts its
/// attempts in the trail (across a reopen), and is refused outside a work state.
async fn deferral(open: &Opener) {
    use RequestState::*;
    {
        let s = open("defer").await;
        let s = s.as_ref();
        drive(s, "F1", "smartca", Verified).await;
        assert_eq!(
            s.due_for_work(5_000, 10, "gw-1", 1_000)
                .await
                .unwrap()
                .len(),
            1
        );
        for (i, at) in [(1, 5_100), (2, 7_100)] {
            let r = s
                .defer(
                    "F1",
                    Verified,
                    "gw-1",
                    &format!("tsa down {i}"),
                    at + 1_900,
                    at,
                )
                .await
                .unwrap();
            let Transitioned::Applied(r) = r else {
                panic!("{r:?}")
            };
            assert_eq!(r.state, Verified);
            assert_eq!(r.lease_until_ms, Some(at + 1_900));
            assert!(
                s.due_for_work(at + 1_899, 10, "gw-2", 1_000)
                    .await
                    .unwrap()
                    .is_empty(),
                "not before the retry time"
            );
        }
        // Another instance holding a live lease cannot defer it.
        assert!(!s
            .defer("F1", Verified, "gw-2", "x", 99_000, 8_000)
            .await
            .unwrap()
            .is_applied());
        // Not a work state, or not the state it is in: refused.
        drive(s, "F2", "smartca", Waiting).await;
        assert!(!s
            .defer("F2", Waiting, "gw-1", "x", 99_000, 8_000)
            .await
            .unwrap()
            .is_applied());
        assert!(!s
            .defer("F1", Timestamped, "gw-1", "x", 99_000, 8_000)
            .await
            .unwrap()
            .is_applied());
        assert_eq!(
            s.get("F1").await.unwrap().unwrap().updated_ms,
            2_005,
            "state entered"
        );
    }
    let s = open("defer").await;
    let trail = s.trail("F1").await.unwrap();
    assert_eq!(
        retries_in_state(&trail, Verified),
        2,
        "counted across a reopen"
    );
    assert_eq!(retries_in_state(&trail, Signed), 0);
    let r = s.due_for_work(9_001, 10, "gw-2", 1_000).await.unwrap();
    assert_eq!(r.len(), 1, "due again after the retry time");
    // A new state starts a new count.
    assert!(s
        .transition(change("F1", Verified, Step::Timestamped, 9_100))
        .await
        .unwrap()
        .is_applied());
    let trail = s.trail("F1").await.unwrap();
    assert_eq!(retries_in_state(&trail, Timestamped), 0);
    assert_eq!(
        trail
            .iter()
            .filter(|t| t.from == Some(Verified) && t.to == Verified)
            .count(),
        2
    );
}
