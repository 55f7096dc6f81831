//! Payment transitions and refused callbacks in the evidence log (issue 5: "every transition
//! recorded in the ledger and the evidence log"), against the strict sandboxes:
//! - VNPay on SQLite: the request and the paid IPN are records of the dossier with the IPN's
//!   digests and code; a forged IPN and a wrong amount leave refused records (one per distinct
//!   message, however often it is replayed) and no paid transition; the chain verifies.
//! - The payment platform on PostgreSQL: the same for its JSON callback.
//! - Modes: `off` records nothing; `full` keeps the callback and our reply, sealed.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gateway::edge::payments::{router, PaymentsHttp};
use gateway::evidence::{seal, EvidenceLog, EvidenceSection, Mode};
use gateway::payments::evidence::PaymentEvidence;
use gateway::payments::platform::{Platform, PlatformSettings};
use gateway::payments::vnpay::{IpnReply, VnPay, VnPaySettings};
use gateway::payments::{Fee, FeeCheck, OrderView, PaymentRequest, Payments, Settings};
use gw_contract_tests::payplatform::{PlatformSandbox, PlatformTxn};
use gw_contract_tests::vnpay::{Txn, VnPaySandbox};
use gw_crypto::checksum::form_urlencode;
use gw_store::evidence::StoredEvidence;
use gw_store::payments::OrderState;
use gw_store::Store;
use sha2::{Digest, Sha256};

const TMN: &str = "GWTEST01";
const SECRET: &str = "VNPAYTESTSECRET";
const PARTNER: &str = "GWDOITAC";
const KEY: &str = "PLATFORMKEY";
const BODY_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn log(mode: Mode, base: &Path) -> Arc<EvidenceLog> {
    let mut section = EvidenceSection {
        mode,
        ..Default::default()
    };
    if mode == Mode::Full {
        let key = base.join("body.key");
        std::fs::write(&key, BODY_KEY).unwrap();
        section.body_key = Some(gateway::config::SecretRef::File { file: key });
    }
    Arc::new(EvidenceLog::new(&section, "test", base).unwrap())
}

struct H {
    payments: Arc<Payments>,
    evidence: Arc<dyn Store>,
    base: String,
    http: reqwest::Client,
}

impl H {
    /// The payment service with the evidence hook, on `url` (payment and evidence store
    /// alike), serving `http` with the given connectors.
    async fn start(
        url: &str,
        log: Arc<EvidenceLog>,
        vnpay: Option<Arc<VnPay>>,
        platform: Option<Arc<Platform>>,
    ) -> H {
        let store = gw_store::payments::open(url).await.unwrap();
        let evidence = gw_store::open(url).await.unwrap();
        let mut payments = Payments::new(
            store,
            Settings {
                fee_check: FeeCheck::Off,
                ..Settings::default()
            },
        )
        .with_evidence(Arc::new(PaymentEvidence::new(evidence.clone(), log)));
        for p in vnpay.iter() {
            payments = payments.with_provider(p.clone());
        }
        for p in platform.iter() {
            payments = payments.with_provider(p.clone());
        }
        let payments = Arc::new(payments);
        let app = router(Arc::new(PaymentsHttp {
            payments: payments.clone(),
            vnpay: vnpay
                .map(|v| ("vnpay".to_string(), v))
                .into_iter()
                .collect(),
            platform: platform
                .map(|p| ("dvcqg-pay".to_string(), p))
                .into_iter()
                .collect(),
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
            payments,
            evidence,
            base,
            http: reqwest::Client::new(),
        }
    }

    async fn request(&self, provider: &str, dossier: &str, fees: &[(&str, i64)]) -> Vec<OrderView> {
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
            .post(format!("{}/payments/{provider}/orders", self.base))
            .json(&req)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        serde_json::from_value(v["orders"].clone()).unwrap()
    }

    /// Send an IPN as VNPay does (GET, form-encoded query); the raw query and the raw answer.
    async fn ipn(&self, params: &[(String, String)]) -> (String, Vec<u8>) {
        let q = params
            .iter()
            .map(|(k, v)| format!("{}={}", form_urlencode(k), form_urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let r = self
            .http
            .get(format!("{}/payments/vnpay/ipn?{q}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        (q, r.bytes().await.unwrap().to_vec())
    }

    /// Post a platform callback; the raw body and the reply's `MaLoi`.
    async fn callback(&self, body: &serde_json::Value) -> (Vec<u8>, String) {
        let raw = serde_json::to_vec(body).unwrap();
        let r = self
            .http
            .post(format!("{}/payments/dvcqg-pay/callback", self.base))
            .header("content-type", "application/json")
            .body(raw.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let a: serde_json::Value = r.json().await.unwrap();
        (raw, a["MaLoi"].as_str().unwrap().to_string())
    }

    async fn records(&self, dossier: &str) -> Vec<StoredEvidence> {
        self.evidence.evidence_by_dossier(dossier).await.unwrap()
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

    async fn trail(&self, reference: &str) -> Vec<OrderState> {
        self.payments
            .store
            .transitions(reference)
            .await
            .unwrap()
            .iter()
            .map(|t| t.to)
            .collect()
    }

    async fn verifies(&self) -> u64 {
        let report = gateway::cli::evidence::verify(self.evidence.as_ref(), None)
            .await
            .unwrap();
        assert!(report.ok(), "{:?}", report.problems);
        report.records
    }
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

fn platform(sandbox: &PlatformSandbox) -> Arc<Platform> {
    Arc::new(
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
            timeout: Duration::from_secs(5),
        })
        .unwrap(),
    )
}

fn param<'a>(params: &'a [(String, String)], k: &str) -> &'a str {
    &params.iter().find(|(n, _)| n == k).unwrap().1
}

fn only<'a>(records: &'a [StoredEvidence], operation: &str) -> &'a StoredEvidence {
    let found: Vec<_> = records
        .iter()
        .filter(|r| r.record.operation == operation)
        .collect();
    assert_eq!(found.len(), 1, "{operation}: {records:#?}");
    found[0]
}

#[tokio::test]
async fn vnpay_transitions_and_refusals_are_evidence_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("store.db").display());
    let sandbox = VnPaySandbox::start(0, TMN, SECRET).await.unwrap();
    let h = H::start(
        &url,
        log(Mode::Metadata, dir.path()),
        Some(vnpay(&sandbox)),
        None,
    )
    .await;
    let dossier = "H01.01-0700";
    let orders = h
        .request("vnpay", dossier, &[("LEPHI", 50_000), ("PHI", 20_000)])
        .await;
    let (paid, abandoned) = (&orders[0], &orders[1]);

    // Happy path.
    sandbox
        .open(paid.pay_url.as_deref().unwrap())
        .await
        .unwrap();
    assert!(sandbox.pay(&paid.reference));
    let ipn = sandbox.ipn(&paid.reference).unwrap();
    let (query, answer) = h.ipn(&ipn).await;
    assert_eq!(
        answer,
        serde_json::to_vec(&IpnReply::Confirmed.body()).unwrap()
    );

    // Forged: the citizen abandons, a forger turns the failure into a success without the key,
    // and sends it three times.
    sandbox
        .open(abandoned.pay_url.as_deref().unwrap())
        .await
        .unwrap();
    assert!(sandbox.abandon(&abandoned.reference));
    let mut forged = sandbox.ipn(&abandoned.reference).unwrap();
    for (k, v) in forged.iter_mut() {
        if k == "vnp_ResponseCode" || k == "vnp_TransactionStatus" {
            *v = "00".into();
        }
    }
    let mut forged_answers = Vec::new();
    for _ in 0..3 {
        forged_answers.push(h.ipn(&forged).await);
    }
    let (forged_query, forged_answer) = forged_answers[0].clone();
    assert_eq!(
        forged_answer,
        serde_json::to_vec(&IpnReply::InvalidSignature.body()).unwrap()
    );
    assert_eq!(h.state(&abandoned.reference).await, OrderState::Requested);
    assert_eq!(h.trail(&abandoned.reference).await, [OrderState::Requested]);

    // A correctly signed IPN with the wrong amount (04) and one for an order never made (01).
    let t = sandbox.txn(&abandoned.reference).unwrap();
    let wrong = sandbox.sign_ipn(&Txn {
        amount100: t.amount100 + 100,
        ..t.clone()
    });
    let (wrong_query, a) = h.ipn(&wrong).await;
    assert_eq!(
        a,
        serde_json::to_vec(&IpnReply::InvalidAmount.body()).unwrap()
    );
    let stranger = sandbox.sign_ipn(&Txn {
        txn_ref: "GWNEVERMADE000000000".into(),
        ..t
    });
    let (_, a) = h.ipn(&stranger).await;
    assert_eq!(
        a,
        serde_json::to_vec(&IpnReply::OrderNotFound.body()).unwrap()
    );
    assert_eq!(h.state(&abandoned.reference).await, OrderState::Requested);

    let records = h.records(dossier).await;
    assert_eq!(records.len(), 5, "{records:#?}");
    let requested: Vec<_> = records
        .iter()
        .filter(|r| r.record.operation == "payment.requested")
        .collect();
    assert_eq!(requested.len(), 2);
    for r in requested {
        assert_eq!(r.record.direction, "out");
        assert_eq!(r.record.adapter, "vnpay");
        assert_eq!(r.record.result_code.as_deref(), Some("requested"));
        assert!(
            r.record.request_body.is_none(),
            "metadata mode keeps no body"
        );
    }

    let p = &only(&records, "payment.paid").record;
    assert_eq!(p.direction, "in");
    assert_eq!(p.adapter, "vnpay");
    assert_eq!(p.dossier, dossier);
    assert_eq!(p.request_digest, sha(query.as_bytes()));
    assert_eq!(
        p.signature_digest.as_deref(),
        Some(sha(param(&ipn, "vnp_SecureHash").as_bytes()).as_str())
    );
    assert_eq!(p.result_code.as_deref(), Some("00"));
    assert_eq!(p.mode, "metadata");
    assert!(p.exchange.contains(&paid.reference), "{}", p.exchange);
    // The record names the `payment.settled` envelope queued with the transition.
    let notices = h.payments.store.unpublished_notices(10).await.unwrap();
    let notice = notices
        .iter()
        .find(|n| n.reference == paid.reference)
        .unwrap();
    assert_eq!(p.envelope_id, notice.id);

    let f = &only(&records, "payment.refused.checksum").record;
    assert_eq!(f.direction, "in");
    assert_eq!(f.request_digest, sha(forged_query.as_bytes()));
    assert_eq!(
        f.response_digest.as_deref(),
        Some(sha(&forged_answer).as_str())
    );
    assert_eq!(f.result_code.as_deref(), Some("97"));
    assert_eq!(f.http_status, Some(200));
    assert_eq!(
        f.signature_digest.as_deref(),
        Some(sha(param(&forged, "vnp_SecureHash").as_bytes()).as_str())
    );
    let w = &only(&records, "payment.refused.amount").record;
    assert_eq!(w.request_digest, sha(wrong_query.as_bytes()));
    assert_eq!(w.result_code.as_deref(), Some("04"));
    // The stranger's IPN names no dossier of ours: recorded without one.
    let all = h.evidence.evidence_chain("test", 0, 100).await.unwrap();
    let s = all
        .iter()
        .find(|r| r.record.operation == "payment.refused.unknown_order")
        .expect("the unknown order's IPN is recorded");
    assert_eq!(s.record.dossier, "");
    assert_eq!(s.record.result_code.as_deref(), Some("01"));
    assert_eq!(all.len(), 6);
    // Nothing personal or card-like in the metadata: no bank transaction number, no card type.
    let text = format!("{all:?}");
    assert!(
        !text.contains("VNP14422574") && !text.contains("ATM"),
        "{text}"
    );

    assert_eq!(h.verifies().await, 6);

    // A replay of the genuine IPN changes nothing and adds no record.
    let (_, a) = h.ipn(&ipn).await;
    assert_eq!(
        a,
        serde_json::to_vec(&IpnReply::AlreadyConfirmed.body()).unwrap()
    );
    assert_eq!(h.verifies().await, 6);
}

#[tokio::test]
async fn platform_transitions_and_a_forged_callback_are_evidence_on_postgresql() {
    if !common::services_available(
        "platform_transitions_and_a_forged_callback_are_evidence_on_postgresql",
    ) {
        return;
    }
    let schema = common::unique("gwpayev");
    let url = format!("postgres://postgres@127.0.0.1:5432/test?schema={schema}");
    let dir = tempfile::tempdir().unwrap();
    let sandbox = PlatformSandbox::start(0, PARTNER, KEY).await.unwrap();
    let h = H::start(
        &url,
        log(Mode::Metadata, dir.path()),
        None,
        Some(platform(&sandbox)),
    )
    .await;
    let dossier = "H01.01-0701";
    let orders = h
        .request("dvcqg-pay", dossier, &[("LEPHI", 30_000), ("PHI", 10_000)])
        .await;
    let (paid, other) = (&orders[0], &orders[1]);
    assert!(sandbox.pay(&paid.reference));
    let good = sandbox.callback(&paid.reference).unwrap();
    let (good_raw, code) = h.callback(&good).await;
    assert_eq!(code, "00");

    // Forged: a success for the other order with a checksum made without the key.
    let t = sandbox.txn(&other.reference).unwrap();
    let mut forged = sandbox.sign_callback(&PlatformTxn {
        status: "00".into(),
        txn_no: "PP1".into(),
        ..t
    });
    forged["SoTien"] = "1".into();
    let (forged_raw, code) = h.callback(&forged).await;
    assert_eq!(code, "99");
    assert_eq!(h.state(&other.reference).await, OrderState::Requested);
    assert_eq!(h.trail(&other.reference).await, [OrderState::Requested]);

    let records = h.records(dossier).await;
    assert_eq!(records.len(), 4, "{records:#?}");
    let p = &only(&records, "payment.paid").record;
    assert_eq!(p.direction, "in");
    assert_eq!(p.adapter, "dvcqg-pay");
    assert_eq!(p.request_digest, sha(&good_raw));
    assert_eq!(
        p.signature_digest.as_deref(),
        Some(sha(good["MaXacThuc"].as_str().unwrap().as_bytes()).as_str())
    );
    assert_eq!(p.result_code.as_deref(), Some("00"));
    let f = &only(&records, "payment.refused.checksum").record;
    assert_eq!(f.request_digest, sha(&forged_raw));
    assert_eq!(f.result_code.as_deref(), Some("99"));
    assert!(f.response_digest.is_some());
    assert_eq!(h.verifies().await, 4);

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

#[tokio::test]
async fn evidence_modes_off_and_full() {
    // Off: transitions and refusals happen, nothing is recorded.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("off.db").display());
    let sandbox = VnPaySandbox::start(0, TMN, SECRET).await.unwrap();
    let h = H::start(
        &url,
        log(Mode::Off, dir.path()),
        Some(vnpay(&sandbox)),
        None,
    )
    .await;
    let o = h
        .request("vnpay", "H01.01-0702", &[("LEPHI", 5_000)])
        .await
        .remove(0);
    sandbox.open(o.pay_url.as_deref().unwrap()).await.unwrap();
    assert!(sandbox.pay(&o.reference));
    let mut ipn = sandbox.ipn(&o.reference).unwrap();
    ipn.last_mut().unwrap().1 = "00".repeat(64);
    h.ipn(&ipn).await;
    h.ipn(&sandbox.ipn(&o.reference).unwrap()).await;
    assert_eq!(h.state(&o.reference).await, OrderState::Paid);
    assert!(h
        .evidence
        .evidence_chain("test", 0, 10)
        .await
        .unwrap()
        .is_empty());

    // Full: the IPN and our reply are kept, sealed, and open with the body key.
    let url = format!("sqlite:{}", dir.path().join("full.db").display());
    let h = H::start(
        &url,
        log(Mode::Full, dir.path()),
        Some(vnpay(&sandbox)),
        None,
    )
    .await;
    let o = h
        .request("vnpay", "H01.01-0703", &[("LEPHI", 6_000)])
        .await
        .remove(0);
    sandbox.open(o.pay_url.as_deref().unwrap()).await.unwrap();
    assert!(sandbox.pay(&o.reference));
    let mut forged = sandbox.ipn(&o.reference).unwrap();
    forged.last_mut().unwrap().1 = "00".repeat(64);
    let (forged_query, forged_answer) = h.ipn(&forged).await;
    let (query, _) = h.ipn(&sandbox.ipn(&o.reference).unwrap()).await;
    let records = h.records("H01.01-0703").await;
    let key = seal::Key::parse(BODY_KEY).unwrap();
    let open = |r: &gw_store::EvidenceRecord, b: &Option<Vec<u8>>| {
        key.open(b.as_ref().expect("sealed body"), r.id.as_bytes())
            .unwrap()
    };
    let p = &only(&records, "payment.paid").record;
    assert_eq!(p.mode, "full");
    assert_eq!(open(p, &p.request_body), query.as_bytes());
    let f = &only(&records, "payment.refused.checksum").record;
    assert_eq!(open(f, &f.request_body), forged_query.as_bytes());
    assert_eq!(open(f, &f.response_body), forged_answer);
    // The request's record keeps the transition it describes, matching its digest.
    let r = &only(&records, "payment.requested").record;
    let body = open(r, &r.request_body);
    assert_eq!(sha(&body), r.request_digest);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["reference"], o.reference.as_str());
    assert_eq!(v["to"], "requested");
    assert_eq!(h.verifies().await, 3);
}
