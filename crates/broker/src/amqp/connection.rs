//! The connection and its confirm-mode publish channel, shared by the broker, its consumers
//! and their settle handles ([`Inner`]), and reconnection.
//!
//! # Invariants
//!
//! - One connection per broker; one dead connection is replaced once (reconnects are
//!   serialised), and the topology declared so far is declared again before the new link is
//!   handed out.
//! - [`Inner::link`] tries once and never loops: publishers return the error (the caller
//!   retries), consumers loop with [`Backoff`](crate::amqp::Backoff).
//! - The URL always carries a heartbeat, so a dead peer is noticed (lapin #389).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock, Weak};

use lapin::options::ConfirmSelectOptions;
use lapin::types::LongString;
use lapin::{Channel, Connection, ConnectionProperties};
use tracing::{info, warn};

use super::acks::AckBook;
use super::codec::closed_err;
use super::heads::HeadWatch;
use super::options::AmqpOptions;
use crate::*;

/// State shared by the broker, its consumers and their settle handles.
pub(super) struct Inner {
    /// The URL with the heartbeat query set.
    pub(super) url: String,
    pub(super) opts: AmqpOptions,
    /// The live connection and its publish channel; replaced on reconnect.
    pub(super) link: RwLock<Option<Arc<Link>>>,
    /// Serialises reconnects so one dead connection is replaced once.
    pub(super) reconnect: tokio::sync::Mutex<()>,
    /// Every queue declared so far, re-declared after a reconnect.
    pub(super) declared: Mutex<BTreeMap<String, QueueSpec>>,
    /// Ack books of live consumer channels, flushed by `close`.
    pub(super) books: Mutex<Vec<Weak<AckBook>>>,
    /// Per queue, when the last message a consumer of this process took from it became
    /// deliverable (unix ms): the age watermark of the queue's head (see [`HeadWatch`]).
    pub(super) heads: HeadWatch,
    pub(super) closed: AtomicBool,
}

/// One connection with its confirm-mode publish channel.
pub(super) struct Link {
    pub(super) conn: Arc<Connection>,
    pub(super) publish: Channel,
}

impl Link {
    pub(super) fn alive(&self) -> bool {
        self.conn.status().connected() && self.publish.status().connected()
    }
}

pub(super) fn with_heartbeat(url: &str, heartbeat: u16) -> String {
    if url.contains("heartbeat=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&heartbeat={heartbeat}")
    } else {
        format!("{url}?heartbeat={heartbeat}")
    }
}

impl Inner {
    /// Deliveries of `queue` held unsettled by this process's consumers.
    pub(super) fn unacked(&self, queue: &str) -> u64 {
        let books = self.books.lock().unwrap_or_else(|e| e.into_inner());
        books
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|b| b.queue == queue)
            .map(|b| b.unacked())
            .sum()
    }

    pub(super) fn current(&self) -> Option<Arc<Link>> {
        self.link.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The live link, reconnecting once if it is dead. Never loops: callers that must
    /// persist (consumers) loop with [`Backoff`](super::Backoff) around it.
    pub(super) async fn link(&self) -> Result<Arc<Link>> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(BrokerError::Closed);
        }
        if let Some(l) = self.current().filter(|l| l.alive()) {
            return Ok(l);
        }
        let _guard = self.reconnect.lock().await;
        if let Some(l) = self.current().filter(|l| l.alive()) {
            return Ok(l);
        }
        if self.closed.load(Ordering::SeqCst) {
            return Err(BrokerError::Closed);
        }
        let old = self.current();
        let conn = match old.as_ref().filter(|l| l.conn.status().connected()) {
            // Only the publish channel died (a channel-level error): keep the connection.
            Some(l) => l.conn.clone(),
            None => Arc::new(self.connect().await?),
        };
        let publish = conn.create_channel().await.map_err(closed_err)?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(closed_err)?;
        let link = Arc::new(Link { conn, publish });
        if old.is_some() {
            // Re-declare before the link is handed out: a broker that lost non-durable state
            // (or a new node) gets the topology back before the first publish.
            let specs: Vec<QueueSpec> = self
                .declared
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .cloned()
                .collect();
            match self.declare_on(&link, &specs).await {
                Ok(()) => info!(
                    queues = specs.len(),
                    "rabbitmq: reconnected and re-declared the topology"
                ),
                // Refused (e.g. an operator changed a queue's arguments): the topology that
                // exists is used; reconnecting again would not change the answer.
                Err(e @ (BrokerError::Topology(_) | BrokerError::QueueArgumentsDiffer { .. })) => {
                    warn!(error = %e, "rabbitmq: reconnected; re-declaring the topology was refused")
                }
                Err(e) => return Err(e),
            }
        }
        *self.link.write().unwrap_or_else(|e| e.into_inner()) = Some(link.clone());
        Ok(link)
    }

    pub(super) async fn connect(&self) -> Result<Connection> {
        let props = ConnectionProperties::default()
            .with_connection_name(LongString::from(self.opts.connection_name.as_str()));
        let connect = async {
            match &self.opts.tls {
                None => Connection::connect(&self.url, props).await,
                Some(tls) => {
                    lapin::DefaultConnectionBuilder::new()?
                        .with_uri_str(self.url.clone())
                        .with_properties(props)
                        .with_tls_config(tls.config.clone())
                        .connect()
                        .await
                }
            }
        };
        match tokio::time::timeout(self.opts.connect_timeout, connect).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => {
                let words = super::tls::explain(&e).or_else(|| {
                    let tls = self.opts.tls.as_ref()?;
                    super::tls::explain_closed(&e, tls.config.identity.is_some())
                });
                Err(BrokerError::ConnectFailed(
                    words.unwrap_or_else(|| e.to_string()),
                ))
            }
            Err(_) => Err(BrokerError::ConnectFailed(format!(
                "no connection within {:?}",
                self.opts.connect_timeout
            ))),
        }
    }
}
