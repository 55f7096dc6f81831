//! The demo's document axis step: a dossier's result document goes out to an agency as a signed
//! edXML envelope through the `axis` connector and the strict axis sandbox, the agency answers
//! "accepted", the axis poll brings the status back, and the demo prints both ends.
//!
//! # Invariants
//! - The same path as production: the result is posted to the inbound listener as a
//!   `document.send` event, carried by a route to the `axis` adapter (signed with the
//!   province's example key, `certs-example/sign-rsa.key`), verified by the sandbox against the
//!   example anchors; the status comes back through `jobs::axis` (verified, published,
//!   acknowledged) and is read from the store's history.
//! - Every wait is bounded (30 s); a failure is a message, never a hang.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use gw_contract_tests::axis::{Axis, AxisConfig};
use gw_edxml::model::{Envelope, Header};
use serde_json::json;

use crate::config::Loaded;
use crate::runtime::Engine;

/// The variable the axis secret passes through (by reference, like any secret).
const SECRET_VAR: &str = "GATEWAY_DEMO_AXIS_SECRET";

/// The edXML sample the result documents start from, built in (the demo runs wherever the
/// binary is).
const SAMPLE_DOCUMENT: &str = include_str!("../../crates/edxml/samples/document.json");

/// Start the axis sandbox (defaults: the province is system `000.00.00.H22`).
pub async fn start_axis() -> Result<Axis, String> {
    Axis::start(0, AxisConfig::default())
        .await
        .map_err(|e| format!("cannot start the axis sandbox: {e}"))
}

/// The configuration the demo adds for the axis: the province's signing profile, the adapter,
/// a source for documents and the route to the axis. (No route takes the statuses that come
/// back: the demo reads them from the store.)
pub fn axis_section(axis: &Axis, data_dir: &Path) -> Result<String, String> {
    std::env::set_var(SECRET_VAR, &axis.config().systems[0].secret);
    let certs = gw_contract_tests::examples::certs_example();
    // The province's certificate, then the intermediate: KeyInfo carries both, so the axis
    // chains the signer to its root.
    let mut pem = Vec::new();
    for f in ["sign-rsa.pem", "intermediate-ca.pem"] {
        let p = certs.join(f);
        pem.extend(std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?);
    }
    std::fs::create_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let chain = data_dir.join("province-edxml.pem");
    std::fs::write(&chain, pem).map_err(|e| format!("{}: {e}", chain.display()))?;
    Ok(format!(
        r#"
[signing.province-edxml]
scheme = "xmldsig-enveloped"
key = "{key}"
certificate = "{cert}"
trust_anchors = "{anchors}"

[sources.onestop-documents]
kinds = ["document.*"]

[adapters.axis]
connector = "axis"
url = "{url}"
timeout = "5s"
signing = "province-edxml"

[adapters.axis.axis]
system_id = "{system}"
secret = {{ env = "{SECRET_VAR}" }}
organ_id = "{system}"
poll_interval = "0s"

[[routes]]
name = "documents-to-axis"
from = "onestop-documents"
kinds = ["document.send", "document.status"]
to = "axis"
"#,
        key = certs.join("sign-rsa.key").display(),
        cert = chain.display(),
        anchors = certs.join("chain.pem").display(),
        url = axis.base_url(),
        system = axis.config().systems[0].system_id,
    ))
}

/// The result document of a dossier: the sample description with a result's subject.
fn result_document(dossier: &str) -> Result<Envelope, String> {
    let mut env: Envelope = serde_json::from_str(SAMPLE_DOCUMENT)
        .map_err(|e| format!("the built-in sample document: {e}"))?;
    if let Header::Document(h) = &mut env.header {
        h.subject =
            format!("Kết quả giải quyết hồ sơ {dossier}: cấp giấy chứng nhận quyền sử dụng đất");
        h.to.truncate(1);
    }
    env.manifest.truncate(1);
    Ok(env)
}

async fn until(what: &str, mut f: impl FnMut() -> bool) -> Result<(), String> {
    let start = Instant::now();
    while !f() {
        if start.elapsed() > Duration::from_secs(30) {
            return Err(format!("timed out waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Send one result document and bring its status back; prints what happened.
pub async fn round_trip(
    axis: &Axis,
    loaded: &Loaded,
    engine: &Engine,
    inbound: std::net::SocketAddr,
) -> Result<(), String> {
    println!("document axis (edXML):");
    let env = result_document("000.00.00.H22-261206-0001")?;
    let Header::Document(h) = &env.header else {
        return Err("the sample is not a document".into());
    };
    let doc = h.document_id.to_string();
    let text = "Kết quả: đã cấp giấy chứng nhận (bản điện tử).".as_bytes();
    let payload = json!({"envelope": env, "attachments": [{
        "content_id": env.manifest[0].content_id,
        "base64": base64::engine::general_purpose::STANDARD.encode(text)}]});
    let r = reqwest::Client::new()
        .post(format!("http://{inbound}/in/onestop-documents"))
        .json(&json!({"kind": "document.send", "key": doc, "payload": payload}))
        .send()
        .await
        .map_err(|e| format!("posting document.send: {e}"))?;
    if r.status().as_u16() != 202 {
        return Err(format!("document.send was answered HTTP {}", r.status()));
    }
    until("the axis to accept the document", || {
        !axis.records().sent.is_empty() || !axis.records().refused.is_empty()
    })
    .await?;
    if let Some(r) = axis.records().refused.first() {
        return Err(format!("the axis refused it: {}: {}", r.code, r.desc));
    }
    let sent = axis.records().sent.remove(0);
    println!(
        "  sent       {doc} → {} as a signed edXML envelope ({} bytes), axis docID {}",
        sent.to_organs.join(", "),
        sent.bytes,
        sent.doc_id
    );
    println!("             verified by the axis; signer {}", sent.signer);
    axis.respond(&sent.doc_id, "acceptance")
        .map_err(|e| format!("the agency's answer: {e}"))?;
    let poll = crate::jobs::axis::AxisPoll::from_config(loaded)
        .map_err(|e| e.to_string())?
        .into_iter()
        .next()
        .ok_or("no axis adapter")?;
    let s = poll.poll_once(engine).await.map_err(|e| e.to_string())?;
    let history = poll
        .store()
        .await
        .map_err(|e| e.to_string())?
        .history(&doc)
        .await
        .map_err(|e| e.to_string())?;
    let back = history
        .iter()
        .find(|r| r.direction == "received")
        .ok_or("no status came back")?;
    println!(
        "  came back  status {} {} ({}) {}; published as document.status ({} event), acknowledged with 01",
        back.code.as_deref().unwrap_or("-"),
        back.word.as_deref().unwrap_or("-"),
        gw_edxml::status::Status::from_code(back.code.as_deref().unwrap_or(""))
            .map(|s| s.meaning())
            .unwrap_or("?"),
        back.detail,
        s.published
    );
    let rows: Vec<String> = history
        .iter()
        .map(|r| format!("{} {}", r.direction, r.code.as_deref().unwrap_or("-")))
        .collect();
    println!(
        "  history    {} (in the store; `gateway edxml history DOCUMENT_ID --config FILE`)",
        rows.join(", ")
    );
    Ok(())
}
