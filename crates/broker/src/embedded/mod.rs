//! The embedded durable queue: one SQLite file (WAL), owned by one process.
//!
//! # Invariants (how this module keeps the ones of the crate)
//!
//! 1. **A publish is `Ok` only after COMMIT with `synchronous = FULL`.** The WAL is fsynced
//!    before the caller hears back, so a publish that returned survives a crash or power cut.
//!    Publishing to a queue that was never declared is [`BrokerError::Unroutable`](crate::BrokerError::Unroutable).
//! 2. **Leases, not deletes, hand out deliveries.** A consumer leases a message (owner,
//!    `lease_until`, `delivery_count + 1`) in a committed transaction before it sees it, so a
//!    crash loop is counted durably. An ack deletes the row. A lease ends when the consumer
//!    settles, when the [`Consumer`](crate::Consumer) is dropped (its leases are released at once), when it
//!    expires ([`EmbeddedOptions::lease_ttl`] without any sign of life from its consumer:
//!    a `next()` call or a settle renews the leases of its outstanding deliveries: a settle
//!    lost in a rolled-back batch lets its lease expire instead of renewing it for the life
//!    of the process), and when the file is opened
//!    again (the previous process is gone: every lease is released on [`EmbeddedBroker::open`]).
//! 3. **Retry is one transaction**: insert the copy (`attempt + 1`, new headers,
//!    `available_at = now + delay`) and delete the original. Reject is one transaction too:
//!    insert into `<queue>.dlq` with [`HDR_DEAD_REASON`](crate::HDR_DEAD_REASON), delete the original.
//! 4. **FIFO by `seq`** among the visible messages of a queue (`available_at <= now`, no
//!    live lease). `seq` is `AUTOINCREMENT`, so it is never reused and a stale delivery tag
//!    (a `seq`) can never settle another message.
//! 5. **Delivery limit.** When a visible message already has `delivery_count >=
//!    delivery_limit` of its queue, leasing moves it to `<queue>.dlq` (with the reason)
//!    instead of delivering it again. Dead-letter queues themselves have no limit (0).
//! 6. **Acks and requeues are queued** (the call returns once the request is on the writer's
//!    channel) and committed with the next batch; [`Broker::close`](crate::Broker::close) processes every request
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
//!
//! # Files (one per role; each imports only files listed above it)
//!
//! - `options.rs`: tuning; `schema.rs`: the file's format, tables and opening.
//! - `shared.rs`: state shared with consumers, the writer's requests and answers.
//! - `batch.rs`: the statements of one batch; `writer.rs`: the writer thread, group commit.
//! - `settle.rs`: ack, retry, reject, requeue; `consumer.rs`: leasing deliveries.
//! - `broker.rs`: [`EmbeddedBroker`] and its [`Broker`](crate::Broker) face.

mod batch;
mod broker;
mod consumer;
mod options;
mod schema;
mod settle;
mod shared;
mod writer;

pub use broker::EmbeddedBroker;
pub use options::EmbeddedOptions;

#[cfg(test)]
mod lease_tests;
