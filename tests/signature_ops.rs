//! Operations of the remote-signing flow (issue 16): cancels told to the services (recorded
//! where the contract has no cancel, retried with backoff where a call fails), the outbox
//! lease between two instances on one PostgreSQL (raw publishes counted at RabbitMQ), and a
//! crash between a synchronous CSC answer and its record.
//!
//! Tests needing RabbitMQ and PostgreSQL skip with a printed reason when they do not answer
//! (and fail when `CI=true`), as `tests/common` does.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use common::unique;
use gateway::config::SignerSection;
use gateway::connectors::signer::{
    CancelOutcome, HashRequest, PollPolicy, RemoteSigner, SignStatus, SignerError, SignerId,
    SignerService, Submitted, Transaction, VerifyAgainst,
};
use gateway::connectors::signers::{build, Signers};
use gateway::model::envelope::Envelope;
use gateway::payments::{BrokerSink, NoticeError, NoticeSink};
use gateway::signatures::{ServiceSettings, SignatureService, CANCEL_RETRY_BASE};
use gateway::signing::remote::{DigestAlgorithm, SignerCertificate};
use gateway::transport::stack::TransportError;
use gw_broker::QueueSpec;
use gw_contract_tests::csc::{Csc, CscConfig};
use gw_contract_tests::smartca::{SmartCa, SmartCaConfig};
use gw_store::signatures::{RequestState, SignatureRequest, SignatureStore};
use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A folder with the secret files the sections refer to.
fn secrets() -> PathBuf {
    let d = std::env::temp_dir().join(format!("gw-sigops-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("sp"), "sandbox-sp-password").unwrap();
    std::fs::write(d.join("client"), "sandbox-client-secret").unwrap();
    d
}

/// The body of a `[signers.NAME]` table with the sandboxes' RSA official only (`table` is the
/// prefix of the officials' array: `signers.NAME.` inside a gateway's file, empty alone).
fn section_text(service: &str, url: &str, extra: &str, table: &str) -> String {
    let s = secrets();
    let creds = match service {
        "smartca" => format!(
            "sp_id = \"sandbox-sp\"\nsp_password = {{ file = \"{}\" }}\n",
            s.join("sp").display()
        ),
        _ => format!(
            "client_id = \"sandbox-client\"\nclient_secret = {{ file = \"{}\" }}\n",
            s.join("client").display()
        ),
    };
    let cred = if service == "smartca" {
        ""
    } else {
        "credential_id = \"cred-rsa\"\n"
    };
    format!(
        "service = \"{service}\"\nurl = \"{url}\"\ntrust_anchors = \"{}\"\ntimeout = \"5s\"\npoll_interval = \"100ms\"\npoll_max_interval = \"200ms\"\nrequest_lifetime = \"60s\"\n{creds}{extra}\n[[{table}officials]]\nuser_id = \"official-rsa\"\nserial = \"5000\"\n{cred}",
        root().join("certs-example/chain.pem").display()
    )
}

fn section(service: &str, url: &str, extra: &str) -> SignerSection {
    toml::from_str(&section_text(service, url, extra, "")).unwrap()
}

async fn smartca(confirm_after: Duration) -> SmartCa {
    SmartCa::start(
        0,
        SmartCaConfig {
            confirm_after,
            lifetime: Duration::from_secs(120),
            ..SmartCaConfig::default()
        },
    )
    .await
    .unwrap()
}

fn smartca_signer(sb: &SmartCa) -> Arc<dyn RemoteSigner> {
    build("smartca", &section("smartca", &sb.base_url(), ""), &root()).unwrap()
}

fn settings(instance: &str) -> ServiceSettings {
    ServiceSettings {
        instance: instance.into(),
        batch: 50,
        work_lease: Duration::from_secs(10),
        send_lease: Duration::from_secs(10),
        ..ServiceSettings::default()
    }
}

fn payload(signer: &str, doc: &str) -> Value {
    json!({
        "signer": signer,
        "official": "official-rsa",
        "format": "cms",
        "document": base64::engine::general_purpose::STANDARD.encode(doc.as_bytes()),
        "reason": "Ký kết quả giải quyết hồ sơ",
        "dossier_code": "000.00.01.H22-261207-0001",
    })
}

async fn sqlite(dir: &std::path::Path, name: &str) -> Arc<dyn SignatureStore> {
    gw_store::signatures::open(dir.join(format!("{name}.db")).to_str().unwrap())
        .await
        .unwrap()
}

/// Collects what it is given (the outcomes), and can be told to refuse.
#[derive(Default)]
struct Collect {
    got: Mutex<Vec<Envelope>>,
    refuse: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl NoticeSink for Collect {
    async fn publish(&self, env: &Envelope) -> Result<(), NoticeError> {
        if self.refuse.load(Ordering::SeqCst) {
            return Err(NoticeError::Broker("the test's broker is down".into()));
        }
        self.got.lock().unwrap().push(env.clone());
        Ok(())
    }
}

/// Rounds until `id` is in `state` (bounded: 200 rounds, 50 ms apart).
async fn until_state(
    svc: &SignatureService,
    sink: &dyn NoticeSink,
    id: &str,
    state: RequestState,
) -> SignatureRequest {
    for _ in 0..200 {
        svc.round(sink).await.unwrap();
        let r = svc.store.get(id).await.unwrap().unwrap();
        if r.state == state {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = svc.store.get(id).await.unwrap().unwrap();
    panic!(
        "request {id} still {} (wanted {})",
        r.state.as_str(),
        state.as_str()
    );
}

/// A request cancelled while on the official's phone: the flow tells the service where its
/// contract has a cancel; SmartCA's (CONTRACTS.md §4) has none, so nothing is called, the
/// request records `not_supported_by_service`, it is not tried again, and the request is
/// never polled again.
#[tokio::test]
async fn a_cancel_the_service_cannot_take_is_recorded_as_not_supported() {
    let dir = tempfile::tempdir().unwrap();
    let sb = smartca(Duration::from_secs(60)).await;
    let svc = SignatureService::new(
        sqlite(dir.path(), "cancel").await,
        Signers::default().with(smartca_signer(&sb)),
        settings("gw-1"),
    );
    let sink = Collect::default();
    let id = svc
        .accept("onestop", "c-1", &payload("smartca", "doc c-1"))
        .await
        .unwrap()
        .request_id;
    until_state(&svc, &sink, &id, RequestState::Waiting).await;
    // As `gateway signing cancel` does.
    let cancelled = svc.store.cancel(&id, "operator:lan", 1).await.unwrap();
    assert!(cancelled.is_applied(), "a waiting request can be cancelled");
    assert_eq!(
        svc.store
            .get(&id)
            .await
            .unwrap()
            .unwrap()
            .service_cancel
            .as_deref(),
        Some("pending")
    );
    let calls_before = sb.records().received.len();
    let report = svc.round(&sink).await.unwrap();
    assert_eq!(report.cancels, 1);
    let r = svc.store.get(&id).await.unwrap().unwrap();
    assert_eq!(r.state, RequestState::Cancelled);
    assert_eq!(
        r.service_cancel.as_deref(),
        Some("not_supported_by_service")
    );
    assert_eq!(
        sb.records().received.len(),
        calls_before,
        "no call to the service: it has no cancel operation, and a cancelled request is not polled"
    );
    let metrics = svc.metrics.render();
    assert!(
        metrics.contains(
            "gateway_signature_cancel_notices_total{service=\"smartca\",reason=\"not_supported_by_service\"} 1"
        ),
        "{metrics}"
    );
    // Recorded once: the next rounds have nothing to tell.
    for _ in 0..3 {
        assert_eq!(svc.round(&sink).await.unwrap().cancels, 0);
    }
    let outcomes = sink.got.lock().unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].payload_value()["outcome"], "cancelled");
}

/// A signer whose cancel fails `fail_first` times with a timeout, then succeeds: no service
/// of CONTRACTS.md §4 has a cancel operation, so the flow's retry path is driven through
/// this wrapper around the real SmartCA connector (every other call goes to the sandbox).
struct CancelAfterFailures {
    inner: Arc<dyn RemoteSigner>,
    fail_first: u32,
    attempts: AtomicU32,
    seen: Mutex<Vec<(String, Option<String>)>>,
}

#[async_trait]
impl RemoteSigner for CancelAfterFailures {
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
        self.inner.certificate(signer).await
    }
    async fn submit(&self, req: &HashRequest) -> Result<Submitted, SignerError> {
        self.inner.submit(req).await
    }
    async fn status(&self, tx: &Transaction, req: &HashRequest) -> Result<SignStatus, SignerError> {
        self.inner.status(tx, req).await
    }
    async fn cancel(
        &self,
        tx: Option<&Transaction>,
        req: &HashRequest,
    ) -> Result<CancelOutcome, SignerError> {
        self.seen
            .lock()
            .unwrap()
            .push((req.request_id.clone(), tx.map(|t| t.0.clone())));
        if self.attempts.fetch_add(1, Ordering::SeqCst) < self.fail_first {
            return Err(SignerError::Transport {
                step: "cancel",
                error: TransportError::Timeout("the test's service is slow".into()),
            });
        }
        Ok(CancelOutcome::Cancelled)
    }
}

/// A failing cancel is counted and tried again after the shipped backoff (5 s), with the
/// transaction the service gave; meanwhile the other requests go on to completion in the same
/// rounds; once the service answers, that is recorded and never sent again.
#[tokio::test]
async fn a_failing_cancel_is_retried_with_backoff_and_holds_nobody_up() {
    let dir = tempfile::tempdir().unwrap();
    let slow = smartca(Duration::from_secs(60)).await;
    let quick = smartca(Duration::from_millis(100)).await;
    let flaky = Arc::new(CancelAfterFailures {
        inner: smartca_signer(&slow),
        fail_first: 1,
        attempts: AtomicU32::new(0),
        seen: Mutex::default(),
    });
    let quick_signer = build("quick", &section("smartca", &quick.base_url(), ""), &root()).unwrap();
    let svc = SignatureService::new(
        sqlite(dir.path(), "retry").await,
        Signers::default().with(flaky.clone()).with(quick_signer),
        settings("gw-1"),
    );
    let sink = Collect::default();
    let cancelled = svc
        .accept("onestop", "r-1", &payload("smartca", "doc r-1"))
        .await
        .unwrap()
        .request_id;
    let waiting = until_state(&svc, &sink, &cancelled, RequestState::Waiting).await;
    let tx = waiting.transaction_id.clone().expect("a transaction");
    svc.store
        .cancel(&cancelled, "operator:lan", 1)
        .await
        .unwrap();
    let others: Vec<String> = futures::future::join_all((0..3).map(|i| {
        let svc = &svc;
        async move {
            svc.accept(
                "onestop",
                &format!("q-{i}"),
                &payload("quick", &format!("doc q-{i}")),
            )
            .await
            .unwrap()
            .request_id
        }
    }))
    .await;
    let first = std::time::Instant::now();
    let mut completed = false;
    for _ in 0..100 {
        svc.round(&sink).await.unwrap();
        let states = futures::future::join_all(others.iter().map(|id| svc.store.get(id))).await;
        if states
            .into_iter()
            .all(|r| r.unwrap().unwrap().state == RequestState::Completed)
        {
            completed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        completed,
        "the other requests completed while the cancel failed"
    );
    assert!(
        first.elapsed() < CANCEL_RETRY_BASE,
        "the test is slower than the backoff"
    );
    assert_eq!(
        flaky.attempts.load(Ordering::SeqCst),
        1,
        "not retried before the backoff"
    );
    let r = svc.store.get(&cancelled).await.unwrap().unwrap();
    assert_eq!(r.service_cancel.as_deref(), Some("pending"));
    let due = svc
        .store
        .cancels_due(
            gateway::model::time::now_ms() + CANCEL_RETRY_BASE.as_millis() as i64,
            10,
        )
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].attempts, 1);
    // After the backoff the second attempt succeeds and is recorded.
    tokio::time::sleep(
        CANCEL_RETRY_BASE.saturating_sub(first.elapsed()) + Duration::from_millis(200),
    )
    .await;
    assert_eq!(svc.round(&sink).await.unwrap().cancels, 1);
    let r = svc.store.get(&cancelled).await.unwrap().unwrap();
    assert_eq!(r.service_cancel.as_deref(), Some("cancelled"));
    assert_eq!(flaky.attempts.load(Ordering::SeqCst), 2);
    assert_eq!(svc.round(&sink).await.unwrap().cancels, 0);
    let seen = flaky.seen.lock().unwrap();
    assert!(
        seen.iter().all(|(_, t)| t.as_deref() == Some(tx.as_str())),
        "the service's transaction is named: {seen:?}"
    );
    assert_eq!(slow.records().pushes.len(), 1, "one push, never a second");
}

/// CSC in synchronous mode: the gateway stops after recording the send and before applying
/// the answer (a SQLite trigger refuses the `signed` write, as a crash would leave it). The
/// restarted flow finds the kept answer, never asks CSC about its own `sync:` transaction,
/// and completes with one signHash; without a kept answer it fails with its reason.
#[tokio::test]
async fn a_crash_between_a_synchronous_answer_and_its_record_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sb = Csc::start(
        0,
        CscConfig {
            confirm_after: Duration::from_millis(50),
            lifetime: Duration::from_secs(60),
            ..CscConfig::default()
        },
    )
    .await
    .unwrap();
    let signers = || {
        Signers::default().with(
            build(
                "csc",
                &section("csc", &sb.base_url(), "operation_mode = \"sync\"\n"),
                &root(),
            )
            .unwrap(),
        )
    };
    let path = dir.path().join("sync.db");
    let sink = Collect::default();
    let ids = {
        // One request at a time, so that the crash stops nothing else mid-call.
        let one_at_a_time = ServiceSettings {
            concurrency: 1,
            ..settings("gw-1")
        };
        let svc = SignatureService::new(sqlite(dir.path(), "sync").await, signers(), one_at_a_time);
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TRIGGER crash BEFORE UPDATE OF state ON signature_requests
             WHEN NEW.state = 'signed'
             BEGIN SELECT RAISE(ABORT, 'the gateway stopped here'); END;",
        )
        .unwrap();
        let mut ids = Vec::new();
        for key in ["s-1", "s-2"] {
            let id = svc
                .accept("onestop", key, &payload("csc", &format!("doc {key}")))
                .await
                .unwrap()
                .request_id;
            assert!(
                svc.round(&sink).await.is_err(),
                "the round stops at the crash"
            );
            ids.push(id);
        }
        conn.execute_batch("DROP TRIGGER crash;").unwrap();
        (ids[0].clone(), ids[1].clone())
    };
    let (a, b) = ids;
    for id in [&a, &b] {
        let r = gw_store::signatures::open(path.to_str().unwrap())
            .await
            .unwrap()
            .get(id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            r.state,
            RequestState::Sent,
            "{id}: recorded sent, the answer not applied"
        );
        assert!(r.transaction_id.as_deref().unwrap().starts_with("sync:"));
    }
    // `b` stands for a store written before the answer was kept: its answer is gone.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "DELETE FROM signature_blobs WHERE request_id = ?1 AND kind = 'sync_answer'",
            [&b],
        )
        .unwrap();
    // The restart.
    let svc = SignatureService::new(
        sqlite(dir.path(), "sync").await,
        signers(),
        settings("gw-1"),
    );
    let done = until_state(&svc, &sink, &a, RequestState::Completed).await;
    assert_eq!(done.sends, 1);
    let failed = until_state(&svc, &sink, &b, RequestState::Failed).await;
    assert_eq!(failed.failure_kind.as_deref(), Some("sync_answer_lost"));
    assert!(
        failed
            .failure_reason
            .as_deref()
            .unwrap()
            .contains("not asked again"),
        "{failed:?}"
    );
    let rec = sb.records();
    assert_eq!(
        rec.calls("signatures/signHash"),
        2,
        "one signHash each, never a second"
    );
    assert_eq!(rec.pushes.len(), 2);
    assert_eq!(
        rec.calls("signatures/signPolling"),
        0,
        "CSC is never asked about the gateway's own sync: transaction"
    );
}

/// A RabbitMQ queue of its own, deleted at the end.
struct Queue {
    amqp: Arc<gw_broker::amqp::AmqpBroker>,
    broker: Arc<dyn gw_broker::Broker>,
    name: String,
}

impl Queue {
    async fn new() -> Queue {
        let amqp = Arc::new(
            gw_broker::amqp::AmqpBroker::connect(
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                gw_broker::amqp::AmqpOptions::default(),
            )
            .await
            .unwrap(),
        );
        let name = unique("gwt_sigops");
        let broker: Arc<dyn gw_broker::Broker> = amqp.clone();
        broker
            .declare(&[QueueSpec {
                name: name.clone(),
                delivery_limit: 5,
            }])
            .await
            .unwrap();
        Queue { amqp, broker, name }
    }

    fn sink(&self) -> Arc<BrokerSink> {
        Arc::new(BrokerSink {
            broker: self.broker.clone(),
            queue: self.name.clone(),
        })
    }

    /// Every message on the queue, raw (not deduplicated), acked.
    async fn drain(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut c = self.broker.consume(&self.name, 500).await.unwrap();
        // Bounded: at most 1,000 messages, each within 2 s of the previous.
        for _ in 0..1_000 {
            match tokio::time::timeout(Duration::from_secs(2), c.next()).await {
                Ok(Some(d)) => {
                    let d = d.unwrap();
                    out.push(serde_json::from_slice(&d.message.body).unwrap());
                    d.ack().await.unwrap();
                }
                _ => break,
            }
        }
        out
    }

    async fn delete(self) {
        let _ = self.amqp.delete_queue(&self.name).await;
    }
}

fn per_request(events: &[Value]) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for e in events {
        *m.entry(e["payload"]["request_id"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    m
}

/// Two instances on one PostgreSQL schema drain the signature outbox at once: every outcome
/// reaches RabbitMQ exactly once (raw messages counted, not deduplicated). Then outcomes
/// claimed by an instance that died: with the shipped lease (60 s) the live instance leaves
/// them alone; with a short one it takes them over once it has run out, and publishes each
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_publish_each_outcome_once() {
    if !common::services_available("two_instances_publish_each_outcome_once") {
        return;
    }
    let sb = smartca(Duration::from_millis(100)).await;
    let schema = unique("gwt_sigops");
    let url = format!("postgres://postgres@127.0.0.1:5432/test?schema={schema}");
    let queue = Queue::new().await;
    let service = |instance: &str| {
        let (url, instance) = (url.clone(), instance.to_owned());
        let signers = Signers::default().with(smartca_signer(&sb));
        async move {
            Arc::new(SignatureService::new(
                gw_store::signatures::open(&url).await.unwrap(),
                signers,
                settings(&instance),
            ))
        }
    };
    let a = service("instance-a").await;
    let b = service("instance-b").await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let svc = if i % 2 == 0 { &a } else { &b };
        let acc = svc
            .accept(
                "onestop",
                &format!("o-{i}"),
                &payload("smartca", &format!("doc {i}")),
            )
            .await
            .unwrap();
        ids.push(acc.request_id);
    }
    let sink = queue.sink();
    let run = |svc: Arc<SignatureService>, sink: Arc<BrokerSink>| async move {
        for _ in 0..300 {
            svc.round(sink.as_ref()).await.unwrap();
            let all_done = svc
                .store
                .list(gw_store::signatures::ListFilter::default())
                .await
                .unwrap()
                .iter()
                .all(|r| r.state.is_terminal());
            if all_done && svc.store.unpublished(1).await.unwrap().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the outbox did not drain");
    };
    tokio::join!(run(a.clone(), sink.clone()), run(b.clone(), sink.clone()));
    let events = queue.drain().await;
    assert_eq!(events.len(), ids.len(), "one raw publish per outcome");
    let counts = per_request(&events);
    for id in &ids {
        assert_eq!(counts.get(id), Some(&1), "{id}");
    }
    let published_by_both =
        a.metrics.outcomes("smartca", "completed") + b.metrics.outcomes("smartca", "completed");
    assert_eq!(published_by_both, ids.len() as u64);

    // Outcomes left unpublished (the broker refused them), then claimed by instances that
    // die at once: one with the shipped lease, one with a short lease.
    let down = Collect::default();
    down.refuse.store(true, Ordering::SeqCst);
    let mut more = Vec::new();
    for i in 0..8 {
        more.push(
            a.accept(
                "onestop",
                &format!("d-{i}"),
                &payload("smartca", &format!("doc d-{i}")),
            )
            .await
            .unwrap()
            .request_id,
        );
    }
    for id in &more {
        until_state(&a, &down, id, RequestState::Completed).await;
    }
    assert_eq!(a.store.unpublished(100).await.unwrap().len(), more.len());
    let now = gateway::model::time::now_ms();
    let shipped = ServiceSettings::default().outbox_lease.as_millis() as i64;
    let held = a
        .store
        .claim_unpublished("instance-dead-1", now, shipped, 4)
        .await
        .unwrap();
    let short = a
        .store
        .claim_unpublished("instance-dead-2", now, 1_000, 4)
        .await
        .unwrap();
    assert_eq!((held.len(), short.len()), (4, 4));
    // While both leases live, the live instance publishes nothing.
    assert_eq!(b.publish_outcomes(sink.as_ref(), 100).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(b.publish_outcomes(sink.as_ref(), 100).await.unwrap(), 4);
    assert_eq!(b.publish_outcomes(sink.as_ref(), 100).await.unwrap(), 0);
    let taken = queue.drain().await;
    let counts = per_request(&taken);
    let short_ids: std::collections::BTreeSet<&str> =
        short.iter().map(|e| e.request_id.as_str()).collect();
    assert_eq!(
        taken.len(),
        4,
        "each taken-over outcome published once: {counts:?}"
    );
    for (id, n) in &counts {
        assert!(
            short_ids.contains(id.as_str()),
            "{id} was held under the shipped lease"
        );
        assert_eq!(*n, 1);
    }
    assert_eq!(
        a.store.unpublished(100).await.unwrap().len(),
        4,
        "the shipped lease still holds"
    );
    queue.delete().await;
}

/// Through a running gateway: the ops API lists the pending request per service and state;
/// a viewer cannot cancel, an operator can (recorded with the token's name); the signing job
/// then tells the service, which has no cancel operation: recorded, counted on /metrics, shown
/// by `gateway signing show`, and the request leaves the pending view.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_ops_api_shows_pending_requests_and_cancels_them() {
    use common::{config_text, eventually, load, Backend, TOKEN};
    use gw_contract_tests::sink::{Faults, Sink};
    let sink = Sink::start(0, Faults::default()).await.unwrap();
    let sb = smartca(Duration::from_secs(120)).await;
    let dir = tempfile::tempdir().unwrap();
    let route = unique("sigops");
    std::env::set_var("GW_TEST_SIGOPS_VIEWER", "sigops-viewer-token");
    std::env::set_var("GW_TEST_SIGOPS_OPERATOR", "sigops-operator-token");
    let mut text = config_text(Backend::Embedded, dir.path(), &route, &sink.url(), "")
        .replace("max_body_bytes = 4096", "max_body_bytes = 65536")
        .replace(
            "[ops]\nlisten = \"127.0.0.1:0\"\n",
            "[ops]\nlisten = \"127.0.0.1:0\"\ntokens = [{ name = \"v\", role = \"viewer\", token = { env = \"GW_TEST_SIGOPS_VIEWER\" } }, { name = \"lan\", role = \"operator\", token = { env = \"GW_TEST_SIGOPS_OPERATOR\" } }]\n",
        )
        .replace(
            "kinds = [\"dossier.*\"]\n\n[adapters.sink]",
            "kinds = [\"dossier.*\", \"signature.requested\"]\n\n[adapters.sink]",
        );
    text.push_str(&format!(
        "\n[[routes]]\nname = \"{route}-sig\"\nfrom = \"signatures\"\nkinds = [\"signature.*\"]\nto = \"sink\"\n\n[signers.smartca]\n{}",
        section_text("smartca", &sb.base_url(), "", "signers.smartca.")
    ));
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, &text).unwrap();
    let running = gateway::app::start(&load(&text), tokio_util::sync::CancellationToken::new())
        .await
        .expect("gateway starts");
    let client = reqwest::Client::new();
    let accepted: Value = client
        .post(format!("http://{}/in/onestop", running.inbound_addr))
        .bearer_auth(TOKEN)
        .json(&json!({"kind": "signature.requested", "key": "ops-1", "payload": payload("smartca", "doc ops-1")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = accepted["request_id"]
        .as_str()
        .expect("a request id")
        .to_owned();
    let ops = running.ops_addr;
    let get = |path: &'static str| {
        let client = client.clone();
        async move {
            client
                .get(format!("http://{ops}{path}"))
                .bearer_auth("sigops-viewer-token")
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let mut pending = Value::Null;
    for _ in 0..100 {
        pending = serde_json::from_str(&get("/api/v1/signing/pending").await).unwrap();
        if pending["services"][0]["states"]["waiting"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = &pending["services"][0];
    assert_eq!(s["service"], "smartca", "{pending}");
    assert_eq!(
        (s["pending"].as_i64(), s["waiting_for_official"].as_i64()),
        (Some(1), Some(1)),
        "{pending}"
    );
    assert_eq!(s["states"]["waiting"], 1, "{pending}");
    assert!(!pending.to_string().contains("official-rsa"));
    let cancel = |token: &'static str, id: String| {
        let client = client.clone();
        async move {
            let r = client
                .post(format!("http://{ops}/api/v1/signing/{id}/cancel"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (st, _) = cancel("sigops-viewer-token", id.clone()).await;
    assert_eq!(st, 403, "a viewer cannot cancel");
    let (st, body) = cancel("sigops-operator-token", id.clone()).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["result"], "cancelled");
    assert_eq!(body["by"], "operator:lan");
    assert_eq!(body["service_cancel"], "pending");
    let (st, body) = cancel("sigops-operator-token", "no-such-request".into()).await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = get("/metrics").await;
        if metrics.contains("gateway_signature_cancel_notices_total{service=\"smartca\",reason=\"not_supported_by_service\"} 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        metrics.contains("gateway_signature_cancel_notices_total{service=\"smartca\",reason=\"not_supported_by_service\"} 1"),
        "{metrics}"
    );
    let (st, body) = cancel("sigops-operator-token", id.clone()).await;
    assert_eq!(
        (st, body["result"].as_str()),
        (200, Some("already_cancelled"))
    );
    assert_eq!(body["service_cancel"], "not_supported_by_service");
    let pending: Value = serde_json::from_str(&get("/api/v1/signing/pending").await).unwrap();
    assert_eq!(pending["services"], json!([]), "{pending}");
    eventually(
        Duration::from_secs(30),
        "signature.failed (cancelled) delivered",
        || sink.records().iter().any(|r| r.kind == "signature.failed"),
    )
    .await;
    let shown = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["signing", "show", &id, "--config"])
        .arg(&config)
        .env("GW_TEST_SOURCE_TOKEN", TOKEN)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&shown.stderr)
    );
    assert!(
        out.contains("service told of the cancel: not_supported_by_service"),
        "{out}"
    );
    assert!(
        out.contains("operator:lan") || out.contains("cancelled"),
        "{out}"
    );
    assert_eq!(sb.records().pushes.len(), 1);
    running.shutdown().await;
}
