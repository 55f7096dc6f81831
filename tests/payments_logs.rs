//! Payment logs carry references, amounts and result codes, and never bank or card data nor a
//! provider secret: every log line of the process is captured at debug level as JSON while a
//! VNPay IPN (with the bank's transaction number and card type) and a PayGov callback carrying a
//! bank account and a card number go through, forged and genuine.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway::edge::payments::{router, PaymentsHttp};
use gateway::payments::paygov::{PayGov, PayGovSettings, DEFAULT_CALLBACK_FIELDS};
use gateway::payments::vnpay::{VnPay, VnPaySettings};
use gateway::payments::{Fee, FeeCheck, PaymentRequest, Payments, Settings};
use gw_contract_tests::paygov::{PayGovKeys, PayGovSandbox, CREATE_PATH, QUERY_PATH, TOKEN_PATH};
use gw_contract_tests::vnpay::VnPaySandbox;
use gw_crypto::checksum::{FieldAlgorithm, FieldChecksum};
use gw_crypto::keys::Secret;

const BANK_ACCOUNT: &str = "0451000123456";
const CARD: &str = "9704198526191432198";
const BANK_TXN: &str = "VNP14422574";
const VNPAY_SECRET: &str = "log-test-vnpay-secret-3c1d";
const PAYGOV_SECRET: &str = "log-test-paygov-secret-9e2a";

#[derive(Clone)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_logs_have_no_bank_or_card_data() {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let writer = Buf(buf.clone());
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .init();

    let dir = tempfile::tempdir().unwrap();
    let store = gw_store::payments::open(dir.path().join("s.db").to_str().unwrap())
        .await
        .unwrap();
    let vs = VnPaySandbox::start(0, "LOGTMN01", VNPAY_SECRET)
        .await
        .unwrap();
    let v = Arc::new(
        VnPay::new(VnPaySettings {
            name: "vnpay".into(),
            tmn_code: "LOGTMN01".into(),
            hash_secret: VNPAY_SECRET.into(),
            pay_url: vs.pay_url(),
            api_url: vs.api_url(),
            return_url: "https://x/return".into(),
            ip_addr: "127.0.0.1".into(),
            timeout: Duration::from_secs(5),
        })
        .unwrap(),
    );
    let keys = PayGovKeys {
        client_id: "gw".into(),
        client_secret: "lgsp".into(),
        partner_code: "P".into(),
        access_key: "A".into(),
        secret_key: PAYGOV_SECRET.into(),
    };
    let fields = DEFAULT_CALLBACK_FIELDS.map(String::from).to_vec();
    let ps = PayGovSandbox::start(
        0,
        keys.clone(),
        FieldChecksum::new(
            FieldAlgorithm::Sha256,
            fields.clone(),
            "",
            Secret::new(PAYGOV_SECRET),
        ),
    )
    .await
    .unwrap();
    let pg = Arc::new(
        PayGov::new(PayGovSettings {
            name: "paygov".into(),
            partner_code: "P".into(),
            access_key: "A".into(),
            secret_key: PAYGOV_SECRET.into(),
            service_code: "S".into(),
            create_url: ps.url(CREATE_PATH),
            query_url: ps.url(QUERY_PATH),
            token_url: ps.url(TOKEN_PATH),
            client_id: "gw".into(),
            client_secret: "lgsp".into(),
            return_url: "https://x/return".into(),
            ip_addr: "127.0.0.1".into(),
            timeout: Duration::from_secs(5),
            callback_algorithm: FieldAlgorithm::Sha256,
            callback_fields: fields,
            callback_separator: String::new(),
        })
        .unwrap(),
    );
    let payments = Arc::new(
        Payments::new(
            store,
            Settings {
                fee_check: FeeCheck::Off,
                ..Settings::default()
            },
        )
        .with_provider(v.clone())
        .with_provider(pg.clone()),
    );
    let app = router(Arc::new(PaymentsHttp {
        payments: payments.clone(),
        vnpay: [("vnpay".to_string(), v)].into_iter().collect(),
        platform: Default::default(),
        paygov: [("paygov".to_string(), pg)].into_iter().collect(),
        momo: Default::default(),
        token: None,
    }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    let req = |d: &str| PaymentRequest {
        dossier_code: d.into(),
        fees: vec![Fee {
            code: "LEPHI".into(),
            amount: 61_000,
        }],
        attempt: 1,
    };

    // VNPay: forged, then genuine, then replayed.
    let o = payments
        .request("vnpay", &req("H09.01-0001"))
        .await
        .unwrap()
        .remove(0);
    vs.open(o.pay_url.as_deref().unwrap()).await.unwrap();
    vs.pay(&o.reference);
    let ipn = vs.ipn(&o.reference).unwrap();
    assert!(ipn.iter().any(|(_, v)| v == BANK_TXN));
    let mut forged = ipn.clone();
    forged.last_mut().unwrap().1 = "0".repeat(128);
    let url = format!("{base}/payments/vnpay/ipn");
    assert_eq!(vs.send_ipn(&url, &forged).await.unwrap().rsp_code, "97");
    assert_eq!(vs.send_ipn(&url, &ipn).await.unwrap().rsp_code, "00");
    assert_eq!(vs.send_ipn(&url, &ipn).await.unwrap().rsp_code, "02");

    // PayGov: a callback carrying a bank account and a card number (outside the checksum).
    let p = payments
        .request("paygov", &req("H09.01-0002"))
        .await
        .unwrap()
        .remove(0);
    ps.pay(&p.reference);
    let mut cb = ps.callback(&p.reference).unwrap();
    cb["bankAccount"] = BANK_ACCOUNT.into();
    cb["cardNumber"] = CARD.into();
    let cb_url = format!("{base}/payments/paygov/callback");
    let mut bad = cb.clone();
    bad["checksum"] = "00".into();
    assert_eq!(ps.send_callback(&cb_url, &bad).await.unwrap(), "FAILED");
    assert_eq!(ps.send_callback(&cb_url, &cb).await.unwrap(), "SUCCESSFUL");

    let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
    for secret in [
        BANK_ACCOUNT,
        CARD,
        BANK_TXN,
        VNPAY_SECRET,
        PAYGOV_SECRET,
        "lgsp",
    ] {
        assert!(
            !text.contains(secret),
            "{secret:?} appears in the logs:\n{text}"
        );
    }
    // What the logs are for: references, amounts, codes.
    let answered: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("answered"))
        })
        .collect();
    assert!(answered
        .iter()
        .any(|v| v["reference"] == o.reference.as_str()
            && v["amount"] == 61_000
            && v["code"] == "00"));
    assert!(answered
        .iter()
        .any(|v| v["reference"] == p.reference.as_str() && v["amount"] == 61_000));
}
