//! The CSC credentials and signatures operations.
//!
//! # Invariants
//! - Every call: recorded, bearer checked, body read strictly, fault before, effect, fault
//!   after. A SAD authorizes exactly the hashes it was issued for.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::auth::{bearer, error, record, take_fault};
use super::state::{Sad, Shared, St};
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
) -> Result<(Map<String, Value>, FaultStep), Response> {
    record(
        sh,
        path,
        serde_json::from_slice(b).unwrap_or(Value::Null),
        b.len(),
    );
    bearer(sh, h)?;
    let m =
        json_object(h, b).map_err(|e| error(sh, e.status(), "invalid_request", &e.to_string()))?;
    let step = take_fault(sh)?;
    Ok((m, step))
}

fn bad(sh: &Shared, msg: &str) -> Response {
    error(sh, StatusCode::BAD_REQUEST, "invalid_request", msg)
}

pub(super) async fn list_ep(State(sh): St, h: HeaderMap, b: Bytes) -> Response {
    let (m, step) = match prelude(&sh, "credentials/list", &h, &b) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(user) = text(&m, "userID") else {
        return bad(&sh, "missing userID");
    };
    let ids: Vec<String> = {
        let g = sh.core.lock().unwrap();
        g.officials
            .iter()
            .filter(|o| o.user_id == user)
            .map(|o| o.credential_id.clone())
            .collect()
    };
    deliver(step, answer(StatusCode::OK, json!({"credentialIDs": ids}))).await
}

pub(super) async fn info_ep(State(sh): St, h: HeaderMap, b: Bytes) -> Response {
    let (m, step) = match prelude(&sh, "credentials/info", &h, &b) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(cred) = text(&m, "credentialID") else {
        return bad(&sh, "missing credentialID");
    };
    let certs_mode = text(&m, "certificates").unwrap_or("single");
    if !["none", "single", "chain"].contains(&certs_mode) {
        return bad(&sh, "certificates must be none, single or chain");
    }
    let resp = {
        let g = sh.core.lock().unwrap();
        let Some(o) = g.by_credential(cred) else {
            drop(g);
            return bad(&sh, "invalid parameter credentialID");
        };
        let c = g.certificate_of(o);
        let mut certs = Vec::new();
        if certs_mode != "none" {
            certs.push(B64.encode(&c.cert_der));
        }
        if certs_mode == "chain" {
            certs.extend(c.chain_der.iter().map(|d| B64.encode(d)));
        }
        answer(
            StatusCode::OK,
            json!({
                "key": {"status": "enabled", "algo": o.sign_algos(), "len": o.key_bits},
                "cert": {
                    "status": "valid",
                    "certificates": certs,
                    "serialNumber": c.serial_hex,
                    "subjectDN": c.subject,
                    "issuerDN": "C=VN, O=Example Province Gateway (EXAMPLE ONLY), CN=Example Intermediate CA",
                    "validFrom": c.not_before,
                    "validTo": c.not_after,
                },
                "auth": {"mode": "implicit"},
                "multisign": 1,
            }),
        )
    };
    deliver(step, resp).await
}

/// `hashes` as base64 digests of `alg`'s length.
fn digests(m: &Map<String, Value>, alg: DigestAlg) -> Result<Vec<(String, Vec<u8>)>, String> {
    let hashes = m
        .get("hashes")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or("missing hashes")?;
    hashes
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let s = h.as_str().ok_or(format!("hashes[{i}] is not a string"))?;
            match B64.decode(s) {
                Ok(d) if d.len() == alg.len() => Ok((s.to_string(), d)),
                _ => Err(format!(
                    "hashes[{i}] must be a base64 digest of {} bytes (hashAlgorithmOID)",
                    alg.len()
                )),
            }
        })
        .collect()
}

pub(super) async fn authorize_ep(State(sh): St, h: HeaderMap, b: Bytes) -> Response {
    let (m, step) = match prelude(&sh, "credentials/authorize", &h, &b) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(cred) = text(&m, "credentialID") else {
        return bad(&sh, "missing credentialID");
    };
    if sh.core.lock().unwrap().by_credential(cred).is_none() {
        return bad(&sh, "invalid parameter credentialID");
    }
    let Some(alg) = text(&m, "hashAlgorithmOID").and_then(DigestAlg::parse) else {
        return bad(
            &sh,
            "hashAlgorithmOID must be the OID of SHA-256, SHA-384 or SHA-512",
        );
    };
    let hashes = match digests(&m, alg) {
        Ok(d) => d,
        Err(e) => return bad(&sh, &e),
    };
    if m.get("numSignatures").and_then(Value::as_u64) != Some(hashes.len() as u64) {
        return bad(&sh, "numSignatures must equal the number of hashes");
    }
    let sad = sh.core.lock().unwrap().next_id("sad-");
    sh.sads.lock().unwrap().insert(
        sad.clone(),
        Sad {
            credential: cred.into(),
            hashes: hashes.into_iter().map(|(s, _)| s).collect(),
            until: Instant::now() + sh.cfg.sad_lifetime,
        },
    );
    deliver(
        step,
        answer(
            StatusCode::OK,
            json!({"SAD": sad, "expiresIn": sh.cfg.sad_lifetime.as_secs()}),
        ),
    )
    .await
}

pub(super) async fn sign_hash_ep(State(sh): St, h: HeaderMap, b: Bytes) -> Response {
    let (m, step) = match prelude(&sh, "signatures/signHash", &h, &b) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(cred) = text(&m, "credentialID").map(str::to_string) else {
        return bad(&sh, "missing credentialID");
    };
    let Some(alg) = text(&m, "hashAlgorithmOID").and_then(DigestAlg::parse) else {
        return bad(
            &sh,
            "hashAlgorithmOID must be the OID of SHA-256, SHA-384 or SHA-512",
        );
    };
    let hashes = match digests(&m, alg) {
        Ok(d) => d,
        Err(e) => return bad(&sh, &e),
    };
    let mode = text(&m, "operationMode").unwrap_or("S");
    if mode != "S" && mode != "A" {
        return bad(&sh, "operationMode must be S or A");
    }
    let Some(sad) = text(&m, "SAD") else {
        return bad(&sh, "missing SAD");
    };
    let sad_ok = sh.sads.lock().unwrap().get(sad).is_some_and(|s| {
        s.credential == cred
            && s.until > Instant::now()
            && s.hashes == hashes.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>()
    });
    if !sad_ok {
        return error(
            &sh,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "SAD invalid, expired, or not for these hashes",
        );
    }
    let Some(sign_algo) = text(&m, "signAlgo") else {
        return bad(&sh, "missing signAlgo");
    };
    let client_data = text(&m, "clientData").map(str::to_string);
    let id = {
        let mut g = sh.core.lock().unwrap();
        let Some(o) = g.by_credential(&cred).cloned() else {
            drop(g);
            return bad(&sh, "invalid parameter credentialID");
        };
        let Some(pss) = o.sign_algo(sign_algo) else {
            drop(g);
            return bad(&sh, "signAlgo does not fit the credential's key");
        };
        let known = client_data.as_ref().and_then(|c| {
            sh.by_client_data
                .lock()
                .unwrap()
                .get(&(cred.clone(), c.clone()))
                .cloned()
        });
        match known {
            Some(id) => id,
            None => {
                let id = g.next_id("resp-");
                let digests = hashes.into_iter().map(|(_, d)| d).collect();
                if let Some(p) = g
                    .phone
                    .push(&id, &o.user_id, o.behaviour, digests, alg, pss)
                {
                    g.records.pushes.push(p);
                }
                if let Some(c) = client_data {
                    sh.by_client_data
                        .lock()
                        .unwrap()
                        .insert((cred.clone(), c), id.clone());
                }
                id
            }
        }
    };
    if mode == "A" {
        return deliver(step, answer(StatusCode::OK, json!({"responseID": id}))).await;
    }
    // Synchronous: hold the call until the official acts or the request expires.
    let resp = loop {
        let state = sh.core.lock().unwrap().read(&id);
        match state {
            Some(PhoneState::Waiting) | None => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Some(s) => break outcome(&sh, s),
        }
    };
    deliver(step, resp).await
}

fn outcome(sh: &Shared, s: PhoneState) -> Response {
    match s {
        PhoneState::Signed(sigs) => answer(
            StatusCode::OK,
            json!({"signatures": sigs.iter().map(|s| B64.encode(s)).collect::<Vec<_>>()}),
        ),
        PhoneState::Waiting => answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "pending", "error_description": "the user has not answered yet"}),
        ),
        PhoneState::Rejected => error(
            sh,
            StatusCode::BAD_REQUEST,
            "access_denied",
            "the user refused to sign",
        ),
        PhoneState::Expired => error(
            sh,
            StatusCode::BAD_REQUEST,
            "expired",
            "the user did not answer in time",
        ),
    }
}

pub(super) async fn polling_ep(State(sh): St, h: HeaderMap, b: Bytes) -> Response {
    let (m, step) = match prelude(&sh, "signatures/signPolling", &h, &b) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(id) = text(&m, "responseID") else {
        return bad(&sh, "missing responseID");
    };
    let state = sh.core.lock().unwrap().read(id);
    let resp = match state {
        None => error(
            &sh,
            StatusCode::BAD_REQUEST,
            "invalid_response_id",
            "unknown responseID",
        ),
        Some(s) => outcome(&sh, s),
    };
    deliver(step, resp).await
}
