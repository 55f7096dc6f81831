//! MoMo end to end against its strict sandbox: happy path (IPN acknowledged with 204), replayed
//! IPN, forged signature, wrong amount, unknown order, IPN before the request was recorded, a
//! timeout on creation followed by a retry (still one order at MoMo), a lost IPN settled by
//! reconciliation, and refused IPNs in the evidence log.

use std::sync::Arc;
use std::time::Duration;

use gateway::edge::payments::{router, PaymentsHttp};
use gateway::evidence::{EvidenceLog, EvidenceSection};
use gateway::payments::evidence::PaymentEvidence;
use gateway::payments::momo::{MoMo, MoMoSettings};
use gateway::payments::reconcile::reconcile;
use gateway::payments::{
    order_reference, Fee, FeeCheck, Grouping, OrderView, PaymentRequest, Payments, Settings,
};
use gw_contract_tests::momo::{
    MoMoFaults, MoMoKeys, MoMoSandbox, MoMoTxn, CREATE_PATH, QUERY_PATH,
};
use gw_store::payments::OrderState;
use gw_store::Store;

fn keys() -> MoMoKeys {
    MoMoKeys {
        partner_code: "MOMOGW01".into(),
        access_key: "MOMOACCESS".into(),
        secret_key: "MOMOSECRET".into(),
    }
}

struct H {
    _dir: tempfile::TempDir,
    sandbox: MoMoSandbox,
    payments: Arc<Payments>,
    evidence: Arc<dyn Store>,
    base: String,
    http: reqwest::Client,
}

impl H {
    async fn new(deadline: Duration) -> H {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("s.db").display());
        let store = gw_store::payments::open(&url).await.unwrap();
        let evidence = gw_store::open(&url).await.unwrap();
        let log = EvidenceLog::new(&EvidenceSection::default(), "test", dir.path()).unwrap();
        let k = keys();
        let sandbox = MoMoSandbox::start(0, k.clone()).await.unwrap();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let p = Arc::new(
            MoMo::new(MoMoSettings {
                name: "momo".into(),
                partner_code: k.partner_code.clone(),
                access_key: k.access_key.clone(),
                secret_key: k.secret_key.clone(),
                create_url: sandbox.url(CREATE_PATH),
                query_url: sandbox.url(QUERY_PATH),
                redirect_url: "https://motcua.example/return".into(),
                ipn_url: format!("{base}/payments/momo/ipn"),
                request_type: "captureWallet".into(),
                lang: "vi".into(),
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
            .with_provider(p.clone())
            .with_evidence(Arc::new(PaymentEvidence::new(
                evidence.clone(),
                Arc::new(log),
            ))),
        );
        let app = router(Arc::new(PaymentsHttp {
            payments: payments.clone(),
            vnpay: Default::default(),
            platform: Default::default(),
            paygov: Default::default(),
            momo: [("momo".to_string(), p)].into_iter().collect(),
            token: None,
        }));
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        H {
            _dir: dir,
            sandbox,
            payments,
            evidence,
            base,
            http: reqwest::Client::new(),
        }
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
            .post(format!("{}/payments/momo/orders", self.base))
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

    async fn send(&self, body: &serde_json::Value) -> u16 {
        self.sandbox
            .send_ipn(&format!("{}/payments/momo/ipn", self.base), body)
            .await
            .unwrap()
    }

    async fn state(&self, r: &str) -> OrderState {
        self.payments.store.order(r).await.unwrap().unwrap().state
    }

    async fn trail_len(&self, r: &str) -> usize {
        self.payments.store.transitions(r).await.unwrap().len()
    }
}

#[tokio::test]
async fn momo_happy_path_replay_forged_wrong_amount_unknown() {
    let h = H::new(Duration::from_secs(1800)).await;
    let o = h
        .request("H04.01-0001", &[("LEPHI", 45_000)])
        .await
        .remove(0);
    assert_eq!(
        o.pay_url.as_deref(),
        Some(format!("https://test-payment.momo.vn/pay/{}", o.reference).as_str())
    );
    let t = h.sandbox.txn(&o.reference).unwrap();
    assert_eq!(
        (t.amount, t.request_id.as_str()),
        (45_000, o.reference.as_str())
    );
    assert!(h.sandbox.pay(&o.reference));
    let good = h.sandbox.ipn(&o.reference).unwrap();

    // Forged: the amount changed without the key; a signature that is not hex; none at all.
    let mut forged = good.clone();
    forged["amount"] = 1_000.into();
    assert_eq!(h.send(&forged).await, 400);
    let mut bad = good.clone();
    bad["signature"] = "zz".into();
    assert_eq!(h.send(&bad).await, 400);
    bad.as_object_mut().unwrap().remove("signature");
    assert_eq!(h.send(&bad).await, 400);
    // Correctly signed, wrong amount.
    let mut t = h.sandbox.txn(&o.reference).unwrap();
    t.amount = 44_000;
    assert_eq!(h.send(&h.sandbox.sign_ipn(&t)).await, 400);
    // Correctly signed, an order never made: 404 (MoMo calls again).
    let unknown = MoMoTxn {
        order_id: "GWUNKNOWN0000000000Z".into(),
        ..h.sandbox.txn(&o.reference).unwrap()
    };
    assert_eq!(h.send(&h.sandbox.sign_ipn(&unknown)).await, 404);
    assert_eq!(h.state(&o.reference).await, OrderState::Requested);

    assert_eq!(h.send(&good).await, 204);
    assert_eq!(h.state(&o.reference).await, OrderState::Paid);
    assert_eq!(
        h.send(&good).await,
        204,
        "replay: acknowledged, nothing changes"
    );
    assert_eq!(h.trail_len(&o.reference).await, 2);
    assert!(h.sandbox.refused().is_empty(), "{:?}", h.sandbox.refused());

    // The evidence log: requested, paid, and one record per distinct refused IPN.
    let records = h.evidence.evidence_by_dossier("H04.01-0001").await.unwrap();
    let mut ops: Vec<(&str, Option<&str>)> = records
        .iter()
        .map(|r| (r.record.operation.as_str(), r.record.result_code.as_deref()))
        .collect();
    ops.sort_unstable();
    assert_eq!(
        ops,
        [
            ("payment.paid", Some("0")),
            ("payment.refused.amount", Some("400")),
            ("payment.refused.checksum", Some("400")),
            ("payment.refused.checksum", Some("400")),
            ("payment.refused.checksum", Some("400")),
            ("payment.requested", Some("requested")),
        ]
    );
    let report = gateway::cli::evidence::verify(h.evidence.as_ref(), None)
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

#[tokio::test]
async fn momo_ipn_before_request_then_timeout_and_retry_is_one_order() {
    let h = H::new(Duration::from_secs(1800)).await;
    let reference = order_reference("GW", "H04.01-0002", "LEPHI", 1);
    let early = MoMoTxn {
        order_id: reference.clone(),
        request_id: reference.clone(),
        amount: 25_000,
        order_info: "x".into(),
        request_type: "captureWallet".into(),
        extra_data: String::new(),
        result_code: 0,
        trans_id: 77,
        creates: 0,
    };
    let ipn = h.sandbox.sign_ipn(&early);
    assert_eq!(
        h.send(&ipn).await,
        404,
        "not recorded yet: MoMo calls again"
    );
    // The creation's answer is lost (recorded at MoMo, answered after our timeout).
    h.sandbox.set_faults(MoMoFaults {
        slow_ms: 2_000,
        ..Default::default()
    });
    assert_eq!(
        h.try_request("H04.01-0002", &[("LEPHI", 25_000)])
            .await
            .status(),
        503
    );
    h.sandbox.set_faults(MoMoFaults::default());
    let o = h
        .request("H04.01-0002", &[("LEPHI", 25_000)])
        .await
        .remove(0);
    assert_eq!(o.reference, reference);
    assert!(o.pay_url.is_some());
    // The retry was the same request (same requestId): one order at MoMo, asked twice.
    assert_eq!(h.sandbox.txns().len(), 1);
    assert_eq!(h.sandbox.txn(&reference).unwrap().creates, 2);
    assert!(h.sandbox.refused().is_empty(), "{:?}", h.sandbox.refused());
    assert_eq!(
        h.payments
            .store
            .orders_for_dossier("H04.01-0002")
            .await
            .unwrap()
            .len(),
        1
    );
    // MoMo's next attempt of the early IPN now lands.
    assert_eq!(h.send(&ipn).await, 204);
    assert_eq!(h.state(&reference).await, OrderState::Paid);
}

#[tokio::test]
async fn momo_lost_ipns_settled_by_reconciliation() {
    let h = H::new(Duration::ZERO).await;
    let orders = h
        .request(
            "H04.01-0003",
            &[("PAID", 10_000), ("FAIL", 20_000), ("WAIT", 30_000)],
        )
        .await;
    h.sandbox.pay(&orders[0].reference);
    h.sandbox.abandon(&orders[1].reference);
    let p = h.payments.provider("momo").unwrap().clone();
    let r = reconcile(
        &h.payments,
        p.as_ref(),
        gateway::model::time::now_ms() + 1,
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        (r.settled_paid, r.settled_failed, r.expired, r.errors),
        (1, 1, 0, 0),
        "{r:?}"
    );
    assert_eq!(h.state(&orders[0].reference).await, OrderState::Paid);
    assert_eq!(h.state(&orders[1].reference).await, OrderState::Failed);
    assert_eq!(
        h.state(&orders[2].reference).await,
        OrderState::Requested,
        "still waiting for the citizen at MoMo"
    );
    // The late IPN of the paid one is acknowledged and changes nothing.
    let late = h.sandbox.ipn(&orders[0].reference).unwrap();
    assert_eq!(h.send(&late).await, 204);
    assert_eq!(h.trail_len(&orders[0].reference).await, 2);
    assert!(h.sandbox.refused().is_empty(), "{:?}", h.sandbox.refused());
}

/// A non-final code (1000 waiting for the citizen, 7000 being processed) leaves the order
/// open, and the paid IPN that follows settles it. Before, 1000 was a final "failed" and the
/// later paid IPN was acknowledged and ignored: the citizen paid, the dossier never learnt it.
#[tokio::test]
async fn momo_pending_codes_are_not_final() {
    let h = H::new(Duration::from_secs(1800)).await;
    let o = h
        .request("H04.01-0009", &[("LEPHI", 45_000)])
        .await
        .remove(0);
    for code in [1000, 7000] {
        let t = MoMoTxn {
            result_code: code,
            ..h.sandbox.txn(&o.reference).unwrap()
        };
        assert_eq!(h.send(&h.sandbox.sign_ipn(&t)).await, 204, "{code}");
        assert_eq!(h.state(&o.reference).await, OrderState::Requested, "{code}");
    }
    assert!(h.sandbox.pay(&o.reference));
    assert_eq!(h.send(&h.sandbox.ipn(&o.reference).unwrap()).await, 204);
    assert_eq!(h.state(&o.reference).await, OrderState::Paid);
    // A final refusal after that changes nothing; a refusal on an open order is final.
    let o2 = h
        .request("H04.01-0010", &[("LEPHI", 45_000)])
        .await
        .remove(0);
    let t = MoMoTxn {
        result_code: 1006,
        ..h.sandbox.txn(&o2.reference).unwrap()
    };
    assert_eq!(h.send(&h.sandbox.sign_ipn(&t)).await, 204);
    assert_eq!(h.state(&o2.reference).await, OrderState::Failed);
}

/// A flood of forged IPNs is refused and counted, and only a sample per minute reaches the
/// evidence log (before, each one appended records: a flood filled the disk); a body past
/// the payment endpoints' small limit gets 413 and is not read.
#[tokio::test]
async fn forged_ipn_flood_is_counted_and_sampled_and_big_bodies_are_refused() {
    use gateway::payments::{RefusedBecause, REFUSED_EVIDENCE_PER_MINUTE};
    let h = H::new(Duration::from_secs(1800)).await;
    let o = h
        .request("H04.01-0020", &[("LEPHI", 45_000)])
        .await
        .remove(0);
    assert!(h.sandbox.pay(&o.reference));
    let good = h.sandbox.ipn(&o.reference).unwrap();
    const FLOOD: u64 = 40;
    for i in 0..FLOOD {
        let mut forged = good.clone();
        forged["transId"] = (1_000_000 + i as i64).into();
        assert_eq!(h.send(&forged).await, 400);
    }
    let (total, unsampled) = h.payments.refusals.count("momo", RefusedBecause::Checksum);
    assert_eq!(total, FLOOD);
    // The sample is per minute: a flood that straddles a minute boundary gets two.
    assert!(
        (FLOOD - 2 * REFUSED_EVIDENCE_PER_MINUTE as u64
            ..=FLOOD - REFUSED_EVIDENCE_PER_MINUTE as u64)
            .contains(&unsampled),
        "{unsampled} of {total} not sampled"
    );
    let refused_records = h
        .evidence
        .evidence_by_dossier("H04.01-0020")
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.record.operation == "payment.refused.checksum")
        .count() as u64;
    assert_eq!(refused_records, total - unsampled);

    let big = serde_json::json!({"orderId": o.reference, "pad": "x".repeat(20 * 1024)});
    let r = reqwest::Client::new()
        .post(format!("{}/payments/momo/ipn", h.base))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        h.payments
            .refusals
            .count("momo", RefusedBecause::Checksum)
            .0,
        FLOOD,
        "not even read"
    );
    // The real IPN still settles.
    assert_eq!(h.send(&good).await, 204);
    assert_eq!(h.state(&o.reference).await, OrderState::Paid);
}
