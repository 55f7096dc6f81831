//! The axis's four operations: `sendEdoc`, `getReceivedEdocList`, `getEdoc`, `updateStatus`.
//!
//! # Invariants
//! - Every call: counted, then the credentials checked, then the JSON header read, then the
//!   fault before the effect, then the checks of the operation, then the effect, then the
//!   fault after it. A refusal is recorded with its code before it is answered.
//! - A received envelope is verified (signature, signer chain) before any of its fields is
//!   believed.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gw_crypto::keys::TrustStore;
use gw_edxml::model::Header;
use gw_edxml::read::{read, Discard};
use gw_edxml::status::Status;
use serde_json::{json, Map, Value};

use super::config::{AxisConfig, AxisSystem};
use super::state::{Held, Refusal, SentDoc, State as St, StatusUpdate};
use crate::officials::http::{deliver, unavailable};
use crate::officials::FaultStep;

/// What the handlers share.
pub struct Shared {
    pub cfg: AxisConfig,
    pub trust: TrustStore,
    pub state: Arc<Mutex<St>>,
}

pub const SEND: &str = "sendEdoc";
pub const LIST: &str = "getReceivedEdocList";
pub const GET: &str = "getEdoc";
pub const UPDATE: &str = "updateStatus";

fn ok(v: Value) -> Response {
    let mut m = Map::new();
    m.insert("status".into(), json!("OK"));
    if let Value::Object(o) = v {
        m.extend(o);
    }
    (StatusCode::OK, axum::Json(Value::Object(m))).into_response()
}

fn refuse(sh: &Shared, op: &str, http: StatusCode, code: &str, desc: &str) -> Response {
    sh.state.lock().unwrap().records.refused.push(Refusal {
        operation: op.into(),
        code: code.into(),
        desc: desc.into(),
    });
    (
        http,
        axum::Json(json!({"status": "FAIL", "errorCode": code, "errorDesc": desc})),
    )
        .into_response()
}

/// Count, authenticate, read the JSON header, take the fault.
#[allow(clippy::result_large_err)]
fn prelude(
    sh: &Shared,
    op: &str,
    h: &HeaderMap,
) -> Result<(AxisSystem, Map<String, Value>, FaultStep), Response> {
    *sh.state
        .lock()
        .unwrap()
        .records
        .calls
        .entry(op.to_string())
        .or_default() += 1;
    let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (id, secret) = (get(&sh.cfg.system_header), get(&sh.cfg.secret_header));
    let Some(system) = sh
        .cfg
        .systems
        .iter()
        .find(|s| s.system_id == id && s.secret == secret && !id.is_empty())
    else {
        return Err(refuse(
            sh,
            op,
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "unknown systemId or wrong secret",
        ));
    };
    let header: Map<String, Value> = match serde_json::from_str(get(&sh.cfg.json_header)) {
        Ok(Value::Object(m)) => m,
        _ => {
            return Err(refuse(
                sh,
                op,
                StatusCode::BAD_REQUEST,
                "INVALID_HEADER",
                &format!("the {} header is not a JSON object", sh.cfg.json_header),
            ))
        }
    };
    let step = sh.state.lock().unwrap().faults.take(op);
    if step == FaultStep::FailBefore {
        return Err(unavailable());
    }
    Ok((system.clone(), header, step))
}

fn text<'a>(m: &'a Map<String, Value>, k: &str) -> &'a str {
    m.get(k).and_then(Value::as_str).unwrap_or("")
}

pub async fn send_ep(State(sh): State<Arc<Shared>>, h: HeaderMap, body: Bytes) -> Response {
    let (system, hdr, step) = match prelude(&sh, SEND, &h) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let bad_header = |desc: &str| refuse(&sh, SEND, StatusCode::OK, "INVALID_HEADER", desc);
    if text(&hdr, "from") != system.system_id {
        return bad_header("header from is not the calling systemId");
    }
    if text(&hdr, "servicetype") != "eDoc" {
        return bad_header("servicetype must be eDoc");
    }
    let messagetype = text(&hdr, "messagetype").to_string();
    if !matches!(messagetype.as_str(), "edoc" | "status") {
        return bad_header("messagetype must be edoc or status");
    }
    let ct = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("application/xml") {
        return bad_header("the edXML file goes as application/xml");
    }
    let unverified = match read(&body[..], &mut Discard) {
        Ok(u) => u,
        Err(e) => {
            return refuse(&sh, SEND, StatusCode::OK, "INVALID_EDXML", &e.to_string());
        }
    };
    if !unverified.is_signed() {
        return refuse(
            &sh,
            SEND,
            StatusCode::OK,
            "UNSIGNED",
            "the envelope carries no signature",
        );
    }
    let received = match unverified.verify(&sh.trust) {
        Ok(r) => r,
        Err(e) => return refuse(&sh, SEND, StatusCode::OK, "BAD_SIGNATURE", &e.to_string()),
    };
    let env = &received.envelope;
    let known = |id: &str| sh.cfg.organs.iter().any(|(o, _)| o == id);
    let (from, to, document_id, subject, status_code) = match &env.header {
        Header::Document(d) => (
            d.from.organ_id.clone(),
            d.to.iter().map(|t| t.organ_id.clone()).collect::<Vec<_>>(),
            d.document_id.to_string(),
            Some(d.subject.clone()),
            None,
        ),
        Header::Status(s) => (
            s.from.organ_id.clone(),
            vec![s.response_for.organ_id.clone()],
            format!(
                "{}#{}@{}",
                s.response_for.document_id,
                s.status.code().unwrap_or(""),
                s.timestamp
            ),
            None,
            s.status.code().map(str::to_string),
        ),
    };
    let is_status = matches!(env.header, Header::Status(_));
    if is_status != (messagetype == "status") {
        return bad_header("messagetype does not match the envelope (document or status)");
    }
    if from != system.organ_id {
        return refuse(
            &sh,
            SEND,
            StatusCode::OK,
            "UNKNOWN_ORGAN",
            &format!(
                "From/OrganId {from} is not the organ of system {}",
                system.system_id
            ),
        );
    }
    if let Some(t) = to.iter().find(|t| !known(t)) {
        return refuse(
            &sh,
            SEND,
            StatusCode::OK,
            "UNKNOWN_ORGAN",
            &format!("To/OrganId {t} is not an organ of the axis"),
        );
    }
    let sha = gw_crypto::digest::sha256_hex(&body);
    let doc_id = {
        let mut g = sh.state.lock().unwrap();
        if let Some(prev) = g
            .records
            .sent
            .iter_mut()
            .find(|d| d.document_id == document_id)
        {
            if prev.sha256 != sha {
                drop(g);
                return refuse(
                    &sh,
                    SEND,
                    StatusCode::OK,
                    "DUPLICATE_DOCUMENT",
                    &format!("DocumentId {document_id} was already sent with other content"),
                );
            }
            prev.resends += 1;
            prev.doc_id.clone()
        } else {
            let doc_id = g.new_id("doc");
            let signer = format!("{:?}", received.signer.subject_name());
            g.records.sent.push(SentDoc {
                doc_id: doc_id.clone(),
                document_id,
                messagetype: messagetype.clone(),
                from_system: system.system_id.clone(),
                from_organ: from.clone(),
                to_organs: to.clone(),
                subject,
                status_code,
                bytes: body.len(),
                sha256: sha,
                signer,
                resends: 0,
                xml: body.to_vec(),
            });
            // Hold it for every connected system of a `To` organ.
            for t in &to {
                for s in sh.cfg.systems.iter().filter(|s| &s.organ_id == t) {
                    let id = g.new_id("in");
                    g.records.held.push(Held {
                        id,
                        to_system: s.system_id.clone(),
                        from: from.clone(),
                        messagetype: messagetype.clone(),
                        statuses: Vec::new(),
                        fetched: 0,
                        created_ms: now_ms(),
                        xml: body.to_vec(),
                    });
                }
            }
            doc_id
        }
    };
    deliver(step, ok(json!({ "docID": doc_id }))).await
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub async fn list_ep(State(sh): State<Arc<Shared>>, h: HeaderMap) -> Response {
    let (system, hdr, step) = match prelude(&sh, LIST, &h) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if text(&hdr, "from") != system.system_id || text(&hdr, "servicetype") != "eDoc" {
        return refuse(
            &sh,
            LIST,
            StatusCode::OK,
            "INVALID_HEADER",
            "from must be the calling systemId and servicetype eDoc",
        );
    }
    let messagetype = text(&hdr, "messagetype").to_string();
    let pending_only = text(&hdr, "status") == "pending";
    let page_size = hdr
        .get("pageSize")
        .and_then(Value::as_u64)
        .unwrap_or(50)
        .clamp(1, 500) as usize;
    let page_index = hdr.get("pageIndex").and_then(Value::as_u64).unwrap_or(0) as usize;
    let data: Vec<Value> = {
        let g = sh.state.lock().unwrap();
        g.records
            .held
            .iter()
            .filter(|i| i.to_system == system.system_id)
            .filter(|i| messagetype.is_empty() || i.messagetype == messagetype)
            .filter(|i| !pending_only || i.statuses.is_empty())
            .skip(page_index * page_size)
            .take(page_size)
            .map(|i| {
                json!({"id": i.id, "from": i.from, "to": system.organ_id,
                       "servicetype": "eDoc", "messagetype": i.messagetype,
                       "created": i.created_ms})
            })
            .collect()
    };
    deliver(step, ok(json!({ "data": data }))).await
}

pub async fn get_ep(State(sh): State<Arc<Shared>>, h: HeaderMap) -> Response {
    let (system, hdr, step) = match prelude(&sh, GET, &h) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if text(&hdr, "filePath") != "xml" {
        return refuse(
            &sh,
            GET,
            StatusCode::OK,
            "INVALID_HEADER",
            "filePath must be xml",
        );
    }
    let id = text(&hdr, "docId");
    let xml = {
        let mut g = sh.state.lock().unwrap();
        g.records
            .held
            .iter_mut()
            .find(|i| i.id == id && i.to_system == system.system_id)
            .map(|i| {
                i.fetched += 1;
                i.xml.clone()
            })
    };
    let Some(xml) = xml else {
        return refuse(
            &sh,
            GET,
            StatusCode::OK,
            "NOT_FOUND",
            &format!("no item {id} for this system"),
        );
    };
    let resp = ([(header::CONTENT_TYPE, "application/xml")], xml).into_response();
    deliver(step, resp).await
}

pub async fn update_ep(State(sh): State<Arc<Shared>>, h: HeaderMap) -> Response {
    let (system, hdr, step) = match prelude(&sh, UPDATE, &h) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let word = text(&hdr, "status").to_string();
    if Status::from_word(&word).is_none() {
        return refuse(
            &sh,
            UPDATE,
            StatusCode::OK,
            "INVALID_STATUS",
            &format!("{word:?} is not a status word of the axis"),
        );
    }
    let id = text(&hdr, "docId").to_string();
    {
        let mut g = sh.state.lock().unwrap();
        let Some(item) = g
            .records
            .held
            .iter_mut()
            .find(|i| i.id == id && i.to_system == system.system_id)
        else {
            drop(g);
            return refuse(
                &sh,
                UPDATE,
                StatusCode::OK,
                "NOT_FOUND",
                &format!("no item {id} for this system"),
            );
        };
        item.statuses.push(word.clone());
        g.records.statuses.push(StatusUpdate {
            system: system.system_id.clone(),
            doc_id: id,
            status: word,
        });
    }
    deliver(step, ok(json!({}))).await
}
