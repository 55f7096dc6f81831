//! The DVCQG payment platform end to end against its strict sandbox: happy path, forged
//! checksum, wrong amount, unknown order, replayed callback, callback before the request was
//! recorded, a timeout on creation followed by a retry (still one order), and a lost callback
//! settled by reconciliation.

use std::sync::Arc;
use std::time::Duration;

use gateway::edge::payments::{router, PaymentsHttp};
use gateway::payments::platform::{Platform, PlatformSettings};
use gateway::payments::reconcile::reconcile;
use gateway::payments::{
    order_reference, Fee, FeeCheck, Grouping, OrderView, PaymentRequest, Payments, Settings,
};
use gw_contract_tests::payplatform::{PlatformFaults, PlatformSandbox, PlatformTxn};
use gw_store::payments::OrderState;

const PARTNER: &str = "GWDOITAC";
const KEY: &str = "PLATFORMKEY";

struct H {
    _dir: tempfile::TempDir,
    sandbox: PlatformSandbox,
    payments: Arc<Payments>,
    base: String,
    http: reqwest::Client,
}

impl H {
    async fn new(deadline: Duration) -> H {
        let dir = tempfile::tempdir().unwrap();
        let store = gw_store::payments::open(dir.path().join("s.db").to_str().unwrap())
            .await
            .unwrap();
        let sandbox = PlatformSandbox::start(0, PARTNER, KEY).await.unwrap();
        let p = Arc::new(
            Platform::new(PlatformSettings {
                name: "dvcqg-pay".into(),
                partner_code: PARTNER.into(),
                hash_key: KEY.into(),
                init_url: sandbox.init_url(),
                query_url: sandbox.query_url(),
                channel: "WEB".into(),
                payment_type: "1".into(),
                device: "PC".into(),
                ip_addr: "127.0.0.1".into(),
                timeout: Duration::from_millis(800),
            })
            .unwrap(),
        );
        let payments = Arc::new(
            Payments::new(
                store,
                Settings {
                    grouping: Grouping::PerFee,
                    deadline,
                    // The provider protocol is under test; the fee check has its own test.
                    fee_check: FeeCheck::Off,
                    ..Settings::default()
                },
            )
            .with_provider(p.clone()),
        );
        let app = router(Arc::new(PaymentsHttp {
            payments: payments.clone(),
            vnpay: Default::default(),
            platform: [("dvcqg-pay".to_string(), p)].into_iter().collect(),
            paygov: Default::default(),
            momo: Default::default(),
            token: None,
        }));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        H {
            _dir: dir,
            sandbox,
            payments,
            base,
            http: reqwest::Client::new(),
        }
    }

    fn callback_url(&self) -> String {
        format!("{}/payments/dvcqg-pay/callback", self.base)
    }

    async fn try_request(&self, dossier: &str, fees: &[(&str, i64)]) -> reqwest::Response {
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
        self.http
            .post(format!("{}/payments/dvcqg-pay/orders", self.base))
            .json(&req)
            .send()
            .await
            .unwrap()
    }

    async fn request(&self, dossier: &str, fees: &[(&str, i64)]) -> Vec<OrderView> {
        let r = self.try_request(dossier, fees).await;
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        serde_json::from_value(v["orders"].clone()).unwrap()
    }

    async fn state(&self, r: &str) -> OrderState {
        self.payments.store.order(r).await.unwrap().unwrap().state
    }

    async fn send(&self, body: &serde_json::Value) -> String {
        self.sandbox
            .send_callback(&self.callback_url(), body)
            .await
            .unwrap()
            .0
    }
}

#[tokio::test]
async fn platform_happy_path_replay_forged_wrong_amount_unknown() {
    let h = H::new(Duration::from_secs(1800)).await;
    let o = h
        .request("H02.01-0001", &[("LEPHI", 75_000)])
        .await
        .remove(0);
    assert!(o.reference.len() <= 20);
    assert_eq!(
        o.pay_url.as_deref(),
        Some(format!("https://thanhtoan.example/pay/{}", o.reference).as_str())
    );
    assert!(h.sandbox.pay(&o.reference));
    let good = h.sandbox.callback(&o.reference).unwrap();

    // Forged: the key is not known to the forger.
    let mut forged = good.clone();
    forged["SoTien"] = "1".into();
    assert_eq!(h.send(&forged).await, "99");
    let mut no_sum = good.clone();
    no_sum.as_object_mut().unwrap().remove("MaXacThuc");
    assert_eq!(h.send(&no_sum).await, "99");
    // Wrong amount, correctly signed.
    let mut t = h.sandbox.txn(&o.reference).unwrap();
    t.amount = 74_999;
    assert_eq!(h.send(&h.sandbox.sign_callback(&t)).await, "99");
    // Unknown order.
    let unknown = PlatformTxn {
        reference: "GWUNKNOWN00000000000".into(),
        ..h.sandbox.txn(&o.reference).unwrap()
    };
    assert_eq!(h.send(&h.sandbox.sign_callback(&unknown)).await, "99");
    assert_eq!(h.state(&o.reference).await, OrderState::Requested);

    // The genuine one, then its replay: "already confirmed", nothing changes.
    assert_eq!(h.send(&good).await, "00");
    assert_eq!(h.state(&o.reference).await, OrderState::Paid);
    let (code, msg) = h
        .sandbox
        .send_callback(&h.callback_url(), &good)
        .await
        .unwrap();
    assert_eq!(code, "00");
    assert!(msg.contains("da duoc xac nhan"), "{msg}");
    assert_eq!(
        h.payments
            .store
            .transitions(&o.reference)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(h.sandbox.refused().is_empty(), "{:?}", h.sandbox.refused());
}

#[tokio::test]
async fn platform_callback_before_request_and_timeout_then_retry() {
    let h = H::new(Duration::from_secs(1800)).await;
    // Callback for an order the gateway has not recorded yet: refused, accepted later.
    let reference = order_reference("GW", "H02.01-0002", "LEPHI", 1);
    let early = PlatformTxn {
        reference: reference.clone(),
        amount: 30_000,
        dossier: "H02.01-0002".into(),
        status: "00".into(),
        txn_no: "PP1".into(),
        inits: 0,
    };
    let cb = h.sandbox.sign_callback(&early);
    assert_eq!(h.send(&cb).await, "99");

    // Creation times out (the platform recorded it, the answer is lost): 503, order kept.
    h.sandbox.set_faults(PlatformFaults {
        slow_ms: 2_000,
        ..Default::default()
    });
    let r = h.try_request("H02.01-0002", &[("LEPHI", 30_000)]).await;
    assert_eq!(r.status(), 503);
    let stored = h.payments.store.order(&reference).await.unwrap().unwrap();
    assert_eq!(stored.pay_url, None);
    // The retry reuses the same order and the same reference at the platform.
    h.sandbox.set_faults(PlatformFaults::default());
    let o = h
        .request("H02.01-0002", &[("LEPHI", 30_000)])
        .await
        .remove(0);
    assert_eq!(o.reference, reference);
    assert!(o.pay_url.is_some());
    assert_eq!(h.sandbox.txns().len(), 1);
    assert_eq!(h.sandbox.txn(&reference).unwrap().inits, 2);
    assert_eq!(
        h.payments
            .store
            .orders_for_dossier("H02.01-0002")
            .await
            .unwrap()
            .len(),
        1
    );
    // The platform calls again: now it settles.
    assert_eq!(h.send(&cb).await, "00");
    assert_eq!(h.state(&reference).await, OrderState::Paid);
}

#[tokio::test]
async fn platform_lost_callbacks_are_settled_by_reconciliation() {
    let h = H::new(Duration::ZERO).await;
    let orders = h
        .request(
            "H02.01-0003",
            &[("PAID", 10_000), ("FAIL", 20_000), ("OPEN", 30_000)],
        )
        .await;
    h.sandbox.pay(&orders[0].reference);
    h.sandbox.abandon(&orders[1].reference);
    let p = h.payments.provider("dvcqg-pay").unwrap().clone();
    let r = reconcile(
        &h.payments,
        p.as_ref(),
        gateway::model::time::now_ms() + 1,
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        (r.settled_paid, r.settled_failed, r.errors),
        (1, 1, 0),
        "{r:?}"
    );
    assert_eq!(h.state(&orders[0].reference).await, OrderState::Paid);
    assert_eq!(h.state(&orders[1].reference).await, OrderState::Failed);
    assert_eq!(h.state(&orders[2].reference).await, OrderState::Requested);
    // The late callback is "already confirmed".
    let cb = h.sandbox.callback(&orders[0].reference).unwrap();
    assert_eq!(h.send(&cb).await, "00");
    assert_eq!(
        h.payments
            .store
            .transitions(&orders[0].reference)
            .await
            .unwrap()
            .len(),
        2
    );
}
