//! [`EmbeddedBroker`]: opening the file, starting the writer, the [`Broker`] face.
//!
//! # Invariants
//!
//! - A second process opening the same file fails at once (exclusive lock).
//! - Close processes every request queued before it, commits, joins the writer and closes
//!   the file; dropping the broker does the same.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Instant;

use rusqlite::Connection;
use tokio::sync::{oneshot, Notify};

use super::consumer::EmbeddedConsumer;
use super::options::EmbeddedOptions;
use super::schema::{prepare, OpenError};
use super::settle::ConsumerSettle;
use super::shared::{storage, Op, Shared};
use super::writer::Writer;
use crate::*;

/// The embedded broker. Cheap to share behind an `Arc`; dropping it closes the file (as
/// [`Broker::close`] does, blocking briefly).
pub struct EmbeddedBroker {
    pub(super) shared: Arc<Shared>,
    /// The writer thread, joined on close so the file is closed when `close` returns.
    pub(super) writer: Mutex<Option<JoinHandle<()>>>,
}

impl EmbeddedBroker {
    /// Open (or create) the queue file at `path` and start its writer thread. Fails if another
    /// process holds the file. Leases left by a previous process are released at once.
    pub fn open(path: impl AsRef<Path>, opts: EmbeddedOptions) -> Result<Self> {
        let path = path.as_ref();
        let opts = EmbeddedOptions {
            max_batch: opts.max_batch.max(1),
            ..opts
        };
        let mut conn =
            Connection::open(path).map_err(|e| storage(format!("open {}: {e}", path.display())))?;
        let (limits, released) = prepare(&mut conn).map_err(|e| match e {
            OpenError::Sql(rusqlite::Error::SqliteFailure(f, _))
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                storage(format!(
                    "{} is in use by another process (the embedded queue belongs to one process)",
                    path.display()
                ))
            }
            OpenError::Sql(e) => storage(format!("prepare {}: {e}", path.display())),
            OpenError::Refused(e) => storage(format!("{}: {e}", path.display())),
        })?;
        if released > 0 {
            tracing::info!(
                path = %path.display(),
                released,
                "embedded queue: released the leases of the previous process; those messages will be redelivered"
            );
        }
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            tx,
            closed: AtomicBool::new(false),
            closed_notify: Notify::new(),
            notifiers: Mutex::new(HashMap::new()),
            opts: opts.clone(),
        });
        let writer = Writer {
            conn,
            rx,
            shared: shared.clone(),
            limits,
            next_owner: 1,
            lease_ttl_ms: opts.lease_ttl.as_millis().max(1) as i64,
            max_batch: opts.max_batch,
        };
        let handle = std::thread::Builder::new()
            .name("gw-embedded-queue".into())
            .spawn(move || writer.run())
            .map_err(|e| storage(format!("spawn the writer thread: {e}")))?;
        Ok(Self {
            shared,
            writer: Mutex::new(Some(handle)),
        })
    }

    pub(super) fn join_writer(&self) {
        let handle = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        let _ = self.shared.tx.send(Op::Shutdown { reply: None });
        self.join_writer();
    }
}

#[async_trait]
impl Broker for EmbeddedBroker {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn declare(&self, queues: &[QueueSpec]) -> Result<()> {
        let specs = queues.to_vec();
        self.shared.call(|reply| Op::Declare { specs, reply }).await
    }

    async fn publish(&self, queue: &str, msg: Message) -> Result<()> {
        let queue = queue.to_string();
        self.shared
            .call(|reply| Op::Publish {
                queue,
                msgs: vec![msg],
                reply,
            })
            .await
    }

    /// One transaction for the whole batch: all or nothing, in order.
    async fn publish_batch(&self, queue: &str, msgs: Vec<Message>) -> Result<()> {
        if msgs.is_empty() {
            return Ok(());
        }
        let queue = queue.to_string();
        self.shared
            .call(|reply| Op::Publish { queue, msgs, reply })
            .await
    }

    /// `prefetch = 0` is taken as 1.
    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Box<dyn Consumer>> {
        let q = queue.to_string();
        let owner = self
            .shared
            .call(|reply| Op::Subscribe { queue: q, reply })
            .await?;
        let settle = Arc::new(ConsumerSettle {
            shared: self.shared.clone(),
            owner,
            queue: queue.to_string(),
            outstanding: Mutex::new(HashSet::new()),
            room: Notify::new(),
            last_renew: Mutex::new(Instant::now()),
        });
        Ok(Box::new(EmbeddedConsumer {
            shared: self.shared.clone(),
            queue: queue.to_string(),
            owner,
            prefetch: usize::from(prefetch.max(1)),
            queue_notify: self.shared.notifier(queue),
            settle,
            buffer: VecDeque::new(),
            pending: None,
        }))
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats> {
        let queue = queue.to_string();
        self.shared.call(|reply| Op::Stats { queue, reply }).await
    }

    async fn ready(&self) -> bool {
        let ping = self.shared.call(|reply| Op::Ping { reply });
        matches!(
            tokio::time::timeout(Duration::from_secs(2), ping).await,
            Ok(Ok(()))
        )
    }

    async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        // Refuse new requests; everything already queued (acks included) is committed first.
        self.shared.closed.store(true, Ordering::Release);
        if self
            .shared
            .tx
            .send(Op::Shutdown { reply: Some(tx) })
            .is_ok()
        {
            let _ = rx.await;
        }
        self.join_writer();
    }
}
