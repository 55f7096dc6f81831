//! Serving the inbound and ops listeners with limits a slow or hostile client cannot outlast.
//!
//! # Invariants
//! - **Heads in time.** A client has `header_read_timeout` to send a whole request head, on a
//!   new connection and between requests of a kept-alive one (hyper's HTTP/1 head timer
//!   starts whenever the connection waits for a head); then the connection is closed. So an
//!   idle or trickling connection holds its slot for at most that long.
//! - **Bodies in time.** A request body must have arrived `body_read_timeout` after the head:
//!   the handler reading it gets an error and the client `408`.
//! - **Bounded connections.** At most `max_connections` are served at once; the next ones wait
//!   in the kernel's accept backlog until a slot frees (a flood delays, never exhausts
//!   memory or file descriptors).
//! - **HTTP/1.1 only.** Version sniffing for HTTP/2 (hyper-util's `auto`) waits for the first
//!   bytes with no timer, so a connection that never sends anything would be held forever;
//!   the one-stop system, providers and scrapers all speak HTTP/1.1.
//! - **Graceful stop.** On cancel the listener stops accepting, open connections finish their
//!   request in flight and close.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::config::{defaults, InboundSection};

/// The limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub max_connections: usize,
}

/// A head within 10 s, a body within 30 s, 1024 connections.
pub const DEFAULT_LIMITS: Limits = Limits {
    header_read_timeout: defaults::INBOUND_HEADER_READ_TIMEOUT,
    body_read_timeout: defaults::INBOUND_BODY_READ_TIMEOUT,
    max_connections: defaults::INBOUND_MAX_CONNECTIONS,
};

impl InboundSection {
    /// The listener limits `[inbound]` sets.
    pub fn limits(&self) -> Limits {
        Limits {
            header_read_timeout: self.header_read_timeout.0,
            body_read_timeout: self.body_read_timeout.0,
            max_connections: self.max_connections,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        DEFAULT_LIMITS
    }
}

/// Serve `router` on `listener` with `limits` until `cancel`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    cancel: CancellationToken,
) {
    let router = router.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        limits.body_read_timeout,
    ));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            _ = cancel.cancelled() => break,
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    // Connections finish what they are doing; a stuck one does not hold the stop forever.
    let _ = tokio::time::timeout(limits.body_read_timeout, graceful.shutdown()).await;
}
