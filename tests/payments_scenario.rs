//! Payments under random interleavings, and the whole gateway delivering `payment.settled`.
//!
//! `random_interleavings_keep_the_payment_invariants`: per seed, dossiers ask for their fees
//! (repeatedly, concurrently), citizens open, pay or abandon, VNPay's IPNs arrive genuine,
//! replayed, forged, with a wrong amount, late or never, reconciliation runs, notices are
//! published, and the gateway crashes (the service is rebuilt on the same store file) at any
//! point. After a final reconciliation of the day:
//! 1. one order per fee (references unique, one per fee item);
//! 2. no order is paid unless the provider has it paid, and every `paid` transition came from
//!    a callback or a provider query;
//! 3. every order the provider has paid is paid here, and its `payment.settled` reached the
//!    one-stop queue.
//!
//! `GW_PAY_SCENARIOS=N` runs N seeds (default 8).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use gateway::edge::payments::{router, PaymentsHttp};
use gateway::payments::reconcile::reconcile;
use gateway::payments::vnpay::{VnPay, VnPaySettings};
use gateway::payments::{BrokerSink, Fee, FeeCheck, Grouping, PaymentRequest, Payments, Settings};
use gw_broker::QueueSpec;
use gw_contract_tests::vnpay::VnPaySandbox;
use gw_store::payments::OrderState;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TMN: &str = "GWSCEN01";
const SECRET: &str = "SCENARIOSECRET";
const QUEUE: &str = "onestop.payments";

struct World {
    store_path: String,
    sandbox: VnPaySandbox,
    payments: Arc<Payments>,
    ipn_url: String,
    server: tokio::task::JoinHandle<()>,
}

async fn boot(
    store_path: &str,
    sandbox: &VnPaySandbox,
) -> (Arc<Payments>, String, tokio::task::JoinHandle<()>) {
    let store = gw_store::payments::open(store_path).await.unwrap();
    let v = Arc::new(
        VnPay::new(VnPaySettings {
            name: "vnpay".into(),
            tmn_code: TMN.into(),
            hash_secret: SECRET.into(),
            pay_url: sandbox.pay_url(),
            api_url: sandbox.api_url(),
            return_url: "https://motcua.example/return".into(),
            ip_addr: "127.0.0.1".into(),
            timeout: Duration::from_secs(5),
        })
        .unwrap(),
    );
    let payments = Arc::new(
        Payments::new(
            store,
            Settings {
                grouping: Grouping::PerFee,
                deadline: Duration::ZERO,
                // The provider protocol is under test; the fee check has its own test.
                fee_check: FeeCheck::Off,
                ..Settings::default()
            },
        )
        .with_provider(v.clone()),
    );
    let app = router(Arc::new(PaymentsHttp {
        payments: payments.clone(),
        vnpay: [("vnpay".to_string(), v)].into_iter().collect(),
        platform: Default::default(),
        paygov: Default::default(),
        momo: Default::default(),
        token: None,
    }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/payments/vnpay/ipn", l.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (payments, url, server)
}

fn request(dossier: usize, fees: usize) -> PaymentRequest {
    PaymentRequest {
        dossier_code: format!("H01.01-{dossier:04}"),
        fees: (0..fees)
            .map(|i| Fee {
                code: format!("FEE{i}"),
                amount: 10_000 * (i as i64 + 1) + dossier as i64,
            })
            .collect(),
        attempt: 1,
    }
}

/// Runs one seed; returns how many orders ended paid and how many callbacks were refused.
async fn run_seed(seed: u64, store_url: Option<String>) -> (usize, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let store_path =
        store_url.unwrap_or_else(|| dir.path().join("store.db").to_str().unwrap().to_string());
    let sandbox = VnPaySandbox::start(0, TMN, SECRET).await.unwrap();
    let (payments, ipn_url, server) = boot(&store_path, &sandbox).await;
    let mut w = World {
        store_path,
        sandbox,
        payments,
        ipn_url,
        server,
    };
    let broker = gw_broker::open(dir.path().join("q.db").to_str().unwrap(), "t")
        .await
        .unwrap();
    broker
        .declare(&[QueueSpec {
            name: QUEUE.into(),
            delivery_limit: 5,
        }])
        .await
        .unwrap();
    let sink = BrokerSink {
        broker: broker.clone(),
        queue: QUEUE.into(),
    };
    let dossiers: Vec<usize> = (0..3).map(|_| rng.random_range(1..=3)).collect();
    // reference → pay URL, as the one-stop system learnt them.
    let mut known: BTreeMap<String, String> = BTreeMap::new();
    let mut sent: Vec<Vec<(String, String)>> = Vec::new();
    let mut refused = 0;
    let steps = rng.random_range(10..40);
    for _ in 0..steps {
        let any_ref = |rng: &mut StdRng, known: &BTreeMap<String, String>| {
            (!known.is_empty()).then(|| {
                known
                    .keys()
                    .nth(rng.random_range(0..known.len()))
                    .unwrap()
                    .clone()
            })
        };
        match rng.random_range(0..12) {
            0 | 1 => {
                let d = rng.random_range(0..dossiers.len());
                let req = request(d, dossiers[d]);
                let (a, b) = if rng.random_bool(0.3) {
                    let (a, b) = tokio::join!(
                        w.payments.request("vnpay", &req),
                        w.payments.request("vnpay", &req)
                    );
                    (a.unwrap(), Some(b.unwrap()))
                } else {
                    (w.payments.request("vnpay", &req).await.unwrap(), None)
                };
                if let Some(b) = b {
                    assert_eq!(a, b);
                }
                for o in a {
                    known.insert(o.reference, o.pay_url.unwrap());
                }
            }
            2 => {
                if let Some(r) = any_ref(&mut rng, &known) {
                    w.sandbox.open(&known[&r]).await.unwrap();
                }
            }
            3 | 4 => {
                if let Some(r) = any_ref(&mut rng, &known) {
                    // Most citizens open the page just before paying; some opened it earlier.
                    if rng.random_bool(0.7) {
                        w.sandbox.open(&known[&r]).await.unwrap();
                    }
                    if rng.random_bool(0.75) {
                        w.sandbox.pay(&r);
                    } else {
                        w.sandbox.abandon(&r);
                    }
                }
            }
            5 | 6 => {
                // The IPN of a settled transaction (dropped one time in three: lost).
                if let Some(r) = any_ref(&mut rng, &known) {
                    if let Some(t) = w.sandbox.txn(&r).filter(|t| t.status != "01") {
                        let ipn = w.sandbox.sign_ipn(&t);
                        if rng.random_bool(0.66) {
                            w.sandbox.send_ipn(&w.ipn_url, &ipn).await.unwrap();
                        }
                        sent.push(ipn);
                    }
                }
            }
            7 => {
                if !sent.is_empty() {
                    let ipn = sent[rng.random_range(0..sent.len())].clone();
                    let a = w.sandbox.send_ipn(&w.ipn_url, &ipn).await.unwrap();
                    assert!(
                        ["00", "02"].contains(&a.rsp_code.as_str()),
                        "replay answered {a:?}"
                    );
                }
            }
            8 => {
                // Forged: an abandoned or open transaction claimed paid, or a wrong amount.
                if let Some(r) = any_ref(&mut rng, &known) {
                    if let Some(mut t) = w.sandbox.txn(&r) {
                        let forged = if rng.random_bool(0.5) {
                            t.response_code = "00".into();
                            t.status = "00".into();
                            let mut ipn = w.sandbox.sign_ipn(&t);
                            ipn.last_mut().unwrap().1 = "0".repeat(128);
                            ipn
                        } else {
                            t.amount100 += 100;
                            t.response_code = "00".into();
                            t.status = "00".into();
                            w.sandbox.sign_ipn(&t)
                        };
                        let a = w.sandbox.send_ipn(&w.ipn_url, &forged).await.unwrap();
                        assert!(
                            ["97", "04"].contains(&a.rsp_code.as_str()),
                            "forgery answered {a:?}"
                        );
                        refused += 1;
                    }
                }
            }
            9 => {
                let p = w.payments.provider("vnpay").unwrap().clone();
                reconcile(
                    &w.payments,
                    p.as_ref(),
                    gateway::model::time::now_ms() + 1,
                    None,
                )
                .await
                .unwrap();
            }
            10 => {
                w.payments.publish_notices(&sink, 1000).await.unwrap();
            }
            _ => {
                // Crash and restart on the same store.
                w.server.abort();
                let (p, u, s) = boot(&w.store_path, &w.sandbox).await;
                (w.payments, w.ipn_url, w.server) = (p, u, s);
            }
        }
    }
    // The day's reconciliation, then the outbox drain.
    let p = w.payments.provider("vnpay").unwrap().clone();
    reconcile(
        &w.payments,
        p.as_ref(),
        gateway::model::time::now_ms() + 1,
        Some((0, gateway::model::time::now_ms() + 1)),
    )
    .await
    .unwrap();
    w.payments.publish_notices(&sink, 10_000).await.unwrap();

    // 1. One order per fee.
    for (d, fees) in dossiers.iter().enumerate() {
        let orders = w
            .payments
            .store
            .orders_for_dossier(&format!("H01.01-{d:04}"))
            .await
            .unwrap();
        assert!(
            orders.is_empty() || orders.len() == *fees,
            "seed {seed}: {orders:?}"
        );
        let items: BTreeSet<_> = orders
            .iter()
            .flat_map(|o| o.order.fee_items.clone())
            .collect();
        assert_eq!(items.len(), orders.len(), "seed {seed}");
    }
    // 2 and 3.
    let n = broker.stats(QUEUE).await.unwrap().ready;
    let mut c = broker.consume(QUEUE, 1000).await.unwrap();
    let mut delivered_paid = BTreeSet::new();
    for _ in 0..n {
        let d = c.next().await.unwrap().unwrap();
        let env = gateway::model::envelope::Envelope::decode(&d.message.body).unwrap();
        let payload = env.payload_value();
        if payload["status"] == "paid" {
            delivered_paid.insert(payload["reference"].as_str().unwrap().to_string());
        }
        d.ack().await.unwrap();
    }
    for r in known.keys() {
        let o = w.payments.store.order(r).await.unwrap().unwrap();
        let there_paid = w.sandbox.txn(r).is_some_and(|t| t.status == "00");
        assert_eq!(
            o.state == OrderState::Paid,
            there_paid,
            "seed {seed}: {r} here {:?}",
            o.state
        );
        if o.state == OrderState::Paid {
            let trail = w.payments.store.transitions(r).await.unwrap();
            let paid = trail.iter().find(|t| t.to == OrderState::Paid).unwrap();
            assert!(
                ["callback", "query"].contains(&paid.source.as_str()),
                "seed {seed}"
            );
            assert!(
                delivered_paid.contains(r),
                "seed {seed}: {r} paid but not delivered"
            );
        }
    }
    for r in &delivered_paid {
        assert!(
            w.sandbox.txn(r).is_some_and(|t| t.status == "00"),
            "seed {seed}: {r} delivered paid"
        );
    }
    w.server.abort();
    (delivered_paid.len(), refused)
}

#[tokio::test]
async fn random_interleavings_keep_the_payment_invariants() {
    let seeds: u64 = std::env::var("GW_PAY_SCENARIOS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let (mut paid, mut refused) = (0, 0);
    for seed in 0..seeds {
        let (p, r) = run_seed(seed, None).await;
        paid += p;
        refused += r;
    }
    println!("{seeds} seeds: {paid} orders paid and delivered, {refused} forged callbacks refused");
    assert!(
        paid > 0 && refused > 0,
        "the scenarios must exercise payments and forgeries"
    );
}

/// The whole gateway: `[payments]` in its configuration, the one-stop system asks over HTTP,
/// the citizen pays, VNPay's IPN reaches the inbound listener, and `payment.settled` is
/// delivered to the one-stop adapter through the route runtime.
#[tokio::test]
async fn the_gateway_delivers_a_paid_fee_to_the_onestop_system() {
    let dir = tempfile::tempdir().unwrap();
    let sink = gw_contract_tests::sink::Sink::start(0, Default::default())
        .await
        .unwrap();
    let sandbox = VnPaySandbox::start(0, TMN, SECRET).await.unwrap();
    std::env::set_var("GW_TEST_VNPAY_SECRET", SECRET);
    let mut text = common::config_text(
        common::Backend::Embedded,
        dir.path(),
        "pay_route",
        &sink.url(),
        "",
    );
    text.push_str(&format!(
        r#"
[payments]
reconcile_interval = "0s"
token = {{ env = "GW_TEST_SOURCE_TOKEN" }}

[payments.vnpay.vnpay]
tmn_code = "{TMN}"
hash_secret = {{ env = "GW_TEST_VNPAY_SECRET" }}
return_url = "https://motcua.example/return"
pay_url = "{}"
api_url = "{}"

[[routes]]
name = "payments-out"
from = "payments"
kinds = ["payment.settled"]
to = "sink"
"#,
        sandbox.pay_url(),
        sandbox.api_url()
    ));
    let loaded = common::load(&text);
    let running = gateway::app::start(&loaded, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    let base = format!("http://{}", running.inbound_addr);
    let http = reqwest::Client::new();
    // The one-stop system sends the dossier first: its snapshot's fees are what orders are
    // checked against (`fee_check = "known"`, the default).
    let order_for = |amount: i64| serde_json::json!({"dossier_code": "H01.01-0100", "fees": [{"code": "LEPHI", "amount": amount}]});
    let before = http
        .post(format!("{base}/payments/vnpay/orders"))
        .bearer_auth(common::TOKEN)
        .json(&order_for(30000))
        .send()
        .await
        .unwrap();
    assert_eq!(
        before.status(),
        409,
        "no order before the dossier's fees are known"
    );
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
    let snapshot = gateway::lab::simulator::dossier_events(&mut rng, "H01.01", 100, 1)
        .into_iter()
        .find(|e| e.kind == "dossier.upserted")
        .unwrap();
    let mut payload = snapshot.payload.clone();
    payload["fees"] = serde_json::json!([{"code": "LEPHI", "name": "Le phi", "amount_vnd": 30000}]);
    payload["code"] = "H01.01-0100".into();
    let posted = http
        .post(format!("{base}/in/onestop"))
        .bearer_auth(common::TOKEN)
        .json(&serde_json::json!({"kind": "dossier.upserted", "key": "H01.01-0100", "version": payload["version"], "payload": payload}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 202, "{}", posted.text().await.unwrap());
    let cheap = http
        .post(format!("{base}/payments/vnpay/orders"))
        .bearer_auth(common::TOKEN)
        .json(&order_for(1000))
        .send()
        .await
        .unwrap();
    assert_eq!(
        cheap.status(),
        422,
        "an order below the dossier's fee is refused"
    );
    let body = order_for(30000);
    let unauthorized = http
        .post(format!("{base}/payments/vnpay/orders"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    let r = http
        .post(format!("{base}/payments/vnpay/orders"))
        .bearer_auth(common::TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    let reference = v["orders"][0]["reference"].as_str().unwrap().to_string();
    sandbox
        .open(v["orders"][0]["pay_url"].as_str().unwrap())
        .await
        .unwrap();
    sandbox.pay(&reference);
    let ipn = sandbox.ipn(&reference).unwrap();
    let a = sandbox
        .send_ipn(&format!("{base}/payments/vnpay/ipn"), &ipn)
        .await
        .unwrap();
    assert_eq!(a.rsp_code, "00");
    common::eventually(
        Duration::from_secs(30),
        "payment.settled delivered to the one-stop sink",
        || {
            sink.records()
                .iter()
                .any(|r| r.kind == "payment.settled" && r.key == "H01.01-0100")
        },
    )
    .await;
    // The gateway wires the evidence log into the payment service (default mode `metadata`):
    // the request and the paid IPN are records of the dossier, and the chain verifies.
    let records = running
        .engine
        .store
        .evidence_by_dossier("H01.01-0100")
        .await
        .unwrap();
    let payment_ops: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r.record.adapter == "vnpay")
        .map(|r| (r.record.operation.as_str(), r.record.direction.as_str()))
        .collect();
    assert_eq!(
        payment_ops,
        [("payment.requested", "out"), ("payment.paid", "in")],
        "{records:#?}"
    );
    let report = gateway::cli::evidence::verify(running.engine.store.as_ref(), None)
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    let metrics = http
        .get(format!("http://{}/metrics", running.ops_addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("# TYPE gateway_payment_mismatches counter"));
    running.shutdown().await;
}

/// A few seeds with the payment store on PostgreSQL (a fresh schema per seed).
#[tokio::test]
async fn random_interleavings_on_postgresql() {
    if !common::services_available("random_interleavings_on_postgresql") {
        return;
    }
    let mut paid = 0;
    for seed in 100..103 {
        let schema = common::unique("gwpay");
        let url = format!("postgres://postgres@127.0.0.1:5432/test?schema={schema}");
        paid += run_seed(seed, Some(url)).await.0;
        let (client, conn) = tokio_postgres::connect(
            "postgres://postgres@127.0.0.1:5432/test",
            tokio_postgres::NoTls,
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await
            .unwrap();
    }
    println!("PostgreSQL: {paid} orders paid and delivered");
}
