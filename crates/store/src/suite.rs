//! The conformance suite every [`Store`] must pass: one `pub async fn` per scenario, each taking
//! a fresh, empty store. `tests/sqlite.rs` and `tests/postgres.rs` run all of them through
//! [`store_suite!`](crate::store_suite), which lists every scenario once so no backend can skip
//! one. Scenarios panic on failure (they are tests).
//!
//! What the scenarios pin down, beyond the invariants in the crate docs:
//! - a different dead letter under an existing id fails the batch and leaves no row of it
//!   (atomicity), while recording the very same batch twice is a no-op;
//! - replay and drop race: of 10 concurrent calls exactly one gets [`Settled::Changed`];
//! - envelopes are returned byte for byte, non-UTF-8 included; Vietnamese text round-trips;
//! - accepted versions are per (route, key), only move forward (within a batch too) and are
//!   written or rolled back with the rest of their batch; [`Store::versions`] reads the
//!   destination's delivered version and the route's accepted version independently;
//! - claims ([`crate::claims`]): of concurrent claims on one key exactly one wins; a lease that
//!   expired mid-send hands the next claim of that exchange an in-doubt note (and refuses an
//!   older version than the one in doubt); a version not above the delivered one, or a
//!   delivered natural key, is refused; a release recorded with the outcome frees the key at
//!   once and settles the in-doubt note.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::records::{
    AcceptedVersion, AttemptRecord, Batch, DeadLetterFilter, DeadLetterState, NewDeadLetter,
    Outcome, OutcomeRecord, Settled, Versions,
};
use crate::store::Store;
pub use crate::suite_support::{dead_letter, outcome};

/// A scenario, boxed so a harness can take any of them.
pub type Scenario = fn(Arc<dyn Store>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// Generate one `#[tokio::test]` per scenario. `$run` is an async fn in the calling test file,
/// `async fn run(name: &'static str, scenario: gw_store::suite::Scenario)`, that makes a fresh
/// store, runs the scenario and cleans up.
#[macro_export]
#[doc(hidden)]
macro_rules! store_suite {
    ($run:ident) => {
        $crate::store_suite!(@tests $run:
            record_and_read_back,
            empty_batch_is_a_no_op,
            first_outcome_wins,
            natural_key_idempotency,
            a_version_key_is_answered_by_the_delivered_version,
            versions_only_move_forward,
            batch_is_atomic,
            recording_a_batch_twice_is_a_no_op,
            dead_letters_list_and_get,
            replay_exactly_once_under_concurrency,
            drop_exactly_once_under_concurrency,
            trail_by_key_is_ordered,
            open_dead_letters_count,
            vietnamese_text_round_trips,
            ready_answers,
            accepted_versions_only_move_forward,
            accepted_duplicates_in_a_batch_resolve_to_the_max,
            batch_with_outcomes_and_accepted_versions_is_atomic,
            versions_reads_both_per_route_and_destination,
            signatures_are_remembered_once_until_they_expire,
            claims_have_one_winner_under_concurrency,
            expired_claim_mid_send_is_in_doubt,
            claim_older_than_delivered_is_refused,
            claims_are_released_with_the_outcome,
            versions_many_answers_as_one_by_one,
            claims_in_a_batch_answer_as_one_by_one,
            releases_in_a_batch_free_only_their_own_holders,
        );
        $crate::store_suite!(@evidence $run:
            evidence_records_chain_and_are_written_once,
            evidence_chains_grow_concurrently,
            evidence_timestamps_are_checked,
            evidence_retention_keeps_the_rest_verifiable,
        );
    };
    (@evidence $run:ident: $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                $run(stringify!($name), |store| Box::pin($crate::evidence_suite::$name(store))).await;
            }
        )*
    };
    (@tests $run:ident: $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                $run(stringify!($name), |store| Box::pin($crate::suite::$name(store))).await;
            }
        )*
    };
}

pub fn attempt(route: &str, envelope_id: &str, key: &str, n: u32, at_ms: i64) -> AttemptRecord {
    AttemptRecord {
        route: route.into(),
        envelope_id: envelope_id.into(),
        key: key.into(),
        attempt: n,
        result: "retry".into(),
        status: Some(503),
        reason: "service unavailable".into(),
        latency_ms: 120 + n,
        at_ms,
    }
}

fn batch(
    outcomes: Vec<OutcomeRecord>,
    attempts: Vec<AttemptRecord>,
    dead_letters: Vec<NewDeadLetter>,
) -> Batch {
    Batch {
        outcomes,
        attempts,
        dead_letters,
        accepted: vec![],
        evidence: vec![],
        releases: vec![],
    }
}

/// An accepted version of `key` for `route`.
pub fn accepted(route: &str, key: &str, version: i64) -> AcceptedVersion {
    AcceptedVersion {
        route: route.into(),
        key: key.into(),
        version,
    }
}

fn accepting(accepted: Vec<AcceptedVersion>) -> Batch {
    Batch {
        accepted,
        ..Default::default()
    }
}

fn both(delivered: Option<i64>, accepted: Option<i64>) -> Versions {
    Versions {
        delivered,
        accepted,
    }
}

async fn record(store: &Arc<dyn Store>, b: Batch) {
    store.record(b).await.expect("record");
}

/// Everything written comes back identical, and absent things are absent.
pub async fn record_and_read_back(store: Arc<dyn Store>) {
    let mut o = outcome("r1", "env-1", "DOSSIER-1", 1_000);
    o.natural_key = Some("DOSSIER-1@3".into());
    o.version = Some(3);
    o.attempts = 2;
    let mut refused = outcome("r1", "env-2", "DOSSIER-2", 1_001);
    refused.outcome = Outcome::DeadLettered;
    refused.status = None;
    refused.detail = "retry budget exhausted".into();
    let a1 = attempt("r1", "env-1", "DOSSIER-1", 1, 900);
    let mut a2 = attempt("r1", "env-1", "DOSSIER-1", 2, 1_000);
    a2.result = "delivered".into();
    a2.status = None;
    let d = dead_letter("r1", "env-2", "DOSSIER-2", 1_001);
    record(
        &store,
        batch(
            vec![o.clone(), refused.clone()],
            vec![a1.clone(), a2.clone()],
            vec![d.clone()],
        ),
    )
    .await;

    assert_eq!(store.outcome("r1", "env-1").await.unwrap(), Some(o.clone()));
    assert_eq!(store.outcome("r1", "env-2").await.unwrap(), Some(refused));
    assert_eq!(store.outcome("r2", "env-1").await.unwrap(), None);
    assert_eq!(store.outcome("r1", "env-3").await.unwrap(), None);
    assert!(store
        .natural_key_done("national", "DOSSIER-1@3")
        .await
        .unwrap());
    assert_eq!(
        store
            .delivered_version("national", "DOSSIER-1")
            .await
            .unwrap(),
        Some(3)
    );
    assert_eq!(
        store
            .delivered_version("national", "DOSSIER-2")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.delivered_version("other", "DOSSIER-1").await.unwrap(),
        None
    );
    assert_eq!(store.outcomes_by_key("DOSSIER-1").await.unwrap(), vec![o]);
    assert_eq!(
        store.attempts_by_key("DOSSIER-1").await.unwrap(),
        vec![a1, a2]
    );
    assert!(store.attempts_by_key("DOSSIER-2").await.unwrap().is_empty());
    let got = store
        .dead_letter(&d.id)
        .await
        .unwrap()
        .expect("dead letter");
    assert_eq!(got.letter, d);
    assert_eq!(got.state, DeadLetterState::Open);
    assert_eq!((got.settled_by, got.settled_at_ms), (None, None));
    assert_eq!(store.dead_letter("no-such-id").await.unwrap(), None);
}

pub async fn empty_batch_is_a_no_op(store: Arc<dyn Store>) {
    store.record(Batch::default()).await.unwrap();
    assert!(store.outcomes_by_key("anything").await.unwrap().is_empty());
    assert_eq!(store.open_dead_letters().await.unwrap(), 0);
}

/// A second record for the same (route, envelope id), in a later batch or the same one, is
/// ignored; the same envelope id on another route is another row.
pub async fn first_outcome_wins(store: Arc<dyn Store>) {
    let mut first = outcome("r1", "env-1", "K", 1_000);
    first.outcome = Outcome::Superseded;
    first.detail = "destination has version 4".into();
    record(&store, batch(vec![first.clone()], vec![], vec![])).await;

    let mut second = outcome("r1", "env-1", "K", 2_000);
    second.detail = "delivered again".into();
    record(&store, batch(vec![second.clone()], vec![], vec![])).await;
    assert_eq!(store.outcome("r1", "env-1").await.unwrap(), Some(first));

    // Inside one batch the first of the two wins too.
    let a = outcome("r1", "env-2", "K", 3_000);
    let mut b = a.clone();
    b.outcome = Outcome::DeadLettered;
    record(&store, batch(vec![a.clone(), b], vec![], vec![])).await;
    assert_eq!(store.outcome("r1", "env-2").await.unwrap(), Some(a));

    let other_route = outcome("r2", "env-1", "K", 4_000);
    record(&store, batch(vec![other_route.clone()], vec![], vec![])).await;
    assert_eq!(
        store.outcome("r2", "env-1").await.unwrap(),
        Some(other_route)
    );
    assert_eq!(store.outcomes_by_key("K").await.unwrap().len(), 3);
}

/// Only delivered effects count, per destination, whatever the envelope id.
pub async fn natural_key_idempotency(store: Arc<dyn Store>) {
    assert!(!store.natural_key_done("national", "D@1").await.unwrap());

    let mut superseded = outcome("r1", "env-1", "D", 1_000);
    superseded.outcome = Outcome::Superseded;
    superseded.natural_key = Some("D@1".into());
    let mut dead = outcome("r1", "env-2", "D", 1_001);
    dead.outcome = Outcome::DeadLettered;
    dead.natural_key = Some("D@1".into());
    record(&store, batch(vec![superseded, dead], vec![], vec![])).await;
    assert!(!store.natural_key_done("national", "D@1").await.unwrap());

    let mut delivered = outcome("r1", "env-3", "D", 1_002);
    delivered.natural_key = Some("D@1".into());
    record(&store, batch(vec![delivered], vec![], vec![])).await;
    assert!(store.natural_key_done("national", "D@1").await.unwrap());
    assert!(!store.natural_key_done("other", "D@1").await.unwrap());
    assert!(!store.natural_key_done("national", "D@2").await.unwrap());

    // Another envelope carrying the same effect, delivered too (a race): no error, still done.
    let mut again = outcome("r2", "env-4", "D", 1_003);
    again.natural_key = Some("D@1".into());
    record(&store, batch(vec![again], vec![], vec![])).await;
    assert!(store.natural_key_done("national", "D@1").await.unwrap());
}

/// A version's natural key (`KEY@v`, [`crate::natural_keys`]) is delivered once that version or
/// a newer one is: the delivered version says it; only delivered outcomes count; a step's key
/// (no version) is stored and answered as before; a claim for a version already there is
/// refused as older.
pub async fn a_version_key_is_answered_by_the_delivered_version(store: Arc<dyn Store>) {
    use crate::natural_keys::of_version;
    let versioned = |env: &str, v: i64, what: Outcome| {
        let mut o = outcome("r1", env, "V", v);
        o.version = Some(v);
        o.natural_key = Some(of_version("V", v));
        o.outcome = what;
        o
    };
    let done = |nk: String| {
        let store = store.clone();
        async move { store.natural_key_done("national", &nk).await.unwrap() }
    };
    record(
        &store,
        batch(
            vec![
                versioned("env-3", 3, Outcome::Delivered),
                versioned("env-5", 5, Outcome::DeadLettered),
            ],
            vec![],
            vec![],
        ),
    )
    .await;
    assert!(done(of_version("V", 3)).await);
    assert!(done(of_version("V", 2)).await, "a newer version carries it");
    assert!(!done(of_version("V", 4)).await);
    assert!(
        !done(of_version("V", 5)).await,
        "dead-lettered: not delivered"
    );
    assert!(!store.natural_key_done("other", "V@3").await.unwrap());
    assert!(!done(of_version("W", 1)).await);
    // Not a version's key as the store spells it: only its own row counts.
    assert!(!done("V@03".into()).await);
    let mut odd = outcome("r1", "env-odd", "V", 10);
    odd.version = Some(3);
    odd.natural_key = Some("V@03".into());
    let mut step = outcome("r1", "env-step", "V", 11);
    step.natural_key = Some("V#step-1-abc".into());
    record(&store, batch(vec![odd, step], vec![], vec![])).await;
    assert!(done("V@03".into()).await);
    assert!(done("V#step-1-abc".into()).await);
    assert!(!done("V#step-2-abc".into()).await);
    // The claim for a version the destination has is refused; a newer one is granted.
    let again = claim_req("V", "env-3-replay", Some(3), "h", 30_000);
    assert_eq!(
        store.claim(&again).await.unwrap(),
        crate::claims::Claim::Older {
            newest: 3,
            in_doubt: false
        }
    );
    let newer = claim_req("V", "env-4", Some(4), "h", 30_000);
    assert_eq!(
        store.claim(&newer).await.unwrap(),
        crate::claims::Claim::Granted { in_doubt: None }
    );
}

/// max(old, new) for delivered outcomes carrying a version; nothing else moves it.
pub async fn versions_only_move_forward(store: Arc<dyn Store>) {
    let at = |env: &str, v: i64, ms: i64| {
        let mut o = outcome("r1", env, "D", ms);
        o.version = Some(v);
        o
    };
    record(&store, batch(vec![at("e5", 5, 1)], vec![], vec![])).await;
    record(&store, batch(vec![at("e3", 3, 2)], vec![], vec![])).await;
    assert_eq!(
        store.delivered_version("national", "D").await.unwrap(),
        Some(5)
    );

    // Lower then higher in one batch.
    record(
        &store,
        batch(vec![at("e4", 4, 3), at("e7", 7, 4)], vec![], vec![]),
    )
    .await;
    assert_eq!(
        store.delivered_version("national", "D").await.unwrap(),
        Some(7)
    );

    let mut superseded = at("e9", 9, 5);
    superseded.outcome = Outcome::Superseded;
    let mut dead = at("e10", 10, 6);
    dead.outcome = Outcome::DeadLettered;
    let unversioned = outcome("r1", "e11", "D", 7);
    record(
        &store,
        batch(vec![superseded, dead, unversioned], vec![], vec![]),
    )
    .await;
    assert_eq!(
        store.delivered_version("national", "D").await.unwrap(),
        Some(7)
    );

    // Per destination.
    let mut elsewhere = at("e1", 1, 8);
    elsewhere.destination = "other".into();
    record(&store, batch(vec![elsewhere], vec![], vec![])).await;
    assert_eq!(
        store.delivered_version("other", "D").await.unwrap(),
        Some(1)
    );
    assert_eq!(
        store.delivered_version("national", "D").await.unwrap(),
        Some(7)
    );
}

/// A batch that fails half-way (its last row is a dead letter whose id already exists) leaves
/// no row of it: no outcome, no attempt, no natural key, no version, no dead letter.
pub async fn batch_is_atomic(store: Arc<dyn Store>) {
    let existing = dead_letter("r1", "env-0", "OLD", 1_000);
    record(&store, batch(vec![], vec![], vec![existing.clone()])).await;

    let mut o = outcome("r1", "env-1", "NEW", 2_000);
    o.version = Some(9);
    o.natural_key = Some("NEW@9".into());
    let fresh = dead_letter("r1", "env-2", "NEW", 2_001);
    let mut duplicate = dead_letter("r1", "env-3", "NEW", 2_002);
    duplicate.id = existing.id.clone();
    let result = store
        .record(batch(
            vec![o],
            vec![attempt("r1", "env-1", "NEW", 1, 1_999)],
            vec![fresh.clone(), duplicate],
        ))
        .await;
    assert!(
        matches!(result, Err(crate::error::StoreError::Query(_))),
        "a duplicate dead-letter id must fail the batch, got {result:?}"
    );

    assert_eq!(store.outcome("r1", "env-1").await.unwrap(), None);
    assert!(store.outcomes_by_key("NEW").await.unwrap().is_empty());
    assert!(store.attempts_by_key("NEW").await.unwrap().is_empty());
    assert!(!store.natural_key_done("national", "NEW@9").await.unwrap());
    assert_eq!(
        store.delivered_version("national", "NEW").await.unwrap(),
        None
    );
    assert_eq!(store.dead_letter(&fresh.id).await.unwrap(), None);
    let kept = store.dead_letter(&existing.id).await.unwrap().unwrap();
    assert_eq!(kept.letter, existing, "the existing letter is untouched");
    assert_eq!(store.open_dead_letters().await.unwrap(), 1);

    // The store still works after the failed batch.
    let ok = outcome("r1", "env-1", "NEW", 3_000);
    record(&store, batch(vec![ok.clone()], vec![], vec![])).await;
    assert_eq!(store.outcome("r1", "env-1").await.unwrap(), Some(ok));
}

/// A batch recorded again (the caller retrying after a commit whose answer was lost) leaves the
/// store as if it had been recorded once, even after its dead letter was settled.
pub async fn recording_a_batch_twice_is_a_no_op(store: Arc<dyn Store>) {
    let mut o = outcome("r1", "env-1", "K", 2_000);
    o.outcome = Outcome::DeadLettered;
    let attempts = vec![
        attempt("r1", "env-1", "K", 1, 1_000),
        attempt("r1", "env-1", "K", 2, 2_000),
    ];
    let d = dead_letter("r1", "env-1", "K", 2_000);
    let b = batch(vec![o.clone()], attempts.clone(), vec![d.clone()]);
    record(&store, b.clone()).await;
    record(&store, b.clone()).await;
    assert_eq!(store.outcomes_by_key("K").await.unwrap(), vec![o]);
    assert_eq!(store.attempts_by_key("K").await.unwrap(), attempts);
    assert_eq!(
        store
            .dead_letters(&DeadLetterFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.open_dead_letters().await.unwrap(), 1);

    assert!(matches!(
        store.mark_replayed(&d.id, "ops", 3_000).await.unwrap(),
        Settled::Changed(_)
    ));
    record(&store, b).await;
    let stored = store.dead_letter(&d.id).await.unwrap().unwrap();
    assert_eq!(
        stored.state,
        DeadLetterState::Replayed,
        "a retry does not reopen it"
    );
    assert_eq!(store.open_dead_letters().await.unwrap(), 0);
    assert_eq!(store.attempts_by_key("K").await.unwrap().len(), 2);
}

/// Listing by route, key and state (combined), limit, oldest first; `get` returns the original
/// bytes exactly, non-UTF-8 included.
pub async fn dead_letters_list_and_get(store: Arc<dyn Store>) {
    let mut binary = dead_letter("r1", "env-1", "A", 1_000);
    binary.envelope = vec![0xff, 0x00, 0xfe, b'{', 0xc3, 0x28, 0x80, b'}', 0x00];
    let b = dead_letter("r1", "env-2", "B", 2_000);
    let c = dead_letter("r2", "env-3", "A", 3_000);
    let mut empty = dead_letter("r2", "env-4", "C", 4_000);
    empty.envelope = Vec::new();
    empty.last_status = None;
    // Stored out of order: listing sorts by dead_at_ms.
    record(
        &store,
        batch(
            vec![],
            vec![],
            vec![c.clone(), binary.clone(), empty.clone()],
        ),
    )
    .await;
    record(&store, batch(vec![], vec![], vec![b.clone()])).await;

    let ids =
        |v: Vec<crate::records::DeadLetter>| v.into_iter().map(|d| d.letter.id).collect::<Vec<_>>();
    let all = store
        .dead_letters(&DeadLetterFilter::default())
        .await
        .unwrap();
    assert_eq!(
        ids(all),
        vec![
            binary.id.clone(),
            b.id.clone(),
            c.id.clone(),
            empty.id.clone()
        ]
    );
    let by_route = DeadLetterFilter {
        route: Some("r1".into()),
        ..Default::default()
    };
    assert_eq!(
        ids(store.dead_letters(&by_route).await.unwrap()),
        vec![binary.id.clone(), b.id.clone()]
    );
    let by_key = DeadLetterFilter {
        key: Some("A".into()),
        ..Default::default()
    };
    assert_eq!(
        ids(store.dead_letters(&by_key).await.unwrap()),
        vec![binary.id.clone(), c.id.clone()]
    );
    let route_and_key = DeadLetterFilter {
        route: Some("r2".into()),
        key: Some("A".into()),
        ..Default::default()
    };
    assert_eq!(
        ids(store.dead_letters(&route_and_key).await.unwrap()),
        vec![c.id.clone()]
    );
    let limited = DeadLetterFilter {
        limit: 2,
        ..Default::default()
    };
    assert_eq!(
        ids(store.dead_letters(&limited).await.unwrap()),
        vec![binary.id.clone(), b.id.clone()]
    );

    assert!(matches!(
        store
            .mark_dropped(&b.id, "ops@example", 5_000)
            .await
            .unwrap(),
        Settled::Changed(_)
    ));
    let open = DeadLetterFilter {
        state: Some(DeadLetterState::Open),
        ..Default::default()
    };
    assert_eq!(
        ids(store.dead_letters(&open).await.unwrap()),
        vec![binary.id.clone(), c.id.clone(), empty.id.clone()]
    );
    let dropped_in_r1 = DeadLetterFilter {
        route: Some("r1".into()),
        state: Some(DeadLetterState::Dropped),
        ..Default::default()
    };
    let dropped = store.dead_letters(&dropped_in_r1).await.unwrap();
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].letter, b);
    assert_eq!(dropped[0].state, DeadLetterState::Dropped);
    assert_eq!(dropped[0].settled_by.as_deref(), Some("ops@example"));
    assert_eq!(dropped[0].settled_at_ms, Some(5_000));
    let none = DeadLetterFilter {
        route: Some("r9".into()),
        ..Default::default()
    };
    assert!(store.dead_letters(&none).await.unwrap().is_empty());

    let got = store.dead_letter(&binary.id).await.unwrap().unwrap();
    assert_eq!(got.letter.envelope, binary.envelope, "bytes must be exact");
    assert_eq!(got.letter, binary);
    assert_eq!(
        store.dead_letter(&empty.id).await.unwrap().unwrap().letter,
        empty
    );
}

async fn settle_concurrently(store: &Arc<dyn Store>, id: &str, replay: bool) -> Vec<Settled> {
    let mut tasks = Vec::new();
    for i in 0..10 {
        let store = store.clone();
        let id = id.to_owned();
        tasks.push(tokio::spawn(async move {
            let who = format!("operator-{i}");
            if replay {
                store.mark_replayed(&id, &who, 10_000 + i).await
            } else {
                store.mark_dropped(&id, &who, 10_000 + i).await
            }
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("task").expect("settle"));
    }
    results
}

fn check_exactly_one(results: &[Settled], state: DeadLetterState) {
    let changed: Vec<_> = results
        .iter()
        .filter_map(|r| match r {
            Settled::Changed(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(changed.len(), 1, "exactly one Changed: {results:?}");
    let winner = changed[0];
    assert_eq!(winner.state, state);
    for r in results {
        match r {
            Settled::Changed(_) => {}
            Settled::AlreadySettled(d) => {
                assert_eq!(d.state, state);
                assert_eq!(d.settled_by, winner.settled_by, "the winner is recorded");
                assert_eq!(d.settled_at_ms, winner.settled_at_ms);
            }
            Settled::NotFound => panic!("NotFound for an existing letter"),
        }
    }
}

/// 10 concurrent replays: one `Changed`, nine `AlreadySettled`; a drop afterwards is a no-op.
pub async fn replay_exactly_once_under_concurrency(store: Arc<dyn Store>) {
    let d = dead_letter("r1", "env-1", "K", 1_000);
    record(&store, batch(vec![], vec![], vec![d.clone()])).await;
    let results = settle_concurrently(&store, &d.id, true).await;
    check_exactly_one(&results, DeadLetterState::Replayed);

    match store.mark_dropped(&d.id, "late", 20_000).await.unwrap() {
        Settled::AlreadySettled(l) => assert_eq!(l.state, DeadLetterState::Replayed),
        other => panic!("drop after replay must be a no-op, got {other:?}"),
    }
    let stored = store.dead_letter(&d.id).await.unwrap().unwrap();
    assert_eq!(stored.state, DeadLetterState::Replayed);
    assert_eq!(stored.letter, d, "settling keeps the original");
    assert_eq!(
        store.mark_replayed("missing", "x", 1).await.unwrap(),
        Settled::NotFound
    );
    assert_eq!(store.open_dead_letters().await.unwrap(), 0);
}

/// 10 concurrent drops: one `Changed`; a replay afterwards is a no-op.
pub async fn drop_exactly_once_under_concurrency(store: Arc<dyn Store>) {
    let d = dead_letter("r1", "env-1", "K", 1_000);
    record(&store, batch(vec![], vec![], vec![d.clone()])).await;
    let results = settle_concurrently(&store, &d.id, false).await;
    check_exactly_one(&results, DeadLetterState::Dropped);
    match store.mark_replayed(&d.id, "late", 20_000).await.unwrap() {
        Settled::AlreadySettled(l) => assert_eq!(l.state, DeadLetterState::Dropped),
        other => panic!("replay after drop must be a no-op, got {other:?}"),
    }
    assert_eq!(
        store.mark_dropped("missing", "x", 1).await.unwrap(),
        Settled::NotFound
    );
}

/// A key's outcomes and attempts come back oldest first by `at_ms`, ties in insertion order,
/// whatever the batches and routes; other keys stay out.
pub async fn trail_by_key_is_ordered(store: Arc<dyn Store>) {
    let o3 = outcome("r1", "e3", "K", 3_000);
    let o1 = outcome("r2", "e1", "K", 1_000);
    let o2a = outcome("r1", "e2a", "K", 2_000);
    let o2b = outcome("r1", "e2b", "K", 2_000);
    let noise = outcome("r1", "e9", "OTHER", 1_500);
    record(&store, batch(vec![o3.clone(), noise], vec![], vec![])).await;
    record(
        &store,
        batch(vec![o1.clone(), o2a.clone(), o2b.clone()], vec![], vec![]),
    )
    .await;
    assert_eq!(
        store.outcomes_by_key("K").await.unwrap(),
        vec![o1, o2a, o2b, o3]
    );

    let a2 = attempt("r1", "e1", "K", 2, 2_000);
    let a1 = attempt("r1", "e1", "K", 1, 1_000);
    let a3 = attempt("r1", "e1", "K", 3, 3_000);
    let a3_again = attempt("r2", "e1", "K", 1, 3_000);
    record(&store, batch(vec![], vec![a3.clone(), a2.clone()], vec![])).await;
    record(
        &store,
        batch(
            vec![],
            vec![
                a1.clone(),
                a3_again.clone(),
                attempt("r1", "x", "OTHER", 1, 1),
            ],
            vec![],
        ),
    )
    .await;
    assert_eq!(
        store.attempts_by_key("K").await.unwrap(),
        vec![a1, a2, a3, a3_again]
    );
}

pub async fn open_dead_letters_count(store: Arc<dyn Store>) {
    assert_eq!(store.open_dead_letters().await.unwrap(), 0);
    let letters: Vec<_> = (0..5)
        .map(|i| dead_letter("r1", &format!("e{i}"), "K", 1_000 + i))
        .collect();
    record(&store, batch(vec![], vec![], letters.clone())).await;
    assert_eq!(store.open_dead_letters().await.unwrap(), 5);
    store
        .mark_replayed(&letters[0].id, "ops", 2_000)
        .await
        .unwrap();
    store
        .mark_dropped(&letters[1].id, "ops", 2_000)
        .await
        .unwrap();
    store
        .mark_dropped(&letters[1].id, "ops", 2_001)
        .await
        .unwrap();
    assert_eq!(store.open_dead_letters().await.unwrap(), 3);
}

/// Vietnamese (NFC and NFD forms kept apart) survives every text column.
pub async fn vietnamese_text_round_trips(store: Arc<dyn Store>) {
    let key = "HỒ-SƠ-ĐÀ-NẴNG-000.00.12.H17-241124-0001";
    // "Nguyễn" with a combining tilde and dot (NFD) must not be normalised into NFC.
    let nfd = "Nguye\u{0302}\u{0303}n";
    let mut o = outcome("tiếp-nhận", "env-ư", key, 1_000);
    o.destination = "cổng-dịch-vụ-công".into();
    o.natural_key = Some(format!("{key}@1"));
    o.version = Some(1);
    o.detail = format!("Đã tiếp nhận hồ sơ của {nfd}; trạng thái: Chờ bổ sung");
    let mut a = attempt("tiếp-nhận", "env-ư", key, 1, 999);
    a.reason = "Máy chủ đang bận, thử lại sau".into();
    a.result = "thử_lại".into();
    let mut d = dead_letter("tiếp-nhận", "env-ư", key, 1_001);
    d.reason = "Từ chối vĩnh viễn: mã thủ tục không hợp lệ".into();
    d.last_answer = "{\"thongBao\":\"Hồ sơ đã tồn tại\"}".into();
    d.envelope = "{\"hoTen\":\"Trần Thị Ánh Tuyết\"}".as_bytes().to_vec();
    record(
        &store,
        batch(vec![o.clone()], vec![a.clone()], vec![d.clone()]),
    )
    .await;

    let got = store.outcome("tiếp-nhận", "env-ư").await.unwrap().unwrap();
    assert_eq!(got, o);
    assert!(got.detail.contains(nfd) && !got.detail.contains("Nguyễn"));
    assert_eq!(store.outcomes_by_key(key).await.unwrap(), vec![o.clone()]);
    assert_eq!(store.attempts_by_key(key).await.unwrap(), vec![a]);
    assert!(store
        .natural_key_done("cổng-dịch-vụ-công", &format!("{key}@1"))
        .await
        .unwrap());
    assert_eq!(
        store
            .delivered_version("cổng-dịch-vụ-công", key)
            .await
            .unwrap(),
        Some(1)
    );
    let filter = DeadLetterFilter {
        route: Some("tiếp-nhận".into()),
        key: Some(key.into()),
        ..Default::default()
    };
    let listed = store.dead_letters(&filter).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].letter, d);
    // Different normalisation forms are different keys: no silent folding.
    let nfc_key = key.replace("Ồ", "O\u{0302}\u{0300}");
    assert!(store.outcomes_by_key(&nfc_key).await.unwrap().is_empty());
}

/// max(old, new) per (route, key), across batches; a batch of accepted versions alone is
/// recorded (it is not an empty batch), and other keys and routes are untouched.
pub async fn accepted_versions_only_move_forward(store: Arc<dyn Store>) {
    assert_eq!(
        store.versions("r1", "national", "D").await.unwrap(),
        both(None, None)
    );
    record(&store, accepting(vec![accepted("r1", "D", 5)])).await;
    assert_eq!(
        store.versions("r1", "national", "D").await.unwrap(),
        both(None, Some(5))
    );
    record(&store, accepting(vec![accepted("r1", "D", 3)])).await;
    assert_eq!(
        store.versions("r1", "national", "D").await.unwrap(),
        both(None, Some(5))
    );
    record(&store, accepting(vec![accepted("r1", "D", 5)])).await;
    assert_eq!(
        store.versions("r1", "national", "D").await.unwrap(),
        both(None, Some(5))
    );
    record(&store, accepting(vec![accepted("r1", "D", 8)])).await;
    assert_eq!(
        store.versions("r1", "national", "D").await.unwrap(),
        both(None, Some(8))
    );

    // Another route and another key start from nothing, and do not move "r1"/"D".
    record(
        &store,
        accepting(vec![accepted("r2", "D", 2), accepted("r1", "E", 1)]),
    )
    .await;
    assert_eq!(
        store.versions("r2", "national", "D").await.unwrap(),
        both(None, Some(2))
    );
    assert_eq!(
        store.versions("r1", "national", "E").await.unwrap(),
        both(None, Some(1))
    );
    assert_eq!(
        store.versions("r1", "national", "D").await.unwrap(),
        both(None, Some(8))
    );
    assert_eq!(
        store.versions("r3", "national", "D").await.unwrap(),
        both(None, None)
    );

    // Accepting is not delivering.
    assert_eq!(
        store.delivered_version("national", "D").await.unwrap(),
        None
    );
    assert!(store.outcomes_by_key("D").await.unwrap().is_empty());
}

/// Several accepted versions of one (route, key) in one batch, in any order: the highest wins,
/// also against a stored one (higher or lower), and several keys go in one batch.
pub async fn accepted_duplicates_in_a_batch_resolve_to_the_max(store: Arc<dyn Store>) {
    record(
        &store,
        accepting(vec![
            accepted("r1", "D", 4),
            accepted("r1", "D", 9),
            accepted("r1", "E", 2),
            accepted("r1", "D", 7),
            accepted("r2", "D", 1),
            accepted("r1", "E", 2),
        ]),
    )
    .await;
    assert_eq!(
        store.versions("r1", "x", "D").await.unwrap(),
        both(None, Some(9))
    );
    assert_eq!(
        store.versions("r1", "x", "E").await.unwrap(),
        both(None, Some(2))
    );
    assert_eq!(
        store.versions("r2", "x", "D").await.unwrap(),
        both(None, Some(1))
    );

    // Duplicates all below the stored version: it stays.
    record(
        &store,
        accepting(vec![accepted("r1", "D", 8), accepted("r1", "D", 6)]),
    )
    .await;
    assert_eq!(
        store.versions("r1", "x", "D").await.unwrap(),
        both(None, Some(9))
    );

    // Duplicates straddling it: the highest of the batch wins.
    record(
        &store,
        accepting(vec![
            accepted("r1", "D", 12),
            accepted("r1", "D", 3),
            accepted("r1", "D", 11),
        ]),
    )
    .await;
    assert_eq!(
        store.versions("r1", "x", "D").await.unwrap(),
        both(None, Some(12))
    );

    // The same batch recorded twice (a retry) changes nothing.
    let again = accepting(vec![accepted("r1", "D", 12), accepted("r1", "E", 2)]);
    record(&store, again.clone()).await;
    record(&store, again).await;
    assert_eq!(
        store.versions("r1", "x", "D").await.unwrap(),
        both(None, Some(12))
    );
    assert_eq!(
        store.versions("r1", "x", "E").await.unwrap(),
        both(None, Some(2))
    );
}

/// Accepted versions go in or out with the rest of their batch: a batch that fails on a
/// conflicting dead letter writes none of them, the same batch without the conflict writes all.
pub async fn batch_with_outcomes_and_accepted_versions_is_atomic(store: Arc<dyn Store>) {
    let existing = dead_letter("r1", "env-0", "OLD", 1_000);
    record(
        &store,
        Batch {
            dead_letters: vec![existing.clone()],
            accepted: vec![accepted("r1", "NEW", 2)],
            ..Default::default()
        },
    )
    .await;

    let mut o = outcome("r1", "env-1", "NEW", 2_000);
    o.version = Some(3);
    let mut duplicate = dead_letter("r1", "env-3", "NEW", 2_002);
    duplicate.id = existing.id.clone();
    let mut failing = Batch {
        outcomes: vec![o.clone()],
        attempts: vec![attempt("r1", "env-1", "NEW", 1, 1_999)],
        dead_letters: vec![duplicate],
        accepted: vec![
            accepted("r1", "NEW", 7),
            accepted("r1", "NEW", 5),
            accepted("r2", "NEW", 7),
            accepted("r1", "OTHER", 1),
        ],
        evidence: vec![],
        releases: vec![],
    };
    let result = store.record(failing.clone()).await;
    assert!(
        matches!(result, Err(crate::error::StoreError::Query(_))),
        "a duplicate dead-letter id must fail the batch, got {result:?}"
    );
    assert_eq!(
        store.versions("r1", "national", "NEW").await.unwrap(),
        both(None, Some(2)),
        "neither the delivered nor the accepted version moved"
    );
    assert_eq!(
        store.versions("r2", "national", "NEW").await.unwrap(),
        both(None, None)
    );
    assert_eq!(
        store.versions("r1", "national", "OTHER").await.unwrap(),
        both(None, None)
    );
    assert_eq!(store.outcome("r1", "env-1").await.unwrap(), None);
    assert!(store.attempts_by_key("NEW").await.unwrap().is_empty());

    // Without the conflict, everything of the batch is there.
    failing.dead_letters.clear();
    record(&store, failing).await;
    assert_eq!(store.outcome("r1", "env-1").await.unwrap(), Some(o));
    assert_eq!(
        store.versions("r1", "national", "NEW").await.unwrap(),
        both(Some(3), Some(7))
    );
    assert_eq!(
        store.versions("r2", "national", "NEW").await.unwrap(),
        both(Some(3), Some(7))
    );
    assert_eq!(
        store.versions("r1", "national", "OTHER").await.unwrap(),
        both(None, Some(1))
    );
    assert_eq!(store.attempts_by_key("NEW").await.unwrap().len(), 1);
}

/// `versions(route, destination, key)`: delivered is per (destination, key) whatever the route,
/// accepted is per (route, key) whatever the destination; each may be absent alone.
pub async fn versions_reads_both_per_route_and_destination(store: Arc<dyn Store>) {
    let delivered = |route: &str, destination: &str, env: &str, key: &str, v: i64| {
        let mut o = outcome(route, env, key, v);
        o.destination = destination.into();
        o.version = Some(v);
        o
    };
    record(
        &store,
        Batch {
            outcomes: vec![
                delivered("r1", "national", "e1", "D", 4),
                delivered("r1", "provincial", "e2", "D", 2),
            ],
            accepted: vec![accepted("r1", "D", 6), accepted("r2", "D", 3)],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        store.versions("r1", "national", "D").await.unwrap(),
        both(Some(4), Some(6))
    );
    assert_eq!(
        store.versions("r1", "provincial", "D").await.unwrap(),
        both(Some(2), Some(6))
    );
    assert_eq!(
        store.versions("r2", "national", "D").await.unwrap(),
        both(Some(4), Some(3))
    );
    assert_eq!(
        store.versions("r2", "provincial", "D").await.unwrap(),
        both(Some(2), Some(3))
    );
    // Only one side known.
    assert_eq!(
        store.versions("r3", "national", "D").await.unwrap(),
        both(Some(4), None)
    );
    assert_eq!(
        store.versions("r1", "elsewhere", "D").await.unwrap(),
        both(None, Some(6))
    );
    assert_eq!(
        store.versions("r1", "national", "E").await.unwrap(),
        both(None, None)
    );
    // The same as the single reads.
    assert_eq!(
        store.delivered_version("provincial", "D").await.unwrap(),
        Some(2)
    );

    // Each moves on its own.
    record(
        &store,
        batch(
            vec![delivered("r2", "national", "e3", "D", 9)],
            vec![],
            vec![],
        ),
    )
    .await;
    assert_eq!(
        store.versions("r1", "national", "D").await.unwrap(),
        both(Some(9), Some(6))
    );
    record(&store, accepting(vec![accepted("r1", "D", 10)])).await;
    assert_eq!(
        store.versions("r1", "national", "D").await.unwrap(),
        both(Some(9), Some(10))
    );
    assert_eq!(
        store.versions("r2", "national", "D").await.unwrap(),
        both(Some(9), Some(3))
    );
    assert_eq!(
        store.versions("r1", "provincial", "D").await.unwrap(),
        both(Some(2), Some(10))
    );
}

pub async fn ready_answers(store: Arc<dyn Store>) {
    assert!(store.ready().await);
    assert!(["sqlite", "postgres"].contains(&store.kind()));
}

/// Two stores on the same database (two gateway instances): settling races across them still
/// has one winner, the first outcome wins across them, and concurrent version raises (delivered
/// and accepted) from both end at the maximum. Not part of [`store_suite!`](crate::store_suite): the harness must open
/// the second store on the first one's database.
pub async fn two_instances_share_the_work(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let d = dead_letter("r1", "env-1", "K", 1_000);
    record(&a, batch(vec![], vec![], vec![d.clone()])).await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (store, id) = (if i % 2 == 0 { a.clone() } else { b.clone() }, d.id.clone());
        tasks.push(tokio::spawn(async move {
            store.mark_replayed(&id, &format!("operator-{i}"), i).await
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("task").expect("settle"));
    }
    check_exactly_one(&results, DeadLetterState::Replayed);

    let first = outcome("r1", "env-1", "K", 1);
    let mut second = first.clone();
    second.outcome = Outcome::DeadLettered;
    record(&a, batch(vec![first.clone()], vec![], vec![])).await;
    record(&b, batch(vec![second], vec![], vec![])).await;
    assert_eq!(b.outcome("r1", "env-1").await.unwrap(), Some(first));

    // Both instances raise the same dossiers' versions at once, in batches.
    let mut tasks = Vec::new();
    for (n, store) in [a.clone(), b.clone()].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for round in 0..20_i64 {
                let outcomes = (0..10)
                    .map(|k| {
                        let mut o =
                            outcome("r1", &format!("v-{n}-{round}-{k}"), &format!("D{k}"), round);
                        // Instance 1 runs 10 versions ahead of instance 0: its last round holds the maximum.
                        o.version = Some(round * 10 - 9 + n as i64 * 10 + k % 2);
                        o
                    })
                    .collect();
                let raised = (0..10)
                    .rev()
                    .map(|k| accepted("r1", &format!("D{k}"), round * 10 + n as i64 * 10 + k % 2))
                    .collect();
                store
                    .record(Batch {
                        outcomes,
                        accepted: raised,
                        ..Default::default()
                    })
                    .await?;
            }
            Ok::<_, crate::error::StoreError>(())
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("concurrent batches");
    }
    for k in 0..10 {
        let want = 19 * 10 - 9 + 10 + k % 2;
        for store in [&a, &b] {
            assert_eq!(
                store
                    .delivered_version("national", &format!("D{k}"))
                    .await
                    .unwrap(),
                Some(want)
            );
            assert_eq!(
                store
                    .versions("r1", "national", &format!("D{k}"))
                    .await
                    .unwrap(),
                Versions {
                    delivered: Some(want),
                    accepted: Some(19 * 10 + 10 + k % 2),
                }
            );
        }
    }
}

/// A signature is remembered once: of ten concurrent tries one wins; a live entry refuses the
/// same id (another scope may hold it too); an expired one is revived, and forgotten by
/// `forget_signatures`.
pub async fn signatures_are_remembered_once_until_they_expire(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.remember_signature("agency", "sha256:aa", 10_000, 1_000)
                .await
                .unwrap()
        }));
    }
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1, "exactly one of ten concurrent requests is accepted");
    assert!(!store
        .remember_signature("agency", "sha256:aa", 20_000, 9_999)
        .await
        .unwrap());
    assert!(store
        .remember_signature("other", "sha256:aa", 10_000, 1_000)
        .await
        .unwrap());
    assert!(
        store
            .remember_signature("agency", "sha256:aa", 30_000, 10_001)
            .await
            .unwrap(),
        "an expired entry no longer refuses"
    );
    store
        .remember_signature("agency", "sha256:bb", 5_000, 1_000)
        .await
        .unwrap();
    store
        .release_signature("agency", "sha256:bb")
        .await
        .unwrap();
    assert!(
        store
            .remember_signature("agency", "sha256:bb", 5_000, 1_000)
            .await
            .unwrap(),
        "a released signature passes again (the sender's retry after a 503)"
    );
    assert_eq!(store.forget_signatures(20_000).await.unwrap(), 2);
    assert!(!store
        .remember_signature("agency", "sha256:aa", 40_000, 20_000)
        .await
        .unwrap());
}

fn claim_req(
    key: &str,
    ledger_id: &str,
    version: Option<i64>,
    holder: &str,
    lease_ms: i64,
) -> crate::claims::ClaimRequest {
    crate::claims::ClaimRequest {
        destination: "national".into(),
        key: key.into(),
        ledger_id: ledger_id.into(),
        natural_key: version.map(|v| crate::natural_keys::of_version(key, v)),
        version,
        holder: holder.into(),
        lease_ms,
        sending: false,
    }
}

fn release(
    key: &str,
    ledger_id: &str,
    nk: Option<String>,
    holder: &str,
    how: Option<&str>,
) -> crate::claims::ClaimRelease {
    crate::claims::ClaimRelease {
        destination: "national".into(),
        key: key.into(),
        holder: holder.into(),
        ledger_id: ledger_id.into(),
        natural_key: nk,
        resolution: how.map(str::to_owned),
    }
}

/// Ten holders claim one key at once: exactly one is granted, the others see it busy; the
/// winner's own claim is re-granted (idempotent), and another key is independent.
pub async fn claims_have_one_winner_under_concurrency(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..10 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let req = claim_req(
                "K",
                &format!("env-{i}"),
                Some(1),
                &format!("holder-{i}"),
                30_000,
            );
            (i, store.claim(&req).await.expect("claim"))
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (i, c) = t.await.expect("task");
        match c {
            crate::claims::Claim::Granted { in_doubt: None } => winners.push(i),
            crate::claims::Claim::Busy { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one winner, got {winners:?}");
    let w = winners[0];
    let again = claim_req(
        "K",
        &format!("env-{w}"),
        Some(1),
        &format!("holder-{w}"),
        30_000,
    );
    assert_eq!(
        store.claim(&again).await.unwrap(),
        crate::claims::Claim::Granted { in_doubt: None }
    );
    let other = claim_req("K2", "env-x", Some(1), "holder-x", 30_000);
    assert_eq!(
        store.claim(&other).await.unwrap(),
        crate::claims::Claim::Granted { in_doubt: None }
    );
    // A loser cannot extend what it does not hold.
    let loser = (w + 1) % 10;
    assert!(!store
        .extend_claim("national", "K", &format!("holder-{loser}"), 30_000, true)
        .await
        .unwrap());
    assert!(store
        .extend_claim("national", "K", &format!("holder-{w}"), 30_000, true)
        .await
        .unwrap());
}

/// A holder stamps its send and dies (its lease runs out): the next claim of that exchange is
/// granted with an in-doubt note naming it, an older version is refused meanwhile, the dead
/// holder can no longer extend, and a lease that ran out *before* any send is no doubt at all.
pub async fn expired_claim_mid_send_is_in_doubt(store: Arc<dyn Store>) {
    let a = claim_req("K", "env-3", Some(3), "instance-a", 100);
    assert_eq!(
        store.claim(&a).await.unwrap(),
        crate::claims::Claim::Granted { in_doubt: None }
    );
    assert!(store
        .extend_claim("national", "K", "instance-a", 100, true)
        .await
        .unwrap());
    // Still live: instance b must wait.
    let b = claim_req("K", "env-3", Some(3), "instance-b", 30_000);
    assert!(
        matches!(store.claim(&b).await.unwrap(), crate::claims::Claim::Busy { ref holder, .. } if holder == "instance-a")
    );
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    // An older version than the one in doubt is refused: the newer one may have arrived.
    let older = claim_req("K", "env-2", Some(2), "instance-c", 30_000);
    assert_eq!(
        store.claim(&older).await.unwrap(),
        crate::claims::Claim::Older {
            newest: 3,
            in_doubt: true
        }
    );
    let granted = store.claim(&b).await.unwrap();
    let crate::claims::Claim::Granted {
        in_doubt: Some(doubt),
    } = granted
    else {
        panic!("expected an in-doubt take-over, got {granted:?}");
    };
    assert_eq!(doubt.ledger_id, "env-3");
    assert_eq!(doubt.version, Some(3));
    assert_eq!(doubt.holder, "instance-a");
    assert!(doubt.sent_at_ms > 0);
    assert!(
        !store
            .extend_claim("national", "K", "instance-a", 100, true)
            .await
            .unwrap(),
        "the dead holder lost it"
    );
    let rows = store.in_doubt_by_key("K").await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].resolution, None);

    // An exchange the ledger already settled (a redelivery superseded it without a claim) is
    // noted as settled when its dead holder's claim is taken over.
    let g = claim_req("P", "env-p", Some(2), "instance-a", 50);
    let mut g = g;
    g.sending = true;
    assert_eq!(
        store.claim(&g).await.unwrap(),
        crate::claims::Claim::Granted { in_doubt: None }
    );
    let mut sup = outcome("r1", "env-p", "P", 1);
    sup.outcome = Outcome::Superseded;
    sup.version = Some(2);
    record(&store, batch(vec![sup], vec![], vec![])).await;
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let h = claim_req("P", "env-p3", Some(3), "instance-b", 30_000);
    assert_eq!(
        store.claim(&h).await.unwrap(),
        crate::claims::Claim::Granted { in_doubt: None }
    );
    let rows = store.in_doubt_by_key("P").await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].resolution.as_deref(), Some("recorded_before"));

    // Expired before any send started: nothing is in doubt.
    let c = claim_req("Q", "env-q", Some(1), "instance-a", 50);
    assert_eq!(
        store.claim(&c).await.unwrap(),
        crate::claims::Claim::Granted { in_doubt: None }
    );
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let d = claim_req("Q", "env-q", Some(1), "instance-b", 30_000);
    assert_eq!(
        store.claim(&d).await.unwrap(),
        crate::claims::Claim::Granted { in_doubt: None }
    );
    assert!(store.in_doubt_by_key("Q").await.unwrap().is_empty());

    // Stamped by the claim itself (`sending: true`): in doubt once expired.
    let mut e = claim_req("R", "env-r", Some(1), "instance-a", 50);
    e.sending = true;
    assert_eq!(
        store.claim(&e).await.unwrap(),
        crate::claims::Claim::Granted { in_doubt: None }
    );
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let f = claim_req("R", "env-r", Some(1), "instance-b", 30_000);
    assert!(matches!(
        store.claim(&f).await.unwrap(),
        crate::claims::Claim::Granted { in_doubt: Some(ref d) } if d.ledger_id == "env-r"
    ));
}

/// A claim for a version the destination already has (or older) is refused, so is one for a
/// delivered natural key; a newer version is granted.
pub async fn claim_older_than_delivered_is_refused(store: Arc<dyn Store>) {
    let mut o = outcome("r1", "env-3", "K", 1);
    o.version = Some(3);
    o.natural_key = Some("K@3".into());
    record(&store, batch(vec![o], vec![], vec![])).await;
    for v in [2, 3] {
        let req = claim_req("K", &format!("env-{v}b"), Some(v), "h", 30_000);
        let got = store.claim(&req).await.unwrap();
        // Version 3's natural key is said by the delivered version (`crate::natural_keys`):
        // refused by the version check, the same way as the older version 2.
        assert_eq!(
            got,
            crate::claims::Claim::Older {
                newest: 3,
                in_doubt: false
            },
            "version {v}"
        );
    }
    let mut same = claim_req("K", "env-3c", Some(3), "h", 30_000);
    same.natural_key = None;
    assert_eq!(
        store.claim(&same).await.unwrap(),
        crate::claims::Claim::Older {
            newest: 3,
            in_doubt: false
        }
    );
    // A refused claim holds nothing: another holder gets the key at once.
    let newer = claim_req("K", "env-4", Some(4), "h2", 30_000);
    assert_eq!(
        store.claim(&newer).await.unwrap(),
        crate::claims::Claim::Granted { in_doubt: None }
    );
    // An unversioned effect with a delivered natural key.
    let mut step = outcome("r1", "env-s", "S", 1);
    step.natural_key = Some("S#step-1-abc".into());
    record(&store, batch(vec![step], vec![], vec![])).await;
    let mut req = claim_req("S", "env-s2", None, "h", 30_000);
    req.natural_key = Some("S#step-1-abc".into());
    assert_eq!(store.claim(&req).await.unwrap(), crate::claims::Claim::Done);
}

/// Releasing in the outcome's batch frees the key at once (no waiting for the lease), settles
/// the exchange's in-doubt note, and a stale holder's release does not free its successor's
/// claim.
pub async fn claims_are_released_with_the_outcome(store: Arc<dyn Store>) {
    let a = claim_req("K", "env-1", Some(1), "a", 100);
    assert_eq!(
        store.claim(&a).await.unwrap(),
        crate::claims::Claim::Granted { in_doubt: None }
    );
    assert!(store
        .extend_claim("national", "K", "a", 100, true)
        .await
        .unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    let b = claim_req("K", "env-1", Some(1), "b", 60_000);
    assert!(matches!(
        store.claim(&b).await.unwrap(),
        crate::claims::Claim::Granted { in_doubt: Some(_) }
    ));
    // The stale holder "a" records late: its release must not free b's claim.
    let stale = Batch {
        releases: vec![release("K", "env-x", None, "a", None)],
        ..Default::default()
    };
    record(&store, stale).await;
    let c = claim_req("K", "env-2", Some(2), "c", 60_000);
    assert!(matches!(
        store.claim(&c).await.unwrap(),
        crate::claims::Claim::Busy { .. }
    ));
    // A release without a resolution (a retry, a failed look-up) leaves the doubt open.
    let retry = Batch {
        releases: vec![release("K", "env-1", Some("K@1".into()), "nobody", None)],
        ..Default::default()
    };
    record(&store, retry).await;
    assert_eq!(
        store.in_doubt_by_key("K").await.unwrap()[0].resolution,
        None
    );
    // b resolves (already there) and records with its release.
    let mut o = outcome("r1", "env-1", "K", 5);
    o.version = Some(1);
    o.natural_key = Some("K@1".into());
    let done = Batch {
        outcomes: vec![o],
        releases: vec![release(
            "K",
            "env-1",
            Some("K@1".into()),
            "b",
            Some("already_there"),
        )],
        ..Default::default()
    };
    record(&store, done).await;
    assert_eq!(
        store.claim(&c).await.unwrap(),
        crate::claims::Claim::Granted { in_doubt: None }
    );
    let rows = store.in_doubt_by_key("K").await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].resolution.as_deref(), Some("already_there"));
    assert!(rows[0].resolved_at_ms.is_some());
}

/// [`Store::versions_many`] answers each question in the order asked, as [`Store::versions`]
/// does alone (the same key twice, unknown keys, another route or destination).
pub async fn versions_many_answers_as_one_by_one(store: Arc<dyn Store>) {
    let mut o = outcome("r1", "e1", "D", 1);
    o.version = Some(4);
    record(
        &store,
        Batch {
            outcomes: vec![o],
            accepted: vec![accepted("r1", "D", 6), accepted("r2", "F", 3)],
            ..Default::default()
        },
    )
    .await;
    let ask = |route: &str, destination: &str, key: &str| crate::records::VersionsAsk {
        route: route.into(),
        destination: destination.into(),
        key: key.into(),
    };
    let asks = vec![
        ask("r1", "national", "D"),
        ask("r2", "national", "F"),
        ask("r1", "national", "nothing"),
        ask("r2", "national", "D"),
        ask("r1", "national", "D"),
        ask("r1", "elsewhere", "D"),
    ];
    let many = store.versions_many(&asks).await.unwrap();
    let mut alone = Vec::new();
    for a in &asks {
        alone.push(
            store
                .versions(&a.route, &a.destination, &a.key)
                .await
                .unwrap(),
        );
    }
    assert_eq!(many, alone);
    assert_eq!(
        many,
        vec![
            both(Some(4), Some(6)),
            both(None, Some(3)),
            both(None, None),
            both(Some(4), None),
            both(Some(4), Some(6)),
            both(None, Some(6)),
        ]
    );
    assert!(store.versions_many(&[]).await.unwrap().is_empty());
}

/// [`Store::claim_many`] answers each request as it would be answered alone, in order: older
/// than delivered, natural key done, busy behind a live holder, granted, and busy behind an
/// earlier request of the same batch for the same key. A refused request holds nothing (the
/// key is free for the next claim), a granted one holds its key.
pub async fn claims_in_a_batch_answer_as_one_by_one(store: Arc<dyn Store>) {
    use crate::claims::Claim;
    let mut a5 = outcome("r1", "env-a5", "A", 1);
    a5.version = Some(5);
    a5.natural_key = Some("A@5".into());
    let mut d1 = outcome("r1", "env-d1", "D", 1);
    d1.natural_key = Some("D#step-1".into());
    record(&store, batch(vec![a5, d1], vec![], vec![])).await;
    let live = claim_req("B", "env-b0", Some(1), "x", 60_000);
    assert_eq!(
        store.claim(&live).await.unwrap(),
        Claim::Granted { in_doubt: None }
    );
    let mut done = claim_req("D", "env-d2", None, "d", 60_000);
    done.natural_key = Some("D#step-1".into());
    let reqs = vec![
        claim_req("C", "env-c1", Some(1), "c1", 60_000),
        claim_req("A", "env-a3", Some(3), "a", 60_000),
        claim_req("B", "env-b1", Some(2), "y", 60_000),
        done,
        claim_req("C", "env-c2", Some(2), "c2", 60_000),
        claim_req("E", "env-e1", None, "e", 60_000),
    ];
    let answers = store.claim_many(&reqs).await.unwrap();
    assert_eq!(answers.len(), reqs.len());
    assert_eq!(answers[0], Claim::Granted { in_doubt: None });
    assert_eq!(
        answers[1],
        Claim::Older {
            newest: 5,
            in_doubt: false
        }
    );
    assert!(matches!(&answers[2], Claim::Busy { holder, .. } if holder == "x"));
    assert_eq!(answers[3], Claim::Done);
    assert!(matches!(&answers[4], Claim::Busy { holder, .. } if holder == "c1"));
    assert_eq!(answers[5], Claim::Granted { in_doubt: None });
    // The refused requests hold nothing: a newer version of A is granted at once.
    assert_eq!(
        store
            .claim(&claim_req("A", "env-a6", Some(6), "a6", 60_000))
            .await
            .unwrap(),
        Claim::Granted { in_doubt: None }
    );
    assert_eq!(
        store
            .claim(&claim_req("D", "env-d3", None, "d3", 60_000))
            .await
            .unwrap(),
        Claim::Granted { in_doubt: None }
    );
    // The granted ones hold their keys; a holder asking again is granted again.
    assert!(matches!(
        store.claim(&claim_req("C", "env-c3", Some(3), "c3", 60_000)).await.unwrap(),
        Claim::Busy { ref holder, .. } if holder == "c1"
    ));
    assert_eq!(
        store.claim_many(&reqs[5..]).await.unwrap(),
        vec![Claim::Granted { in_doubt: None }]
    );
    assert!(store.claim_many(&[]).await.unwrap().is_empty());
}

/// Many releases in one batch free the keys their holders hold, and only those: a stale
/// holder's release leaves its successor's claim in place.
pub async fn releases_in_a_batch_free_only_their_own_holders(store: Arc<dyn Store>) {
    use crate::claims::Claim;
    let keys = ["K1", "K2", "K3", "K4"];
    let reqs: Vec<_> = keys
        .iter()
        .map(|k| claim_req(k, &format!("env-{k}"), Some(1), &format!("h-{k}"), 60_000))
        .collect();
    assert!(store
        .claim_many(&reqs)
        .await
        .unwrap()
        .iter()
        .all(|c| *c == Claim::Granted { in_doubt: None }));
    let releases = vec![
        release("K3", "env-K3", None, "h-K3", None),
        release("K1", "env-K1", None, "h-K1", None),
        // Not K2's holder: K2 stays held.
        release("K2", "env-K2", None, "stale", None),
        release("K4", "env-K4", None, "h-K4", Some("not_there")),
    ];
    record(
        &store,
        Batch {
            releases,
            ..Default::default()
        },
    )
    .await;
    for k in ["K1", "K3", "K4"] {
        assert_eq!(
            store
                .claim(&claim_req(k, "env-next", Some(2), "next", 60_000))
                .await
                .unwrap(),
            Claim::Granted { in_doubt: None },
            "{k} released"
        );
    }
    assert!(matches!(
        store.claim(&claim_req("K2", "env-next", Some(2), "next", 60_000)).await.unwrap(),
        Claim::Busy { ref holder, .. } if holder == "h-K2"
    ));
}
