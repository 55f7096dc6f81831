//! MySign's operations behind the login: certificates, signHash, request status.
//!
//! # Invariants
//! - Every call: the body is recorded, the bearer token checked (a live token of a known user),
//!   the body read strictly, then the fault before the effect, the effect, the fault after it.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::auth::{bearer_user, record, refuse, take_fault};
use super::state::{Shared, St};
use crate::officials::http::{answer, deliver, json_object, text};
use crate::officials::{DigestAlg, FaultStep, PhoneState};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

// The refusal is the answer itself (as in `src/edge`): boxing it buys nothing here.
#[allow(clippy::result_large_err)]
fn prelude(
    sh: &Shared,
    path: &str,
    h: &HeaderMap,
    b: &[u8],
) -> Result<(String, Map<String, Value>, FaultStep), Response> {
    record(sh, path, b);
    let user = bearer_user(sh, h)?;
    let m = json_object(h, b).map_err(|e| refuse(sh, e.status(), &e.to_string()))?;
    let step = take_fault(sh)?;
    Ok((user, m, step))
}

pub(super) async fn certificates_ep(State(sh): St, h: HeaderMap, b: Bytes) -> Response {
    let (user, m, step) = match prelude(&sh, "/vtss/service/certificates/info", &h, &b) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if text(&m, "client_id") != Some(&sh.cfg.client_id) {
        return refuse(&sh, StatusCode::BAD_REQUEST, "client_id missing or wrong");
    }
    if text(&m, "user_id") != Some(&user) {
        return refuse(
            &sh,
            StatusCode::BAD_REQUEST,
            "user_id is not the token's user",
        );
    }
    let resp = {
        let g = sh.core.lock().unwrap();
        let o = g
            .official(&user)
            .expect("tokens are only given to officials");
        if let Some(c) = text(&m, "credentialID") {
            if c != o.credential_id {
                drop(g);
                return refuse(
                    &sh,
                    StatusCode::BAD_REQUEST,
                    "unknown credentialID for this user",
                );
            }
        }
        let c = g.certificate_of(o);
        let mut certs = vec![B64.encode(&c.cert_der)];
        if text(&m, "certificates") != Some("single") {
            certs.extend(c.chain_der.iter().map(|d| B64.encode(d)));
        }
        answer(
            StatusCode::OK,
            json!([{
                "credential_id": o.credential_id,
                "cert": {
                    "status": "VALID",
                    "serialNumber": c.serial_hex,
                    "subjectDN": c.subject,
                    "validFrom": c.not_before,
                    "validTo": c.not_after,
                    "certificates": certs,
                }
            }]),
        )
    };
    deliver(step, resp).await
}

pub(super) async fn sign_hash_ep(State(sh): St, h: HeaderMap, b: Bytes) -> Response {
    let (user, m, step) = match prelude(&sh, "/vtss/service/signHash", &h, &b) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let bad = |msg: &str| refuse(&sh, StatusCode::BAD_REQUEST, msg);
    if text(&m, "client_id") != Some(&sh.cfg.client_id) {
        return bad("client_id missing or wrong");
    }
    let Some(cred) = text(&m, "credentialID") else {
        return bad("missing credentialID");
    };
    if m.get("async").and_then(Value::as_i64) != Some(1) {
        return bad("async must be 1 (only the asynchronous flow is served)");
    }
    let Some(alg) = text(&m, "hashAlgo").and_then(DigestAlg::parse) else {
        return bad("hashAlgo must be the OID of SHA-256, SHA-384 or SHA-512");
    };
    let Some(sign_algo) = text(&m, "signAlgo") else {
        return bad("missing signAlgo");
    };
    let n = m.get("numSignatures").and_then(Value::as_u64);
    let hashes = m.get("hash").and_then(Value::as_array);
    let docs = m.get("documents").and_then(Value::as_array);
    let (Some(n), Some(hashes), Some(docs)) = (n, hashes, docs) else {
        return bad("numSignatures, hash[] and documents[] are required");
    };
    if n == 0 || hashes.len() as u64 != n || docs.len() as u64 != n {
        return bad("numSignatures must equal the number of hash and of documents");
    }
    let mut digests = Vec::new();
    for (i, hv) in hashes.iter().enumerate() {
        let d = hv.as_str().and_then(|s| B64.decode(s).ok());
        match d {
            Some(d) if d.len() == alg.len() => digests.push(d),
            _ => {
                return bad(&format!(
                    "hash[{i}] must be a base64 digest of {} bytes (hashAlgo)",
                    alg.len()
                ))
            }
        }
    }
    let resp = {
        let mut g = sh.core.lock().unwrap();
        let o = g
            .official(&user)
            .cloned()
            .expect("tokens are only given to officials");
        if o.credential_id != cred {
            drop(g);
            return bad("credentialID is not the token user's");
        }
        let Some(pss) = o.sign_algo(sign_algo) else {
            drop(g);
            return bad("signAlgo does not fit the credential's key");
        };
        let id = g.next_id("ms-");
        if let Some(p) = g.phone.push(&id, &user, o.behaviour, digests, alg, pss) {
            g.records.pushes.push(p);
        }
        answer(StatusCode::OK, json!({"transactionId": id}))
    };
    deliver(step, resp).await
}

pub(super) async fn status_ep(State(sh): St, h: HeaderMap, b: Bytes) -> Response {
    let (user, m, step) = match prelude(&sh, "/vtss/service/requests/status", &h, &b) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(id) = text(&m, "transactionId").map(str::to_string) else {
        return refuse(&sh, StatusCode::BAD_REQUEST, "missing transactionId");
    };
    let resp = {
        let mut g = sh.core.lock().unwrap();
        let mine = g.phone.entry(&id).map(|e| e.official == user);
        match mine {
            None | Some(false) => {
                drop(g);
                return refuse(&sh, StatusCode::NOT_FOUND, "transactionId not found");
            }
            Some(true) => {}
        }
        match g.read(&id).expect("the entry exists") {
            PhoneState::Waiting => {
                answer(StatusCode::OK, json!({"transactionId": id, "status": "0"}))
            }
            PhoneState::Signed(sigs) => answer(
                StatusCode::OK,
                json!({"transactionId": id, "status": "1", "signatures": sigs.iter().map(|s| B64.encode(s)).collect::<Vec<_>>()}),
            ),
            PhoneState::Rejected => answer(
                StatusCode::OK,
                json!({"transactionId": id, "status": "2", "message": "rejected by the user"}),
            ),
            PhoneState::Expired => answer(
                StatusCode::OK,
                json!({"transactionId": id, "status": "3", "message": "expired"}),
            ),
        }
    };
    deliver(step, resp).await
}
