//! Contract tests of the Viettel MySign sandbox through plain HTTP: login and tokens per user,
//! the strict signHash, the status codes, the faults.

use std::time::Duration;

use base64::Engine as _;
use gw_contract_tests::mysign::{MySign, MySignConfig};
use gw_contract_tests::officials::SignFaults;
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

async fn post(s: &MySign, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut rb = reqwest::Client::new()
        .post(format!("{}/vtss/service{path}", s.base_url()))
        .json(&body);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn login(s: &MySign, user: &str) -> String {
    let (code, v) = post(
        s,
        "/ras/v1/login",
        None,
        json!({"client_id": "sandbox-client", "client_secret": "sandbox-client-secret", "user_id": user, "profile_id": "sandbox-profile"}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    v["access_token"].as_str().unwrap().to_string()
}

fn sign_body(cred: &str, hash: &[u8], algo: &str) -> Value {
    json!({"client_id": "sandbox-client", "credentialID": cred, "numSignatures": 1, "documents": ["result.pdf"],
           "hash": [B64.encode(hash)], "hashAlgo": "2.16.840.1.101.3.4.2.1", "signAlgo": algo, "async": 1})
}

async fn wait_final(s: &MySign, t: &str, id: &str) -> Value {
    for _ in 0..100 {
        let (_, v) = post(s, "/requests/status", Some(t), json!({"transactionId": id})).await;
        if v["status"] != "0" {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("still pending")
}

#[tokio::test]
async fn login_certificate_sign_and_status() {
    let s = MySign::start(0, MySignConfig::default()).await.unwrap();
    let t = login(&s, "official-ec").await;
    let (code, v) = post(&s, "/certificates/info", Some(&t), json!({"client_id": "sandbox-client", "user_id": "official-ec", "certificates": "chain", "certInfo": true})).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v[0]["cert"]["serialNumber"], "5001");
    assert_eq!(v[0]["cert"]["certificates"].as_array().unwrap().len(), 2);
    let (code, v) = post(
        &s,
        "/signHash",
        Some(&t),
        sign_body("cred-ec", &[3u8; 32], "1.2.840.10045.4.3.2"),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let id = v["transactionId"].as_str().unwrap().to_string();
    let v = wait_final(&s, &t, &id).await;
    assert_eq!(v["status"], "1");
    assert_eq!(v["signatures"].as_array().unwrap().len(), 1);
    assert_eq!(s.records().logins, 1);
}

#[tokio::test]
async fn tokens_are_per_user_and_expire() {
    let s = MySign::start(
        0,
        MySignConfig {
            token_lifetime: Duration::from_millis(300),
            ..MySignConfig::default()
        },
    )
    .await
    .unwrap();
    let (code, _) = post(&s, "/ras/v1/login", None, json!({"client_id": "sandbox-client", "client_secret": "wrong", "user_id": "official-rsa", "profile_id": "sandbox-profile"})).await;
    assert_eq!(code, 401);
    let (code, _) = post(
        &s,
        "/signHash",
        None,
        sign_body("cred-rsa", &[1u8; 32], "1.2.840.113549.1.1.11"),
    )
    .await;
    assert_eq!(code, 401);
    let t = login(&s, "official-ec").await;
    let (code, v) = post(
        &s,
        "/signHash",
        Some(&t),
        sign_body("cred-rsa", &[1u8; 32], "1.2.840.113549.1.1.11"),
    )
    .await;
    assert_eq!(code, 400, "another user's credential: {v}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (code, _) = post(
        &s,
        "/signHash",
        Some(&t),
        sign_body("cred-ec", &[1u8; 32], "1.2.840.10045.4.3.2"),
    )
    .await;
    assert_eq!(code, 401, "expired token");
}

#[tokio::test]
async fn strict_sign_hash() {
    let s = MySign::start(0, MySignConfig::default()).await.unwrap();
    let t = login(&s, "official-rsa").await;
    let cases = [
        (
            sign_body(
                "cred-rsa",
                b"a document, not a digest",
                "1.2.840.113549.1.1.11",
            ),
            "hash[0]",
        ),
        (
            sign_body("cred-rsa", &[1u8; 32], "1.2.840.10045.4.3.2"),
            "signAlgo",
        ),
        (
            {
                let mut b = sign_body("cred-rsa", &[1u8; 32], "1.2.840.113549.1.1.11");
                b["async"] = json!(0);
                b
            },
            "async",
        ),
        (
            {
                let mut b = sign_body("cred-rsa", &[1u8; 32], "1.2.840.113549.1.1.11");
                b["numSignatures"] = json!(2);
                b
            },
            "numSignatures",
        ),
        (
            {
                let mut b = sign_body("cred-rsa", &[1u8; 32], "1.2.840.113549.1.1.11");
                b["hashAlgo"] = json!("SHA1");
                b
            },
            "hashAlgo",
        ),
    ];
    for (body, word) in cases {
        let (code, v) = post(&s, "/signHash", Some(&t), body).await;
        assert_eq!(code, 400);
        assert!(v["message"].as_str().unwrap().contains(word), "{word}: {v}");
    }
    assert!(s.records().pushes.is_empty());
    let (code, _) = post(
        &s,
        "/requests/status",
        Some(&t),
        json!({"transactionId": "nope"}),
    )
    .await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn rejected_expired_and_faults() {
    let s = MySign::start(
        0,
        MySignConfig {
            lifetime: Duration::from_secs(1),
            ..MySignConfig::default()
        },
    )
    .await
    .unwrap();
    let t = login(&s, "official-rejects").await;
    let (_, v) = post(
        &s,
        "/signHash",
        Some(&t),
        sign_body("cred-rejects", &[1u8; 32], "1.2.840.113549.1.1.11"),
    )
    .await;
    assert_eq!(
        wait_final(&s, &t, v["transactionId"].as_str().unwrap()).await["status"],
        "2"
    );
    let t = login(&s, "official-away").await;
    let (_, v) = post(
        &s,
        "/signHash",
        Some(&t),
        sign_body("cred-away", &[1u8; 32], "1.2.840.10045.4.3.2"),
    )
    .await;
    assert_eq!(
        wait_final(&s, &t, v["transactionId"].as_str().unwrap()).await["status"],
        "3"
    );
    s.set_faults(SignFaults {
        fail_before: 1,
        ..Default::default()
    });
    let before = s.records().pushes.len();
    let (code, _) = post(
        &s,
        "/signHash",
        Some(&t),
        sign_body("cred-away", &[1u8; 32], "1.2.840.10045.4.3.2"),
    )
    .await;
    assert_eq!(code, 503);
    assert_eq!(s.records().pushes.len(), before);
}
