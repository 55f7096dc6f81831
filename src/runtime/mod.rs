//! The route runtime: consume → skip if already settled → supersede if older → translate, sign,
//! deliver (the connector) → classify → record → ack, retry or dead-letter.
//!
//! # Invariants
//! - **Record, then ack.** A delivery is acked only after its outcome (or, for a retry, the
//!   attempt and the durable re-publish) is stored. A crash anywhere before the ack redelivers
//!   the message; the ledger then recognises it, so the only duplicates a destination can see
//!   are those delivered and not yet recorded when the process died.
//! - **One key at a time, in order.** Deliveries are dispatched to `concurrency` lanes by a
//!   stable hash of their key; a lane handles its messages one after another, so two messages
//!   of one key never run at once and keep their queue order.
//! - **No older after newer.** A versioned envelope whose version is not above the version
//!   already delivered to the destination is recorded as *superseded* and not sent. (A retry
//!   that comes back after a newer version was delivered is therefore superseded too.) The
//!   check that counts is made under a **claim** on (destination, key) taken in the store
//!   before the send ([`gw_store::claims`]): held through the send (a heartbeat extends it every
//!   third of the lease), released in the transaction that records the outcome. So even two
//!   instances handed one dossier's versions during a take-over never send an older one after a
//!   newer one. A delivery that finds another holder's lease live is *deferred* (not an
//!   attempt, not seen by the circuit).
//! - **In doubt.** A claim found expired after its holder stamped the send's start means an
//!   exchange was sent and never recorded. Before sending it again the connector's look-up
//!   decides ([`crate::connectors::Connector::resolve_in_doubt`]): already there → recorded as
//!   delivered without a send; not there → sent; look-up failed → retried later (never sent
//!   blindly); no look-up → sent again and shown as `unverified` in the dossier's trail.
//! - **Natural keys.** A claim for an effect whose natural key is delivered (`CODE@version`, a
//!   progress step's `CODE#step-…`) is refused: what was sent and recorded is never sent twice.
//! - **A poison message never blocks its queue.** Permanent failures go to the dead letters at
//!   once; retryable ones are re-published with a delay (the queue moves on) until the route's
//!   budget runs out; a panic while handling one message dead-letters that message; a message
//!   that crash-loops the process is moved aside by the broker's delivery limit and drained
//!   into the dead letters here.
//! - **Ledger ids.** The ledger is keyed by (route, envelope id). A replay of a dead letter gets
//!   the ledger id `<envelope id>/replay/<dead letter id>`, so it is a new delivery whose own
//!   duplicates are still recognised.
//! - **Stale deliveries are dropped.** A delivery buffered in a lane whose consumer channel died
//!   meanwhile ([`gw_broker::Delivery::is_live`]) is not handled: the broker redelivers it,
//!   possibly to another instance that became the queue's single active consumer.
//! - Ledger writes from all lanes are merged into short transactions by one recorder task;
//!   the versions read and the claim before each send are merged likewise (`batcher`), each
//!   lane still getting the answer its own request would have got.
//!
//! # Layout
//! [`engine`] runs the routes and publishes accepted envelopes; `lane` dispatches a queue's
//! deliveries by key and settles them with the broker (`context`: what a lane shares); `handle`
//! takes one delivery (a `turn`) through its steps; `records` builds its ledger records, `dead_letter` its dead letters, [`recorder`]
//! writes them; [`fanout`] is the agencies' fan-out route (one read of an event for every
//! subscription); [`replay`] sends a dead letter again; [`route`] names queues and headers; [`circuit`] and [`retry`] are the route's
//! breaker and retry policy.

mod batcher;
pub mod circuit;
mod context;
mod dead_letter;
pub mod engine;
pub mod fanout;
mod handle;
mod lane;
pub mod recorder;
mod records;
pub mod replay;
pub mod retry;
pub mod route;
mod turn;

pub use engine::Engine;
pub use recorder::{RecordError, Recorder, RecorderStats, Unrecorded};
pub use replay::{replay, ReplayError, ReplayResult};
pub use route::{
    message_for, route_queue, stable_hash, Route, HDR_DEFERRED, HDR_FIRST_MS, HDR_LAST_REASON,
    HDR_REPLAY_OF,
};
