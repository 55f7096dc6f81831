//! Contract tests of the document axis sandbox through plain HTTP: a signed envelope accepted
//! and held for the organ it is addressed to; every refusal (credentials, malformed XML,
//! unsigned, tampered, wrong organ, duplicate DocumentId, bad status word) with its code; the
//! receiving side (list, fetch, status); a status answer; the faults.

use gw_contract_tests::axis::{Axis, AxisConfig, AxisFaults};
use gw_contract_tests::officials::certs_example;
use gw_crypto::keys::{load_pem, SigningKey};
use gw_edxml::model::{Envelope, Header};
use gw_edxml::write::{AttachmentSource, Outgoing};
use serde_json::{json, Value};

const PROVINCE: (&str, &str) = ("000.00.00.H22", "sandbox-axis-secret");
const TNMT: (&str, &str) = ("000.00.01.H22", "sandbox-tnmt-secret");

fn key() -> SigningKey {
    let dir = certs_example();
    let mut cert = std::fs::read(dir.join("sign-rsa.pem")).unwrap();
    cert.extend(std::fs::read(dir.join("intermediate-ca.pem")).unwrap());
    load_pem(
        "province",
        &std::fs::read(dir.join("sign-rsa.key")).unwrap(),
        Some(&cert),
        None,
    )
    .unwrap()
}

fn sample() -> Envelope {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/edxml/samples/document.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// The sample document with `code` as its DocumentId's code, signed or not.
fn envelope(code: &str, signed: bool, edit: impl FnOnce(&mut Envelope)) -> Vec<u8> {
    let mut env = sample();
    if let Header::Document(h) = &mut env.header {
        h.document_id.code = code.into();
    }
    env.manifest.clear();
    edit(&mut env);
    let out = Outgoing::new(env, Vec::<(String, &dyn AttachmentSource)>::new()).unwrap();
    let mut buf = Vec::new();
    if signed {
        out.sign_to(&key(), &mut buf).unwrap();
    } else {
        out.write(None, &mut buf).unwrap();
    }
    buf
}

async fn call(
    a: &Axis,
    path: &str,
    who: (&str, &str),
    header: Value,
    body: Option<Vec<u8>>,
) -> (u16, Vec<u8>) {
    let mut r = reqwest::Client::new()
        .post(format!("{}{path}", a.base_url()))
        .header("systemId", who.0)
        .header("secret", who.1)
        .header("edoc-header", header.to_string());
    if let Some(b) = body {
        r = r.header("content-type", "application/xml").body(b);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

async fn send(a: &Axis, who: (&str, &str), xml: Vec<u8>) -> (u16, Value) {
    let h = json!({"from": who.0, "servicetype": "eDoc", "messagetype": "edoc"});
    let (s, b) = call(a, "/sendEdoc", who, h, Some(xml)).await;
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

async fn list(a: &Axis, who: (&str, &str), messagetype: &str) -> Vec<Value> {
    let h = json!({"from": who.0, "servicetype": "eDoc", "messagetype": messagetype,
                   "status": "pending", "pageSize": 50, "pageIndex": 0});
    let (s, b) = call(a, "/getReceivedEdocList", who, h, None).await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["status"], "OK", "{v}");
    v["data"].as_array().unwrap().clone()
}

fn refused_with(v: &(u16, Value), code: &str) {
    assert_eq!(v.1["status"], "FAIL", "{:?}", v);
    assert_eq!(v.1["errorCode"], code, "{:?}", v);
}

#[tokio::test]
async fn a_signed_document_is_accepted_held_for_its_organ_and_answered_with_a_status() {
    let a = Axis::start(0, AxisConfig::default()).await.unwrap();
    let xml = envelope("1/UBND-A", true, |_| {});
    let r = send(&a, PROVINCE, xml.clone()).await;
    assert_eq!(r.0, 200);
    assert_eq!(r.1["status"], "OK", "{:?}", r);
    let doc_id = r.1["docID"].as_str().unwrap().to_string();
    // The same bytes again: the same docID, recorded as a re-send.
    let again = send(&a, PROVINCE, xml.clone()).await;
    assert_eq!(again.1["docID"], doc_id.as_str());
    let rec = a.records();
    assert_eq!(rec.sent.len(), 1);
    assert_eq!(rec.sent[0].resends, 1);
    assert_eq!(rec.sent[0].to_organs, ["000.00.01.H22", "000.00.02.H22"]);
    assert_eq!(a.sent_xml(&doc_id).unwrap(), xml);

    // The receiving organ's system lists it, fetches it byte for byte, acknowledges it.
    let items = list(&a, TNMT, "edoc").await;
    assert_eq!(items.len(), 1);
    let id = items[0]["id"].as_str().unwrap().to_string();
    assert_eq!(items[0]["from"], "000.00.00.H22");
    let (s, got) = call(
        &a,
        "/getEdoc",
        TNMT,
        json!({"filePath": "xml", "docId": id}),
        None,
    )
    .await;
    assert_eq!((s, got), (200, xml));
    // The province cannot fetch what was not addressed to it.
    let (_, b) = call(
        &a,
        "/getEdoc",
        PROVINCE,
        json!({"filePath": "xml", "docId": id}),
        None,
    )
    .await;
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["errorCode"], "NOT_FOUND");
    let (s, b) = call(
        &a,
        "/updateStatus",
        TNMT,
        json!({"status": "inbox", "docId": id}),
        None,
    )
    .await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    assert!(list(&a, TNMT, "edoc").await.is_empty(), "no longer pending");
    assert_eq!(a.records().statuses_of(&id), ["inbox"]);
    // A status word outside the table is refused.
    let (_, b) = call(
        &a,
        "/updateStatus",
        TNMT,
        json!({"status": "finished", "docId": id}),
        None,
    )
    .await;
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["errorCode"], "INVALID_STATUS");

    // The organ answers "accepted": a signed status message held for the province.
    let held = a.respond(&doc_id, "acceptance").unwrap();
    let items = list(&a, PROVINCE, "status").await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], held.as_str());
    let (_, st) = call(
        &a,
        "/getEdoc",
        PROVINCE,
        json!({"filePath": "xml", "docId": held}),
        None,
    )
    .await;
    let trust = gw_crypto::keys::TrustStore::from_pem(
        &std::fs::read(certs_example().join("root-ca.pem")).unwrap(),
    )
    .unwrap();
    let r = gw_edxml::read::read(&st[..], &mut gw_edxml::read::Discard)
        .unwrap()
        .verify(&trust)
        .unwrap();
    let Header::Status(s) = r.envelope.header else {
        panic!("a status message")
    };
    assert_eq!(s.status.code(), Some("03"));
    assert_eq!(
        s.response_for.document_id.to_string(),
        "000.00.00.H22,2026/12/06,1/UBND-A"
    );
}

#[tokio::test]
async fn every_bad_envelope_and_caller_is_refused_with_the_axis_error() {
    let a = Axis::start(0, AxisConfig::default()).await.unwrap();
    // Bad credentials.
    let r = send(&a, (PROVINCE.0, "wrong"), envelope("2/X", true, |_| {})).await;
    assert_eq!(r.0, 401);
    refused_with(&r, "UNAUTHORIZED");
    // Malformed XML.
    let r = send(&a, PROVINCE, b"<edXML><oops".to_vec()).await;
    refused_with(&r, "INVALID_EDXML");
    // Unsigned.
    let r = send(&a, PROVINCE, envelope("3/X", false, |_| {})).await;
    refused_with(&r, "UNSIGNED");
    // Tampered after signing (one word of the subject changed).
    let xml = envelope("4/X", true, |_| {});
    let text = String::from_utf8(xml).unwrap();
    let tampered = text.replacen("cấp giấy", "thu hồi", 1);
    assert_ne!(tampered, text);
    let r = send(&a, PROVINCE, tampered.into_bytes()).await;
    refused_with(&r, "BAD_SIGNATURE");
    // From an organ that is not the calling system's.
    let r = send(
        &a,
        PROVINCE,
        envelope("5/X", true, |e| {
            if let Header::Document(h) = &mut e.header {
                h.from.organ_id = "000.00.02.H22".into();
                h.document_id.organ_id = "000.00.02.H22".into();
            }
        }),
    )
    .await;
    refused_with(&r, "UNKNOWN_ORGAN");
    // To an organ the axis does not know.
    let r = send(
        &a,
        PROVINCE,
        envelope("6/X", true, |e| {
            if let Header::Document(h) = &mut e.header {
                h.to[0].organ_id = "999.99.99.Z99".into();
            }
        }),
    )
    .await;
    refused_with(&r, "UNKNOWN_ORGAN");
    // A different envelope under a DocumentId already sent.
    let r = send(&a, PROVINCE, envelope("7/X", true, |_| {})).await;
    assert_eq!(r.1["status"], "OK");
    let r = send(
        &a,
        PROVINCE,
        envelope("7/X", true, |e| {
            if let Header::Document(h) = &mut e.header {
                h.subject = "Một văn bản khác".into();
            }
        }),
    )
    .await;
    refused_with(&r, "DUPLICATE_DOCUMENT");
    // A header that does not name the caller.
    let h = json!({"from": TNMT.0, "servicetype": "eDoc", "messagetype": "edoc"});
    let (_, b) = call(
        &a,
        "/sendEdoc",
        PROVINCE,
        h,
        Some(envelope("8/X", true, |_| {})),
    )
    .await;
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["errorCode"], "INVALID_HEADER");
    let rec = a.records();
    assert_eq!(
        rec.sent.len(),
        1,
        "only the one good envelope: {:?}",
        rec.refused
    );
    for code in [
        "UNAUTHORIZED",
        "INVALID_EDXML",
        "UNSIGNED",
        "BAD_SIGNATURE",
        "DUPLICATE_DOCUMENT",
        "INVALID_HEADER",
    ] {
        assert_eq!(rec.refusals(code), 1, "{code}: {:?}", rec.refused);
    }
    assert_eq!(rec.refusals("UNKNOWN_ORGAN"), 2);
}

#[tokio::test]
async fn faults_fail_before_or_after_the_effect_and_are_switchable_over_http() {
    let a = Axis::start(0, AxisConfig::default()).await.unwrap();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/_sandbox/faults", a.base_url()))
        .json(&json!({"fail_before": 1, "fail_after": 1, "only": "sendEdoc"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let f: AxisFaults = http
        .get(format!("{}/_sandbox/faults", a.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((f.fail_before, f.fail_after), (1, 1));
    // A list call is not faulted (only sendEdoc).
    assert!(list(&a, PROVINCE, "edoc").await.is_empty());
    let xml = envelope("9/X", true, |_| {});
    let r = send(&a, PROVINCE, xml.clone()).await;
    assert_eq!(r.0, 503);
    assert!(a.records().sent.is_empty(), "503 before the effect");
    let r = send(&a, PROVINCE, xml.clone()).await;
    assert_eq!(r.0, 500);
    assert_eq!(a.records().sent.len(), 1, "500 after the effect");
    let r = send(&a, PROVINCE, xml).await;
    assert_eq!(r.1["status"], "OK");
    let rec: Value = http
        .get(format!("{}/_sandbox/records", a.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rec["sent"][0]["resends"], 1);
    assert_eq!(rec["calls"]["sendEdoc"], 3);
}
