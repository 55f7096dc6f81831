//! Records of inbound requests whose signature was verified (direction `in`), and the
//! fail-closed gate of the inbound listener.

use axum::http::HeaderMap;
use gw_store::{Batch, Store};

use super::EvidenceLog;
use crate::model::envelope::Envelope;
use crate::model::time::now_ms;

/// Refuse new messages while time-stamping has failed past its grace period (fail-closed).
pub fn refuse_new_messages() -> bool {
    super::tsa::closed()
}

/// Where an inbound request's verified signature is, and who made it.
#[derive(Debug, Clone, Default)]
pub struct InboundSignature {
    /// The headers carrying the signature value (lowercase), as the verifying profile reads
    /// them ([`crate::signing::InboundVerifier::signature_headers`]).
    pub headers: Vec<String>,
    /// The certificate (or key) it verified with ([`crate::signing::signer_fingerprint`]).
    pub fingerprint: Option<String>,
}

/// One accepted, signature-verified inbound request, as [`record`] keeps it.
pub struct Received<'a> {
    /// The source that sent it.
    pub source: &'a str,
    /// Its headers (the signature values are read from them).
    pub headers: &'a HeaderMap,
    /// Where its signature is, and who made it.
    pub signature: InboundSignature,
    /// Its body, as received.
    pub body: &'a [u8],
    /// The envelope it was accepted as.
    pub env: &'a Envelope,
    /// Our answer's body.
    pub answer: &'a [u8],
}

/// Record a verified inbound request and our answer in `log` (the gateway's evidence log, if
/// any), in `store`. The caller answers 2xx only when this succeeded (the record exists for
/// every accepted signed request); with evidence off for the source it does nothing.
pub async fn record(
    log: Option<&EvidenceLog>,
    store: &dyn Store,
    received: Received<'_>,
) -> Result<(), gw_store::StoreError> {
    let Received {
        source,
        headers,
        signature,
        body,
        env,
        answer,
    } = received;
    let Some(log) = log else {
        return Ok(());
    };
    let mode = log.mode_of(source);
    if mode == super::Mode::Off {
        return Ok(());
    }
    let sig: Vec<&str> = signature
        .headers
        .iter()
        .flat_map(|name| headers.get_all(name.as_str()))
        .filter_map(|v| v.to_str().ok())
        .collect();
    let keep = mode == super::Mode::Full;
    let exchange = super::capture::Exchange {
        at_ms: now_ms(),
        operation: None,
        request_digest: gw_crypto::digest::sha256_hex(body),
        response_digest: Some(gw_crypto::digest::sha256_hex(answer)),
        signature_digest: (!sig.is_empty())
            .then(|| gw_crypto::digest::sha256_hex(sig.join("\n").as_bytes())),
        cert_fingerprint: signature.fingerprint,
        status: Some(202),
        result_code: None,
        request_body: keep.then(|| std::sync::Arc::new(body.to_vec())),
        response_body: keep.then(|| std::sync::Arc::new(answer.to_vec())),
    };
    let id = env.id.to_string();
    let records = log.records(
        &super::RecordContext {
            adapter: source,
            direction: "in",
            route: "",
            exchange_prefix: &format!("in/{source}/{id}"),
            envelope_id: &id,
            dossier: &env.key,
            operation: &env.kind,
        },
        vec![exchange],
    );
    let batch = Batch {
        evidence: records,
        ..Default::default()
    };
    store.record(batch).await
}
