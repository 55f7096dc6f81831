//! One call's path: faults, rate limit, transport checks, session, then the operation.
//!
//! # Invariants
//!
//! - The operation is the body's `service` field, never the path; a service sent to the wrong
//!   endpoint is refused.
//! - Every call is counted and every refusal recorded, whether decided by the rules or
//!   injected.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::answer::{render, Answer, Endpoint};
use super::auth::login;
use super::config::PortalConfig;
use super::faults::FaultKind;
use super::lookup::current_dossier;
use super::net::Conn;
use super::online::{self, SVC_ONLINE_DOSSIERS};
use super::records::{Refusal, UnknownField};
use super::services::{
    INTEGRATION_SERVICES, SHARING_SERVICES, SVC_AGENCIES, SVC_LOOKUP, SVC_PROCEDURE,
    SVC_PROCEDURES, SVC_PROGRESS, SVC_STATUS, SVC_SYNC_DOSSIER,
};
use super::state::{fault_name, pick_fault, take_token, Inner, Shared};
use super::sync::sync;
use super::validate::{is_portal_date, Issues};

pub(super) fn record_refusal(g: &mut Inner, seq: u64, service: &str, a: &Answer, injected: bool) {
    g.records.refused.push(Refusal {
        seq,
        service: service.to_string(),
        http_status: a.http.as_u16(),
        error_code: a.code.clone().unwrap_or_default(),
        reason: a.message.clone(),
        injected,
    });
}

pub(super) async fn handle(
    ep: Endpoint,
    sh: Arc<Shared>,
    conn: Conn,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let cfg = &sh.cfg;
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let service = match ep {
        Endpoint::Login => cfg.login_service.clone(),
        _ => parsed
            .as_ref()
            .and_then(|v| v.get("service"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    };

    // Arrival, outage, rate limit, fault choice: one lock, no await inside.
    let (seq, delay, fault, early) = {
        let mut g = sh.inner.lock().unwrap();
        g.records.requests += 1;
        let seq = g.records.requests;
        *g.records.calls.entry(service.clone()).or_default() += 1;
        let mut early = None;
        let mut fault = None;
        if g.faults.down {
            *g.records.injected.entry("down".into()).or_default() += 1;
            let a = Answer::err(
                &cfg.codes.system_error,
                "portal is down (sandbox outage)".into(),
            )
            .http(StatusCode::SERVICE_UNAVAILABLE);
            record_refusal(&mut g, seq, &service, &a, true);
            early = Some(a);
        } else if let Err(after) = take_token(&mut g) {
            g.records.rate_limited += 1;
            let mut a = Answer::err(
                &cfg.codes.system_error,
                "rate limit exceeded, retry later".into(),
            )
            .http(StatusCode::TOO_MANY_REQUESTS);
            a.retry_after = Some(after);
            record_refusal(&mut g, seq, &service, &a, false);
            early = Some(a);
        } else {
            fault = pick_fault(&mut g);
            if let Some(k) = fault {
                *g.records.injected.entry(fault_name(k).into()).or_default() += 1;
            }
        }
        (seq, g.faults.delay_ms, fault, early)
    };
    if let Some(a) = early {
        return render(cfg, ep, a);
    }
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if let Some(kind) = fault {
        let (injected_answer, hold) = {
            let mut g = sh.inner.lock().unwrap();
            let a = match kind {
                FaultKind::ServerError => Some(
                    Answer::err(&cfg.codes.system_error, "injected internal error".into())
                        .http(StatusCode::INTERNAL_SERVER_ERROR),
                ),
                FaultKind::ErrorCode => Some(Answer::err(
                    &cfg.codes.system_error,
                    "Hệ thống đang bận (injected HTTP 200 with an error)".into(),
                )),
                FaultKind::TooManyRequests => {
                    let mut a = Answer::err(&cfg.codes.system_error, "injected 429".into())
                        .http(StatusCode::TOO_MANY_REQUESTS);
                    a.retry_after = Some(g.faults.retry_after_secs);
                    Some(a)
                }
                FaultKind::Timeout => Some(
                    Answer::err(&cfg.codes.system_error, "injected timeout".into())
                        .http(StatusCode::GATEWAY_TIMEOUT),
                ),
                FaultKind::Reset => Some(
                    Answer::err(&cfg.codes.system_error, "injected connection reset".into())
                        .http(StatusCode::INTERNAL_SERVER_ERROR),
                ),
                FaultKind::Down => Some(
                    Answer::err(&cfg.codes.system_error, "injected outage".into())
                        .http(StatusCode::SERVICE_UNAVAILABLE),
                ),
                FaultKind::SessionExpired => {
                    g.sessions.clear();
                    None
                }
            };
            if let Some(a) = &a {
                record_refusal(&mut g, seq, &service, a, true);
            }
            (a, g.faults.hold_ms)
        };
        if let Some(a) = injected_answer {
            match kind {
                FaultKind::Timeout => tokio::time::sleep(Duration::from_millis(hold)).await,
                FaultKind::Reset => conn.kill(),
                _ => {}
            }
            return render(cfg, ep, a);
        }
    }

    let answer = {
        let mut g = sh.inner.lock().unwrap();
        let a = serve(ep, cfg, &mut g, seq, &service, &headers, parsed);
        if a.code.is_some() {
            record_refusal(&mut g, seq, &service, &a, false);
        }
        a
    };
    render(cfg, ep, answer)
}

/// The contract: transport checks, login, session, then the operation.
pub(super) fn serve(
    ep: Endpoint,
    cfg: &PortalConfig,
    g: &mut Inner,
    seq: u64,
    service: &str,
    headers: &HeaderMap,
    parsed: Option<Value>,
) -> Answer {
    let codes = &cfg.codes;
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct
        .trim()
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return Answer::err(
            &codes.malformed,
            format!("Content-Type must be application/json, got {ct:?}"),
        )
        .http(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let Some(dst) = headers.get("dstcode").and_then(|v| v.to_str().ok()) else {
        return Answer::err(&codes.malformed, "header dstcode is required".into())
            .http(StatusCode::BAD_REQUEST);
    };
    if !cfg.units.iter().any(|u| u == dst) {
        return Answer::err(
            &codes.unknown_unit,
            format!("dstcode {dst:?} is not a known unit"),
        );
    }
    let Some(Value::Object(body)) = parsed else {
        return Answer::err(&codes.malformed, "the body must be a JSON object".into())
            .http(StatusCode::BAD_REQUEST);
    };

    // Login on the login path, or by its service name on either endpoint.
    if ep == Endpoint::Login || service == cfg.login_service {
        return login(cfg, g, &body);
    }

    let allowed: &[&str] = match ep {
        Endpoint::Integration => INTEGRATION_SERVICES,
        _ => SHARING_SERVICES,
    };
    if service.is_empty() {
        return Answer::err(&codes.malformed, "field service is required".into());
    }
    let known_elsewhere =
        INTEGRATION_SERVICES.contains(&service) || SHARING_SERVICES.contains(&service);
    if !allowed.contains(&service) && (cfg.strict_endpoints || !known_elsewhere) {
        let other = if INTEGRATION_SERVICES.contains(&service) {
            " (it is served on the integration endpoint)"
        } else if SHARING_SERVICES.contains(&service) {
            " (it is served on the sharing endpoint)"
        } else {
            ""
        };
        return Answer::err(
            &codes.unknown_service,
            format!("unknown service {service:?} on this endpoint{other}"),
        );
    }
    match body.get("madonvi").and_then(Value::as_str) {
        None => return Answer::err(&codes.malformed, "field madonvi is required".into()),
        Some(u) if !cfg.units.iter().any(|x| x == u) => {
            return Answer::err(
                &codes.unknown_unit,
                format!("madonvi {u:?} is not a known unit"),
            )
        }
        Some(_) => {}
    }
    let now = Instant::now();
    if cfg.oauth2.is_some() {
        // LGSP mode: the bearer token authorizes the call; no session in the body.
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        match g.tokens.get(bearer) {
            Some(exp) if *exp > now => {}
            _ => {
                return Answer::err(
                    &codes.session_expired,
                    "invalid or expired bearer token".into(),
                )
                .http(StatusCode::UNAUTHORIZED)
            }
        }
    }
    let session = body.get("session").and_then(Value::as_str);
    let session = match (session, cfg.oauth2.is_some()) {
        (Some(s), _) => s,
        (None, true) => "",
        (None, false) => return Answer::err(&codes.malformed, "field session is required".into()),
    };
    match g.sessions.get(session) {
        _ if cfg.oauth2.is_some() => {}
        Some(exp) if *exp > now => {}
        Some(_) => {
            g.sessions.remove(session);
            return Answer::err(
                &codes.session_expired,
                "Phiên làm việc đã hết hạn (session expired), log in again".into(),
            );
        }
        None => {
            return Answer::err(
                &codes.session_expired,
                "Phiên làm việc không hợp lệ hoặc đã hết hạn (unknown or expired session)".into(),
            )
        }
    }

    // Top-level fields.
    let extra: &[&str] = match service {
        SVC_SYNC_DOSSIER => &["isUpdating", "data"],
        SVC_PROGRESS | SVC_STATUS => &["data"],
        SVC_LOOKUP => &["mahoso"],
        SVC_PROCEDURE => &["MaTTHC"],
        SVC_ONLINE_DOSSIERS => &["tuNgay"],
        _ => &[],
    };
    let mut issues = Issues::default();
    for k in body.keys() {
        if !["session", "madonvi", "service"].contains(&k.as_str()) && !extra.contains(&k.as_str())
        {
            issues.unknown.push(format!("body.{k}"));
        }
    }
    match service {
        SVC_SYNC_DOSSIER | SVC_PROGRESS | SVC_STATUS => sync(cfg, g, seq, service, &body, issues),
        SVC_LOOKUP => {
            if let Some(a) = unknown_refusal(cfg, g, seq, service, &issues) {
                return a;
            }
            let Some(code) = body.get("mahoso").and_then(Value::as_str) else {
                return Answer::err(&codes.invalid, "mahoso: required string".into());
            };
            match current_dossier(g, code) {
                Some(item) => Answer::ok("Thành công", item),
                None => Answer::err(&codes.not_found, format!("dossier {code:?} not found")),
            }
        }
        SVC_PROCEDURE => {
            if let Some(a) = unknown_refusal(cfg, g, seq, service, &issues) {
                return a;
            }
            let Some(code) = body.get("MaTTHC").and_then(Value::as_str) else {
                return Answer::err(&codes.invalid, "MaTTHC: required string".into());
            };
            match g.catalogue.procedure(code) {
                Some(p) => Answer::ok("Thành công", p.clone()),
                None => Answer::err(
                    &codes.unknown_procedure,
                    format!("procedure {code:?} is not in the catalogue"),
                ),
            }
        }
        SVC_ONLINE_DOSSIERS => {
            if let Some(a) = unknown_refusal(cfg, g, seq, service, &issues) {
                return a;
            }
            let from = match body.get("tuNgay") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if is_portal_date(s) => Some(s.as_str()),
                Some(_) => {
                    return Answer::err(&codes.invalid, "tuNgay: a yyyyMMddHHmmss date".into())
                }
            };
            Answer::ok("Thành công", Value::Array(online::list(&g.online, from)))
        }
        _ => {
            if let Some(a) = unknown_refusal(cfg, g, seq, service, &issues) {
                return a;
            }
            let list = match service {
                SVC_PROCEDURES => g.catalogue.procedures.clone(),
                SVC_AGENCIES => g.catalogue.agencies.clone(),
                _ => g.catalogue.fields.clone(),
            };
            Answer::ok("Thành công", Value::Array(list))
        }
    }
}

/// Record unknown top-level fields of a look-up; refuse them when strict.
pub(super) fn unknown_refusal(
    cfg: &PortalConfig,
    g: &mut Inner,
    seq: u64,
    service: &str,
    issues: &Issues,
) -> Option<Answer> {
    for p in &issues.unknown {
        g.records.unknown_fields.push(UnknownField {
            seq,
            service: service.into(),
            path: p.clone(),
        });
    }
    if cfg.strict_unknown_fields && !issues.unknown.is_empty() {
        return Some(
            Answer::err(
                &cfg.codes.invalid,
                format!("unknown fields: {}", issues.unknown.join(", ")),
            )
            .result(json!({"errors": [], "unknown_fields": issues.unknown})),
        );
    }
    None
}
