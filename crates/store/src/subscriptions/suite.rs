//! The shared checks of [`SubscriptionStates`](crate::subscriptions::SubscriptionStates), run
//! on both stores by `tests/subscriptions.rs`.
//!
//! # Invariants
//!
//! - Each check opens its own database by name through the caller's [`Opener`]; opening a
//!   name again reaches the same database: that is how a restart and a second gateway
//!   instance are simulated.
//! - Times are explicit unix-ms values, never the wall clock.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::*;

/// Opens (creating and migrating if needed) the database called `name`.
pub type Opener =
    dyn Fn(&str) -> Pin<Box<dyn Future<Output = Arc<dyn SubscriptionStates>> + Send>> + Send + Sync;

/// Every check, each in its own database.
pub async fn all(open: &Opener) {
    disabling_is_shared_idempotent_and_keeps_the_first_reason(open).await;
    the_failure_clock_survives_a_restart_and_a_second_instance(open).await;
    enabling_answers_what_it_cleared_and_resets_the_clock(open).await;
}

async fn disabling_is_shared_idempotent_and_keeps_the_first_reason(open: &Opener) {
    let a = open("sub_disable").await;
    let b = open("sub_disable").await;
    assert_eq!(a.state("ioc").await.unwrap(), None, "never written");
    assert!(a.disable("ioc", "gone", 1_000).await.unwrap());
    assert!(
        !b.disable("ioc", "failing", 2_000).await.unwrap(),
        "the second instance does not disable it again"
    );
    let seen = b.state("ioc").await.unwrap().unwrap();
    assert_eq!(
        seen.disabled,
        Some(Disabled {
            since_ms: 1_000,
            reason: "gone".into()
        }),
        "the first reason and time are kept"
    );
    assert_eq!(b.state("other").await.unwrap(), None, "per subscription");
    // Two instances racing: exactly one of them disables.
    let (x, y) = tokio::join!(
        a.disable("race", "gone", 5),
        b.disable("race", "failing", 6)
    );
    assert!(x.unwrap() ^ y.unwrap(), "one disabling of two racing calls");
    let names: Vec<_> = a
        .states()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.subscription)
        .collect();
    assert_eq!(names, ["ioc", "race"]);
}

async fn the_failure_clock_survives_a_restart_and_a_second_instance(open: &Opener) {
    let a = open("sub_failing").await;
    assert_eq!(a.failing("ioc", 10_000).await.unwrap(), 10_000);
    assert_eq!(a.failing("ioc", 20_000).await.unwrap(), 10_000, "the first");
    drop(a);
    let restarted = open("sub_failing").await;
    assert_eq!(
        restarted.failing("ioc", 70_000).await.unwrap(),
        10_000,
        "a restart does not reset the clock"
    );
    let other = open("sub_failing").await;
    assert_eq!(other.failing("ioc", 80_000).await.unwrap(), 10_000);
    other.succeeded("ioc", 90_000).await.unwrap();
    assert_eq!(
        restarted
            .state("ioc")
            .await
            .unwrap()
            .unwrap()
            .failing_since_ms,
        None
    );
    assert_eq!(
        restarted.failing("ioc", 100_000).await.unwrap(),
        100_000,
        "a new failure period after a success"
    );
    // A success of a subscription never written writes nothing.
    other.succeeded("never", 1).await.unwrap();
    assert_eq!(other.state("never").await.unwrap(), None);
}

async fn enabling_answers_what_it_cleared_and_resets_the_clock(open: &Opener) {
    let a = open("sub_enable").await;
    let b = open("sub_enable").await;
    assert_eq!(a.enable("ioc", 1).await.unwrap(), None, "never disabled");
    a.failing("ioc", 1_000).await.unwrap();
    assert!(a.disable("ioc", "failing", 5_000).await.unwrap());
    let was = b.enable("ioc", 6_000).await.unwrap();
    assert_eq!(
        was,
        Some(Disabled {
            since_ms: 5_000,
            reason: "failing".into()
        })
    );
    let now = a.state("ioc").await.unwrap().unwrap();
    assert_eq!(now.disabled, None, "enabled for every instance");
    assert_eq!(now.failing_since_ms, None, "the failure clock restarts");
    assert_eq!(now.updated_ms, 6_000);
    assert_eq!(b.enable("ioc", 7_000).await.unwrap(), None, "once");
    assert_eq!(a.failing("ioc", 8_000).await.unwrap(), 8_000);
    assert!(a.disable("ioc", "gone", 9_000).await.unwrap(), "again");
}
