//! Every default value, in one place.

use std::time::Duration;
pub const INSTANCE: &str = "gw-1";
pub const DATA_DIR: &str = "./data";
pub const INBOUND_LISTEN: &str = "127.0.0.1:8080";
pub const OPS_LISTEN: &str = "127.0.0.1:9090";
/// An adapter's `rate_limit.burst` when not given: strictly paced calls.
pub const RATE_LIMIT_BURST: u32 = 1;
/// Largest accepted inbound body. Dossier events carry attachments by reference, so 1 MiB
/// is generous.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// A client must send a whole request head within this (also the idle limit of a kept-alive
/// connection); the ops listener has the same limits.
pub const INBOUND_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A request body must arrive within this after its head.
pub const INBOUND_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections a listener serves at once.
pub const INBOUND_MAX_CONNECTIONS: usize = 1024;
/// Requests of one source handled at once; more get 503 with Retry-After.
pub const INBOUND_SOURCE_CONCURRENCY: usize = 256;
pub const PREFETCH: u16 = 256;
pub const PARTITIONS: u16 = 1;
/// Redeliveries without an ack (a crash loop) before the broker dead-letters a message.
pub const DELIVERY_LIMIT: u32 = 20;
pub const ROUTE_CONCURRENCY: usize = 16;
pub const RETRY_INITIAL: Duration = Duration::from_secs(1);
pub const RETRY_MAX_DELAY: Duration = Duration::from_secs(3600);
/// A national portal can be down for days: retries go on for a week by default.
pub const RETRY_MAX_ELAPSED: Duration = Duration::from_secs(7 * 24 * 3600);
/// No attempt cap by default beyond the elapsed limit (0 = unlimited).
pub const RETRY_MAX_ATTEMPTS: u32 = 0;
/// Circuit breaker: the share (%) of failed exchanges in the window that opens it. Half:
/// a portal failing a fifth of its calls is working (retries cover those calls); one
/// failing most of them is down.
pub const CIRCUIT_FAILURE_PERCENT: u32 = 50;
/// Circuit breaker: the fewest exchanges in the window before the rate can open it (a
/// handful of unlucky calls is not an outage).
pub const CIRCUIT_MIN_CALLS: u32 = 20;
/// Circuit breaker: the sliding window the failure rate is measured over.
pub const CIRCUIT_WINDOW: Duration = Duration::from_secs(10);
/// Circuit breaker: how long an open circuit keeps away from the destination.
pub const CIRCUIT_OPEN_FOR: Duration = Duration::from_secs(30);
/// Circuit breaker: probes let through when half-open; that many healthy answers close it.
pub const CIRCUIT_PROBES: u32 = 3;
/// OTLP/HTTP export: how often finished spans are sent.
pub const OTLP_EXPORT_INTERVAL: Duration = Duration::from_secs(1);
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
pub const HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const HTTP_POOL_IDLE: usize = 64;
/// Largest part of a party's answer kept in the ledger / dead letters.
pub const ANSWER_SNIPPET_BYTES: usize = 2048;
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How long a delivery claim lasts without a heartbeat (see `gw_store::claims`).
pub const CLAIM_LEASE: Duration = Duration::from_secs(15);
/// DVCQG: the `service` of the login call.
pub const DVCQG_LOGIN_SERVICE: &str = "DangNhap";
/// DVCQG: codes meaning the session expired. The portal's code list is not public
/// ([open] in CONTRACTS.md): these match the portal sandbox and are configurable.
pub const DVCQG_SESSION_EXPIRED_CODES: &[&str] = &["-2"];
/// DVCQG: codes worth retrying (the portal's own transient faults).
pub const DVCQG_RETRYABLE_CODES: &[&str] = &["-10"];
/// DVCQG: "already exists" (to isUpdating=false).
pub const DVCQG_EXISTS_CODES: &[&str] = &["-7"];
/// DVCQG: "no such dossier" (to isUpdating=true).
pub const DVCQG_NOT_FOUND_CODES: &[&str] = &["-8"];
pub const DVCQG_BATCH_ITEMS: usize = 20;
pub const DVCQG_BATCH_BYTES: usize = 256 * 1024;
pub const DVCQG_BATCH_LINGER: Duration = Duration::ZERO;
pub const DVCQG_BATCH_IN_FLIGHT: usize = 4;
/// Signing: oldest accepted `created` of an HTTP message signature.
pub const SIGNATURE_MAX_AGE: Duration = Duration::from_secs(300);
/// Signing: furthest accepted `created` in the future (clock skew).
pub const SIGNATURE_MAX_SKEW: Duration = Duration::from_secs(60);
/// Signing: the header carrying a detached JWS (RFC 7797).
pub const JWS_DETACHED_HEADER: &str = "x-jws-signature";
/// Signing: HTTP message signatures cover these headers besides the method, target and
/// content-digest.
pub const SIGNATURE_COVERED_HEADERS: &[&str] = &["content-type"];
/// Signing: live nonces remembered per verifying profile (replay protection); when full
/// and none has expired, new requests are refused rather than old nonces forgotten.
pub const NONCE_CAPACITY: usize = 100_000;
/// Catalogue sync: how often the portal's catalogue is compared with the last run.
pub const CATALOGUE_INTERVAL: Duration = Duration::from_secs(3600);
/// Catalogue sync: the source name its change events carry (routes take `from` it).
pub const CATALOGUE_SOURCE: &str = "catalogue";
/// Online dossiers: how often the portal is polled.
pub const ONLINE_INTERVAL: Duration = Duration::from_secs(300);
/// Online dossiers: the source name their events carry.
pub const ONLINE_SOURCE: &str = "online";
/// Online dossiers: the body field carrying the cursor ([open]; the sandbox's).
pub const ONLINE_CURSOR_PARAM: &str = "tuNgay";
/// Online dossiers: the dossier field the cursor follows (a `yyyyMMddHHmmss` date).
pub const ONLINE_CURSOR_FIELD: &str = "NgayTiepNhan";
/// Online dossiers: the dossier field holding its code (the event key).
pub const ONLINE_CODE_FIELD: &str = "MaHoSo";

// Remote signing services ([signers.NAME], src/config/signers.rs).
/// First wait after a signing request and between polls.
pub const SIGNER_POLL_INTERVAL: Duration = Duration::from_secs(3);
/// The longest wait between two polls of one signing request.
pub const SIGNER_POLL_MAX_INTERVAL: Duration = Duration::from_secs(30);
/// How long an official has to confirm a signing request on the phone.
pub const SIGNER_REQUEST_LIFETIME: Duration = Duration::from_secs(300);

// Agency subscriptions ([subscriptions.NAME], src/config/agencies.rs).
/// A push subscription's retry schedule: the wait before each retry (jitter is added), after
/// which the delivery is dead-lettered (the Standard Webhooks / Svix schedule).
pub const AGENCY_RETRY: &[Duration] = &[
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];
/// A push subscription's deliveries in flight at once (distinct dossiers).
pub const AGENCY_CONCURRENCY: usize = 4;
/// Lanes per queue of the agencies' fan-out (`crate::runtime::fanout`): how many dossiers of
/// one partition have their copies published at once.
pub const AGENCY_FANOUT_CONCURRENCY: usize = 16;
/// `[broker] agencies_fanout`: the agencies' fan-out route is `agencies.fanout`.
pub const AGENCIES_FANOUT: &str = "fanout";
/// A push subscription failing without a success for this long is disabled.
pub const AGENCY_DISABLE_AFTER: Duration = Duration::from_secs(5 * 24 * 3600);
/// A push's whole request timeout.
pub const AGENCY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a pull feed keeps its entries (`subscriptions.NAME.pull.retention`).
pub const FEED_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Entries per pull feed page at most, and the default `limit` (`pull.max_limit`).
pub const FEED_MAX_LIMIT: u32 = 100;
/// The longest long-poll of a pull feed (`pull.max_wait`).
pub const FEED_MAX_WAIT: Duration = Duration::from_secs(30);

// The document axis ([adapters.NAME.axis], src/config/adapters.rs). Its wire is [open]
// (CONTRACTS.md §5): these are the sandbox's names.
/// The paths of the four operations, after the adapter's `url`.
pub const AXIS_SEND_PATH: &str = "/sendEdoc";
pub const AXIS_LIST_PATH: &str = "/getReceivedEdocList";
pub const AXIS_GET_PATH: &str = "/getEdoc";
pub const AXIS_STATUS_PATH: &str = "/updateStatus";
/// The HTTP headers carrying the system id, the secret and the operation's JSON header.
pub const AXIS_SYSTEM_HEADER: &str = "systemId";
pub const AXIS_SECRET_HEADER: &str = "secret";
pub const AXIS_JSON_HEADER: &str = "edoc-header";
/// How often the axis is polled for received documents and statuses.
pub const AXIS_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// The source name of the events the poll publishes.
pub const AXIS_SOURCE: &str = "axis";
/// Items asked for per list call.
pub const AXIS_PAGE_SIZE: u32 = 50;

// The service-quality index ([indicators], src/config/indicators.rs).
/// The adapter whose delivered versions count as "synced to the portal" (indicator 1.4).
pub const INDICATORS_SYNCED_TO: &str = "dvcqg";
/// How often the indicator gauges of the current month are recomputed.
pub const INDICATORS_REFRESH: Duration = Duration::from_secs(60);
/// The at-risk list's horizon in working days when none is asked.
pub const INDICATORS_AT_RISK_DAYS: u32 = 2;
/// The fewest dossiers (2.1's denominator) a unit needs to be ranked among the lowest.
pub const INDICATORS_LOWEST_MIN_DOSSIERS: u64 = 10;
/// How many units the lowest on-time list shows when none is asked.
pub const INDICATORS_LOWEST_COUNT: usize = 3;
