//! MySign's paths and bodies, with its field names as MySign spells them.

use serde_json::{json, Value};

use super::settings::Settings;
use crate::connectors::officials::b64_encode;
use crate::connectors::signer::HashRequest;
use crate::signing::remote::KeyAlgorithm;

pub(super) const LOGIN: &str = "/vtss/service/ras/v1/login";
pub(super) const CERTIFICATES: &str = "/vtss/service/certificates/info";
pub(super) const SIGN_HASH: &str = "/vtss/service/signHash";
pub(super) const STATUS: &str = "/vtss/service/requests/status";

pub(super) fn login(s: &Settings, user_id: &str) -> Value {
    json!({
        "client_id": s.client_id,
        "client_secret": s.client_secret.expose(),
        "user_id": user_id,
        "profile_id": s.profile_id,
    })
}

pub(super) fn certificates(s: &Settings, user_id: &str, credential: &str) -> Value {
    json!({
        "client_id": s.client_id,
        "user_id": user_id,
        "credentialID": credential,
        "certificates": "chain",
        "certInfo": true,
    })
}

/// The `signAlgo` OID for a key and digest (RSASSA-PSS when configured).
pub(super) fn sign_algo(key: KeyAlgorithm, req: &HashRequest, pss: bool) -> &'static str {
    use crate::signing::remote::DigestAlgorithm as D;
    match (key, req.algorithm) {
        (KeyAlgorithm::Rsa { .. }, _) if pss => "1.2.840.113549.1.1.10",
        (KeyAlgorithm::Rsa { .. }, D::Sha256) => "1.2.840.113549.1.1.11",
        (KeyAlgorithm::Rsa { .. }, D::Sha384) => "1.2.840.113549.1.1.12",
        (KeyAlgorithm::Rsa { .. }, D::Sha512) => "1.2.840.113549.1.1.13",
        (KeyAlgorithm::Ec { .. }, D::Sha256) => "1.2.840.10045.4.3.2",
        (KeyAlgorithm::Ec { .. }, D::Sha384) => "1.2.840.10045.4.3.3",
        (KeyAlgorithm::Ec { .. }, D::Sha512) => "1.2.840.10045.4.3.4",
    }
}

pub(super) fn sign_hash(
    s: &Settings,
    credential: &str,
    req: &HashRequest,
    sign_algo: &str,
) -> Value {
    json!({
        "client_id": s.client_id,
        "credentialID": credential,
        "numSignatures": 1,
        "documents": [req.request_id],
        "hash": [b64_encode(&req.digest)],
        "hashAlgo": req.algorithm.oid(),
        "signAlgo": sign_algo,
        "async": 1,
    })
}

pub(super) fn status(tx: &str) -> Value {
    json!({"transactionId": tx})
}
