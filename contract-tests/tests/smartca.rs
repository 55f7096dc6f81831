//! Contract tests of the VNPT SmartCA sandbox through plain HTTP: every rule it enforces, the
//! phone's three endings, idempotency by transaction id, the faults.

use std::time::Duration;

use base64::Engine as _;
use gw_contract_tests::officials::{certs_example, SignFaults};
use gw_contract_tests::smartca::{SmartCa, SmartCaConfig};
use openssl::md::Md;
use openssl::pkey::PKey;
use openssl::pkey_ctx::PkeyCtx;
use openssl::x509::X509;
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

async fn start() -> SmartCa {
    SmartCa::start(0, SmartCaConfig::default()).await.unwrap()
}

async fn post(s: &SmartCa, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", s.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn creds(mut v: Value) -> Value {
    v["sp_id"] = json!("sandbox-sp");
    v["sp_password"] = json!("sandbox-sp-password");
    v
}

fn sign_body(user: &str, tran: &str, serial: &str, data: &str) -> Value {
    creds(json!({
        "user_id": user, "transaction_id": tran, "transaction_desc": "Result of dossier",
        "serial_number": serial, "time_stamp": "20261206120000",
        "sign_files": [{"doc_id": "d1", "file_type": "pdf", "sign_type": "hash", "data_to_be_signed": data}]
    }))
}

async fn status(s: &SmartCa, tran: &str) -> Value {
    post(
        s,
        &format!("/v1/signatures/sign/{tran}/status"),
        creds(json!({})),
    )
    .await
    .1
}

async fn wait_final(s: &SmartCa, tran: &str) -> Value {
    for _ in 0..100 {
        let v = status(s, tran).await;
        if v["message"] != "WAITING" {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("still waiting")
}

fn verifies(cert_pem: &str, digest: &[u8], sig: &[u8]) -> bool {
    let cert = X509::from_pem(&std::fs::read(certs_example().join(cert_pem)).unwrap()).unwrap();
    let key: PKey<_> = cert.public_key().unwrap();
    let mut ctx = PkeyCtx::new(&key).unwrap();
    ctx.verify_init().unwrap();
    ctx.set_signature_md(Md::sha256()).unwrap();
    ctx.verify(digest, sig).unwrap_or(false)
}

/// The certificate, a signing request, its status until SUCCESS; the signature verifies over
/// exactly the digest with the official's certificate (OpenSSL), and only the digest was sent.
#[tokio::test]
async fn certificate_sign_and_poll_until_signed() {
    let s = start().await;
    let (code, v) = post(
        &s,
        "/v1/credentials/get_certificate",
        creds(json!({"user_id": "official-rsa", "transaction_id": "c1"})),
    )
    .await;
    assert_eq!(code, 200);
    let c = &v["data"]["user_certificates"][0];
    assert_eq!(c["serial_number"], "5000");
    let der = B64.decode(c["cert_data"].as_str().unwrap()).unwrap();
    assert!(X509::from_der(&der).is_ok());
    let digest = openssl::sha::sha256(b"the result document");
    let (code, v) = post(
        &s,
        "/v1/signatures/sign",
        sign_body("official-rsa", "tx-1", "5000", &hex::encode(digest)),
    )
    .await;
    assert_eq!((code, v["status_code"].clone()), (200, json!(200)), "{v}");
    assert_eq!(status(&s, "tx-1").await["message"], "WAITING");
    let v = wait_final(&s, "tx-1").await;
    assert_eq!(v["message"], "SUCCESS", "{v}");
    let sig = B64
        .decode(
            v["data"]["signatures"][0]["signature_value"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    assert!(verifies("officials/official-rsa.pem", &digest, &sig));
    let r = s.records();
    assert_eq!(r.pushes.len(), 1);
    assert!(r.max_body() < 1024, "only a digest travels");
}

/// sp credentials in every body, sign_type hash, a hex digest (never a document), the user's
/// own serial, every field present.
#[tokio::test]
async fn strict_refusals() {
    let s = start().await;
    let (code, _) = post(
        &s,
        "/v1/credentials/get_certificate",
        json!({"user_id": "official-rsa", "transaction_id": "c"}),
    )
    .await;
    assert_eq!(code, 401);
    let r = reqwest::Client::new()
        .post(format!("{}/v1/signatures/sign", s.base_url()))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let doc = hex::encode(b"a whole document is not a digest, whatever its length may be......");
    let (_, v) = post(
        &s,
        "/v1/signatures/sign",
        sign_body("official-rsa", "t2", "5000", &doc),
    )
    .await;
    assert!(
        v["message"].as_str().unwrap().starts_with("INVALID_HASH"),
        "{v}"
    );
    let mut b = sign_body("official-rsa", "t3", "5000", &hex::encode([1u8; 32]));
    b["sign_files"][0]["sign_type"] = json!("file");
    let (_, v) = post(&s, "/v1/signatures/sign", b).await;
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("INVALID_SIGN_TYPE"),
        "{v}"
    );
    let (_, v) = post(
        &s,
        "/v1/signatures/sign",
        sign_body("official-rsa", "t4", "5001", &hex::encode([1u8; 32])),
    )
    .await;
    assert!(
        v["message"].as_str().unwrap().starts_with("INVALID_SERIAL"),
        "{v}"
    );
    let mut b = sign_body("official-rsa", "t5", "5000", &hex::encode([1u8; 32]));
    b.as_object_mut().unwrap().remove("time_stamp");
    let (_, v) = post(&s, "/v1/signatures/sign", b).await;
    assert_eq!(v["message"], "MISSING_FIELD: time_stamp");
    let (_, v) = post(
        &s,
        "/v1/signatures/sign",
        sign_body("nobody", "t6", "5000", &hex::encode([1u8; 32])),
    )
    .await;
    assert_eq!(v["message"], "USER_NOT_FOUND");
    assert!(
        s.records().pushes.is_empty(),
        "nothing refused reached a phone"
    );
    assert_eq!(
        status(&s, "never-sent").await["message"],
        "TRANSACTION_NOT_FOUND"
    );
}

/// An official who rejects, one who never answers; the same transaction id twice reaches the
/// phone once.
#[tokio::test]
async fn rejection_expiry_and_idempotency() {
    let s = SmartCa::start(
        0,
        SmartCaConfig {
            lifetime: Duration::from_secs(1),
            ..SmartCaConfig::default()
        },
    )
    .await
    .unwrap();
    let d = hex::encode([7u8; 32]);
    post(
        &s,
        "/v1/signatures/sign",
        sign_body("official-rejects", "r1", "5000", &d),
    )
    .await;
    post(
        &s,
        "/v1/signatures/sign",
        sign_body("official-away", "a1", "5001", &d),
    )
    .await;
    assert_eq!(wait_final(&s, "r1").await["message"], "REJECTED");
    assert_eq!(wait_final(&s, "a1").await["message"], "EXPIRED");
    let (_, v1) = post(
        &s,
        "/v1/signatures/sign",
        sign_body("official-rsa", "same", "5000", &d),
    )
    .await;
    let (_, v2) = post(
        &s,
        "/v1/signatures/sign",
        sign_body("official-rsa", "same", "5000", &d),
    )
    .await;
    assert_eq!(v1, v2);
    assert_eq!(s.records().pushes_of("same"), 1);
}

/// A fault before the effect pushes nothing (status: not found); one after it pushes and
/// loses the answer (status: waiting); wrong signature, other digest, other certificate.
#[tokio::test]
async fn faults() {
    let s = start().await;
    let d = [9u8; 32];
    s.set_faults(SignFaults {
        fail_before: 1,
        ..Default::default()
    });
    let (code, _) = post(
        &s,
        "/v1/signatures/sign",
        sign_body("official-rsa", "f1", "5000", &hex::encode(d)),
    )
    .await;
    assert_eq!(code, 503);
    assert_eq!(status(&s, "f1").await["message"], "TRANSACTION_NOT_FOUND");
    s.set_faults(SignFaults {
        fail_after: 1,
        ..Default::default()
    });
    let (code, _) = post(
        &s,
        "/v1/signatures/sign",
        sign_body("official-rsa", "f2", "5000", &hex::encode(d)),
    )
    .await;
    assert_eq!(code, 500);
    assert_eq!(s.records().pushes_of("f2"), 1);
    s.set_faults(SignFaults {
        wrong_signature: true,
        ..Default::default()
    });
    post(
        &s,
        "/v1/signatures/sign",
        sign_body("official-rsa", "f3", "5000", &hex::encode(d)),
    )
    .await;
    let v = wait_final(&s, "f3").await;
    let sig = B64
        .decode(
            v["data"]["signatures"][0]["signature_value"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    assert!(!verifies("officials/official-rsa.pem", &d, &sig));
    s.set_faults(SignFaults {
        other_digest: true,
        ..Default::default()
    });
    post(
        &s,
        "/v1/signatures/sign",
        sign_body("official-rsa", "f4", "5000", &hex::encode(d)),
    )
    .await;
    let v = wait_final(&s, "f4").await;
    let sig = B64
        .decode(
            v["data"]["signatures"][0]["signature_value"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    assert!(!verifies("officials/official-rsa.pem", &d, &sig));
    s.set_faults(SignFaults {
        other_certificate: true,
        ..Default::default()
    });
    let (_, v) = post(
        &s,
        "/v1/credentials/get_certificate",
        creds(json!({"user_id": "official-rsa", "transaction_id": "c"})),
    )
    .await;
    assert_eq!(v["data"]["user_certificates"][0]["serial_number"], "5003");
    s.set_faults(SignFaults {
        expired_certificate: true,
        ..Default::default()
    });
    let (_, v) = post(
        &s,
        "/v1/credentials/get_certificate",
        creds(json!({"user_id": "official-rsa", "transaction_id": "c"})),
    )
    .await;
    assert_eq!(v["data"]["user_certificates"][0]["serial_number"], "5004");
}

/// Same seed, same identifiers (the sandboxes are deterministic).
#[tokio::test]
async fn seeded_ids_repeat() {
    use gw_contract_tests::officials::{default_officials, Core};
    let mk = || {
        Core::new(
            &default_officials(),
            Duration::from_secs(1),
            Duration::from_secs(2),
            7,
        )
        .unwrap()
    };
    let (mut a, mut b) = (mk(), mk());
    assert_eq!(a.next_id("x"), b.next_id("x"));
}

/// The control routes every signing sandbox shares (`officials::http::control_routes`): faults
/// set over HTTP take effect on the next call and read back as set; the records list what was
/// received. The same router serves MySign and CSC, whose routes are checked to answer.
#[tokio::test]
async fn control_routes_set_faults_and_read_records() {
    let s = start().await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/_sandbox/faults", s.base_url()))
        .json(&json!({"fail_before": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let faults: SignFaults = client
        .get(format!("{}/_sandbox/faults", s.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(faults.fail_before, 1);
    let body = creds(json!({"user_id": "official-rsa", "transaction_id": "c1"}));
    let (code, _) = post(&s, "/v1/credentials/get_certificate", body.clone()).await;
    assert_eq!(
        code, 503,
        "the fault set over HTTP applies to the next call"
    );
    let (code, _) = post(&s, "/v1/credentials/get_certificate", body).await;
    assert_eq!(code, 200, "and only to the next one");
    let records: Value = client
        .get(format!("{}/_sandbox/records", s.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths: Vec<&str> = records["received"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["path"].as_str())
        .collect();
    assert!(
        paths.contains(&"/v1/credentials/get_certificate"),
        "{records}"
    );

    let mysign = gw_contract_tests::mysign::MySign::start(0, Default::default())
        .await
        .unwrap();
    let csc = gw_contract_tests::csc::Csc::start(0, Default::default())
        .await
        .unwrap();
    for base in [mysign.addr, csc.addr].map(|a| format!("http://{a}")) {
        for path in ["/_sandbox/records", "/_sandbox/faults"] {
            let r = client.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200, "{base}{path}");
        }
    }
}
