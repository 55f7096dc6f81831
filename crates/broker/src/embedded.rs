//! The embedded durable queue: one SQLite file (WAL), owned by one process.
//!
//! # Invariants (how this module keeps the ones of the crate)
//!
//! 1. **A publish is `Ok` only after COMMIT with `synchronous = FULL`.** The WAL is fsynced
//!    before the caller hears back, so a publish that returned survives a crash or power cut.
//!    Publishing to a queue that was never declared is [`BrokerError::Unroutable`].
//! 2. **Leases, not deletes, hand out deliveries.** A consumer leases a message (owner,
//!    `lease_until`, `delivery_count + 1`) in a committed transaction before it sees it, so a
//!    crash loop is counted durably. An ack deletes the row. A lease ends when the consumer
//!    settles, when the [`Consumer`] is dropped (its leases are released at once), when it
//!    expires ([`EmbeddedOptions::lease_ttl`] without any sign of life from its consumer:
//!    a `next()` call or a settle renews the leases of its outstanding deliveries: a settle
//!    lost in a rolled-back batch lets its lease expire instead of renewing it for the life
//!    of the process), and when the file is opened
//!    again (the previous process is gone: every lease is released on [`EmbeddedBroker::open`]).
//! 3. **Retry is one transaction**: insert the copy (`attempt + 1`, new headers,
//!    `available_at = now + delay`) and delete the original. Reject is one transaction too:
//!    insert into `<queue>.dlq` with [`HDR_DEAD_REASON`], delete the original.
//! 4. **FIFO by `seq`** among the visible messages of a queue (`available_at <= now`, no
//!    live lease). `seq` is `AUTOINCREMENT`, so it is never reused and a stale delivery tag
//!    (a `seq`) can never settle another message.
//! 5. **Delivery limit.** When a visible message already has `delivery_count >=
//!    delivery_limit` of its queue, leasing moves it to `<queue>.dlq` (with the reason)
//!    instead of delivering it again. Dead-letter queues themselves have no limit (0).
//! 6. **Acks and requeues are queued** (the call returns once the request is on the writer's
//!    channel) and committed with the next batch; [`Broker::close`] processes every request
//!    queued before it, commits, and closes the file.
//!
//! # On-disk format (`meta.format = 1`)
//!
//! ```text
//! meta(key TEXT PRIMARY KEY, value TEXT)       format = "1", instance = UUIDv7 of the
//!                                              process that owns the file, opened_at (ms), pid
//! queues(name TEXT PRIMARY KEY,
//!        delivery_limit INTEGER)               0 = no limit (dead-letter queues)
//! messages(seq INTEGER PRIMARY KEY AUTOINCREMENT,   FIFO order and delivery tag
//!          queue TEXT, id TEXT, key TEXT,
//!          headers TEXT,                       JSON object of strings
//!          attempt INTEGER, body BLOB,
//!          available_at INTEGER,               unix ms; later than now = a delayed retry
//!          lease_owner INTEGER NULL,           consumer id within the owning process
//!          lease_until INTEGER NULL,           unix ms
//!          delivery_count INTEGER)             leases so far, this copy
//! ```
//!
//! Partial indexes keep the hot queries on small trees: `(queue, seq)` and
//! `(queue, available_at)` over unleased rows (lease candidates in FIFO order; next due
//! time and stats), `(lease_owner)` and `(queue, lease_until)` over leased rows (release,
//! renewal, expiry). Times are wall-clock milliseconds so a delay survives a restart.
//!
//! # Threads and connections
//!
//! One dedicated writer thread owns the only connection and runs every operation, reads
//! included: leasing is itself a write (owner, expiry and the delivery count must be durable
//! before a delivery is handed out), so a second reader connection would only serve `stats`
//! and would bring lock contention back. The thread takes requests from a channel and runs
//! all that are waiting (up to [`EmbeddedOptions::max_batch`]) in **one transaction, one
//! fsync** (group commit), then answers each caller through its oneshot after COMMIT. The
//! connection runs with `locking_mode = EXCLUSIVE`: the file is locked for the life of the
//! broker, so a second process opening it fails at once instead of stealing leases, and
//! WAL needs no shared-memory index.
//!
//! Consumers wait on a [`tokio::sync::Notify`] per queue, signalled after each commit that
//! adds or frees messages on that queue; when nothing is visible the writer also tells the
//! consumer when the next delayed message or lease comes due, and the consumer sleeps until
//! then (capped by `lease_ttl`). No polling loop.
//!
//! # Throughput
//!
//! `examples/embedded_bench.rs` measures it. Sequential publishes are bound by one fsync
//! each; concurrent publishers and `publish_batch` share fsyncs, and so do the acks of a
//! consumer, which are coalesced into the writer's next batch. On the development VM (2
//! shared cores, virtio disk, other builds running; 1 KiB bodies, release build):
//!
//! ```text
//! publish, sequential            ~320 msg/s   (one fsync each, ~3 ms)
//! publish, 64 concurrent        ~8 500 msg/s  (group commit)
//! publish_batch of 100         ~16 000 msg/s
//! consume + ack, prefetch 256  ~15 500 msg/s
//! ```
//!
//! # Known limits
//!
//! - An ack, retry or reject deletes the row by `seq` whoever holds its lease now: a holder
//!   whose lease expired and was taken over can still settle it (the work was done; the
//!   other holder's settle becomes a no-op: a retry or reject of a row that is gone neither
//!   schedules a copy nor dead-letters one). At-least-once either way.
//! - Freed pages are reused but the file does not shrink after a large backlog drains.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Instant;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use tokio::sync::{oneshot, Notify};

use crate::*;

/// The `meta.format` this module reads and writes.
const FORMAT: &str = "1";

/// Settings of the embedded queue. Every default is stated here.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// A consumer's leases expire after this long without a sign of life from it (a `next()`
    /// call or a settle). Must exceed the longest single processing step, or a slow but alive
    /// consumer sees its messages delivered again. Default 60 s.
    pub lease_ttl: Duration,
    /// Most requests committed in one transaction. Default 1024.
    pub max_batch: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(60),
            max_batch: 1024,
        }
    }
}

/// The embedded broker. Cheap to share behind an `Arc`; dropping it closes the file (as
/// [`Broker::close`] does, blocking briefly).
pub struct EmbeddedBroker {
    shared: Arc<Shared>,
    /// The writer thread, joined on close so the file is closed when `close` returns.
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// State the broker, its consumers and their settle handles share.
struct Shared {
    /// Requests to the writer thread.
    tx: mpsc::Sender<Op>,
    /// Set once close began: new requests fail with [`BrokerError::Closed`].
    closed: AtomicBool,
    /// Wakes consumers when the broker closes.
    closed_notify: Notify,
    /// One wake-up per queue, signalled after a commit adds or frees messages there.
    notifiers: Mutex<HashMap<String, Arc<Notify>>>,
    opts: EmbeddedOptions,
}

impl Shared {
    fn send(&self, op: Op) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(BrokerError::Closed);
        }
        self.tx.send(op).map_err(|_| BrokerError::Closed)
    }

    fn notifier(&self, queue: &str) -> Arc<Notify> {
        let mut map = self.notifiers.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(queue.to_string()).or_default().clone()
    }

    fn wake_all(&self) {
        self.closed_notify.notify_waiters();
        let map = self.notifiers.lock().unwrap_or_else(|e| e.into_inner());
        for n in map.values() {
            n.notify_waiters();
        }
    }

    /// Send a request and wait for its answer (after COMMIT).
    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Op) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        rx.await.map_err(|_| BrokerError::Closed)?
    }
}

/// One leased message, as the writer hands it to a consumer.
struct Leased {
    seq: u64,
    message: Message,
    delivery_count: u32,
}

/// What a lease request returns.
struct LeaseBatch {
    rows: Vec<Leased>,
    /// When nothing was visible: the unix ms at which the next delayed message or lease of
    /// the queue comes due.
    next_due_ms: Option<i64>,
}

/// A request to the writer thread.
enum Op {
    Declare {
        specs: Vec<QueueSpec>,
        reply: oneshot::Sender<Result<()>>,
    },
    Publish {
        queue: String,
        msgs: Vec<Message>,
        reply: oneshot::Sender<Result<()>>,
    },
    Subscribe {
        queue: String,
        reply: oneshot::Sender<Result<u64>>,
    },
    Lease {
        queue: String,
        owner: u64,
        max: usize,
        reply: oneshot::Sender<Result<LeaseBatch>>,
    },
    Ack {
        seq: u64,
    },
    Retry {
        seq: u64,
        queue: String,
        msg: Message,
        delay: Duration,
        reply: oneshot::Sender<Result<()>>,
    },
    Reject {
        seq: u64,
        queue: String,
        msg: Message,
        reason: String,
        reply: oneshot::Sender<Result<()>>,
    },
    Requeue {
        seq: u64,
        owner: u64,
        queue: String,
    },
    /// Extend the leases of `seqs` still held by `owner` (only those its consumer still
    /// knows: see `ConsumerSettle::renew_if_due`).
    Renew {
        owner: u64,
        seqs: Vec<u64>,
    },
    Release {
        owner: u64,
        queue: String,
    },
    Stats {
        queue: String,
        reply: oneshot::Sender<Result<QueueStats>>,
    },
    Ping {
        reply: oneshot::Sender<Result<()>>,
    },
    Shutdown {
        reply: Option<oneshot::Sender<()>>,
    },
}

fn storage(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Storage(e.to_string())
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

    fn join_writer(&self) {
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

/// Why opening failed: SQLite's error, or a file this build must not use.
enum OpenError {
    Sql(rusqlite::Error),
    Refused(String),
}

impl From<rusqlite::Error> for OpenError {
    fn from(e: rusqlite::Error) -> Self {
        OpenError::Sql(e)
    }
}

/// Pragmas, schema, format check, instance record, release of stale leases. Returns the
/// declared queues with their delivery limits and the number of leases released.
fn prepare(conn: &mut Connection) -> std::result::Result<(HashMap<String, u32>, usize), OpenError> {
    // EXCLUSIVE before the first WAL access: no shared-memory index, one process only.
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    conn.busy_timeout(Duration::from_millis(500))?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(OpenError::Refused(format!(
            "journal_mode WAL refused (got {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS queues (
             name TEXT PRIMARY KEY,
             delivery_limit INTEGER NOT NULL
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS messages (
             seq INTEGER PRIMARY KEY AUTOINCREMENT,
             queue TEXT NOT NULL,
             id TEXT NOT NULL,
             key TEXT NOT NULL,
             headers TEXT NOT NULL,
             attempt INTEGER NOT NULL,
             body BLOB NOT NULL,
             available_at INTEGER NOT NULL,
             lease_owner INTEGER,
             lease_until INTEGER,
             delivery_count INTEGER NOT NULL DEFAULT 0
         );
         CREATE INDEX IF NOT EXISTS messages_free ON messages(queue, seq) WHERE lease_owner IS NULL;
         CREATE INDEX IF NOT EXISTS messages_due ON messages(queue, available_at) WHERE lease_owner IS NULL;
         CREATE INDEX IF NOT EXISTS messages_leased ON messages(lease_owner) WHERE lease_owner IS NOT NULL;
         CREATE INDEX IF NOT EXISTS messages_expiry ON messages(queue, lease_until) WHERE lease_owner IS NOT NULL;",
    )?;
    let format: Option<String> = tx
        .query_row("SELECT value FROM meta WHERE key = 'format'", [], |r| {
            r.get(0)
        })
        .optional()?;
    match format.as_deref() {
        None => {
            tx.execute(
                "INSERT INTO meta(key, value) VALUES ('format', ?1)",
                [FORMAT],
            )?;
        }
        Some(FORMAT) => {}
        Some(other) => {
            return Err(OpenError::Refused(format!(
                "unknown embedded queue format {other:?} (this build reads format {FORMAT})"
            )));
        }
    }
    let instance = uuid::Uuid::now_v7().to_string();
    let mut set = tx.prepare("INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)")?;
    set.execute(params!["instance", instance])?;
    set.execute(params!["opened_at", now_ms().to_string()])?;
    set.execute(params!["pid", std::process::id().to_string()])?;
    drop(set);
    let released = tx.execute(
        "UPDATE messages SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL",
        [],
    )?;
    let mut limits = HashMap::new();
    {
        let mut stmt = tx.prepare("SELECT name, delivery_limit FROM queues")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))?;
        for row in rows {
            let (name, limit) = row?;
            limits.insert(name, limit);
        }
    }
    tx.commit()?;
    Ok((limits, released))
}

// ---------------------------------------------------------------------------------------------
// The writer thread
// ---------------------------------------------------------------------------------------------

struct Writer {
    conn: Connection,
    rx: mpsc::Receiver<Op>,
    shared: Arc<Shared>,
    /// Declared queues and their delivery limits (0 = none), mirrored from `queues`.
    limits: HashMap<String, u32>,
    /// Consumer ids of this process; leases left by earlier processes were released at open.
    next_owner: u64,
    lease_ttl_ms: i64,
    max_batch: usize,
}

/// An answer to send once the batch's fate (commit or rollback) is known.
enum Reply {
    Unit(oneshot::Sender<Result<()>>, Result<()>),
    Owner(oneshot::Sender<Result<u64>>, Result<u64>),
    Lease(oneshot::Sender<Result<LeaseBatch>>, Result<LeaseBatch>),
    Stats(oneshot::Sender<Result<QueueStats>>, Result<QueueStats>),
}

impl Reply {
    fn send(self, failed: Option<&str>) {
        fn pick<T>(r: Result<T>, failed: Option<&str>) -> Result<T> {
            match (r, failed) {
                (Ok(_), Some(e)) => Err(BrokerError::Storage(e.to_string())),
                (r, _) => r,
            }
        }
        // A caller that gave up (dropped its receiver) is fine: the work is done.
        match self {
            Reply::Unit(tx, r) => drop(tx.send(pick(r, failed))),
            Reply::Owner(tx, r) => drop(tx.send(pick(r, failed))),
            Reply::Lease(tx, r) => drop(tx.send(pick(r, failed))),
            Reply::Stats(tx, r) => drop(tx.send(pick(r, failed))),
        }
    }
}

impl Writer {
    fn run(mut self) {
        let mut stop_waiters = Vec::new();
        let mut stopping = false;
        while !stopping {
            let Ok(first) = self.rx.recv() else { break };
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.run_batch(batch, &mut stopping, &mut stop_waiters);
        }
        // Requests sent after the shutdown are dropped; their callers see `Closed`.
        self.shared.closed.store(true, Ordering::Release);
        let Writer {
            conn, rx, shared, ..
        } = self;
        drop(rx);
        if let Err((_, e)) = conn.close() {
            tracing::warn!(error = %e, "embedded queue: closing the file failed");
        }
        shared.wake_all();
        for w in stop_waiters {
            let _ = w.send(());
        }
    }

    fn run_batch(
        &mut self,
        batch: Vec<Op>,
        stopping: &mut bool,
        stop_waiters: &mut Vec<oneshot::Sender<()>>,
    ) {
        let now = now_ms() as i64;
        let mut replies = Vec::with_capacity(batch.len());
        let mut touched: HashSet<String> = HashSet::new();
        let outcome = (|| -> rusqlite::Result<()> {
            let tx = self.conn.transaction()?;
            let mut ctx = Ctx {
                tx: &tx,
                limits: &mut self.limits,
                next_owner: &mut self.next_owner,
                lease_ttl_ms: self.lease_ttl_ms,
                now,
                touched: &mut touched,
            };
            for op in batch {
                if let Op::Shutdown { reply } = op {
                    *stopping = true;
                    stop_waiters.extend(reply);
                    // Whatever follows in this batch was sent after the shutdown: dropped.
                    break;
                }
                ctx.apply(op, &mut replies)?;
            }
            tx.commit()
        })();
        let failed = match outcome {
            Ok(()) => None,
            Err(e) => {
                tracing::error!(error = %e, "embedded queue: a batch failed and was rolled back");
                // The in-memory mirror may hold declarations that were rolled back.
                if let Ok(limits) = load_limits(&self.conn) {
                    self.limits = limits;
                }
                Some(format!("the embedded queue transaction failed: {e}"))
            }
        };
        for r in replies {
            r.send(failed.as_deref());
        }
        for q in touched {
            self.shared.notifier(&q).notify_waiters();
        }
    }
}

fn load_limits(conn: &Connection) -> rusqlite::Result<HashMap<String, u32>> {
    let mut stmt = conn.prepare("SELECT name, delivery_limit FROM queues")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))?;
    rows.collect()
}

/// What one operation of a batch works with.
struct Ctx<'a> {
    tx: &'a Transaction<'a>,
    limits: &'a mut HashMap<String, u32>,
    next_owner: &'a mut u64,
    lease_ttl_ms: i64,
    /// One clock reading per batch: every operation in it happens "at" this time.
    now: i64,
    /// Queues with messages added or freed: their consumers are woken after COMMIT.
    touched: &'a mut HashSet<String>,
}

fn json_err(e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

impl Ctx<'_> {
    /// Run one operation. Refusals (an undeclared queue) become the caller's answer; an SQL
    /// error aborts the whole batch.
    fn apply(&mut self, op: Op, replies: &mut Vec<Reply>) -> rusqlite::Result<()> {
        match op {
            Op::Declare { specs, reply } => {
                let r = self.declare(&specs)?;
                replies.push(Reply::Unit(reply, r));
            }
            Op::Publish { queue, msgs, reply } => {
                let r = if self.limits.contains_key(&queue) {
                    for m in &msgs {
                        self.insert(&queue, m, self.now)?;
                    }
                    self.touched.insert(queue);
                    Ok(())
                } else {
                    Err(BrokerError::Unroutable { queue })
                };
                replies.push(Reply::Unit(reply, r));
            }
            Op::Subscribe { queue, reply } => {
                let r = if self.limits.contains_key(&queue) {
                    let owner = *self.next_owner;
                    *self.next_owner += 1;
                    Ok(owner)
                } else {
                    Err(BrokerError::Topology(format!(
                        "queue {queue} is not declared; declare it before consuming"
                    )))
                };
                replies.push(Reply::Owner(reply, r));
            }
            Op::Lease {
                queue,
                owner,
                max,
                reply,
            } => {
                let r = self.lease(&queue, owner, max)?;
                replies.push(Reply::Lease(reply, r));
            }
            Op::Ack { seq } => {
                self.tx
                    .prepare_cached("DELETE FROM messages WHERE seq = ?1")?
                    .execute([seq as i64])?;
            }
            Op::Retry {
                seq,
                queue,
                msg,
                delay,
                reply,
            } => {
                let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
                // Only a copy that is still there is replaced: when another holder (one that
                // took an expired lease over) settled it first, this retry is a no-op, or an
                // acked message would come back.
                let deleted = self
                    .tx
                    .prepare_cached("DELETE FROM messages WHERE seq = ?1")?
                    .execute([seq as i64])?;
                if deleted > 0 {
                    self.insert(&queue, &msg, self.now.saturating_add(delay_ms))?;
                }
                // Waiting consumers recompute when to wake.
                self.touched.insert(queue);
                replies.push(Reply::Unit(reply, Ok(())));
            }
            Op::Reject {
                seq,
                queue,
                msg,
                reason,
                reply,
            } => {
                self.dead_letter(seq, &queue, msg, &reason)?;
                replies.push(Reply::Unit(reply, Ok(())));
            }
            Op::Requeue { seq, owner, queue } => {
                self.tx
                    .prepare_cached(
                        "UPDATE messages SET lease_owner = NULL, lease_until = NULL
                         WHERE seq = ?1 AND lease_owner = ?2",
                    )?
                    .execute(params![seq as i64, owner as i64])?;
                self.touched.insert(queue);
            }
            Op::Renew { owner, seqs } => {
                let mut stmt = self.tx.prepare_cached(
                    "UPDATE messages SET lease_until = ?1 WHERE seq = ?2 AND lease_owner = ?3",
                )?;
                for seq in seqs {
                    stmt.execute(params![
                        self.now + self.lease_ttl_ms,
                        seq as i64,
                        owner as i64
                    ])?;
                }
            }
            Op::Release { owner, queue } => {
                let n = self
                    .tx
                    .prepare_cached(
                        "UPDATE messages SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?1",
                    )?
                    .execute([owner as i64])?;
                if n > 0 {
                    self.touched.insert(queue);
                }
            }
            Op::Stats { queue, reply } => {
                let r = self.stats(&queue)?;
                replies.push(Reply::Stats(reply, r));
            }
            Op::Ping { reply } => replies.push(Reply::Unit(reply, Ok(()))),
            Op::Shutdown { .. } => unreachable!("handled by run_batch"),
        }
        Ok(())
    }

    fn declare(&mut self, specs: &[QueueSpec]) -> rusqlite::Result<Result<()>> {
        for spec in specs {
            if spec.name.is_empty() {
                return Ok(Err(BrokerError::Topology(
                    "a queue name cannot be empty".into(),
                )));
            }
        }
        for spec in specs {
            self.tx
                .prepare_cached(
                    "INSERT INTO queues(name, delivery_limit) VALUES (?1, ?2)
                     ON CONFLICT(name) DO UPDATE SET delivery_limit = excluded.delivery_limit",
                )?
                .execute(params![spec.name, spec.delivery_limit])?;
            self.limits.insert(spec.name.clone(), spec.delivery_limit);
            self.ensure_dlq(&dead_letter_queue(&spec.name))?;
        }
        Ok(Ok(()))
    }

    /// Dead-letter queues exist without a limit unless declared explicitly.
    fn ensure_dlq(&mut self, dlq: &str) -> rusqlite::Result<()> {
        if !self.limits.contains_key(dlq) {
            self.tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO queues(name, delivery_limit) VALUES (?1, 0)",
                )?
                .execute([dlq])?;
            self.limits.insert(dlq.to_string(), 0);
        }
        Ok(())
    }

    fn insert(&mut self, queue: &str, m: &Message, available_at: i64) -> rusqlite::Result<()> {
        let headers = serde_json::to_string(&m.headers).map_err(json_err)?;
        self.tx
            .prepare_cached(
                "INSERT INTO messages(queue, id, key, headers, attempt, body, available_at, delivery_count)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)",
            )?
            .execute(params![queue, m.id, m.key, headers, m.attempt, &m.body[..], available_at])?;
        Ok(())
    }

    /// Move the message `seq` of `queue` to `<queue>.dlq`, keeping the original with a reason.
    fn dead_letter(
        &mut self,
        seq: u64,
        queue: &str,
        mut msg: Message,
        reason: &str,
    ) -> rusqlite::Result<()> {
        // Settled first by another holder (see Op::Retry): nothing to move.
        let deleted = self
            .tx
            .prepare_cached("DELETE FROM messages WHERE seq = ?1")?
            .execute([seq as i64])?;
        if deleted == 0 {
            return Ok(());
        }
        let dlq = dead_letter_queue(queue);
        self.ensure_dlq(&dlq)?;
        msg.headers
            .insert(HDR_DEAD_REASON.to_string(), reason.to_string());
        self.insert(&dlq, &msg, self.now)?;
        self.touched.insert(dlq);
        Ok(())
    }

    fn lease(
        &mut self,
        queue: &str,
        owner: u64,
        max: usize,
    ) -> rusqlite::Result<Result<LeaseBatch>> {
        let Some(&limit) = self.limits.get(queue) else {
            return Ok(Err(BrokerError::Topology(format!(
                "queue {queue} is not declared"
            ))));
        };
        // Leases whose consumer showed no sign of life for lease_ttl: visible again.
        self.tx
            .prepare_cached(
                "UPDATE messages SET lease_owner = NULL, lease_until = NULL
                 WHERE queue = ?1 AND lease_owner IS NOT NULL AND lease_until <= ?2",
            )?
            .execute(params![queue, self.now])?;
        let mut rows = Vec::new();
        loop {
            let candidates = {
                let mut stmt = self.tx.prepare_cached(
                    "SELECT seq, id, key, headers, attempt, body, delivery_count
                     FROM messages INDEXED BY messages_free
                     WHERE queue = ?1 AND lease_owner IS NULL AND available_at <= ?2
                     ORDER BY seq LIMIT ?3",
                )?;
                let mapped = stmt.query_map(params![queue, self.now, max as i64], |r| {
                    let headers: String = r.get(3)?;
                    let body: Vec<u8> = r.get(5)?;
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        Message {
                            id: r.get(1)?,
                            key: r.get(2)?,
                            headers: serde_json::from_str(&headers).map_err(|e| {
                                rusqlite::Error::FromSqlConversionFailure(
                                    3,
                                    rusqlite::types::Type::Text,
                                    Box::new(e),
                                )
                            })?,
                            attempt: r.get(4)?,
                            body: Bytes::from(body),
                        },
                        r.get::<_, u32>(6)?,
                    ))
                })?;
                mapped.collect::<rusqlite::Result<Vec<_>>>()?
            };
            let found = candidates.len();
            let mut dead = 0;
            for (seq, message, count) in candidates {
                if limit > 0 && count >= limit {
                    let reason = format!(
                        "delivery limit reached: delivered {count} times without an ack (limit {limit})"
                    );
                    self.dead_letter(seq, queue, message, &reason)?;
                    dead += 1;
                    continue;
                }
                self.tx
                    .prepare_cached(
                        "UPDATE messages SET lease_owner = ?1, lease_until = ?2,
                             delivery_count = delivery_count + 1
                         WHERE seq = ?3",
                    )?
                    .execute(params![
                        owner as i64,
                        self.now + self.lease_ttl_ms,
                        seq as i64
                    ])?;
                rows.push(Leased {
                    seq,
                    message,
                    delivery_count: count + 1,
                });
            }
            // Refill only what dead-lettering took, and only while there may be more.
            if dead == 0 || found < max || !rows.is_empty() {
                break;
            }
        }
        let next_due_ms = if rows.is_empty() {
            self.next_due(queue)?
        } else {
            None
        };
        Ok(Ok(LeaseBatch { rows, next_due_ms }))
    }

    fn next_due(&self, queue: &str) -> rusqlite::Result<Option<i64>> {
        let delayed: Option<i64> = self
            .tx
            .prepare_cached(
                "SELECT MIN(available_at) FROM messages INDEXED BY messages_due
                 WHERE queue = ?1 AND lease_owner IS NULL AND available_at > ?2",
            )?
            .query_row(params![queue, self.now], |r| r.get(0))?;
        let lease: Option<i64> = self
            .tx
            .prepare_cached(
                "SELECT MIN(lease_until) FROM messages INDEXED BY messages_expiry
                 WHERE queue = ?1 AND lease_owner IS NOT NULL",
            )?
            .query_row([queue], |r| r.get(0))?;
        Ok(match (delayed, lease) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    fn stats(&self, queue: &str) -> rusqlite::Result<Result<QueueStats>> {
        if !self.limits.contains_key(queue) {
            return Ok(Err(BrokerError::Topology(format!(
                "queue {queue} is not declared"
            ))));
        }
        let count = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> rusqlite::Result<u64> {
            self.tx
                .prepare_cached(sql)?
                .query_row(p, |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
        };
        let ready = count(
            "SELECT COUNT(*) FROM messages INDEXED BY messages_due
             WHERE queue = ?1 AND lease_owner IS NULL AND available_at <= ?2",
            &[&queue, &self.now],
        )?;
        let delayed = count(
            "SELECT COUNT(*) FROM messages INDEXED BY messages_due
             WHERE queue = ?1 AND lease_owner IS NULL AND available_at > ?2",
            &[&queue, &self.now],
        )?;
        let unacked = count(
            "SELECT COUNT(*) FROM messages INDEXED BY messages_expiry
             WHERE queue = ?1 AND lease_owner IS NOT NULL",
            &[&queue],
        )?;
        let oldest: Option<i64> = self
            .tx
            .prepare_cached(
                "SELECT MIN(available_at) FROM messages INDEXED BY messages_due
                 WHERE queue = ?1 AND lease_owner IS NULL AND available_at <= ?2",
            )?
            .query_row(rusqlite::params![queue, self.now], |r| r.get(0))?;
        let age_ms = oldest.map_or(0, |t| self.now.saturating_sub(t).max(0) as u64);
        Ok(Ok(QueueStats {
            ready,
            unacked,
            delayed: Some(delayed),
            oldest_ready_age: Some(Duration::from_millis(age_ms)),
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// Broker, consumer, settle
// ---------------------------------------------------------------------------------------------

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

/// Settles the deliveries of one consumer; also its prefetch accounting and lease renewal.
struct ConsumerSettle {
    shared: Arc<Shared>,
    owner: u64,
    queue: String,
    /// Tags leased to this consumer and not settled yet (buffered or handed out).
    outstanding: Mutex<HashSet<u64>>,
    /// Signalled on each settle: the consumer may have room again.
    room: Notify,
    /// When this consumer's leases were last renewed.
    last_renew: Mutex<Instant>,
}

impl ConsumerSettle {
    fn outstanding_len(&self) -> usize {
        self.outstanding
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    fn settled(&self, tag: u64) {
        self.outstanding
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&tag);
        self.room.notify_one();
        self.renew_if_due();
    }

    /// A sign of life: renew this consumer's leases, at most a few times per lease term.
    ///
    /// Only the deliveries still outstanding are renewed. A settled one whose ack or requeue
    /// was rolled back (a failed batch, e.g. a full disk) is still leased to this owner in the
    /// file but no longer known here: renewing every row of the owner would keep it leased
    /// for the life of the process, never delivered again. Left alone, its lease expires
    /// after `lease_ttl` and it is delivered again.
    fn renew_if_due(&self) {
        let mut last = self.last_renew.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= self.shared.opts.lease_ttl / 4 {
            *last = Instant::now();
            let seqs: Vec<u64> = self
                .outstanding
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .copied()
                .collect();
            if !seqs.is_empty() {
                let _ = self.shared.send(Op::Renew {
                    owner: self.owner,
                    seqs,
                });
            }
        }
    }

    /// After a failed retry/reject the delivery cannot be settled again: give it back.
    fn give_back(&self, tag: u64) {
        let _ = self.shared.send(Op::Requeue {
            seq: tag,
            owner: self.owner,
            queue: self.queue.clone(),
        });
    }
}

#[async_trait]
impl Settle for ConsumerSettle {
    async fn ack(&self, tag: u64) -> Result<()> {
        let r = self.shared.send(Op::Ack { seq: tag });
        self.settled(tag);
        r
    }

    async fn retry(&self, tag: u64, msg: Message, delay: Duration) -> Result<()> {
        let queue = self.queue.clone();
        let r = self
            .shared
            .call(|reply| Op::Retry {
                seq: tag,
                queue,
                msg,
                delay,
                reply,
            })
            .await;
        if r.is_err() {
            self.give_back(tag);
        }
        self.settled(tag);
        r
    }

    async fn reject(&self, tag: u64, msg: Message, reason: &str) -> Result<()> {
        let queue = self.queue.clone();
        let reason = reason.to_string();
        let r = self
            .shared
            .call(|reply| Op::Reject {
                seq: tag,
                queue,
                msg,
                reason,
                reply,
            })
            .await;
        if r.is_err() {
            self.give_back(tag);
        }
        self.settled(tag);
        r
    }

    async fn requeue(&self, tag: u64) -> Result<()> {
        let r = self.shared.send(Op::Requeue {
            seq: tag,
            owner: self.owner,
            queue: self.queue.clone(),
        });
        self.settled(tag);
        r
    }
}

struct EmbeddedConsumer {
    shared: Arc<Shared>,
    queue: String,
    owner: u64,
    prefetch: usize,
    queue_notify: Arc<Notify>,
    settle: Arc<ConsumerSettle>,
    /// Leased and not yet handed out, in FIFO order.
    buffer: VecDeque<Leased>,
    /// A lease request whose answer is still awaited: kept across a cancelled `next()` so
    /// leased rows are never lost in a dropped future.
    pending: Option<oneshot::Receiver<Result<LeaseBatch>>>,
}

impl Drop for EmbeddedConsumer {
    fn drop(&mut self) {
        // The consumer is gone: whatever it leased and did not settle goes back at once.
        let _ = self.shared.send(Op::Release {
            owner: self.owner,
            queue: self.queue.clone(),
        });
    }
}

#[async_trait]
impl Consumer for EmbeddedConsumer {
    async fn next(&mut self) -> Option<Result<Delivery>> {
        loop {
            if let Some(row) = self.buffer.pop_front() {
                let settle: Arc<dyn Settle> = self.settle.clone();
                return Some(Ok(Delivery::new(
                    row.message,
                    row.delivery_count > 1,
                    row.delivery_count,
                    self.queue.clone(),
                    row.seq,
                    settle,
                )));
            }
            let shared = self.shared.clone();
            let closed = shared.closed_notify.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if shared.closed.load(Ordering::Acquire) {
                return None;
            }
            self.settle.renew_if_due();

            let queue_notify = self.queue_notify.clone();
            let woken = queue_notify.notified();
            tokio::pin!(woken);
            // Whether our wake-up registration predates the lease query.
            let registered_before_query = self.pending.is_none();
            if self.pending.is_none() {
                let room = self.prefetch.saturating_sub(self.settle.outstanding_len());
                if room == 0 {
                    tokio::select! {
                        _ = self.settle.room.notified() => {}
                        _ = &mut closed => {}
                    }
                    continue;
                }
                woken.as_mut().enable();
                let (tx, rx) = oneshot::channel();
                let op = Op::Lease {
                    queue: self.queue.clone(),
                    owner: self.owner,
                    max: room,
                    reply: tx,
                };
                if shared.send(op).is_err() {
                    return None;
                }
                self.pending = Some(rx);
            }
            let answer = match self.pending.as_mut() {
                Some(rx) => rx.await,
                None => continue,
            };
            self.pending = None;
            let batch = match answer {
                Err(_) => return None, // the writer stopped: closed
                Ok(Err(e)) => return Some(Err(e)),
                Ok(Ok(b)) => b,
            };
            if !batch.rows.is_empty() {
                let mut outstanding = self
                    .settle
                    .outstanding
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                for row in batch.rows {
                    // A lease of ours that expired and came back to us is still in hand.
                    if outstanding.insert(row.seq) {
                        self.buffer.push_back(row);
                    }
                }
                continue;
            }
            if !registered_before_query {
                // A publish may have been signalled before we listened: ask again.
                continue;
            }
            let cap = shared.opts.lease_ttl;
            let wait = match batch.next_due_ms {
                Some(due) => {
                    Duration::from_millis(due.saturating_sub(now_ms() as i64).max(1) as u64)
                        .min(cap)
                }
                None => cap,
            };
            tokio::select! {
                _ = &mut woken => {}
                _ = &mut closed => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod lease_tests {
    use super::*;

    /// A settle lost in a rolled-back batch (a full disk) leaves the row leased to a consumer
    /// that no longer knows it. Its renewals must not keep that lease alive: the message comes
    /// back after `lease_ttl` while the consumer lives on. (Found by `tests/faults.rs`.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_forgotten_lease_is_not_renewed_and_the_message_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let ttl = Duration::from_millis(400);
        let b = EmbeddedBroker::open(
            dir.path().join("q.db"),
            EmbeddedOptions {
                lease_ttl: ttl,
                ..EmbeddedOptions::default()
            },
        )
        .unwrap();
        let spec = QueueSpec {
            name: "q".into(),
            delivery_limit: 10,
        };
        b.declare(std::slice::from_ref(&spec)).await.unwrap();
        let msg = Message {
            id: "m1".into(),
            key: "k".into(),
            headers: Default::default(),
            attempt: 0,
            body: bytes::Bytes::from_static(b"x"),
        };
        b.publish("q", msg).await.unwrap();

        // A consumer leases the message, then forgets it as a rolled-back requeue would.
        let shared = b.shared.clone();
        let owner = shared
            .call(|reply| Op::Subscribe {
                queue: "q".into(),
                reply,
            })
            .await
            .unwrap();
        let leased = shared
            .call(|reply| Op::Lease {
                queue: "q".into(),
                owner,
                max: 1,
                reply,
            })
            .await
            .unwrap();
        assert_eq!(leased.rows.len(), 1);
        let settle = Arc::new(ConsumerSettle {
            shared: shared.clone(),
            owner,
            queue: "q".into(),
            outstanding: Mutex::new(HashSet::new()),
            room: Notify::new(),
            last_renew: Mutex::new(Instant::now()),
        });

        // It keeps showing signs of life, all along.
        let alive = Arc::new(AtomicBool::new(true));
        let renewer = {
            let (settle, alive) = (settle.clone(), alive.clone());
            tokio::spawn(async move {
                while alive.load(Ordering::Relaxed) {
                    *settle.last_renew.lock().unwrap() = Instant::now() - ttl;
                    settle.renew_if_due();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };

        // Another consumer gets the message: the forgotten lease expired.
        let mut c = b.consume("q", 1).await.unwrap();
        let d = tokio::time::timeout(ttl * 10, c.next())
            .await
            .expect("the message comes back after its lease expired")
            .unwrap()
            .unwrap();
        alive.store(false, Ordering::Relaxed);
        renewer.await.unwrap();
        assert_eq!(d.message.id, "m1");
        d.ack().await.unwrap();
        drop(c);
        b.close().await;
    }
}
