//! `GET /feeds/{subscription}`: the pull feed of an agency that cannot be called.
//!
//! # The contract an agency sees
//! - `Authorization: Bearer <token>`, the subscription's own token (compared in constant time
//!   against every feed's, with no early exit). A missing or wrong token is `401 unauthorized`
//!   whatever the path, so an unauthenticated caller never learns which feeds exist; a token
//!   of another feed is `404 unknown_feed`, whether the named feed exists or not.
//! - `?after=<cursor>&limit=<n>&wait=<duration>`: the entries after the cursor (0 before the
//!   first), in order, at most `limit` (capped at the subscription's `max_limit`, which is also
//!   the default). With `wait` (capped at `max_wait`, e.g. `30s`) and nothing after the cursor
//!   yet, the answer waits until an entry arrives (here or on another instance) or the time is
//!   up, then answers the page it has (possibly empty). `200` with
//!   `{"subscription", "after", "next", "entries": [...]}`: ask next with `after=<next>`. Cursor
//!   semantics: no gap, no duplicate across pages, the same after a restart; a page fetched
//!   twice is the same bytes.
//! - `?since=<RFC 3339 time>`: `200 {"subscription", "since", "cursor"}`: page from that cursor
//!   to get every entry appended since then.
//! - Each `200` body is signed: header `Feed-Signature` holds a detached JWS (RFC 7797,
//!   `b64: false`, ES256, `kid`) over the exact body bytes ([`crate::agencies::feed`]).
//! - `410 cursor_gone` with `oldest_cursor`: retention removed entries after that cursor (or
//!   since that time); page from `oldest_cursor` (what was removed is not served again).
//!   `409 cursor_ahead` with `head`: the cursor is above the feed's last one (not a cursor of
//!   this feed). `400 bad_query`: a parameter is not what it must be. `503` (with
//!   `Retry-After`): the store did not answer or the page could not be recorded as evidence;
//!   nothing was served.
//!
//! # Invariants
//! - **Evidence before data.** A page holding entries is served only after its disclosure is
//!   recorded in the evidence log; if that fails the agency gets 503.
//! - **One chain link per page.** The page is recorded as one store batch of its own, which
//!   the store makes one link of the evidence chain ([`gw_store::evidence_merkle`]): a batch
//!   link whose RFC 6962 Merkle leaves are the page's entries, in page order. Each leaf names
//!   the event and its dossier, the entry's digest (its request digest), the operation
//!   `subscription=…; fields=…; legal_basis=…` like a push's, the page's digest, the
//!   signature's digest, and as result the entry's cursor and the page's range. One dossier's
//!   export then carries its leaves with their audit paths, not the other dossiers' entries
//!   (`gateway evidence verify --bundle`, `docs/examples/verify_evidence.py`).
//! - Asking for `after=N` tells the gateway the agency has everything up to `N` (the lag
//!   metric); that note is best effort and never blocks a page.
//! - A long-poll is bounded by `max_wait` and ends at shutdown; it holds no store connection
//!   while it waits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query as QueryParams, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use gw_store::feeds::{Page, PageAnswer, Since};
use gw_store::{Batch, Store};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::answer::{error, unavailable};
use crate::agencies::feed::{
    parse_query, render_page, render_since, Bounds, Feeds, PageSigner, Query, POLL_INTERVAL,
    SIGNATURE_HEADER,
};
use crate::config::Secret;
use crate::evidence::capture::Exchange;
use crate::evidence::{EvidenceLog, Mode, RecordContext};
use crate::model::time::now_ms;

/// One pull subscription as the endpoint serves it.
pub struct PullFeed {
    /// The subscription's name (the path segment, the metric label).
    pub name: String,
    pub token: Secret,
    pub signer: PageSigner,
    pub bounds: Bounds,
    /// The subscription's legal basis for personal fields, recorded with every page.
    pub legal_basis: Option<String>,
    /// SHA-256 of the certificate the pages are signed with, if the profile has one.
    pub certificate: Option<String>,
}

/// What the feed endpoint needs.
pub struct FeedsHttp {
    /// The pull subscriptions served, by name.
    pub pulls: BTreeMap<String, PullFeed>,
    /// The store, hub and metrics the feeds' writers share.
    pub feeds: Arc<Feeds>,
    /// The evidence log; `None`: nothing recorded.
    pub evidence: Option<Arc<EvidenceLog>>,
    /// Where evidence records are written (the delivery store).
    pub ledger: Arc<dyn Store>,
    /// Ends long-polls at shutdown.
    pub cancel: CancellationToken,
}

pub fn router(state: Arc<FeedsHttp>) -> Router {
    Router::new()
        .route("/feeds/{subscription}", get(feed))
        .with_state(state)
}

/// Seconds an agency is told to wait after a 503.
const RETRY_AFTER_SECS: u32 = 5;

async fn feed(
    State(s): State<Arc<FeedsHttp>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    query: Result<QueryParams<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let feed = match authenticate(&s, &name, &headers) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let pairs = match query {
        Ok(QueryParams(p)) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_query", e.body_text()),
    };
    match parse_query(&pairs, feed.bounds) {
        Err(e) => error(StatusCode::BAD_REQUEST, "bad_query", e.to_string()),
        Ok(Query::Since { at_ms, text }) => since(&s, feed, at_ms, &text).await,
        Ok(Query::Page { after, limit, wait }) => page(&s, feed, after, limit, wait).await,
    }
}

/// The feed `name` when the request carries its token (see the module's contract).
#[allow(clippy::result_large_err)]
fn authenticate<'a>(
    s: &'a FeedsHttp,
    name: &str,
    headers: &HeaderMap,
) -> Result<&'a PullFeed, Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let mut holds_this = false;
    let mut holds_any = false;
    // Every token is compared, whatever matched before: the time says nothing about which.
    for (n, f) in &s.pulls {
        let eq = gw_crypto::util::ct_eq(given.as_bytes(), f.token.expose().as_bytes());
        holds_any |= eq;
        holds_this |= eq & (n == name);
    }
    match (holds_this, holds_any) {
        (true, _) => Ok(&s.pulls[name]),
        (false, true) => Err(error(
            StatusCode::NOT_FOUND,
            "unknown_feed",
            "this token has no feed of that name",
        )),
        (false, false) => Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )),
    }
}

fn gone(oldest: i64, what: &str) -> Response {
    (
        StatusCode::GONE,
        Json(json!({"error": {
            "code": "cursor_gone",
            "message": format!("{what} were removed by retention; page from oldest_cursor (what was removed is not served again)"),
            "oldest_cursor": oldest,
        }})),
    )
        .into_response()
}

fn store_down(e: &gw_store::StoreError, name: &str) -> Response {
    warn!(subscription = %name, error = %e, "feed store unavailable");
    unavailable(
        "store_unavailable",
        "the feed cannot be read now; retry later",
        RETRY_AFTER_SECS,
    )
}

/// A signed 200 of `body`, or the 500 when it cannot be signed.
#[allow(clippy::result_large_err)]
fn sign(feed: &PullFeed, body: &[u8]) -> Result<String, Response> {
    feed.signer.sign(body).map_err(|e| {
        warn!(subscription = %feed.name, error = %e, "feed page not signed");
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "not_signed",
            "the page could not be signed",
        )
    })
}

/// `200` with `body` and its signature.
fn ok(body: Vec<u8>, jws: &str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        SIGNATURE_HEADER,
        HeaderValue::from_str(jws).expect("a JWS is base64url and dots"),
    );
    r
}

async fn since(s: &FeedsHttp, feed: &PullFeed, at_ms: i64, text: &str) -> Response {
    match s.feeds.store.cursor_since(&feed.name, at_ms).await {
        Err(e) => store_down(&e, &feed.name),
        Ok(Since::Gone { oldest }) => gone(oldest, "entries since that time"),
        Ok(Since::Cursor(c)) => {
            let body = render_since(&feed.name, text, c);
            match sign(feed, &body) {
                Ok(jws) => ok(body, &jws),
                Err(r) => r,
            }
        }
    }
}

async fn page(s: &FeedsHttp, feed: &PullFeed, after: i64, limit: u32, wait: Duration) -> Response {
    let deadline = Instant::now() + wait;
    // Watch before reading, so an append between the read and the wait still wakes us.
    let mut woken = s.feeds.hub.watch(&feed.name);
    woken.mark_unchanged();
    loop {
        let p = match s.feeds.store.page(&feed.name, after, limit).await {
            Err(e) => return store_down(&e, &feed.name),
            Ok(PageAnswer::Gone { oldest }) => return gone(oldest, "entries after this cursor"),
            Ok(PageAnswer::Ahead { head }) => {
                return (
                    StatusCode::CONFLICT,
                    Json(json!({"error": {
                        "code": "cursor_ahead",
                        "message": format!("cursor {after} is above this feed's last cursor {head}: it is not a cursor of this feed"),
                        "head": head,
                    }})),
                )
                    .into_response()
            }
            Ok(PageAnswer::Page(p)) => p,
        };
        let now = Instant::now();
        if !p.entries.is_empty() || now >= deadline || s.cancel.is_cancelled() {
            return serve(s, feed, p).await;
        }
        tokio::select! {
            _ = woken.changed() => {}
            _ = tokio::time::sleep((deadline - now).min(POLL_INTERVAL)) => {}
            _ = s.cancel.cancelled() => {}
        }
    }
}

async fn serve(s: &FeedsHttp, feed: &PullFeed, p: Page) -> Response {
    if p.after > 0 {
        if let Err(e) = s.feeds.store.note_fetched(&feed.name, p.after).await {
            warn!(subscription = %feed.name, error = %e, "fetched cursor not noted");
        }
    }
    let body = match render_page(&feed.name, &p) {
        Ok(b) => b,
        Err(e) => {
            warn!(subscription = %feed.name, error = %e, "feed page not rendered");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "bad_entry",
                "a stored entry of this page is damaged; operators were told",
            );
        }
    };
    let jws = match sign(feed, &body) {
        Ok(j) => j,
        Err(r) => return r,
    };
    if !p.entries.is_empty() {
        if let Err(e) = record(s, feed, &p, &body, &jws).await {
            warn!(subscription = %feed.name, error = %e, "feed page not recorded as evidence; not served");
            return unavailable(
                "evidence_unavailable",
                "the page could not be recorded; retry later",
                RETRY_AFTER_SECS,
            );
        }
        // Debug: an agency paging its feed would write a line per page (the pages served are
        // counted in `gateway_feed_pages_served_total`).
        debug!(subscription = %feed.name, after = p.after, next = p.next, entries = p.entries.len(), "feed page served");
    }
    s.feeds.metrics.page_served(&feed.name, p.entries.len());
    ok(body, &jws)
}

/// What a page disclosed of one entry, as the evidence record's operation, written as a push's
/// is (`connectors::agency`): `subscription=NAME; fields=a,b; legal_basis=TEXT` (`-`: none).
pub fn disclosure(subscription: &str, fields: &[String], legal_basis: Option<&str>) -> String {
    format!(
        "subscription={subscription}; fields={}; legal_basis={}",
        fields.join(","),
        legal_basis.unwrap_or("-")
    )
}

/// Where the entry was in the feed, as the evidence record's result: its cursor and the page's
/// range (`{"cursor": N, "page": [after, next]}`).
pub fn placement(p: &Page, seq: i64) -> String {
    json!({"cursor": seq, "page": [p.after, p.next]}).to_string()
}

/// The evidence of a served page: one leaf per entry, recorded as one batch of its own (one
/// chain link for the page; nothing else is merged into it).
async fn record(
    s: &FeedsHttp,
    feed: &PullFeed,
    p: &Page,
    body: &[u8],
    jws: &str,
) -> Result<(), gw_store::StoreError> {
    let Some(log) = &s.evidence else {
        return Ok(());
    };
    let mode = log.mode_of(&feed.name);
    if mode == Mode::Off {
        return Ok(());
    }
    let served = uuid::Uuid::now_v7().to_string();
    let at_ms = now_ms();
    let page_digest = gw_crypto::digest::sha256_hex(body);
    let sig_digest = gw_crypto::digest::sha256_hex(jws.as_bytes());
    let keep = mode == Mode::Full;
    let page_body = keep.then(|| Arc::new(body.to_vec()));
    let route = crate::connectors::feed::destination(&feed.name);
    let mut records = Vec::with_capacity(p.entries.len());
    for e in &p.entries {
        let x = Exchange {
            at_ms,
            operation: Some(disclosure(
                &feed.name,
                &e.entry.fields,
                feed.legal_basis.as_deref(),
            )),
            request_digest: e.entry.digest.clone(),
            response_digest: Some(page_digest.clone()),
            signature_digest: Some(sig_digest.clone()),
            cert_fingerprint: feed.certificate.clone(),
            status: Some(200),
            result_code: Some(placement(p, e.seq)),
            request_body: keep.then(|| Arc::new(e.entry.payload.clone())),
            response_body: page_body.clone(),
        };
        records.extend(log.records(
            &RecordContext {
                adapter: &feed.name,
                direction: "out",
                route: &route,
                exchange_prefix: &format!("feed/{}/{served}/{}", feed.name, e.seq),
                envelope_id: &e.entry.event_id,
                dossier: &e.entry.dossier,
                operation: &e.entry.kind,
            },
            vec![x],
        ));
    }
    s.ledger
        .record(Batch {
            evidence: records,
            ..Default::default()
        })
        .await
}
