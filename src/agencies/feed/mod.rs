//! Pull feeds, the part the writer, the endpoint and the jobs share: the exact bytes of a page
//! and their detached signature, the agency's query, the hub that wakes a long-poll when an
//! entry is appended, and the feeds' metrics. The entries themselves live in the store
//! ([`gw_store::feeds`]); the writer that appends them is `crate::connectors::feed`, the
//! endpoint that serves them `crate::edge::feeds`, retention `crate::jobs::feeds`.
//!
//! # Invariants
//! - **A page is a function of its entries.** [`render_page`] writes the subscription, the
//!   cursor asked for, the next cursor and the stored entries, in a fixed order; no clock, no
//!   head, no instance in it. The same page fetched twice, from any instance, after a restart,
//!   is the same bytes (a page that was not full only grows at its end).
//! - Each entry's `event` is the projected body exactly as stored, embedded unchanged: its
//!   `digest` is the SHA-256 of those bytes, so an agency can check each event on its own.
//! - **Each page is signed over its exact bytes**: a detached JWS with unencoded payload
//!   (RFC 7797, `b64: false`), ES256, `kid` = the signing profile's key id. The protected header
//!   is fixed per key (no `iat`: a page's time is its entries'), so the signing input of a page
//!   is the same each time it is served.
//! - **Bounded queries**: a limit is capped at the subscription's `max_limit`, a wait at its
//!   `max_wait`; a cursor is a whole number, a `since` an RFC 3339 time; anything else is
//!   refused, never guessed.
//! - Wakeups are hints ([`Hub`]): a long-poll also re-reads the store every
//!   [`POLL_INTERVAL`], so an entry appended on another instance is found as well.
//! - Metric labels are subscription names (configuration), never a dossier or a person.
//! - No personal value is logged here: payloads are bytes passed through, never printed.
//!
//! # Layout
//! `page.rs` (render, [`PageSigner`]), `query.rs` ([`parse_query`]), `hub.rs` ([`Hub`]),
//! `metrics.rs` ([`FeedMetrics`]). Imports: `config`, `telemetry`, gw-store, gw-crypto.

mod hub;
mod metrics;
mod page;
mod query;

use std::sync::Arc;
use std::time::Duration;

use gw_store::feeds::FeedStore;

use super::subscription::Subscription;

pub use hub::Hub;
pub use metrics::{Counted, FeedMetrics};
pub use page::{render_page, render_since, FeedError, PageSigner, JWS_TYP, SIGNATURE_HEADER};
pub use query::{parse_query, Bounds, Query, QueryError};

/// How often a long-poll re-reads the store besides the hub's wakeups (other instances).
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What a gateway's feed writers, feed endpoint and feed jobs share.
pub struct Feeds {
    /// The feeds, in the delivery store ([`gw_store::Store::feeds`]).
    pub store: Arc<dyn FeedStore>,
    pub hub: Hub,
    pub metrics: FeedMetrics,
    /// The pull subscriptions, in name order.
    pub subscriptions: Vec<Arc<Subscription>>,
}

impl Feeds {
    pub fn new(store: Arc<dyn FeedStore>, subscriptions: Vec<Arc<Subscription>>) -> Self {
        Feeds {
            metrics: FeedMetrics::new(subscriptions.iter().map(|s| s.name.clone())),
            store,
            hub: Hub::default(),
            subscriptions,
        }
    }
}
