//! PayGov (through the LGSP's bearer token) end to end against its strict sandbox: happy path,
//! forged checksum, wrong amount, unknown order, replayed callback, callback before the request
//! was recorded, a timeout on creation followed by a retry (still one order), a lost callback
//! settled by reconciliation, an expired LGSP token, and a configured callback checksum.

use std::sync::Arc;
use std::time::Duration;

use gateway::edge::payments::{router, PaymentsHttp};
use gateway::payments::paygov::{PayGov, PayGovSettings, DEFAULT_CALLBACK_FIELDS};
use gateway::payments::reconcile::reconcile;
use gateway::payments::{
    order_reference, Fee, FeeCheck, Grouping, OrderView, PaymentRequest, Payments, Settings,
};
use gw_contract_tests::paygov::{
    PayGovFaults, PayGovKeys, PayGovSandbox, PayGovTxn, CREATE_PATH, QUERY_PATH, TOKEN_PATH,
};
use gw_crypto::checksum::{FieldAlgorithm, FieldChecksum};
use gw_crypto::keys::Secret;
use gw_store::payments::OrderState;

fn keys() -> PayGovKeys {
    PayGovKeys {
        client_id: "gateway".into(),
        client_secret: "lgsp-secret".into(),
        partner_code: "GWPARTNER".into(),
        access_key: "ACCESS".into(),
        secret_key: "PAYGOVSECRET".into(),
    }
}

struct H {
    _dir: tempfile::TempDir,
    sandbox: PayGovSandbox,
    payments: Arc<Payments>,
    base: String,
    http: reqwest::Client,
}

impl H {
    async fn new(deadline: Duration, algo: FieldAlgorithm, fields: &[&str], sep: &str) -> H {
        let dir = tempfile::tempdir().unwrap();
        let store = gw_store::payments::open(dir.path().join("s.db").to_str().unwrap())
            .await
            .unwrap();
        let k = keys();
        let fields: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
        let sandbox = PayGovSandbox::start(
            0,
            k.clone(),
            FieldChecksum::new(algo, fields.clone(), sep, Secret::new(k.secret_key.clone())),
        )
        .await
        .unwrap();
        let p = Arc::new(
            PayGov::new(PayGovSettings {
                name: "paygov".into(),
                partner_code: k.partner_code.clone(),
                access_key: k.access_key.clone(),
                secret_key: k.secret_key.clone(),
                service_code: "LEPHI_HOSO".into(),
                create_url: sandbox.url(CREATE_PATH),
                query_url: sandbox.url(QUERY_PATH),
                token_url: sandbox.url(TOKEN_PATH),
                client_id: k.client_id.clone(),
                client_secret: k.client_secret.clone(),
                return_url: "https://motcua.example/return".into(),
                ip_addr: "127.0.0.1".into(),
                timeout: Duration::from_millis(800),
                callback_algorithm: algo,
                callback_fields: fields,
                callback_separator: sep.into(),
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
            platform: Default::default(),
            paygov: [("paygov".to_string(), p)].into_iter().collect(),
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

    async fn default_scheme(deadline: Duration) -> H {
        H::new(
            deadline,
            FieldAlgorithm::Sha256,
            &DEFAULT_CALLBACK_FIELDS,
            "",
        )
        .await
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
            .post(format!("{}/payments/paygov/orders", self.base))
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

    async fn send(&self, body: &serde_json::Value) -> String {
        self.sandbox
            .send_callback(&format!("{}/payments/paygov/callback", self.base), body)
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
async fn paygov_happy_path_replay_forged_wrong_amount_unknown() {
    let h = H::default_scheme(Duration::from_secs(1800)).await;
    let o = h
        .request("H03.01-0001", &[("LEPHI", 45_000)])
        .await
        .remove(0);
    assert_eq!(
        o.pay_url.as_deref(),
        Some(format!("https://paygov.example/pay/{}", o.reference).as_str())
    );
    h.sandbox.pay(&o.reference);
    let good = h.sandbox.callback(&o.reference).unwrap();
    let mut forged = good.clone();
    forged["amount"] = "1".into();
    assert_eq!(h.send(&forged).await, "FAILED");
    let mut t: PayGovTxn = h.sandbox.txn(&o.reference).unwrap();
    t.amount = 44_000;
    assert_eq!(h.send(&h.sandbox.sign_callback(&t)).await, "FAILED");
    let unknown = PayGovTxn {
        order_id: "GWUNKNOWN0000000000Z".into(),
        ..h.sandbox.txn(&o.reference).unwrap()
    };
    assert_eq!(h.send(&h.sandbox.sign_callback(&unknown)).await, "FAILED");
    assert_eq!(h.state(&o.reference).await, OrderState::Requested);
    assert_eq!(h.send(&good).await, "SUCCESSFUL");
    assert_eq!(h.state(&o.reference).await, OrderState::Paid);
    assert_eq!(
        h.send(&good).await,
        "SUCCESSFUL",
        "replay: already confirmed"
    );
    assert_eq!(h.trail_len(&o.reference).await, 2);
    assert!(h.sandbox.refused().is_empty(), "{:?}", h.sandbox.refused());
}

#[tokio::test]
async fn paygov_callback_before_request_timeout_retry_and_token_expiry() {
    let h = H::default_scheme(Duration::from_secs(1800)).await;
    let reference = order_reference("GW", "H03.01-0002", "LEPHI", 1);
    let early = PayGovTxn {
        order_id: reference.clone(),
        request_code: "H03.01-0002".into(),
        amount: 25_000,
        order_info: "x".into(),
        status: "00".into(),
        transaction_no: "PG1".into(),
        creates: 0,
    };
    let cb = h.sandbox.sign_callback(&early);
    assert_eq!(h.send(&cb).await, "FAILED");
    h.sandbox.set_faults(PayGovFaults {
        slow_ms: 2_000,
        ..Default::default()
    });
    assert_eq!(
        h.try_request("H03.01-0002", &[("LEPHI", 25_000)])
            .await
            .status(),
        503
    );
    h.sandbox.set_faults(PayGovFaults::default());
    // The LGSP token expires meanwhile: the connector fetches a new one once.
    h.sandbox.expire_tokens();
    let o = h
        .request("H03.01-0002", &[("LEPHI", 25_000)])
        .await
        .remove(0);
    assert_eq!(o.reference, reference);
    assert_eq!(h.sandbox.txns().len(), 1);
    assert_eq!(h.sandbox.txn(&reference).unwrap().creates, 2);
    assert_eq!(h.sandbox.token_calls(), 2);
    assert_eq!(
        h.payments
            .store
            .orders_for_dossier("H03.01-0002")
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(h.send(&cb).await, "SUCCESSFUL");
    assert_eq!(h.state(&reference).await, OrderState::Paid);
}

#[tokio::test]
async fn paygov_lost_callback_settled_by_reconciliation_and_configured_checksum() {
    let h = H::new(
        Duration::ZERO,
        FieldAlgorithm::HmacSha256,
        &[
            "orderId",
            "amount",
            "errorCode",
            "transactionNo",
            "partnerCode",
        ],
        "|",
    )
    .await;
    let orders = h
        .request("H03.01-0003", &[("PAID", 10_000), ("FAIL", 20_000)])
        .await;
    h.sandbox.pay(&orders[0].reference);
    h.sandbox.abandon(&orders[1].reference);
    let p = h.payments.provider("paygov").unwrap().clone();
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
    // The configured HMAC scheme verifies the late callback ("already confirmed") and refuses
    // one signed with the creation formula instead.
    let late = h.sandbox.callback(&orders[0].reference).unwrap();
    assert_eq!(h.send(&late).await, "SUCCESSFUL");
    assert_eq!(h.trail_len(&orders[0].reference).await, 2);
    let other = PayGovSandbox::start(
        0,
        keys(),
        FieldChecksum::new(
            FieldAlgorithm::Sha256,
            gw_crypto::checksum::PAYGOV_FIELDS
                .map(String::from)
                .to_vec(),
            "",
            Secret::new(keys().secret_key),
        ),
    )
    .await
    .unwrap();
    let wrong_scheme = other.sign_callback(&h.sandbox.txn(&orders[0].reference).unwrap());
    assert_eq!(h.send(&wrong_scheme).await, "FAILED");
}

/// The default callback checksum covers the result: a failure callback flipped to "00" does
/// not verify, and neither does a "paid" callback carrying the creation checksum (which
/// anyone who saw the order request knows). Before, the default was the creation formula:
/// both were answered SUCCESSFUL and payment.settled was delivered.
#[tokio::test]
async fn a_flipped_result_or_the_creation_checksum_does_not_make_a_payment() {
    let h = H::default_scheme(Duration::from_secs(1800)).await;
    let o = h
        .request("H03.01-0077", &[("LEPHI", 45_000)])
        .await
        .remove(0);
    assert!(h.sandbox.abandon(&o.reference));
    let failed = h.sandbox.callback(&o.reference).unwrap();
    assert_eq!(failed["errorCode"], "24");
    let mut flipped = failed.clone();
    flipped["errorCode"] = "00".into();
    assert_eq!(h.send(&flipped).await, "FAILED");
    let mut renumbered = failed.clone();
    renumbered["transactionNo"] = "PG999".into();
    assert_eq!(h.send(&renumbered).await, "FAILED");
    assert_eq!(h.state(&o.reference).await, OrderState::Requested);

    // The creation checksum, as the order request carried it, on a forged "paid" callback.
    let k = keys();
    let creation = gw_crypto::checksum::PayGov::new(
        Secret::new(k.secret_key.clone()),
        k.access_key.clone(),
        k.partner_code.clone(),
    )
    .checksum(
        &o.reference,
        failed["requestCode"].as_str().unwrap(),
        "45000",
    )
    .unwrap();
    let mut forged = failed.clone();
    forged["errorCode"] = "00".into();
    forged["checksum"] = creation.into();
    assert_eq!(h.send(&forged).await, "FAILED");
    assert_eq!(h.state(&o.reference).await, OrderState::Requested);

    // The real failure callback is final.
    assert_eq!(h.send(&failed).await, "SUCCESSFUL");
    assert_eq!(h.state(&o.reference).await, OrderState::Failed);
}
