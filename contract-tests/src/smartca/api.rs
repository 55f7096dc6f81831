//! SmartCA's three operations: the certificate, the signing request, its status.
//!
//! # Invariants
//! - Every call: the body is recorded, then checked (JSON object, SP credentials), then the
//!   fault before the effect, then the effect, then the fault after it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::state::{Shared, St};
use crate::officials::http::{answer, deliver, json_object, text, unavailable};
use crate::officials::{DigestAlg, FaultStep, PhoneState, Received};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The service's own answer: HTTP 200, `status_code`, `message`, `data`.
fn said(code: u16, message: &str, data: Value) -> Response {
    answer(
        StatusCode::OK,
        json!({"status_code": code, "message": message, "data": data}),
    )
}

fn refuse(sh: &Shared, status: StatusCode, code: u16, message: &str) -> Response {
    sh.core
        .lock()
        .unwrap()
        .records
        .refused
        .push(message.to_string());
    answer(
        status,
        json!({"status_code": code, "message": message, "data": null}),
    )
}

/// Record, read, check the SP credentials, take the call's fault.
// The refusal is the answer itself (as in `src/edge`): boxing it buys nothing here.
#[allow(clippy::result_large_err)]
fn prelude(
    sh: &Shared,
    path: &str,
    h: &HeaderMap,
    b: &[u8],
) -> Result<(Map<String, Value>, FaultStep), Response> {
    {
        let mut g = sh.core.lock().unwrap();
        g.records.received.push(Received {
            path: path.into(),
            bytes: b.len(),
            body: serde_json::from_slice(b).unwrap_or(Value::Null),
        });
    }
    let m = json_object(h, b).map_err(|e| refuse(sh, e.status(), 400, &e.to_string()))?;
    if text(&m, "sp_id") != Some(&sh.cfg.sp_id)
        || text(&m, "sp_password") != Some(&sh.cfg.sp_password)
    {
        return Err(refuse(
            sh,
            StatusCode::UNAUTHORIZED,
            401,
            "INVALID_SP_CREDENTIALS: sp_id and sp_password are required in every body",
        ));
    }
    let mut g = sh.core.lock().unwrap();
    let rolled = g.roll_server_error();
    let step = g.faults.take(rolled);
    if step == FaultStep::FailBefore {
        return Err(unavailable());
    }
    Ok((m, step))
}

pub(super) async fn certificate_ep(State(sh): St, h: HeaderMap, b: Bytes) -> Response {
    let (m, step) = match prelude(&sh, "/v1/credentials/get_certificate", &h, &b) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(user) = text(&m, "user_id") else {
        return refuse(&sh, StatusCode::OK, 400, "MISSING_FIELD: user_id");
    };
    if text(&m, "transaction_id").is_none() {
        return refuse(&sh, StatusCode::OK, 400, "MISSING_FIELD: transaction_id");
    }
    let resp = {
        let g = sh.core.lock().unwrap();
        match g.official(user) {
            None => {
                drop(g);
                return refuse(&sh, StatusCode::OK, 404, "USER_NOT_FOUND");
            }
            Some(o) => {
                let c = g.certificate_of(o);
                said(
                    200,
                    "SUCCESS",
                    json!({"user_certificates": [{
                        "cert_id": o.credential_id,
                        "serial_number": c.serial_hex,
                        "cert_valid_from": c.not_before,
                        "cert_valid_to": c.not_after,
                        "cert_status": "ACTIVE",
                        "cert_data": B64.encode(&c.cert_der),
                        "chain_data": c.chain_der.iter().map(|c| B64.encode(c)).collect::<Vec<_>>(),
                    }]}),
                )
            }
        }
    };
    deliver(step, resp).await
}

/// A `yyyyMMddHHmmss` time.
fn is_time_stamp(s: &str) -> bool {
    s.len() == 14 && s.bytes().all(|b| b.is_ascii_digit())
}

pub(super) async fn sign_ep(State(sh): St, h: HeaderMap, b: Bytes) -> Response {
    let (m, step) = match prelude(&sh, "/v1/signatures/sign", &h, &b) {
        Ok(x) => x,
        Err(r) => return r,
    };
    for f in [
        "user_id",
        "transaction_id",
        "transaction_desc",
        "serial_number",
        "time_stamp",
    ] {
        if text(&m, f).is_none() {
            return refuse(&sh, StatusCode::OK, 400, &format!("MISSING_FIELD: {f}"));
        }
    }
    let (user, tran) = (
        text(&m, "user_id").unwrap(),
        text(&m, "transaction_id").unwrap(),
    );
    if !is_time_stamp(text(&m, "time_stamp").unwrap()) {
        return refuse(
            &sh,
            StatusCode::OK,
            400,
            "INVALID_TIME_STAMP: yyyyMMddHHmmss",
        );
    }
    let Some(files) = m
        .get("sign_files")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    else {
        return refuse(&sh, StatusCode::OK, 400, "MISSING_FIELD: sign_files");
    };
    let mut digests = Vec::new();
    let mut alg = None;
    for (i, f) in files.iter().enumerate() {
        let Some(f) = f.as_object() else {
            return refuse(
                &sh,
                StatusCode::OK,
                400,
                &format!("INVALID_FILE: sign_files[{i}]"),
            );
        };
        for k in ["doc_id", "file_type", "sign_type", "data_to_be_signed"] {
            if text(f, k).is_none() {
                return refuse(
                    &sh,
                    StatusCode::OK,
                    400,
                    &format!("MISSING_FIELD: sign_files[{i}].{k}"),
                );
            }
        }
        if text(f, "sign_type") != Some("hash") {
            return refuse(
                &sh,
                StatusCode::OK,
                400,
                &format!("INVALID_SIGN_TYPE: sign_files[{i}].sign_type must be \"hash\""),
            );
        }
        let d = text(f, "data_to_be_signed").unwrap();
        let a = match hex::decode(d) {
            Ok(bytes) => match bytes.len() {
                32 => Some((DigestAlg::Sha256, bytes)),
                48 => Some((DigestAlg::Sha384, bytes)),
                64 => Some((DigestAlg::Sha512, bytes)),
                _ => None,
            },
            Err(_) => None,
        };
        let Some((a, bytes)) = a else {
            return refuse(
                &sh,
                StatusCode::OK,
                400,
                &format!("INVALID_HASH: sign_files[{i}].data_to_be_signed must be a hex SHA-256/384/512 digest"),
            );
        };
        if alg.is_some_and(|x| x != a) {
            return refuse(
                &sh,
                StatusCode::OK,
                400,
                "INVALID_HASH: one digest length per request",
            );
        }
        alg = Some(a);
        digests.push(bytes);
    }
    let resp = {
        let mut g = sh.core.lock().unwrap();
        let Some(o) = g.official(user).cloned() else {
            drop(g);
            return refuse(&sh, StatusCode::OK, 404, "USER_NOT_FOUND");
        };
        let serial = text(&m, "serial_number").unwrap();
        let own = g.certificate_of(&o).file == o.file;
        if own && !serial.eq_ignore_ascii_case(&o.serial_hex) {
            drop(g);
            return refuse(
                &sh,
                StatusCode::OK,
                400,
                "INVALID_SERIAL_NUMBER: not the user's certificate",
            );
        }
        if let Some(p) = g
            .phone
            .push(tran, user, o.behaviour, digests, alg.unwrap(), false)
        {
            g.records.pushes.push(p);
        }
        said(
            200,
            "SUCCESS",
            json!({"transaction_id": tran, "tran_code": format!("TC-{tran}")}),
        )
    };
    deliver(step, resp).await
}

pub(super) async fn status_ep(
    State(sh): St,
    Path(tran): Path<String>,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    let (_, step) = match prelude(&sh, &format!("/v1/signatures/sign/{tran}/status"), &h, &b) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let resp = status_of(&sh, &tran);
    deliver(step, resp).await
}

fn status_of(sh: &Arc<Shared>, tran: &str) -> Response {
    let mut g = sh.core.lock().unwrap();
    let Some(state) = g.read(tran) else {
        return said(404, "TRANSACTION_NOT_FOUND", Value::Null);
    };
    match state {
        PhoneState::Waiting => said(200, "WAITING", json!({"transaction_id": tran})),
        PhoneState::Rejected => said(200, "REJECTED", json!({"transaction_id": tran})),
        PhoneState::Expired => said(200, "EXPIRED", json!({"transaction_id": tran})),
        PhoneState::Signed(sigs) => said(
            200,
            "SUCCESS",
            json!({"transaction_id": tran, "signatures": sigs.iter().enumerate().map(|(i, s)| json!({
                "doc_id": format!("{i}"),
                "signature_value": B64.encode(s),
            })).collect::<Vec<_>>()}),
        ),
    }
}
