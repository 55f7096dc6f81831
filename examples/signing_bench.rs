//! Remote signing at scale (issue 16): officials who confirm on their phones, 10,000 requests
//! waiting at once, through the real flow (the SmartCA connector over HTTP to the strict
//! sandbox, the signature store, the outbox, publisher-confirmed outcomes on a broker queue).
//!
//! Two phases, each on a fresh store and its own sandbox process (so the gateway's memory is
//! measured alone):
//! 1. **Instant confirmation** (`--instant`, default 2,000 requests; officials confirm at
//!    once, no quota): requests per second through the full path, accept → `signature.completed`
//!    confirmed on the queue, and polls per completed request.
//! 2. **10,000 waiting** (`--requests`; officials confirm `--confirm-after` after the push;
//!    the service's quota `--quota`/s with burst `--burst`): resident memory idle, with every
//!    request waiting, and at the end; status calls per second measured against the quota;
//!    halfway through the completions the job is killed mid-round and a new one (new
//!    connectors, new store handle) takes over: pushes at the sandbox and outcomes on the
//!    queue are then counted, raw, per request.
//!
//! Prints figures, asserts nothing.
//!
//! ```sh
//! cargo run --release --example signing_bench
//! cargo run --release --example signing_bench -- --requests 10000 --quota 500 --burst 50 --confirm-after 120 --instant 2000
//! cargo run --release --example signing_bench -- --store postgres://postgres@127.0.0.1:5432/test?schema=sigbench --broker amqp://guest:guest@127.0.0.1:5672/%2f
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use futures::StreamExt as _;
use gateway::connectors::signer::{
    CancelOutcome, HashRequest, PollPolicy, RemoteSigner, SignStatus, SignerError, SignerId,
    SignerService, Submitted, Transaction, VerifyAgainst,
};
use gateway::connectors::signers::{build, Signers};
use gateway::payments::BrokerSink;
use gateway::signatures::{ServiceSettings, SignatureService};
use gateway::signing::remote::{DigestAlgorithm, SignerCertificate};
use gw_store::signatures::{ListFilter, RequestState, SignatureStore};

const QUEUE: &str = "signing.bench.outcomes";
/// The job's tick, as the gateway's (`app::signatures::TICK`).
const TICK: Duration = Duration::from_secs(1);

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn num<T: std::str::FromStr>(name: &str, default: &str) -> T {
    arg(name, default)
        .parse()
        .unwrap_or_else(|_| panic!("{name} takes a number"))
}

/// (resident, peak resident) KiB of this process.
fn rss() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The sandbox in a process of its own: prints its URL, serves until killed.
async fn sandbox_child() {
    use gw_contract_tests::smartca::{SmartCa, SmartCaConfig};
    let confirm_ms: u64 = num("--confirm-ms", "0");
    let sb = SmartCa::start(
        0,
        SmartCaConfig {
            confirm_after: Duration::from_millis(confirm_ms),
            lifetime: Duration::from_secs(3_600),
            ..SmartCaConfig::default()
        },
    )
    .await
    .expect("the sandbox starts");
    println!("{}", sb.base_url());
    loop {
        tokio::time::sleep(Duration::from_secs(3_600)).await;
    }
}

/// A SmartCA sandbox process, killed when dropped.
struct Sandbox {
    child: std::process::Child,
    url: String,
}

impl Sandbox {
    fn start(confirm: Duration) -> Sandbox {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--sandbox-child", "--confirm-ms"])
            .arg(confirm.as_millis().to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the sandbox process starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Sandbox {
            child,
            url: line.trim().to_owned(),
        }
    }

    /// Pushes to phones: (total, distinct request ids), and status calls.
    async fn counts(&self) -> (usize, usize, usize) {
        let r: gw_contract_tests::officials::SignRecords =
            reqwest::get(format!("{}/_sandbox/records", self.url))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        let ids: BTreeSet<&str> = r.pushes.iter().map(|p| p.id.as_str()).collect();
        (r.pushes.len(), ids.len(), r.calls("/status"))
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counts the calls the connector completes, per second since the start (every call shares
/// the service's quota; status calls are the polls).
#[derive(Default)]
struct CallClock {
    start: Mutex<Option<Instant>>,
    all: Mutex<BTreeMap<u64, u64>>,
    polls: Mutex<BTreeMap<u64, u64>>,
    total_polls: AtomicU64,
}

impl CallClock {
    fn tick(&self, poll: bool) {
        let start = *self.start.lock().unwrap().get_or_insert_with(Instant::now);
        let s = start.elapsed().as_secs();
        *self.all.lock().unwrap().entry(s).or_default() += 1;
        if poll {
            *self.polls.lock().unwrap().entry(s).or_default() += 1;
            self.total_polls.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (largest count in any whole second, mean over the seconds that had calls).
    fn rate(m: &Mutex<BTreeMap<u64, u64>>) -> (u64, f64) {
        let m = m.lock().unwrap();
        let max = m.values().copied().max().unwrap_or(0);
        let (first, last) = (
            m.keys().next().copied().unwrap_or(0),
            m.keys().last().copied().unwrap_or(0),
        );
        let total: u64 = m.values().sum();
        (max, total as f64 / (last - first + 1) as f64)
    }
}

/// The real SmartCA connector, its completed calls counted.
struct Counted {
    inner: Arc<dyn RemoteSigner>,
    clock: Arc<CallClock>,
}

#[async_trait]
impl RemoteSigner for Counted {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn service(&self) -> SignerService {
        self.inner.service()
    }
    fn poll_policy(&self) -> PollPolicy {
        self.inner.poll_policy()
    }
    fn verify_against(&self, signer: &SignerId) -> Result<VerifyAgainst<'_>, SignerError> {
        self.inner.verify_against(signer)
    }
    fn digests(&self) -> &[DigestAlgorithm] {
        self.inner.digests()
    }
    fn transaction_for(&self, req: &HashRequest) -> Option<Transaction> {
        self.inner.transaction_for(req)
    }
    async fn certificate(&self, signer: &SignerId) -> Result<SignerCertificate, SignerError> {
        let r = self.inner.certificate(signer).await;
        self.clock.tick(false);
        r
    }
    async fn submit(&self, req: &HashRequest) -> Result<Submitted, SignerError> {
        let r = self.inner.submit(req).await;
        self.clock.tick(false);
        r
    }
    async fn status(&self, tx: &Transaction, req: &HashRequest) -> Result<SignStatus, SignerError> {
        let r = self.inner.status(tx, req).await;
        self.clock.tick(true);
        r
    }
    async fn cancel(
        &self,
        tx: Option<&Transaction>,
        req: &HashRequest,
    ) -> Result<CancelOutcome, SignerError> {
        self.inner.cancel(tx, req).await
    }
}

struct Setup {
    dir: std::path::PathBuf,
    secret: std::path::PathBuf,
    store_url: Option<String>,
    broker_url: Option<String>,
}

impl Setup {
    fn signer(&self, sb: &Sandbox, quota: Option<(f64, u32)>, clock: &Arc<CallClock>) -> Signers {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let rate = quota
            .map(|(q, b)| format!("rate_limit = {{ per_sec = {q}, burst = {b} }}\n"))
            .unwrap_or_default();
        let text = format!(
            "service = \"smartca\"\nurl = \"{}\"\ntrust_anchors = \"{}\"\ntimeout = \"10s\"\npoll_interval = \"{}\"\npoll_max_interval = \"30s\"\nrequest_lifetime = \"1h\"\nsp_id = \"sandbox-sp\"\nsp_password = {{ file = \"{}\" }}\n{rate}[[officials]]\nuser_id = \"official-rsa\"\nserial = \"5000\"\n",
            sb.url,
            root.join("certs-example/chain.pem").display(),
            arg("--poll-interval", "5s"),
            self.secret.display(),
        );
        let section = toml::from_str(&text).expect("the bench's signer section");
        let inner = build("smartca", &section, &root).expect("the SmartCA connector");
        Signers::default().with(Arc::new(Counted {
            inner,
            clock: clock.clone(),
        }))
    }

    async fn store(&self, phase: &str) -> Arc<dyn SignatureStore> {
        let url = match &self.store_url {
            Some(u) if u.contains("schema=") => format!("{u}_{phase}"),
            Some(u) => u.clone(),
            None => self
                .dir
                .join(format!("{phase}.db"))
                .to_string_lossy()
                .into_owned(),
        };
        gw_store::signatures::open(&url)
            .await
            .expect("the store opens")
    }

    async fn sink(&self, phase: &str) -> Arc<BrokerSink> {
        let url = self.broker_url.clone().unwrap_or_else(|| {
            self.dir
                .join(format!("{phase}-queue.db"))
                .to_string_lossy()
                .into_owned()
        });
        let broker = gw_broker::open(&url, "bench")
            .await
            .expect("the broker opens");
        let queue = format!("{QUEUE}.{phase}.{}", std::process::id());
        broker
            .declare(&[gw_broker::QueueSpec {
                name: queue.clone(),
                delivery_limit: 5,
            }])
            .await
            .unwrap();
        Arc::new(BrokerSink { broker, queue })
    }
}

fn payload(i: usize) -> serde_json::Value {
    serde_json::json!({
        "signer": "smartca",
        "official": "official-rsa",
        "format": "cms",
        "document": base64::engine::general_purpose::STANDARD.encode(format!("KET QUA HO SO {i:06}")),
        "reason": "Ký kết quả giải quyết hồ sơ",
        "dossier_code": format!("000.00.01.H22-261207-{i:06}"),
    })
}

/// Accept `n` requests, `concurrency` at once (as the edge would).
async fn accept_all(svc: &SignatureService, n: usize, phase: &str) {
    let mut s = futures::stream::iter(0..n)
        .map(|i| async move {
            svc.accept("onestop", &format!("{phase}-{i}"), &payload(i))
                .await
                .expect("accepted")
        })
        .buffer_unordered(32);
    while s.next().await.is_some() {}
}

/// The signing job as the gateway runs it: a tick every second of rounds while full.
fn job(svc: Arc<SignatureService>, sink: Arc<BrokerSink>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = gateway::jobs::signatures::tick(&svc, sink.as_ref()).await {
                eprintln!("round failed: {e}");
            }
            tokio::time::sleep(TICK).await;
        }
    })
}

async fn count(store: &dyn SignatureStore, state: RequestState) -> i64 {
    store
        .counts_by_state()
        .await
        .unwrap()
        .iter()
        .filter(|c| c.state == state)
        .map(|c| c.count)
        .sum()
}

async fn polls_noted(store: &dyn SignatureStore) -> i64 {
    let mut total = 0;
    let mut after = None;
    loop {
        let page = store
            .list(ListFilter {
                after: after.clone(),
                limit: gw_store::signatures::LIST_MAX,
                ..Default::default()
            })
            .await
            .unwrap();
        total += page.iter().map(|r| r.polls).sum::<i64>();
        match page.last() {
            Some(r) if page.len() as u32 == gw_store::signatures::LIST_MAX => {
                after = Some(r.id().to_owned())
            }
            _ => return total,
        }
    }
}

/// Every outcome on the queue: (raw messages, distinct request ids).
async fn outcomes(sink: &BrokerSink) -> (usize, usize) {
    let mut c = sink.broker.consume(&sink.queue, 1_000).await.unwrap();
    let mut raw = 0;
    let mut ids = BTreeSet::new();
    while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(3), c.next()).await {
        raw += 1;
        let v: serde_json::Value = serde_json::from_slice(&d.message.body).unwrap();
        ids.insert(v["payload"]["request_id"].as_str().unwrap_or("").to_owned());
        d.ack().await.unwrap();
    }
    (raw, ids.len())
}

fn settings(instance: &str) -> ServiceSettings {
    ServiceSettings {
        instance: instance.into(),
        // Shorter than the defaults (60 s, 120 s) so the restart's leases run out within the
        // run; still longer than the connector's 10 s timeout, as the send lease must be.
        work_lease: Duration::from_secs(15),
        send_lease: Duration::from_secs(20),
        ..ServiceSettings::default()
    }
}

async fn wait_until(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> bool) {
    let t = Instant::now();
    while !f().await {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn instant_phase(setup: &Setup, n: usize) {
    let sb = Sandbox::start(Duration::ZERO);
    let clock = Arc::new(CallClock::default());
    let store = setup.store("instant").await;
    let sink = setup.sink("instant").await;
    let svc = Arc::new(SignatureService::new(
        store.clone(),
        setup.signer(&sb, None, &clock),
        settings("bench"),
    ));
    let started = Instant::now();
    let handle = job(svc.clone(), sink.clone());
    accept_all(&svc, n, "instant").await;
    let accepted = started.elapsed();
    wait_until("instant phase", Duration::from_secs(3_600), async || {
        count(store.as_ref(), RequestState::Completed).await as usize == n
            && store.unpublished(1).await.unwrap().is_empty()
    })
    .await;
    let total = started.elapsed();
    handle.abort();
    let (pushes, _, status_calls) = sb.counts().await;
    let noted = polls_noted(store.as_ref()).await;
    println!("instant confirmation ({n} requests, SmartCA sandbox process, no quota):");
    println!(
        "  accepted in {:.1}s ({:.0}/s); completed and published in {:.1}s: {:.0} requests/s through the full path",
        accepted.as_secs_f64(),
        n as f64 / accepted.as_secs_f64(),
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64()
    );
    println!(
        "  polls per completed request: {:.2} (status calls at the sandbox {status_calls}; polls that found the official still to answer {noted}); pushes {pushes}",
        status_calls as f64 / n as f64
    );
}

async fn waiting_phase(setup: &Setup, n: usize) {
    let confirm = Duration::from_secs(num("--confirm-after", "120"));
    let quota: f64 = num("--quota", "500");
    let burst: u32 = num("--burst", "50");
    let sb = Sandbox::start(confirm);
    let clock = Arc::new(CallClock::default());
    let store = setup.store("waiting").await;
    let sink = setup.sink("waiting").await;
    let svc = Arc::new(SignatureService::new(
        store.clone(),
        setup.signer(&sb, Some((quota, burst)), &clock),
        settings("bench"),
    ));
    // Idle: the service, its store, its queue and its connector built, nothing accepted.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle, _) = rss();
    let started = Instant::now();
    let handle = job(svc.clone(), sink.clone());
    accept_all(&svc, n, "waiting").await;
    let accepted = started.elapsed();
    // Until half of them completed: the most waiting for the official at once, and the
    // memory then.
    let mut pending_rss = 0;
    let mut pending_seen = 0;
    let mut all_waiting: Option<Duration> = None;
    wait_until("half completed", Duration::from_secs(3_600), async || {
        let p = store.pending_by_service().await.unwrap();
        let waiting: i64 = p.iter().map(|s| s.waiting).sum();
        if waiting > pending_seen {
            pending_seen = waiting;
            pending_rss = rss().0;
        }
        if waiting as usize == n && all_waiting.is_none() {
            all_waiting = Some(started.elapsed());
        }
        count(store.as_ref(), RequestState::Completed).await as usize >= n / 2
    })
    .await;
    // The restart: the job dies mid-round.
    handle.abort();
    let at_crash = count(store.as_ref(), RequestState::Completed).await;
    drop(svc);
    let crashed = started.elapsed();
    let store2 = setup.store("waiting").await;
    let svc2 = Arc::new(SignatureService::new(
        store2.clone(),
        setup.signer(&sb, Some((quota, burst)), &clock),
        settings("bench"),
    ));
    let handle = job(svc2.clone(), sink.clone());
    wait_until("all completed", Duration::from_secs(3_600), async || {
        count(store2.as_ref(), RequestState::Completed).await as usize == n
            && store2.unpublished(1).await.unwrap().is_empty()
    })
    .await;
    let total = started.elapsed();
    handle.abort();
    let (end, peak) = rss();
    let (pushes, distinct_pushes, status_calls) = sb.counts().await;
    let (raw, distinct) = outcomes(&sink).await;
    let (all_max, all_mean) = CallClock::rate(&clock.all);
    let (poll_max, poll_mean) = CallClock::rate(&clock.polls);
    let failed = n as i64 - count(store2.as_ref(), RequestState::Completed).await;
    println!(
        "{n} requests waiting for officials (confirm {}s after the push; quota {quota}/s, burst {burst}; job tick {}s):",
        confirm.as_secs(),
        TICK.as_secs()
    );
    println!(
        "  accepted in {:.1}s; {}; restart after {:.1}s with {at_crash} completed; all completed and published after {:.1}s",
        accepted.as_secs_f64(),
        match all_waiting {
            Some(t) => format!("all {n} sent and waiting for the official after {:.1}s", t.as_secs_f64()),
            None => format!("at most {pending_seen} waiting for the official at once (raise --confirm-after for all)"),
        },
        crashed.as_secs_f64(),
        total.as_secs_f64()
    );
    println!(
        "  memory (RSS): idle {:.1} MiB, with {pending_seen} waiting {:.1} MiB (+{:.1} MiB, {:.2} KiB per request), at the end {:.1} MiB, peak {:.1} MiB",
        mib(idle),
        mib(pending_rss),
        mib(pending_rss.saturating_sub(idle)),
        pending_rss.saturating_sub(idle) as f64 / pending_seen.max(1) as f64,
        mib(end),
        mib(peak)
    );
    println!(
        "  calls to the service per second: at most {all_max} in any second, {all_mean:.0} on average (quota {quota}/s, burst {burst}); status calls (polls): at most {poll_max}/s, {poll_mean:.0}/s on average"
    );
    println!(
        "  polls per completed request: {:.2} (status calls at the sandbox {status_calls}, counted at the connector {})",
        status_calls as f64 / n as f64,
        clock.total_polls.load(Ordering::Relaxed)
    );
    println!(
        "  across the restart: pushes to phones {pushes} for {distinct_pushes} requests (duplicates {}), outcomes on the queue {raw} raw for {distinct} requests (lost {}, published twice {}), not completed {failed}",
        pushes - distinct_pushes,
        n - distinct,
        raw - distinct
    );
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--sandbox-child") {
        return sandbox_child().await;
    }
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("sp");
    std::fs::write(&secret, "sandbox-sp-password").unwrap();
    let setup = Setup {
        dir: dir.path().to_owned(),
        secret,
        store_url: std::env::args()
            .any(|a| a == "--store")
            .then(|| arg("--store", "")),
        broker_url: std::env::args()
            .any(|a| a == "--broker")
            .then(|| arg("--broker", "")),
    };
    println!(
        "signing bench: store {}, broker {}",
        setup.store_url.as_deref().unwrap_or("SQLite (temp file)"),
        setup
            .broker_url
            .as_deref()
            .unwrap_or("embedded queue (temp file)")
    );
    let instant: usize = num("--instant", "2000");
    if instant > 0 {
        instant_phase(&setup, instant).await;
    }
    let n: usize = num("--requests", "10000");
    if n > 0 {
        waiting_phase(&setup, n).await;
    }
}
