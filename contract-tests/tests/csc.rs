//! Contract tests of the CSC API v2 sandbox through plain HTTP: token, credentials, the SAD
//! bound to its hashes, signHash synchronous and asynchronous, polling, idempotency.

use std::time::Duration;

use base64::Engine as _;
use gw_contract_tests::csc::{Csc, CscConfig};
use gw_contract_tests::officials::SignFaults;
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const SHA256: &str = "2.16.840.1.101.3.4.2.1";

async fn token(s: &Csc) -> String {
    let r = reqwest::Client::new()
        .post(format!("{}/oauth2/token", s.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "sandbox-client"),
            ("client_secret", "sandbox-client-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn post(s: &Csc, path: &str, t: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/{path}", s.base_url()))
        .bearer_auth(t)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn sad(s: &Csc, t: &str, cred: &str, h: &str) -> String {
    let (code, v) = post(s, "credentials/authorize", t, json!({"credentialID": cred, "numSignatures": 1, "hashes": [h], "hashAlgorithmOID": SHA256})).await;
    assert_eq!(code, 200, "{v}");
    v["SAD"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn list_info_authorize_and_sign_sync_and_async() {
    let s = Csc::start(0, CscConfig::default()).await.unwrap();
    let t = token(&s).await;
    let (_, v) = post(
        &s,
        "credentials/list",
        &t,
        json!({"userID": "official-rsa"}),
    )
    .await;
    assert_eq!(v["credentialIDs"], json!(["cred-rsa"]));
    let (_, v) = post(&s, "credentials/info", &t, json!({"credentialID": "cred-rsa", "certificates": "chain", "certInfo": true, "authInfo": true})).await;
    assert_eq!(v["cert"]["serialNumber"], "5000");
    assert_eq!(v["auth"]["mode"], "implicit");
    let h = B64.encode([5u8; 32]);
    let sd = sad(&s, &t, "cred-rsa", &h).await;
    let (code, v) = post(&s, "signatures/signHash", &t, json!({"credentialID": "cred-rsa", "SAD": sd, "hashes": [h], "hashAlgorithmOID": SHA256, "signAlgo": "1.2.840.113549.1.1.11", "operationMode": "S"})).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["signatures"].as_array().unwrap().len(), 1);
    let sd = sad(&s, &t, "cred-rsa", &h).await;
    let body = json!({"credentialID": "cred-rsa", "SAD": sd, "hashes": [h], "hashAlgorithmOID": SHA256, "signAlgo": "1.2.840.113549.1.1.10", "operationMode": "A", "clientData": "req-1"});
    let (code, v) = post(&s, "signatures/signHash", &t, body.clone()).await;
    assert_eq!(code, 200, "{v}");
    let id = v["responseID"].as_str().unwrap().to_string();
    let (_, again) = post(&s, "signatures/signHash", &t, body).await;
    assert_eq!(
        again["responseID"],
        id.as_str(),
        "same clientData, same request"
    );
    assert_eq!(s.records().pushes_of(&id), 1);
    let (code, v) = post(&s, "signatures/signPolling", &t, json!({"responseID": id})).await;
    assert_eq!((code, v["error"].clone()), (400, json!("pending")));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (code, v) = post(&s, "signatures/signPolling", &t, json!({"responseID": id})).await;
    assert_eq!(code, 200, "{v}");
}

#[tokio::test]
async fn refusals_sad_binding_and_endings() {
    let s = Csc::start(
        0,
        CscConfig {
            lifetime: Duration::from_secs(1),
            ..CscConfig::default()
        },
    )
    .await
    .unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/credentials/list", s.base_url()))
        .json(&json!({"userID": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let t = token(&s).await;
    let h = B64.encode([5u8; 32]);
    let other = B64.encode([6u8; 32]);
    let sd = sad(&s, &t, "cred-rsa", &h).await;
    let (code, v) = post(&s, "signatures/signHash", &t, json!({"credentialID": "cred-rsa", "SAD": sd, "hashes": [other], "hashAlgorithmOID": SHA256, "signAlgo": "1.2.840.113549.1.1.11"})).await;
    assert_eq!(code, 400);
    assert!(
        v["error_description"].as_str().unwrap().contains("SAD"),
        "{v}"
    );
    let (code, _) = post(&s, "credentials/authorize", &t, json!({"credentialID": "cred-rsa", "numSignatures": 1, "hashes": [B64.encode(b"document")], "hashAlgorithmOID": SHA256})).await;
    assert_eq!(code, 400, "a document is not a digest");
    assert!(s.records().pushes.is_empty());
    let sd = sad(&s, &t, "cred-rejects", &h).await;
    let (_, v) = post(&s, "signatures/signHash", &t, json!({"credentialID": "cred-rejects", "SAD": sd, "hashes": [h], "hashAlgorithmOID": SHA256, "signAlgo": "1.2.840.113549.1.1.11", "operationMode": "S"})).await;
    assert_eq!(v["error"], "access_denied");
    let sd = sad(&s, &t, "cred-away", &h).await;
    let (_, v) = post(&s, "signatures/signHash", &t, json!({"credentialID": "cred-away", "SAD": sd, "hashes": [h], "hashAlgorithmOID": SHA256, "signAlgo": "1.2.840.10045.4.3.2", "operationMode": "S"})).await;
    assert_eq!(v["error"], "expired");
    let (_, v) = post(
        &s,
        "signatures/signPolling",
        &t,
        json!({"responseID": "nope"}),
    )
    .await;
    assert_eq!(v["error"], "invalid_response_id");
    s.set_faults(SignFaults {
        fail_before: 1,
        ..Default::default()
    });
    let (code, _) = post(
        &s,
        "credentials/list",
        &t,
        json!({"userID": "official-rsa"}),
    )
    .await;
    assert_eq!(code, 503);
}
