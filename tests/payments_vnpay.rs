//! VNPay end to end against the strict VNPay sandbox: the gateway's payment endpoints on a real
//! listener, the SQLite payment store, the embedded broker receiving `payment.settled`.
//!
//! Cases (issue 5): happy path, forged checksum, wrong amount, unknown order, replayed callback,
//! callback before the request was recorded, late and out-of-order callbacks, creation retried
//! after a lost answer or a crash (still one order), callback lost and settled by
//! reconciliation, and reconciliation's mismatch report.

use std::sync::Arc;
use std::time::Duration;

use gateway::edge::payments::{router, PaymentsHttp};
use gateway::payments::reconcile::{reconcile, MismatchKind, ReconcileMetrics};
use gateway::payments::vnpay::{VnPay, VnPaySettings};
use gateway::payments::{
    order_reference, BrokerSink, Fee, FeeCheck, Grouping, OrderView, PaymentRequest, Payments,
    Settings, SETTLED_KIND,
};
use gw_broker::{Broker, QueueSpec};
use gw_contract_tests::vnpay::{Txn, VnPayFaults, VnPaySandbox};
use gw_store::payments::OrderState;

const TMN: &str = "GWTEST01";
const SECRET: &str = "VNPAYTESTSECRET";
const QUEUE: &str = "onestop.payments";

struct Harness {
    _dir: tempfile::TempDir,
    store_path: String,
    sandbox: VnPaySandbox,
    payments: Arc<Payments>,
    broker: Arc<dyn Broker>,
    base: String,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

fn vnpay(sandbox: &VnPaySandbox) -> Arc<VnPay> {
    Arc::new(
        VnPay::new(VnPaySettings {
            name: "vnpay".into(),
            tmn_code: TMN.into(),
            hash_secret: SECRET.into(),
            pay_url: sandbox.pay_url(),
            api_url: sandbox.api_url(),
            return_url: "https://motcua.example/payment/return".into(),
            ip_addr: "127.0.0.1".into(),
            timeout: Duration::from_secs(5),
        })
        .unwrap(),
    )
}

fn settings(grouping: Grouping, deadline: Duration) -> Settings {
    Settings {
        grouping,
        deadline,
        // The provider protocol is under test; the fee check has its own test.
        fee_check: FeeCheck::Off,
        ..Settings::default()
    }
}

async fn serve(payments: Arc<Payments>, v: Arc<VnPay>) -> (String, tokio::task::JoinHandle<()>) {
    let app = router(Arc::new(PaymentsHttp {
        payments,
        vnpay: [("vnpay".to_string(), v)].into_iter().collect(),
        platform: Default::default(),
        paygov: Default::default(),
        momo: Default::default(),
        token: None,
    }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let h = tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (format!("http://{addr}"), h)
}

impl Harness {
    async fn new(grouping: Grouping) -> Self {
        Self::with_deadline(grouping, Duration::from_secs(1800)).await
    }

    async fn with_deadline(grouping: Grouping, deadline: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store_path = dir.path().join("store.db").to_str().unwrap().to_string();
        let store = gw_store::payments::open(&store_path).await.unwrap();
        let sandbox = VnPaySandbox::start(0, TMN, SECRET).await.unwrap();
        let v = vnpay(&sandbox);
        let payments =
            Arc::new(Payments::new(store, settings(grouping, deadline)).with_provider(v.clone()));
        let (base, server) = serve(payments.clone(), v).await;
        let broker = gw_broker::open(dir.path().join("queue.db").to_str().unwrap(), "t")
            .await
            .unwrap();
        broker
            .declare(&[QueueSpec {
                name: QUEUE.into(),
                delivery_limit: 5,
            }])
            .await
            .unwrap();
        Harness {
            _dir: dir,
            store_path,
            sandbox,
            payments,
            broker,
            base,
            http: reqwest::Client::new(),
            server,
        }
    }

    /// A crash: the server and the service go away; a new one opens the same store file.
    async fn restart(&mut self, grouping: Grouping) {
        self.server.abort();
        let store = gw_store::payments::open(&self.store_path).await.unwrap();
        let v = vnpay(&self.sandbox);
        self.payments = Arc::new(
            Payments::new(store, settings(grouping, Duration::from_secs(1800)))
                .with_provider(v.clone()),
        );
        let (base, server) = serve(self.payments.clone(), v).await;
        self.base = base;
        self.server = server;
    }

    fn ipn_url(&self) -> String {
        format!("{}/payments/vnpay/ipn", self.base)
    }

    async fn request(&self, dossier: &str, fees: &[(&str, i64)]) -> Vec<OrderView> {
        let req = PaymentRequest {
            dossier_code: dossier.into(),
            fees: fees
                .iter()
                .map(|(c, a)| Fee {
                    code: c.to_string(),
                    amount: *a,
                })
                .collect(),
            attempt: 1,
        };
        let r = self
            .http
            .post(format!("{}/payments/vnpay/orders", self.base))
            .json(&req)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let v: serde_json::Value = r.json().await.unwrap();
        serde_json::from_value(v["orders"].clone()).unwrap()
    }

    async fn state(&self, reference: &str) -> OrderState {
        self.payments
            .store
            .order(reference)
            .await
            .unwrap()
            .unwrap()
            .state
    }

    /// Publish the outbox, then read every `payment.settled` envelope on the queue.
    async fn delivered(&self) -> Vec<serde_json::Value> {
        let sink = BrokerSink {
            broker: self.broker.clone(),
            queue: QUEUE.into(),
        };
        self.payments.publish_notices(&sink, 1000).await.unwrap();
        let n = self.broker.stats(QUEUE).await.unwrap().ready;
        let mut c = self.broker.consume(QUEUE, 100).await.unwrap();
        let mut out = Vec::new();
        for _ in 0..n {
            let d = c.next().await.unwrap().unwrap();
            let env = gateway::model::envelope::Envelope::decode(&d.message.body).unwrap();
            assert_eq!(env.kind, SETTLED_KIND);
            out.push(env.payload_value());
            d.ack().await.unwrap();
        }
        out
    }
}

async fn pay_and_notify(h: &Harness, o: &OrderView) -> String {
    h.sandbox.open(o.pay_url.as_deref().unwrap()).await.unwrap();
    assert!(h.sandbox.pay(&o.reference));
    let ipn = h.sandbox.ipn(&o.reference).unwrap();
    h.sandbox
        .send_ipn(&h.ipn_url(), &ipn)
        .await
        .unwrap()
        .rsp_code
}

#[tokio::test]
async fn happy_path_then_replay_is_already_confirmed() {
    let h = Harness::new(Grouping::PerFee).await;
    let orders = h
        .request("H01.01-0001", &[("LEPHI", 50_000), ("PHI", 20_000)])
        .await;
    assert_eq!(orders.len(), 2, "one order per fee");
    for o in &orders {
        assert!(o.reference.len() <= 20);
        assert_eq!(o.state, OrderState::Requested);
    }
    assert_eq!(pay_and_notify(&h, &orders[0]).await, "00");
    assert_eq!(h.state(&orders[0].reference).await, OrderState::Paid);
    assert_eq!(h.state(&orders[1].reference).await, OrderState::Requested);
    let trail = h
        .payments
        .store
        .transitions(&orders[0].reference)
        .await
        .unwrap();
    assert_eq!(
        trail
            .iter()
            .map(|t| (t.to, t.source.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (OrderState::Requested, "request"),
            (OrderState::Paid, "callback")
        ]
    );
    // Replayed: answered 02, nothing changes, no second notice.
    let ipn = h.sandbox.ipn(&orders[0].reference).unwrap();
    assert_eq!(
        h.sandbox
            .send_ipn(&h.ipn_url(), &ipn)
            .await
            .unwrap()
            .rsp_code,
        "02"
    );
    assert_eq!(
        h.payments
            .store
            .transitions(&orders[0].reference)
            .await
            .unwrap()
            .len(),
        2
    );
    let notices = h.delivered().await;
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0]["reference"], orders[0].reference.as_str());
    assert_eq!(notices[0]["status"], "paid");
    assert_eq!(notices[0]["amount"], 50_000);
    assert_eq!(notices[0]["dossier_code"], "H01.01-0001");
    assert!(h.sandbox.refused().is_empty(), "{:?}", h.sandbox.refused());
}

#[tokio::test]
async fn forged_checksum_is_refused_and_changes_nothing() {
    let h = Harness::new(Grouping::PerFee).await;
    let o = h
        .request("H01.01-0002", &[("LEPHI", 50_000)])
        .await
        .remove(0);
    h.sandbox.open(o.pay_url.as_deref().unwrap()).await.unwrap();
    // The citizen abandons; a forger turns the failure into a success without the key.
    assert!(h.sandbox.abandon(&o.reference));
    let mut ipn = h.sandbox.ipn(&o.reference).unwrap();
    for (k, v) in ipn.iter_mut() {
        if k == "vnp_ResponseCode" || k == "vnp_TransactionStatus" {
            *v = "00".into();
        }
    }
    assert_eq!(
        h.sandbox
            .send_ipn(&h.ipn_url(), &ipn)
            .await
            .unwrap()
            .rsp_code,
        "97"
    );
    // A hash that is not even hex, and none at all.
    let mut bad = h.sandbox.ipn(&o.reference).unwrap();
    bad.last_mut().unwrap().1 = "zz".into();
    assert_eq!(
        h.sandbox
            .send_ipn(&h.ipn_url(), &bad)
            .await
            .unwrap()
            .rsp_code,
        "97"
    );
    bad.pop();
    assert_eq!(
        h.sandbox
            .send_ipn(&h.ipn_url(), &bad)
            .await
            .unwrap()
            .rsp_code,
        "97"
    );
    assert_eq!(h.state(&o.reference).await, OrderState::Requested);
    assert!(h.delivered().await.is_empty());
    // The genuine failure is then recorded.
    let ipn = h.sandbox.ipn(&o.reference).unwrap();
    assert_eq!(
        h.sandbox
            .send_ipn(&h.ipn_url(), &ipn)
            .await
            .unwrap()
            .rsp_code,
        "00"
    );
    assert_eq!(h.state(&o.reference).await, OrderState::Failed);
    assert_eq!(h.delivered().await[0]["status"], "failed");
}

#[tokio::test]
async fn wrong_amount_and_unknown_order_and_foreign_merchant() {
    let h = Harness::new(Grouping::PerFee).await;
    let o = h
        .request("H01.01-0003", &[("LEPHI", 50_000)])
        .await
        .remove(0);
    h.sandbox.open(o.pay_url.as_deref().unwrap()).await.unwrap();
    h.sandbox.pay(&o.reference);
    let mut t = h.sandbox.txn(&o.reference).unwrap();
    t.amount100 = 5_000_000 - 100; // 1 đồng short, correctly signed
    let ipn = h.sandbox.sign_ipn(&t);
    assert_eq!(
        h.sandbox
            .send_ipn(&h.ipn_url(), &ipn)
            .await
            .unwrap()
            .rsp_code,
        "04"
    );
    assert_eq!(h.state(&o.reference).await, OrderState::Requested);

    let mut unknown = h.sandbox.txn(&o.reference).unwrap();
    unknown.txn_ref = "GWNOTOURS0000000000X".into();
    let ipn = h.sandbox.sign_ipn(&unknown);
    assert_eq!(
        h.sandbox
            .send_ipn(&h.ipn_url(), &ipn)
            .await
            .unwrap()
            .rsp_code,
        "01"
    );

    // Signed with our key but for another merchant code: refused (99), nothing recorded.
    let other = VnPaySandbox::start(0, "OTHERTMN", SECRET).await.unwrap();
    let ipn = other.sign_ipn(&h.sandbox.txn(&o.reference).unwrap());
    assert_eq!(
        other.send_ipn(&h.ipn_url(), &ipn).await.unwrap().rsp_code,
        "99"
    );
    assert_eq!(h.state(&o.reference).await, OrderState::Requested);

    // The right one still settles it.
    let ipn = h.sandbox.ipn(&o.reference).unwrap();
    assert_eq!(
        h.sandbox
            .send_ipn(&h.ipn_url(), &ipn)
            .await
            .unwrap()
            .rsp_code,
        "00"
    );
    assert_eq!(h.state(&o.reference).await, OrderState::Paid);
}

#[tokio::test]
async fn callback_before_the_request_was_recorded_is_retried_by_the_provider() {
    let h = Harness::new(Grouping::PerFee).await;
    let reference = order_reference("GW", "H01.01-0004", "LEPHI", 1);
    let early = Txn {
        txn_ref: reference.clone(),
        amount100: 5_000_000,
        create_date: "20260101080000".into(),
        order_info: "x".into(),
        response_code: "00".into(),
        status: "00".into(),
        transaction_no: "99".into(),
        pay_date: "20260101080100".into(),
    };
    let ipn = h.sandbox.sign_ipn(&early);
    assert_eq!(
        h.sandbox
            .send_ipn(&h.ipn_url(), &ipn)
            .await
            .unwrap()
            .rsp_code,
        "01"
    );
    let o = h
        .request("H01.01-0004", &[("LEPHI", 50_000)])
        .await
        .remove(0);
    assert_eq!(o.reference, reference);
    assert_eq!(h.state(&reference).await, OrderState::Requested);
    // VNPay calls again (01 is not final for it): now it settles.
    assert_eq!(
        h.sandbox
            .send_ipn(&h.ipn_url(), &ipn)
            .await
            .unwrap()
            .rsp_code,
        "00"
    );
    assert_eq!(h.state(&reference).await, OrderState::Paid);
}

#[tokio::test]
async fn late_and_out_of_order_callbacks() {
    let h = Harness::new(Grouping::PerFee).await;
    let orders = h
        .request("H01.01-0005", &[("A", 10_000), ("B", 20_000)])
        .await;
    // Late: the order expired here, then the citizen's payment arrives: recorded, not lost.
    let a = &orders[0];
    h.sandbox.open(a.pay_url.as_deref().unwrap()).await.unwrap();
    let stored = h.payments.store.order(&a.reference).await.unwrap().unwrap();
    h.payments.expire(&stored).await.unwrap();
    assert_eq!(h.state(&a.reference).await, OrderState::Expired);
    assert_eq!(pay_and_notify_opened(&h, &a.reference).await, "00");
    assert_eq!(h.state(&a.reference).await, OrderState::Paid);
    // Out of order: the paid IPN, then an older "pending/failed" one: 02, stays paid.
    let b = &orders[1];
    h.sandbox.open(b.pay_url.as_deref().unwrap()).await.unwrap();
    let mut failed = h.sandbox.txn(&b.reference).unwrap();
    h.sandbox.pay(&b.reference);
    let ipn = h.sandbox.ipn(&b.reference).unwrap();
    assert_eq!(
        h.sandbox
            .send_ipn(&h.ipn_url(), &ipn)
            .await
            .unwrap()
            .rsp_code,
        "00"
    );
    failed.response_code = "24".into();
    failed.status = "02".into();
    let stale = h.sandbox.sign_ipn(&failed);
    assert_eq!(
        h.sandbox
            .send_ipn(&h.ipn_url(), &stale)
            .await
            .unwrap()
            .rsp_code,
        "02"
    );
    assert_eq!(h.state(&b.reference).await, OrderState::Paid);
    let statuses: Vec<_> = h
        .delivered()
        .await
        .iter()
        .map(|n| n["status"].clone())
        .collect();
    assert_eq!(statuses, vec!["expired", "paid", "paid"]);
}

async fn pay_and_notify_opened(h: &Harness, reference: &str) -> String {
    assert!(h.sandbox.pay(reference));
    let ipn = h.sandbox.ipn(reference).unwrap();
    h.sandbox
        .send_ipn(&h.ipn_url(), &ipn)
        .await
        .unwrap()
        .rsp_code
}

#[tokio::test]
async fn retried_and_concurrent_requests_and_a_crash_make_one_order_per_fee() {
    let mut h = Harness::new(Grouping::PerFee).await;
    let fees = [("LEPHI", 50_000), ("PHI", 20_000)];
    // The answer was lost (the caller timed out): it asks again, twice at once.
    let (a, b) = tokio::join!(
        h.request("H01.01-0006", &fees),
        h.request("H01.01-0006", &fees)
    );
    assert_eq!(a, b);
    h.restart(Grouping::PerFee).await;
    let c = h.request("H01.01-0006", &fees).await;
    assert_eq!(a, c, "same references and pay URLs after a restart");
    assert_eq!(
        h.payments
            .store
            .orders_for_dossier("H01.01-0006")
            .await
            .unwrap()
            .len(),
        2
    );
    // The pay URL is accepted by the strict sandbox, and opening it twice is one transaction.
    h.sandbox
        .open(a[0].pay_url.as_deref().unwrap())
        .await
        .unwrap();
    h.sandbox
        .open(c[0].pay_url.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(h.sandbox.txns().len(), 1);
    // A changed fee for an existing order is a conflict, not a second order.
    let r = h
        .http
        .post(format!("{}/payments/vnpay/orders", h.base))
        .json(&serde_json::json!({"dossier_code": "H01.01-0006", "fees": [{"code": "LEPHI", "amount": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    // Per dossier: one order for both fees, summed.
    let h2 = Harness::new(Grouping::PerDossier).await;
    let o = h2.request("H01.01-0006", &fees).await;
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].amount, 70_000);
    assert_eq!(o[0].fee_items, vec!["LEPHI", "PHI"]);
    assert_eq!(pay_and_notify(&h2, &o[0]).await, "00");
}

#[tokio::test]
async fn a_lost_callback_is_settled_by_reconciliation() {
    let h = Harness::with_deadline(Grouping::PerFee, Duration::ZERO).await;
    let orders = h
        .request(
            "H01.01-0007",
            &[
                ("PAID", 10_000),
                ("LEFT", 20_000),
                ("NEVER", 30_000),
                ("CANCEL", 40_000),
            ],
        )
        .await;
    for o in &orders[..2] {
        h.sandbox.open(o.pay_url.as_deref().unwrap()).await.unwrap();
    }
    h.sandbox
        .open(orders[3].pay_url.as_deref().unwrap())
        .await
        .unwrap();
    h.sandbox.pay(&orders[0].reference); // its IPN is lost
    h.sandbox.abandon(&orders[3].reference); // so is this one
    let provider = h.payments.provider("vnpay").unwrap().clone();
    let now = gateway::model::time::now_ms() + 1;
    // Provider down: nothing settles, errors are counted.
    h.sandbox.set_faults(VnPayFaults { query_down: true });
    let r = reconcile(&h.payments, provider.as_ref(), now, None)
        .await
        .unwrap();
    assert_eq!((r.checked, r.errors, r.settled_paid), (4, 4, 0));
    h.sandbox.set_faults(VnPayFaults::default());
    let r = reconcile(&h.payments, provider.as_ref(), now, None)
        .await
        .unwrap();
    assert_eq!(
        (r.settled_paid, r.settled_failed, r.expired, r.errors),
        (1, 1, 1, 0),
        "{r:?}"
    );
    assert_eq!(h.state(&orders[0].reference).await, OrderState::Paid);
    assert_eq!(
        h.state(&orders[1].reference).await,
        OrderState::Requested,
        "pending there"
    );
    assert_eq!(h.state(&orders[2].reference).await, OrderState::Expired);
    assert_eq!(h.state(&orders[3].reference).await, OrderState::Failed);
    let trail = h
        .payments
        .store
        .transitions(&orders[0].reference)
        .await
        .unwrap();
    assert_eq!(trail.last().unwrap().source, "query");
    // The IPN arriving after all is "already confirmed".
    let ipn = h.sandbox.ipn(&orders[0].reference).unwrap();
    assert_eq!(
        h.sandbox
            .send_ipn(&h.ipn_url(), &ipn)
            .await
            .unwrap()
            .rsp_code,
        "02"
    );
    let delivered = h.delivered().await;
    assert_eq!(delivered.len(), 3);
    assert!(delivered
        .iter()
        .any(|n| n["reference"] == orders[0].reference.as_str() && n["status"] == "paid"));
}

#[tokio::test]
async fn the_day_report_lists_amount_mismatches_and_counts_them() {
    let h = Harness::new(Grouping::PerFee).await;
    // Someone opened a pay page for this reference with another amount before the gateway made
    // its order (signed with our key: e.g. an older release's order).
    let reference = order_reference("GW", "H01.01-0008", "LEPHI", 1);
    let stray = gateway::payments::vnpay::VnPay::new(VnPaySettings {
        name: "vnpay".into(),
        tmn_code: TMN.into(),
        hash_secret: SECRET.into(),
        pay_url: h.sandbox.pay_url(),
        api_url: h.sandbox.api_url(),
        return_url: "https://x".into(),
        ip_addr: "127.0.0.1".into(),
        timeout: Duration::from_secs(5),
    })
    .unwrap();
    let o = h
        .request("H01.01-0008", &[("LEPHI", 50_000)])
        .await
        .remove(0);
    assert_eq!(o.reference, reference);
    let mut stored = h.payments.store.order(&reference).await.unwrap().unwrap();
    stored.order.amount = 49_000;
    h.sandbox
        .open(&stray.pay_url(&stored).unwrap())
        .await
        .unwrap();
    h.sandbox.pay(&reference);
    let day = (0, gateway::model::time::now_ms() + 1);
    let provider = h.payments.provider("vnpay").unwrap().clone();
    let r = reconcile(&h.payments, provider.as_ref(), 0, Some(day))
        .await
        .unwrap();
    assert_eq!(r.mismatches.len(), 1, "{}", r.render());
    assert_eq!(r.mismatches[0].kind, MismatchKind::AmountDiffers);
    assert_eq!(r.mismatches[0].there_amount, Some(49_000));
    assert_eq!(
        h.state(&reference).await,
        OrderState::Requested,
        "never paid on a wrong amount"
    );
    let m = ReconcileMetrics::default();
    m.observe(&r);
    assert_eq!(m.count("vnpay", MismatchKind::AmountDiffers), 1);
    assert!(m.render().contains(
        "gateway_payment_mismatches_total{provider=\"vnpay\",kind=\"amount_differs\"} 1"
    ));
    assert!(r.render().contains("amount_differs"));
}

/// `gateway payments reconcile`: the command settles a paid order whose IPN was lost and exits 0;
/// when the provider cannot be asked it exits 1; a bad `--date` exits 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconcile_command_settles_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = VnPaySandbox::start(0, TMN, SECRET).await.unwrap();
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[gateway]
data_dir = "{data}"

[payments]
deadline = "1s"
reconcile_interval = "0s"
# The command is under test; the fee check has its own test.
fee_check = "off"

[payments.vnpay.vnpay]
tmn_code = "{TMN}"
hash_secret = {{ env = "GW_TEST_CMD_VNPAY_SECRET" }}
return_url = "https://motcua.example/return"
pay_url = "{pay}"
api_url = "{api}"
"#,
            data = dir.path().display(),
            pay = sandbox.pay_url(),
            api = sandbox.api_url()
        ),
    )
    .unwrap();
    // An order made by the gateway on that store; paid, its IPN lost.
    let store = gw_store::payments::open(dir.path().join("store.db").to_str().unwrap())
        .await
        .unwrap();
    let payments = Payments::new(store, settings(Grouping::PerFee, Duration::ZERO))
        .with_provider(vnpay(&sandbox));
    let req = PaymentRequest {
        dossier_code: "H01.01-0900".into(),
        fees: vec![Fee {
            code: "LEPHI".into(),
            amount: 15_000,
        }],
        attempt: 1,
    };
    let o = payments.request("vnpay", &req).await.unwrap().remove(0);
    sandbox.open(o.pay_url.as_deref().unwrap()).await.unwrap();
    sandbox.pay(&o.reference);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(args)
            .env("GW_TEST_CMD_VNPAY_SECRET", SECRET)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let cfg_s = cfg.to_str().unwrap().to_string();
    let (code, stdout, stderr) =
        tokio::task::spawn_blocking(move || run(&["payments", "reconcile", "--config", &cfg_s]))
            .await
            .unwrap();
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("settled paid 1"), "{stdout}");
    assert!(stdout.contains("# TYPE gateway_payment_mismatches counter"));
    assert_eq!(
        payments
            .store
            .order(&o.reference)
            .await
            .unwrap()
            .unwrap()
            .state,
        OrderState::Paid
    );
    let cfg_s = cfg.to_str().unwrap().to_string();
    let (code, stderr) = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args([
                "payments",
                "reconcile",
                "--config",
                &cfg_s,
                "--date",
                "2026-13-01",
            ])
            .env("GW_TEST_CMD_VNPAY_SECRET", SECRET)
            .output()
            .map(|o| {
                (
                    o.status.code(),
                    String::from_utf8_lossy(&o.stderr).into_owned(),
                )
            })
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(code, Some(2), "{stderr}");
    // Another overdue order while VNPay's API is down: reported, exit 1, nothing settled.
    let mut req2 = req.clone();
    req2.fees[0].code = "PHI".into();
    let o2 = payments.request("vnpay", &req2).await.unwrap().remove(0);
    sandbox.set_faults(VnPayFaults { query_down: true });
    let cfg_s = cfg.to_str().unwrap().to_string();
    let (code, stdout) = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["payments", "reconcile", "--config", &cfg_s])
            .env("GW_TEST_CMD_VNPAY_SECRET", SECRET)
            .output()
            .map(|o| {
                (
                    o.status.code(),
                    String::from_utf8_lossy(&o.stdout).into_owned(),
                )
            })
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("errors 1"), "{stdout}");
    assert_eq!(
        payments
            .store
            .order(&o2.reference)
            .await
            .unwrap()
            .unwrap()
            .state,
        OrderState::Requested
    );
}

/// Every transition reaches the evidence hooks after it is recorded; a failing hook does not
/// undo it (the store's trail stays the durable record).
#[tokio::test]
async fn transitions_reach_the_evidence_hooks() {
    use gateway::payments::{EvidenceEvent, EvidenceHook, HookError, Verdict};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Rec(Mutex<Vec<EvidenceEvent>>);
    #[async_trait::async_trait]
    impl EvidenceHook for Rec {
        async fn record(&self, e: &EvidenceEvent) -> Result<(), HookError> {
            self.0.lock().unwrap().push(e.clone());
            Ok(())
        }
    }
    struct Broken;
    #[async_trait::async_trait]
    impl EvidenceHook for Broken {
        async fn record(&self, _: &EvidenceEvent) -> Result<(), HookError> {
            Err(HookError::Write("evidence log unavailable".into()))
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store = gw_store::payments::open(dir.path().join("s.db").to_str().unwrap())
        .await
        .unwrap();
    let sandbox = VnPaySandbox::start(0, TMN, SECRET).await.unwrap();
    let rec = Arc::new(Rec::default());
    let payments = Payments::new(store, settings(Grouping::PerFee, Duration::from_secs(60)))
        .with_provider(vnpay(&sandbox))
        .with_evidence(Arc::new(Broken))
        .with_evidence(rec.clone());
    let req = PaymentRequest {
        dossier_code: "H01.01-0950".into(),
        fees: vec![Fee {
            code: "LEPHI".into(),
            amount: 12_000,
        }],
        attempt: 1,
    };
    let o = payments.request("vnpay", &req).await.unwrap().remove(0);
    payments.request("vnpay", &req).await.unwrap();
    let v = Verdict {
        reference: o.reference.clone(),
        outcome: gateway::payments::codes::Finality::Paid,
        amount: 12_000,
        provider_txn: Some("T9".into()),
        code: "00/00".into(),
        source: "callback",
        message: None,
    };
    payments.settle(&v).await.unwrap();
    payments.settle(&v).await.unwrap();
    let events = rec.0.lock().unwrap().clone();
    assert_eq!(
        events.iter().map(|e| (e.from, e.to)).collect::<Vec<_>>(),
        vec![
            (None, OrderState::Requested),
            (Some(OrderState::Requested), OrderState::Paid)
        ]
    );
    assert_eq!(events[1].provider_txn.as_deref(), Some("T9"));
    assert_eq!(events[1].amount, 12_000);
    assert_eq!(
        payments
            .store
            .order(&o.reference)
            .await
            .unwrap()
            .unwrap()
            .state,
        OrderState::Paid
    );
}

/// Amounts are bounded: a fee of 10^17 VND is refused with 400 (before, it was accepted and
/// the signed pay URL carried `vnp_Amount=-8446744073709551616`), and so are fees whose sum
/// passes the order limit or would wrap; nothing is stored.
#[tokio::test]
async fn oversized_and_overflowing_amounts_are_refused_and_nothing_is_stored() {
    for (grouping, fees) in [
        (
            Grouping::PerFee,
            serde_json::json!([{"code": "LEPHI", "amount": 100_000_000_000_000_000i64}]),
        ),
        (
            Grouping::PerDossier,
            serde_json::json!([
                {"code": "A", "amount": 60_000_000_000i64},
                {"code": "B", "amount": 60_000_000_000i64}
            ]),
        ),
        (
            Grouping::PerDossier,
            serde_json::json!([
                {"code": "A", "amount": i64::MAX},
                {"code": "B", "amount": i64::MAX}
            ]),
        ),
    ] {
        let h = Harness::new(grouping).await;
        let r = h
            .http
            .post(format!("{}/payments/vnpay/orders", h.base))
            .json(&serde_json::json!({"dossier_code": "H01.01-0099", "fees": fees}))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, 400, "{grouping:?} {fees}: {body}");
        assert!(
            body.contains("max_fee_amount") || body.contains("max_order_amount"),
            "the refusal names the limit: {body}"
        );
        let orders = h
            .payments
            .store
            .orders_for_dossier("H01.01-0099")
            .await
            .unwrap();
        assert!(orders.is_empty(), "nothing stored: {orders:?}");
    }
}

/// VNPay's non-final codes (status 01 not completed, 05 processing, 07 under review) leave
/// the order open and the paid IPN that follows settles it (before, they were a final
/// "failed" and the paid IPN was answered "already confirmed" and ignored).
#[tokio::test]
async fn vnpay_pending_codes_are_not_final() {
    let h = Harness::new(Grouping::PerFee).await;
    let o = h
        .request("H01.01-0042", &[("LEPHI", 50_000)])
        .await
        .remove(0);
    h.sandbox.open(o.pay_url.as_deref().unwrap()).await.unwrap();
    for (code, status) in [("07", "07"), ("00", "01"), ("00", "05")] {
        let mut t = h.sandbox.txn(&o.reference).unwrap();
        t.response_code = code.into();
        t.status = status.into();
        let a = h
            .sandbox
            .send_ipn(&h.ipn_url(), &h.sandbox.sign_ipn(&t))
            .await
            .unwrap();
        assert_eq!(a.rsp_code, "00", "{code}/{status}: received");
        assert_eq!(
            h.state(&o.reference).await,
            OrderState::Requested,
            "{code}/{status}"
        );
    }
    assert_eq!(pay_and_notify_opened(&h, &o.reference).await, "00");
    assert_eq!(h.state(&o.reference).await, OrderState::Paid);
}

/// The order endpoint is an edge: oversized, malformed and hostile values get 400 naming the
/// field (or 415 without a JSON Content-Type) and nothing is stored, no provider is called.
/// Before, a 5,000-character dossier code was stored and an order without Content-Type was
/// created.
#[tokio::test]
async fn hostile_order_requests_are_refused_and_store_nothing() {
    let h = Harness::new(Grouping::PerFee).await;
    let long = "H".repeat(5000);
    let many: Vec<serde_json::Value> = (0..101)
        .map(|i| serde_json::json!({"code": format!("F{i}"), "amount": 1000}))
        .collect();
    let cases: Vec<(serde_json::Value, &str, &str)> = vec![
        (
            serde_json::json!({"dossier_code": long, "fees": [{"code": "LEPHI", "amount": 1000}]}),
            "dossier_code",
            &long,
        ),
        (
            serde_json::json!({"dossier_code": "H01\nforged", "fees": [{"code": "LEPHI", "amount": 1000}]}),
            "dossier_code",
            "H01\nforged",
        ),
        (
            serde_json::json!({"dossier_code": "H01.01-0100", "fees": [{"code": "LE PHI<script>", "amount": 1000}]}),
            "fees[0].code",
            "H01.01-0100",
        ),
        (
            serde_json::json!({"dossier_code": "H01.01-0101", "fees": [{"code": "X".repeat(65), "amount": 1000}]}),
            "fees[0].code",
            "H01.01-0101",
        ),
        (
            serde_json::json!({"dossier_code": "H01.01-0102", "fees": many}),
            "fees",
            "H01.01-0102",
        ),
    ];
    for (body, field, dossier) in &cases {
        let r = h
            .http
            .post(format!("{}/payments/vnpay/orders", h.base))
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{field}");
        let v: serde_json::Value = r.json().await.unwrap();
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.starts_with(&format!("invalid payment request: {field}: ")),
            "the 400 names {field}: {msg}"
        );
        assert!(
            h.payments
                .store
                .orders_for_dossier(dossier)
                .await
                .unwrap()
                .is_empty(),
            "nothing stored for a refused request ({field})"
        );
    }
    // A well-formed request without Content-Type (or with another one) is 415, nothing stored.
    let body = serde_json::json!({"dossier_code": "H01.01-0103", "fees": [{"code": "LEPHI", "amount": 1000}]})
        .to_string();
    for ct in [None, Some("text/plain")] {
        let mut req = h
            .http
            .post(format!("{}/payments/vnpay/orders", h.base))
            .body(body.clone());
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 415, "{ct:?}");
    }
    assert!(h
        .payments
        .store
        .orders_for_dossier("H01.01-0103")
        .await
        .unwrap()
        .is_empty());
    assert!(h.sandbox.txns().is_empty(), "no provider call was made");
    // The same request as JSON is created: the refusals above were about the input only.
    assert_eq!(h.request("H01.01-0103", &[("LEPHI", 1000)]).await.len(), 1);
}

/// `fee_check = "known"` (the shipped default): an order's fees must be the fees the
/// dossier's newest snapshot states. Before, anyone with the order token could pre-create a
/// 1,000 VND order for a 500,000 VND fee (and the real request then got 409).
#[tokio::test]
async fn orders_are_checked_against_the_dossiers_known_fees() {
    use gw_store::payments::{KnownFee, KnownFees};
    let dir = tempfile::tempdir().unwrap();
    let store = gw_store::payments::open(dir.path().join("store.db").to_str().unwrap())
        .await
        .unwrap();
    let sandbox = VnPaySandbox::start(0, TMN, SECRET).await.unwrap();
    let v = vnpay(&sandbox);
    assert_eq!(Settings::default().fee_check, FeeCheck::Known);
    let payments = Arc::new(Payments::new(store, Settings::default()).with_provider(v.clone()));
    let (base, _server) = serve(payments.clone(), v).await;
    let http = reqwest::Client::new();
    let order = |fees: serde_json::Value| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let r = http
                .post(format!("{base}/payments/vnpay/orders"))
                .json(&serde_json::json!({"dossier_code": "H01.01-0200", "fees": fees}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let v: serde_json::Value = r.json().await.unwrap();
            (status, v)
        }
    };
    let lephi = |amount: i64| serde_json::json!([{"code": "LEPHI", "amount": amount}]);
    // No snapshot yet: 409, nothing stored.
    let (st, v) = order(lephi(500_000)).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (409, Some("fees_unknown"))
    );
    let note = |version: i64, fees: Vec<(&str, i64, bool)>| KnownFees {
        dossier_code: "H01.01-0200".into(),
        version,
        fees: fees
            .into_iter()
            .map(|(code, amount, paid)| KnownFee {
                code: code.into(),
                amount,
                paid,
            })
            .collect(),
        updated_ms: 0,
    };
    payments
        .store
        .note_fees(note(
            3,
            vec![("LEPHI", 500_000, false), ("PHI", 20_000, true)],
        ))
        .await
        .unwrap();
    // The attack: a lower amount. A fee the dossier does not have, a paid one: refused.
    let (st, v) = order(lephi(1_000)).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (422, Some("fee_mismatch"))
    );
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("fees[0].amount: 1000 VND, but dossier H01.01-0200 states 500000 VND"));
    let (st, _) = order(serde_json::json!([{"code": "KHAC", "amount": 1_000}])).await;
    assert_eq!(st, 422);
    let (st, v) = order(serde_json::json!([{"code": "PHI", "amount": 20_000}])).await;
    assert_eq!(st, 422);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("already paid"));
    assert!(
        payments
            .store
            .orders_for_dossier("H01.01-0200")
            .await
            .unwrap()
            .is_empty(),
        "no refused request stored an order"
    );
    assert!(
        sandbox.txns().is_empty(),
        "no provider call for a refused request"
    );
    // The stated fee is accepted.
    let (st, v) = order(lephi(500_000)).await;
    assert_eq!(st, 200, "{v}");
    // An older snapshot does not move the known fees back.
    assert!(!payments
        .store
        .note_fees(note(2, vec![("LEPHI", 1_000, false)]))
        .await
        .unwrap());
    let (st, _) = order(lephi(1_000)).await;
    assert_eq!(st, 422);
}
